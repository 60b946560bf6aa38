"""From a raw table to `Splits`: vocabularies, normalisation, domains, labels.

The encoding is fitted on the *train* split only (counts, mean/std, the set
of domains) and then applied to every split, so valid/test never influence
it: an unseen category maps to id 0, a valid/test domain unseen in train is
an error. Statistics are accumulated by `EncoderStats.update`, which works
on the whole train table at once or on streamed chunks of it, so in-memory
and streaming datasets share one code path. Everything is vectorised
(pandas/numpy), never a Python loop over rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mdmt_nas.data.schema import Schema, SparseField
from mdmt_nas.data.split import PARTS, SplitConfig, split_indices
from mdmt_nas.data.tensors import MDMTTensors, Splits
from mdmt_nas.errors import DataError

#: Separators we recognise when a file was read with the wrong one (longest first).
_SEPARATORS = ("::", "\t", ";", ",", "|")
_SEP_NAMES = {"\t": "\\t' (tab", "::": "::", ";": ";", ",": ",", "|": "|"}


#: A label rule: `COLUMN OP NUMBER`, e.g. ``rating > 3``.
_RULE = re.compile(r"^\s*(?P<col>[^<>=!]*?)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_OPS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal, "==": np.equal, "!=": np.not_equal}


@dataclass(frozen=True)
class LabelRule:
    """A task's label: a 0/1 column as it is, or a threshold on a numeric column (``rating > 3``)."""

    column: str
    op: str | None = None
    value: float = 0.0

    @classmethod
    def parse(cls, text: str, task: str) -> "LabelRule":
        text = str(text)
        if not any(c in text for c in "<>=!"):
            if not text.strip():
                raise ValueError(f"labels.{task}: empty; give a 0/1 column name or a rule such as 'rating > 3'")
            return cls(text.strip())
        m = _RULE.match(text)
        if m is None or not m["col"]:
            raise ValueError(
                f"labels.{task}: cannot read the rule {text!r}; write COLUMN OP NUMBER with OP one of "
                f"{' '.join(_OPS)} (e.g. 'rating > 3'), or give the name of a 0/1 column"
            )
        return cls(m["col"], m["op"], float(m["num"]))

    def apply(self, values: pd.Series, task: str, where: str) -> np.ndarray:
        """The 0/1 labels (float32) of these rows; DataError on missing or non-numeric source values."""
        if self.op is None:
            return values.to_numpy()
        num = pd.to_numeric(values.astype("string").str.strip() if not pd.api.types.is_numeric_dtype(values) else values, errors="coerce")
        missing = values.isna()
        if missing.any():
            raise DataError(f"{where}: column {self.column!r} (label {task!r} = {self.column} {self.op} {self.value:g}) has {int(missing.sum())} missing values; drop those rows or fill them")
        bad = num.isna()
        if bad.any():
            shown = sorted(map(str, values[bad].unique()[:5]))
            raise DataError(
                f"{where}: column {self.column!r} must be numeric for the label rule {task!r}: {self.column} {self.op} {self.value:g}; "
                f"found {shown} in {int(bad.sum())} rows"
            )
        return _OPS[self.op](num.to_numpy(dtype=np.float64), self.value).astype(np.float32)


class FirstOf(BaseModel):
    """A derived categorical column: the first element of a separated list (``Drama|Comedy`` -> ``Drama``)."""

    model_config = ConfigDict(extra="forbid")
    first_of: str = Field(min_length=1, description="the source column holding the list")
    separator: str = Field(default="|", min_length=1)

    def apply(self, values: pd.Series) -> pd.Series:
        """Vectorised; missing or empty lists give a missing value (id 0, unknown)."""
        first = values.astype("string").str.split(self.separator, n=1, regex=False).str[0].str.strip()
        return first.where(first != "", pd.NA)


class ColumnMapping(BaseModel):
    """Which raw columns play which role. Task names are the label column names (or the keys of `labels`)."""

    model_config = ConfigDict(extra="forbid")
    domain: str
    #: a list of 0/1 columns (task name = column name), or task name -> a 0/1 column or a rule
    #: `COLUMN OP NUMBER` on a numeric column (OP one of > >= < <= == !=), e.g. {click: "rating > 3"}.
    labels: list[str] | dict[str, str] = Field(min_length=1)
    sparse: list[str] = Field(default_factory=list)
    dense: list[str] = Field(default_factory=list)
    #: new columns computed from raw ones before encoding, usable as sparse/dense/domain columns:
    #: name -> {first_of: column, separator: "|"} (the first element of a list, e.g. a movie's first genre).
    derived: dict[str, FirstOf] = Field(default_factory=dict)
    #: raw domain value (as a string) -> domain name; several values may share a name.
    #: The order of first appearance of each name fixes the domain ids.
    domain_names: dict[str, str] | None = None
    timestamp: str | None = None
    #: categories seen fewer times than this in train map to 0 (unknown).
    min_count: int = Field(default=1, ge=1)
    #: keep only the most frequent categories per sparse column.
    max_vocab: int | None = Field(default=None, ge=1)

    @field_validator("domain_names", mode="before")
    @classmethod
    def _str_keys(cls, v: object) -> object:
        if isinstance(v, dict):
            return {_key_str(k): str(n) for k, n in v.items()}
        return v

    @model_validator(mode="after")
    def _check(self) -> "ColumnMapping":
        if not self.sparse and not self.dense:
            raise ValueError("the mapping needs at least one sparse or dense column")
        tasks = self.tasks()
        features = self.sparse + self.dense
        dup = sorted({c for c in features + tasks if (features + tasks).count(c) > 1})
        if dup:
            raise ValueError(f"columns used in two roles (or twice): {dup}")
        rules = self.label_rules()  # parses: a bad rule is a ValueError naming the task
        for name, d in self.derived.items():
            if d.first_of in self.derived:
                raise ValueError(f"derived.{name}: its source {d.first_of!r} is itself derived; derive from a raw column")
        raw = set(self.columns())
        for name in self.derived:
            if name in raw:
                raise ValueError(f"derived.{name}: {name!r} is also read as a raw column; give the derived column another name")
        for task, r in rules.items():
            if (r.op is not None or task != r.column) and task in raw:
                raise ValueError(f"labels.{task}: the task name is also a column the mapping reads; name the task differently (e.g. {task + '_label'!r})")
            if r.column in self.derived:
                raise ValueError(f"labels.{task}: {r.column!r} is a derived column; a label rule reads a raw column")
        return self

    def tasks(self) -> list[str]:
        """Task names, in order (the label columns of the encoded frame)."""
        return list(self.labels)

    def label_rules(self) -> dict[str, LabelRule]:
        if isinstance(self.labels, dict):
            return {t: LabelRule.parse(v, t) for t, v in self.labels.items()}
        return {t: LabelRule(t) for t in self.labels}

    def columns(self) -> list[str]:
        """Every raw column the mapping reads (each once, in a stable order): derived columns and
        label rules are replaced by their source columns."""

        def raw(c: str) -> str:
            return self.derived[c].first_of if c in self.derived else c

        cols = [raw(self.domain), *(r.column for r in self.label_rules().values()), *map(raw, self.sparse), *map(raw, self.dense)]
        if self.timestamp:
            cols.append(raw(self.timestamp))
        return list(dict.fromkeys(cols))

    def frame_columns(self) -> list[str]:
        """The columns of a prepared frame (see `prepare`): domain, tasks, features, timestamp."""
        cols = [self.domain, *self.tasks(), *self.sparse, *self.dense]
        if self.timestamp:
            cols.append(self.timestamp)
        return list(dict.fromkeys(cols))

    def prepare(self, df: pd.DataFrame, where: str = "data") -> pd.DataFrame:
        """Add the derived columns and the rule-defined label columns to a frame of raw columns (vectorised).

        A frame that already has every such column is returned as it is.
        """
        rules = {t: r for t, r in self.label_rules().items() if r.op is not None or t != r.column}
        todo = [c for c in [*self.derived, *rules] if c not in df.columns]
        if not todo:
            return df
        check_columns(df.columns, [self.derived[c].first_of if c in self.derived else rules[c].column for c in todo], where)
        new = {}
        for c in todo:
            if c in self.derived:
                new[c] = self.derived[c].apply(df[self.derived[c].first_of])
            else:
                new[c] = rules[c].apply(df[rules[c].column], c, where)
        return df.assign(**new)


def _key_str(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def domain_keys(values: pd.Series) -> pd.Series:
    """Domain values as strings, so 1, 1.0 and "1" name the same domain."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype(str)
    if pd.api.types.is_float_dtype(values):
        finite = values.dropna()
        if len(finite) and np.all(np.mod(finite.to_numpy(), 1) == 0):
            return values.astype("Int64").astype("string").astype(object).where(values.notna(), None)
    return values.astype("string").str.strip().astype(object).where(values.notna(), None)


def check_columns(columns: Iterable[str], needed: Iterable[str], where: str, separator: str | None = None) -> None:
    """DataError naming a missing column and listing the available ones; detects a wrong separator."""
    cols = [str(c) for c in columns]
    missing = [c for c in needed if c not in cols]
    if not missing:
        return
    if len(cols) == 1:
        found = next((s for s in _SEPARATORS if s in cols[0] and s != separator), None)
        if found is not None:
            used = f" with separator '{_SEP_NAMES.get(separator, separator)}'" if separator else ""
            raise DataError(
                f"{where}: the file has a single column {cols[0][:80]!r}; it seems to be separated by "
                f"'{_SEP_NAMES[found]}' but was read{used}. Set the separator (e.g. `separator: {found!r}`)"
            )
    raise DataError(
        f"{where}: column {missing[0]!r} not found"
        + (f" (also missing: {', '.join(map(repr, missing[1:]))})" if len(missing) > 1 else "")
        + f"; available columns: {', '.join(cols)}"
    )


# ----------------------------------------------------------------------------- fitting


@dataclass
class _Moments:
    """Running count/mean/M2 per dense column (Chan et al. parallel update)."""

    n: float = 0.0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    def update(self, x: np.ndarray) -> None:
        nb = x.shape[0]
        if nb == 0:
            return
        mb = x.mean(axis=0)
        m2b = ((x - mb) ** 2).sum(axis=0)
        if self.mean is None:
            self.n, self.mean, self.m2 = float(nb), mb, m2b
            return
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * nb / n
        self.m2 = self.m2 + m2b + delta**2 * self.n * nb / n
        self.n = n


class _Counts:
    """Category counts of one column summed over chunks, in Arrow.

    Each chunk is counted with Arrow's `value_counts`; the per-chunk tables are
    queued and merged in bulk (one hash aggregation) when the queue outgrows
    the merged table, so a large vocabulary is not re-aligned on every chunk.
    Columns Arrow cannot type (mixed Python objects) fall back to pandas.
    """

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.queued = 0
        self.merged_rows = 0
        self.fallback: list[pd.Series] | None = None

    def add(self, values: pd.Series) -> None:
        if self.fallback is None:
            try:
                vc = pc.value_counts(pa.array(values, from_pandas=True))
                t = pa.table({"v": vc.field("values"), "c": vc.field("counts")}).filter(pc.is_valid(vc.field("values")))
                if self.tables and t.schema != self.tables[0].schema:
                    t = t.cast(self.tables[0].schema)
                self.tables.append(t)
                self.queued += t.num_rows
                if self.queued > 2 * self.merged_rows + 1_000_000:
                    self._merge()
                return
            except (pa.ArrowException, TypeError):
                self.fallback = [self._as_pandas()] if self.tables else []
                self.tables = []
        self.fallback.append(values.value_counts(dropna=True))

    def _merge(self) -> pa.Table | None:
        if not self.tables:
            return None
        if len(self.tables) > 1:
            agg = pa.concat_tables(self.tables).group_by("v", use_threads=False).aggregate([("c", "sum")])
            self.tables = [pa.table({"v": agg["v"], "c": agg["c_sum"]})]
        self.merged_rows, self.queued = self.tables[0].num_rows, 0
        return self.tables[0]

    def _as_pandas(self) -> pd.Series:
        t = self._merge()
        return pd.Series(t["c"].to_numpy(), index=pd.Index(t["v"].to_pandas())) if t is not None else pd.Series(dtype=np.int64)

    def vocab(self, min_count: int, max_vocab: int | None) -> tuple[pd.Index, pa.Array | None]:
        """Values ordered by train frequency (ties by their text), id = position + 1; plus the Arrow array."""
        if self.fallback is not None:
            counts = pd.concat(self.fallback).groupby(level=0).sum() if self.fallback else pd.Series(dtype=np.int64)
            return _vocab(counts, min_count, max_vocab), None
        t = self._merge()
        if t is None or t.num_rows == 0:
            return pd.Index([]), None
        t = t.filter(pc.greater_equal(t["c"], min_count))
        text = t["v"] if pa.types.is_string(t["v"].type) else pc.cast(t["v"], pa.string())
        order = pc.sort_indices(pa.table({"c": t["c"], "t": text}), sort_keys=[("c", "descending"), ("t", "ascending")])
        if max_vocab is not None:
            order = order[:max_vocab]
        values = pc.take(t["v"], order).combine_chunks()
        return pd.Index(values.to_pandas()), values


@dataclass
class EncoderStats:
    """Train-split statistics, accumulated chunk by chunk; `finish()` builds the `Encoder`."""

    mapping: ColumnMapping
    where: str = "data"
    counts: dict[str, _Counts] = field(default_factory=dict)
    domains: pd.Series | None = None
    moments: _Moments = field(default_factory=_Moments)
    rows: int = 0

    def update(self, df: pd.DataFrame) -> None:
        """Add the rows of a train chunk (checks dense values and domains as it goes)."""
        m = self.mapping
        df = m.prepare(df, self.where)
        check_columns(df.columns, m.frame_columns(), self.where)
        self.rows += len(df)
        for c in m.sparse:
            self.counts.setdefault(c, _Counts()).add(df[c])
        vc = domain_counts(df[m.domain], m, self.where)
        self.domains = vc if self.domains is None else self.domains.add(vc, fill_value=0)
        if m.dense:
            self.moments.update(dense_matrix(df, m.dense, self.where))

    def finish(self) -> "Encoder":
        m = self.mapping
        if self.rows == 0:
            raise DataError(f"{self.where}: the train split is empty; nothing to fit the encoding on")
        fitted = {c: self.counts.get(c, _Counts()).vocab(m.min_count, m.max_vocab) for c in m.sparse}
        vocabs = {c: v for c, (v, _) in fitted.items()}
        arrow = {c: a for c, (_, a) in fitted.items() if a is not None}
        present = set(self.domains.index) if self.domains is not None else set()
        if m.domain_names is not None:
            names = [n for n in dict.fromkeys(m.domain_names.values()) if n in present]
        else:
            names = _natural_sort(present)
        if m.dense:
            mean = self.moments.mean.astype(np.float64)
            std = np.sqrt(self.moments.m2 / max(self.moments.n, 1.0))
            std = np.where(std > 1e-12, std, 1.0)
        else:
            mean = std = np.zeros(0)
        return Encoder(m, vocabs, mean, std, names, arrow)


def _vocab(counts: pd.Series, min_count: int, max_vocab: int | None) -> pd.Index:
    """Values ordered by train frequency (ties by their text), id = position + 1."""
    counts = counts[counts >= min_count]
    if len(counts) == 0:
        return pd.Index([])
    by_text = np.asarray(counts.index.astype("string").argsort())  # ties broken by the value's text
    order = by_text[np.argsort(-counts.to_numpy()[by_text], kind="stable")]
    if max_vocab is not None:
        order = order[:max_vocab]
    return counts.index[order]


def _natural_sort(keys: Iterable[str]) -> list[str]:
    keys = list(keys)
    num = pd.to_numeric(pd.Series(keys, dtype=object), errors="coerce")
    if len(keys) and not num.isna().any():
        return [k for _, k in sorted(zip(num.tolist(), keys))]
    return sorted(keys)


def named_domains(values: pd.Series, m: ColumnMapping, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw domain values -> (code per row, domain name per code).

    Works on the distinct values only (a categorical), so a large table costs
    one hashing pass. Missing values and values absent from `domain_names`
    are errors naming them.
    """
    cat = pd.Categorical(values).remove_unused_categories()  # a categorical column may list absent values
    codes = np.asarray(cat.codes, dtype=np.int64)
    if (codes < 0).any():
        raise DataError(f"{where}: domain column {m.domain!r} has {int((codes < 0).sum())} missing values; drop those rows or fill them")
    keys = domain_keys(pd.Series(cat.categories))
    if m.domain_names is None:
        return codes, keys.to_numpy(dtype=object)
    names = keys.map(m.domain_names)
    if names.isna().any():
        unmapped = names.isna().to_numpy()
        rows = int(np.bincount(codes, minlength=len(keys))[unmapped].sum())
        raise DataError(
            f"{where}: domain column {m.domain!r} has values not listed in domain_names: "
            f"{sorted(keys[unmapped].tolist())[:10]} ({rows} rows); add them to domain_names or drop those rows"
        )
    return codes, names.to_numpy(dtype=object)


def domain_counts(values: pd.Series, m: ColumnMapping, where: str) -> pd.Series:
    """Rows per domain name."""
    codes, names = named_domains(values, m, where)
    return pd.Series(np.bincount(codes, minlength=len(names)), index=names).groupby(level=0).sum()


def dense_matrix(df: pd.DataFrame, cols: list[str], where: str) -> np.ndarray:
    try:
        x = df[cols].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        for c in cols:
            conv = pd.to_numeric(df[c], errors="coerce")
            bad = df[c][conv.isna() & df[c].notna()]
            if len(bad):
                raise DataError(
                    f"{where}: dense column {c!r} has non-numeric values, e.g. {bad.unique()[:5].tolist()}; "
                    f"make it numeric or list it under sparse"
                ) from None
        raise
    bad = ~np.isfinite(x)
    if bad.any():
        j = int(bad.any(axis=0).argmax())
        raise DataError(
            f"{where}: dense column {cols[j]!r} has {int(bad[:, j].sum())} missing or infinite values (NaN/inf); "
            f"fill them first (e.g. with the train median or 0) or drop those rows"
        )
    return x


def labels_matrix(df: pd.DataFrame, cols: list[str], where: str) -> np.ndarray:
    out = np.empty((len(df), len(cols)), dtype=np.float32)
    for j, c in enumerate(cols):
        s = df[c]
        if pd.api.types.is_bool_dtype(s):
            s = s.astype("float64")
        v = pd.to_numeric(s, errors="coerce")
        missing = s.isna()
        if missing.any():
            raise DataError(f"{where}: label column {c!r} has {int(missing.sum())} missing values (NaN); drop those rows or fill them with 0/1")
        bad = ~v.isin([0, 1]) | v.isna()
        if bad.any():
            shown = sorted(map(str, s[bad].unique()[:5]))
            raise DataError(
                f"{where}: label column {c!r} must be binary 0/1; found {shown} in {int(bad.sum())} rows. "
                f"Derive a 0/1 column first (e.g. click = rating > 3)"
            )
        out[:, j] = v.to_numpy(dtype=np.float32)
    return out


# ----------------------------------------------------------------------------- applying


@dataclass
class Encoder:
    """A fitted encoding: apply it to any split (or chunk) with `transform`."""

    mapping: ColumnMapping
    vocabs: dict[str, pd.Index]
    mean: np.ndarray
    std: np.ndarray
    domain_names: list[str]
    #: the vocabularies as Arrow arrays (filled lazily from `vocabs` when not given).
    arrow_vocabs: dict[str, pa.Array] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._domain_id = {n: i for i, n in enumerate(self.domain_names)}
        self._arrow_vocabs: dict[str, pa.Array | None] = dict(self.arrow_vocabs)

    def lookup(self, col: str, values: pd.Series) -> np.ndarray:
        """Ids of `values` in the vocabulary of `col` (0 = unknown or missing).

        Arrow's hash lookup (`index_in`) avoids turning strings into Python
        objects; pandas' `get_indexer` is the fallback for types Arrow cannot
        match (e.g. mixed objects).
        """
        vocab = self.vocabs[col]
        try:
            if col not in self._arrow_vocabs:
                self._arrow_vocabs[col] = pa.array(vocab.to_numpy(), from_pandas=True) if len(vocab) else None
            value_set = self._arrow_vocabs[col]
            if value_set is None:
                return np.zeros(len(values), dtype=np.int64)
            arr = pa.array(values, from_pandas=True)
            if arr.type != value_set.type:
                arr = arr.cast(value_set.type)
            idx = pc.index_in(arr, value_set=value_set).fill_null(-1)
            return idx.to_numpy(zero_copy_only=False).astype(np.int64) + 1
        except (pa.ArrowException, TypeError):
            return vocab.get_indexer(values) + 1

    @property
    def schema(self) -> Schema:
        m = self.mapping
        return Schema(
            sparse=[SparseField(name=c, vocab_size=len(self.vocabs[c]) + 1) for c in m.sparse],
            dense=list(m.dense),
            domain=m.domain,
            domain_names=list(self.domain_names),
            tasks=m.tasks(),
        )

    def transform(self, df: pd.DataFrame, where: str = "data") -> MDMTTensors:
        """Encode rows: ids (0 = unseen), normalised dense, domain ids, 0/1 labels."""
        m = self.mapping
        df = m.prepare(df, where)
        check_columns(df.columns, m.frame_columns(), where)
        n = len(df)
        codes, names = named_domains(df[m.domain], m, where)
        lookup = np.array([self._domain_id.get(nm, -1) for nm in names], dtype=np.int64)  # per distinct value
        dom = lookup[codes] if len(codes) else np.zeros(0, dtype=np.int64)
        if (dom < 0).any():
            unseen = sorted(set(names[lookup < 0]))
            raise DataError(
                f"{where}: domain value(s) {unseen} of column {m.domain!r} do not occur in the train split "
                f"({int((dom < 0).sum())} rows); a model cannot serve a domain it never trained on. "
                f"Use another split (e.g. random) or drop those rows"
            )
        sparse = np.zeros((n, len(m.sparse)), dtype=np.int64)
        for j, c in enumerate(m.sparse):
            sparse[:, j] = self.lookup(c, df[c])
        if m.dense:
            dense = ((dense_matrix(df, m.dense, where) - self.mean) / self.std).astype(np.float32)
        else:
            dense = np.zeros((n, 0), dtype=np.float32)
        labels = labels_matrix(df, m.tasks(), where)
        return MDMTTensors(
            sparse=torch.from_numpy(sparse),
            dense=torch.from_numpy(dense),
            domain=torch.from_numpy(dom),
            labels=torch.from_numpy(labels),
        )


def fit_encoder(train: pd.DataFrame, mapping: ColumnMapping, where: str = "train split") -> Encoder:
    """Fit vocabularies, dense mean/std and the domain set on train rows."""
    stats = EncoderStats(mapping, where)
    stats.update(train)
    return stats.finish()


def encode_table(
    table: pd.DataFrame | object,
    mapping: ColumnMapping,
    split: SplitConfig | None = None,
    where: str = "data",
    separator: str | None = None,
) -> Splits:
    """Split a raw table, fit the encoding on train and encode all three splits.

    `table` is a pandas DataFrame or a pyarrow Table; `separator` (the one the
    file was read with) only improves the wrong-separator message.
    """
    df = table.to_pandas() if hasattr(table, "to_pandas") and not isinstance(table, pd.DataFrame) else table
    split = split or SplitConfig()
    needed = mapping.columns()
    if split.kind in ("column", "hash") and split.column:
        needed = needed + [split.column]
    if split.kind == "time":
        needed = needed + [split.column or mapping.timestamp or ""]
    check_columns(df.columns, [c for c in needed if c and c not in mapping.derived], where, separator)
    df = mapping.prepare(df, where)
    # Check labels and dense values on the whole table first, so messages count every bad row.
    labels_matrix(df, mapping.tasks(), where)
    if mapping.dense:
        dense_matrix(df, mapping.dense, where)
    idx = split_indices(len(df), split, df, mapping.timestamp, where)
    parts = {name: df.iloc[i] for name, i in zip(PARTS, idx)}
    enc = fit_encoder(parts["train"], mapping, where=f"{where} (train split)")
    out = Splits(enc.schema, *(enc.transform(parts[p], where=f"{where} ({p} split)") for p in PARTS))
    out.validate()
    return out
