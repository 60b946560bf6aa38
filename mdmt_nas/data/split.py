"""Train/valid/test assignment of rows, reproducible from a `SplitConfig`.

Every dataset splits rows *before* fitting vocabularies and normalisation, so
nothing from valid/test leaks into the encoding. Kinds:

- ``random``: a seeded permutation cut at the fractions (exact counts);
- ``sequential``: file order, first rows train, last rows test;
- ``time``: ordered by a timestamp column (stable), oldest rows train;
- ``column``: a column whose values name the split (``train``/``valid``/``test``
  by default); optionally carve ``valid_from_train`` out of train when the
  column has no validation rows (e.g. files published as train/test only);
- ``hash``: a row goes to a split by a seeded hash of an id column (or of its
  row index), so the assignment never depends on file order or chunking; the
  streaming Parquet reader uses it for ``random``;
- ``grouped``: rows ordered by an id column (stable: file order inside a
  group; numeric ids sort as numbers), then cut in that order, so the groups
  of the valid and test rows are (nearly all) unseen in training -- the M3oE
  reference's protocol on MovieLens (grouped by ascending user id).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mdmt_nas.errors import DataError

PARTS: tuple[str, str, str] = ("train", "valid", "test")

_DEFAULT_VALUES = {"train": ["train"], "valid": ["valid", "val", "validation", "dev"], "test": ["test"]}


class SplitConfig(BaseModel):
    """How rows are assigned to train/valid/test (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["random", "sequential", "time", "column", "hash", "grouped"] = "random"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    #: time: the timestamp column (default: the mapping's timestamp); column: the split column;
    #: hash: the id column to hash (default: the row index); grouped: the id column to group by.
    column: str | None = None
    #: column kind: which values of the column name each split (compared as strings).
    values: dict[Literal["train", "valid", "test"], list[str]] = Field(default_factory=lambda: dict(_DEFAULT_VALUES))
    #: column kind: when no row is named valid, move this fraction of train rows (seeded) to valid.
    valid_from_train: float | None = Field(default=None, gt=0, lt=1)

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f <= 0 for f in v):
            raise ValueError(f"every split fraction must be > 0 (train, valid, test); got {list(v)}")
        if abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1; got {list(v)} (sum {sum(v):g})")
        return v

    @model_validator(mode="after")
    def _column_needed(self) -> "SplitConfig":
        if self.kind == "column" and not self.column:
            raise ValueError("split kind 'column' needs `column`: the column whose values name the split")
        if self.kind == "grouped" and not self.column:
            raise ValueError("split kind 'grouped' needs `column`: the id column to group rows by (e.g. user)")
        return self


def split_indices(
    n: int, cfg: SplitConfig, frame: pd.DataFrame | None = None, timestamp: str | None = None, where: str = "data"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (int64) of train, valid and test for `n` rows.

    `frame` supplies the time/split/id column when the kind needs one;
    `timestamp` is the mapping's timestamp column, used by ``time`` when the
    config names none. Raises DataError if a split ends up empty.
    """
    f_train, f_valid, _ = cfg.fractions
    if cfg.kind == "random":
        order = np.random.default_rng(cfg.seed).permutation(n)
        parts = _cut(order, n, f_train, f_valid)
        parts = tuple(np.sort(p) for p in parts)
    elif cfg.kind == "sequential":
        parts = _cut(np.arange(n), n, f_train, f_valid)
    elif cfg.kind == "time":
        col = cfg.column or timestamp
        if not col:
            raise DataError(
                f"{where}: split kind 'time' needs a timestamp column; set split.column or the mapping's timestamp"
            )
        ts = _column(frame, col, where, "time split")
        if ts.isna().any():
            raise DataError(
                f"{where}: timestamp column {col!r} has {int(ts.isna().sum())} missing values; drop those rows or use another split kind"
            )
        order = np.argsort(ts.to_numpy(), kind="stable")
        parts = _cut(order, n, f_train, f_valid)
    elif cfg.kind == "grouped":
        keys = _column(frame, cfg.column, where, "grouped split")
        num = pd.to_numeric(keys, errors="coerce")
        sort_keys = num.to_numpy() if not num.isna().any() else keys.astype("string").to_numpy()
        order = np.argsort(sort_keys, kind="stable")
        parts = _cut(order, n, f_train, f_valid)
    elif cfg.kind == "hash":
        keys = _column(frame, cfg.column, where, "hash split") if cfg.column else None
        u = hash_uniform(keys if keys is not None else np.arange(n, dtype=np.int64), cfg.seed)
        parts = assign_by_uniform(u, cfg.fractions)
    else:  # column
        parts = _by_column(_column(frame, cfg.column, where, "column split"), cfg, where)
    for name, idx in zip(PARTS, parts):
        if len(idx) == 0:
            raise DataError(
                f"{where}: the {name} split is empty ({n} rows, split kind {cfg.kind!r}, fractions {list(cfg.fractions)}); "
                f"add rows, raise the {name} fraction, or use another split kind"
            )
    return tuple(np.asarray(p, dtype=np.int64) for p in parts)  # type: ignore[return-value]


def _cut(order: np.ndarray, n: int, f_train: float, f_valid: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = int(np.floor(f_train * n + 1e-9))
    b = a + int(np.floor(f_valid * n + 1e-9))
    return order[:a], order[a:b], order[b:]


def _column(frame: pd.DataFrame | None, col: str | None, where: str, what: str) -> pd.Series:
    if frame is None or col is None or col not in frame.columns:
        avail = ", ".join(map(str, frame.columns)) if frame is not None else "(no table)"
        raise DataError(
            f"{where}: the {what} needs column {col!r}, which is not in the data; available columns: {avail}"
        )
    return frame[col]


def _by_column(values: pd.Series, cfg: SplitConfig, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keys = values.astype("string").str.strip()
    known = {v: part for part, vs in cfg.values.items() for v in vs}
    codes = keys.map(known)
    bad = keys[codes.isna()]
    if len(bad):
        shown = sorted(map(str, bad.unique()[:5]))
        raise DataError(
            f"{where}: split column {cfg.column!r} has {len(bad)} rows with values that name no split, e.g. {shown}; "
            f"known values: {dict(cfg.values)} (set split.values to map them)"
        )
    codes_np = codes.to_numpy()
    parts = {p: np.flatnonzero(codes_np == p) for p in PARTS}
    if len(parts["valid"]) == 0 and cfg.valid_from_train:
        train = parts["train"]
        take = np.random.default_rng(cfg.seed).random(len(train)) < cfg.valid_from_train
        parts["valid"], parts["train"] = train[take], train[~take]
    return parts["train"], parts["valid"], parts["test"]


def hash_uniform(keys: np.ndarray | pd.Series, seed: int) -> np.ndarray:
    """A deterministic pseudo-uniform number in [0, 1) per key (pandas' SipHash, seeded)."""
    arr = keys.to_numpy() if isinstance(keys, pd.Series) else np.asarray(keys)
    if arr.dtype.kind in "OUT" or arr.dtype.kind not in "iub":
        arr = pd.Series(arr).astype(str).to_numpy(dtype=object)
    h = pd.util.hash_array(arr, hash_key=f"mdmtnas{seed % 10**9:09d}", categorize=False)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign_by_uniform(
    u: np.ndarray, fractions: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of rows whose uniform number falls in each fraction's interval."""
    code = split_codes(u, fractions)
    return tuple(np.flatnonzero(code == k) for k in range(3))  # type: ignore[return-value]


def split_codes(u: np.ndarray, fractions: tuple[float, float, float]) -> np.ndarray:
    """0/1/2 (train/valid/test) per row from uniform numbers."""
    a, b = fractions[0], fractions[0] + fractions[1]
    return (u >= a).astype(np.int8) + (u >= b).astype(np.int8)
