"""The column mapping: which raw columns play which role, and the columns computed from them.

`ColumnMapping` names the domain, label, sparse, dense and timestamp columns of a
raw table; labels may be threshold rules on a numeric column (`LabelRule`,
``click: "rating > 3"``) and `derived` columns the first element of a list
(`FirstOf`). `prepare` computes them, vectorised, before anything is encoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mdmt_nas.errors import DataError

#: Separators we recognise when a file was read with the wrong one (longest first).
_SEPARATORS = ("::", "\t", ";", ",", "|")
_SEP_NAMES = {"\t": "\\t' (tab", "::": "::", ";": ";", ",": ",", "|": "|"}


#: A label rule: `COLUMN OP NUMBER`, e.g. ``rating > 3``.
_RULE = re.compile(
    r"^\s*(?P<col>[^<>=!]*?)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
_OPS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal, "==": np.equal, "!=": np.not_equal}


@dataclass(frozen=True)
class LabelRule:
    """A task's label: a 0/1 column as it is, or a threshold on a numeric column (``rating > 3``)."""

    column: str
    op: str | None = None
    value: float = 0.0

    @classmethod
    def parse(cls, text: str, task: str) -> LabelRule:
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
        num = pd.to_numeric(
            values.astype("string").str.strip() if not pd.api.types.is_numeric_dtype(values) else values,
            errors="coerce",
        )
        missing = values.isna()
        if missing.any():
            raise DataError(
                f"{where}: column {self.column!r} (label {task!r} = {self.column} {self.op} {self.value:g}) has {int(missing.sum())} missing values; drop those rows or fill them"
            )
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
    def _check(self) -> ColumnMapping:
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
                raise ValueError(
                    f"derived.{name}: its source {d.first_of!r} is itself derived; derive from a raw column"
                )
        raw = set(self.columns())
        for name in self.derived:
            if name in raw:
                raise ValueError(
                    f"derived.{name}: {name!r} is also read as a raw column; give the derived column another name"
                )
        for task, r in rules.items():
            if (r.op is not None or task != r.column) and task in raw:
                raise ValueError(
                    f"labels.{task}: the task name is also a column the mapping reads; name the task differently (e.g. {task + '_label'!r})"
                )
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

        cols = [
            raw(self.domain),
            *(r.column for r in self.label_rules().values()),
            *map(raw, self.sparse),
            *map(raw, self.dense),
        ]
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
        check_columns(
            df.columns, [self.derived[c].first_of if c in self.derived else rules[c].column for c in todo], where
        )
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
