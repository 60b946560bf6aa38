"""From a raw table to `Splits`: vocabularies, normalisation, domains, labels.

The encoding is fitted on the *train* split only (counts, mean/std, the set
of domains) and then applied to every split, so valid/test never influence
it: an unseen category maps to id 0, a valid/test domain unseen in train is
an error. Statistics are accumulated by `EncoderStats.update`, which works
on the whole train table at once or on streamed chunks of it, so in-memory
and streaming datasets share one code path. Everything is vectorised
(pandas/numpy), never a Python loop over rows. The column mapping itself
(roles, label rules, derived columns) is `mapping.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch

from mdmt_nas.data.mapping import ColumnMapping, FirstOf, LabelRule, check_columns, domain_keys  # noqa: F401 (re-exported)
from mdmt_nas.data.schema import Schema, SparseField
from mdmt_nas.data.split import PARTS, SplitConfig, split_indices
from mdmt_nas.data.tensors import MDMTTensors, Splits
from mdmt_nas.errors import DataError

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
        return (
            pd.Series(t["c"].to_numpy(), index=pd.Index(t["v"].to_pandas()))
            if t is not None
            else pd.Series(dtype=np.int64)
        )

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
    #: raw column -> value type ("long", "double", "boolean", "string"), from the first chunk
    dtypes: dict[str, str] = field(default_factory=dict)

    def update(self, df: pd.DataFrame) -> None:
        """Add the rows of a train chunk (checks dense values and domains as it goes)."""
        m = self.mapping
        df = m.prepare(df, self.where)
        check_columns(df.columns, m.frame_columns(), self.where)
        if not self.dtypes:
            self.dtypes = {c: raw_type(df[c]) for c in (m.domain, *m.sparse, *m.dense)}
        self.rows += len(df)
        for c in m.sparse:
            self.counts.setdefault(c, _Counts()).add(df[c])
        vc = domain_counts(df[m.domain], m, self.where)
        self.domains = vc if self.domains is None else self.domains.add(vc, fill_value=0)
        if m.dense:
            self.moments.update(dense_matrix(df, m.dense, self.where))

    def finish(self) -> Encoder:
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
        return Encoder(m, vocabs, mean, std, names, arrow, dict(self.dtypes))


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


def raw_type(values: pd.Series) -> str:
    """The value type of a raw column, named as MLflow signatures name them."""
    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    if pd.api.types.is_integer_dtype(values):
        return "long"
    if pd.api.types.is_float_dtype(values):
        return "double"
    return "string"


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
        raise DataError(
            f"{where}: domain column {m.domain!r} has {int((codes < 0).sum())} missing values; drop those rows or fill them"
        )
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
            raise DataError(
                f"{where}: label column {c!r} has {int(missing.sum())} missing values (NaN); drop those rows or fill them with 0/1"
            )
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
    #: raw column -> value type ("long", "double", "boolean", "string")
    dtypes: dict[str, str] = field(default_factory=dict)

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

    def serving_spec(self) -> dict:
        """The encoding as plain JSON data, for serving raw rows (`mdmt_nas.serving.pyfunc_model.RawEncoder`).

        Sparse id = position in `vocab` + 1 (0 = unknown); dense value = (raw - mean) / std; domain id =
        position of the domain's name in `domains` (raw value -> text -> `names` mapping, if any -> name).
        """
        m = self.mapping

        def values(vocab: pd.Index) -> list:
            return [v if isinstance(v, (bool, int, float, str)) else str(v) for v in vocab.tolist()]

        return {
            "domain": {
                "column": m.domain,
                "type": self.dtypes.get(m.domain, "string"),
                "names": dict(m.domain_names) if m.domain_names is not None else None,
            },
            "sparse": [
                {"column": c, "type": self.dtypes.get(c, "string"), "vocab": values(self.vocabs[c])} for c in m.sparse
            ],
            "dense": [
                {"column": c, "mean": float(mu), "std": float(sd)} for c, mu, sd in zip(m.dense, self.mean, self.std)
            ],
            "domains": list(self.domain_names),
            "tasks": list(m.labels),
        }

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
    out = Splits(enc.schema, *(enc.transform(parts[p], where=f"{where} ({p} split)") for p in PARTS), encoder=enc)
    out.validate()
    return out
