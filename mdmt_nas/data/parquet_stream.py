"""Streaming Parquet splits for data that does not fit in memory.

`open_streaming` makes one pass over the row groups: it assigns every row to
train/valid/test (by a split column, by a seeded hash of an id column or of
the global row index, or sequentially), counts rows per split and row group,
and fits the encoding (vocabularies, dense mean/std, domains) on the train
rows only. It returns `Splits` whose parts are `ParquetRowSource`s: each
epoch reads row groups one buffer at a time, keeps the rows of its split,
encodes them and yields batches. Memory is bounded by the vocabularies plus
`shuffle_buffer` row groups, not by the file size.

Shuffling is two-level: the order of row groups, then rows within a buffer
of `shuffle_buffer` row groups. Batches are consecutive slices of the stream
of permuted buffers, so `start_batch` can skip whole buffers without reading
them and a resumed epoch sees exactly the rows an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from mdmt_nas.data.encode import (
    ColumnMapping,
    Encoder,
    EncoderStats,
    check_columns,
    domain_counts,
    labels_matrix,
)
from mdmt_nas.data.split import PARTS, SplitConfig, hash_uniform, split_codes
from mdmt_nas.data.tensors import MDMTTensors, Splits
from mdmt_nas.errors import DataError


def parquet_files(path: Path) -> list[Path]:
    """A .parquet file, or the sorted *.parquet files of a directory."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise DataError(f"{path}: no *.parquet files in this directory")
        return files
    if not path.exists():
        raise DataError(f"Parquet file not found: {path}")
    return [path]


@dataclass(frozen=True)
class RowGroup:
    """One row group: file, index in the file, and its first row's global index."""

    file: int
    index: int
    offset: int
    num_rows: int


class _Plan:
    """Files, row groups, columns and the split rule shared by the three sources."""

    def __init__(self, path: Path, mapping: ColumnMapping, split: SplitConfig, shuffle_buffer: int):
        self.files = parquet_files(path)
        self.mapping, self.split, self.shuffle_buffer = mapping, split, shuffle_buffer
        if split.kind == "time":
            raise DataError(
                f"{path}: streaming Parquet cannot split by time in one pass; add a column naming the split "
                f"(split kind 'column') or use kind 'hash', 'random' or 'sequential'"
            )
        self.columns = mapping.columns()
        if split.kind in ("column", "hash") and split.column and split.column not in self.columns:
            self.columns.append(split.column)
        groups, offset = [], 0
        for fi, f in enumerate(self.files):
            meta = pq.ParquetFile(f)
            check_columns(meta.schema_arrow.names, self.columns, str(f))
            for gi in range(meta.metadata.num_row_groups):
                n = meta.metadata.row_group(gi).num_rows
                groups.append(RowGroup(fi, gi, offset, n))
                offset += n
        self.groups = groups
        self.total_rows = offset

    def read(self, g: RowGroup) -> pd.DataFrame:
        """The mapped columns of a row group, derived and rule-defined label columns added."""
        df = pq.ParquetFile(self.files[g.file]).read_row_group(g.index, columns=self.columns).to_pandas()
        return self.mapping.prepare(df, f"{self.files[g.file]} row group {g.index}")

    def codes(self, df: pd.DataFrame, g: RowGroup) -> np.ndarray:
        """0/1/2 (train/valid/test) for each row of a row group."""
        s = self.split
        rows = np.arange(g.offset, g.offset + len(df), dtype=np.int64)
        if s.kind in ("random", "hash"):
            keys = df[s.column] if (s.kind == "hash" and s.column) else rows
            return split_codes(hash_uniform(keys, s.seed), s.fractions)
        if s.kind == "sequential":
            a = int(np.floor(s.fractions[0] * self.total_rows + 1e-9))
            b = a + int(np.floor(s.fractions[1] * self.total_rows + 1e-9))
            return (rows >= a).astype(np.int8) + (rows >= b).astype(np.int8)
        keys = df[s.column].astype("string").str.strip()
        known = {v: PARTS.index(part) for part, vs in s.values.items() for v in vs}
        code = keys.map(known)
        if code.isna().any():
            shown = sorted(map(str, keys[code.isna()].unique()[:5]))
            raise DataError(
                f"{self.files[g.file]}: split column {s.column!r} has values that name no split, e.g. {shown}; "
                f"known values: {dict(s.values)} (set split.values to map them)"
            )
        out = code.to_numpy(dtype=np.int8)
        if s.valid_from_train:
            carve = (out == 0) & (hash_uniform(rows, s.seed) < s.valid_from_train)
            out[carve] = 1
        return out


class ParquetRowSource:
    """One split of a Parquet dataset, streamed row group by row group (the `RowSource` protocol)."""

    def __init__(self, plan: _Plan, part: int, counts: np.ndarray, encoder: Encoder):
        self.plan, self.part, self.encoder = plan, part, encoder
        self.counts = counts  # rows of this split per row group
        self.name = PARTS[part]

    def __len__(self) -> int:
        return int(self.counts.sum())

    def _chunk(self, g: RowGroup) -> MDMTTensors:
        df = self.plan.read(g)
        keep = self.plan.codes(df, g) == self.part
        return self.encoder.transform(
            df[keep], where=f"{self.plan.files[g.file]} row group {g.index} ({self.name} split)"
        )

    def _stream(self, shuffle: bool, generator: torch.Generator | None, skip_rows: int) -> Iterator[MDMTTensors]:
        """Chunks of encoded rows in epoch order, dropping the first `skip_rows` rows."""
        idx = np.flatnonzero(self.counts > 0)
        rng = None
        if shuffle:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
            rng = np.random.default_rng(seed)
            idx = idx[rng.permutation(len(idx))]
        step = self.plan.shuffle_buffer if shuffle else 1
        pos = 0
        for start in range(0, len(idx), step):
            members = idx[start : start + step]
            n = int(self.counts[members].sum())
            perm = rng.permutation(n) if rng is not None else None  # drawn even when skipped: same order on resume
            if pos + n <= skip_rows:
                pos += n
                continue
            chunk = MDMTTensors.concat([self._chunk(self.plan.groups[i]) for i in members])
            if perm is not None:
                chunk = chunk.index(torch.from_numpy(perm))
            if skip_rows > pos:
                chunk = chunk.index(slice(skip_rows - pos, None))
            pos += n
            yield chunk

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None, start_batch: int = 0
    ) -> Iterator[MDMTTensors]:
        """Batches of `batch_size` rows (the last may be smaller), in a seeded order when shuffling."""
        carry: MDMTTensors | None = None
        for chunk in self._stream(shuffle, generator, start_batch * batch_size):
            data = chunk if carry is None else MDMTTensors.concat([carry, chunk])
            n_full = len(data) // batch_size * batch_size
            for s in range(0, n_full, batch_size):
                yield data.index(slice(s, s + batch_size))
            carry = data.index(slice(n_full, None)) if n_full < len(data) else None
        if carry is not None and len(carry):
            yield carry


def open_streaming(
    path: Path, mapping: ColumnMapping, split: SplitConfig | None = None, shuffle_buffer: int = 4
) -> Splits:
    """One pass over `path` to fit the encoding on train rows; returns streaming splits."""
    split = split or SplitConfig()
    plan = _Plan(Path(path), mapping, split, shuffle_buffer)
    stats = EncoderStats(mapping, where=f"{path} (train split)")
    counts = np.zeros((len(plan.groups), 3), dtype=np.int64)
    heldout_domains: set[str] = set()
    for i, g in enumerate(plan.groups):
        df = plan.read(g)
        where = f"{plan.files[g.file]} row group {g.index}"
        labels_matrix(df, mapping.tasks(), where)  # fail at load, not in the middle of an epoch
        code = plan.codes(df, g)
        counts[i] = np.bincount(code, minlength=3)
        train = df[code == 0]
        if len(train):
            stats.update(train)
        heldout_domains.update(domain_counts(df[mapping.domain][code != 0], mapping, where).index.tolist())
    for k, name in enumerate(PARTS):
        if counts[:, k].sum() == 0:
            raise DataError(
                f"{path}: the {name} split is empty ({plan.total_rows} rows, split kind {split.kind!r}, "
                f"fractions {list(split.fractions)}); add rows or change the split"
            )
    enc = stats.finish()
    unseen = sorted(heldout_domains - set(enc.domain_names))
    if unseen:
        raise DataError(
            f"{path}: domain value(s) {unseen} of column {mapping.domain!r} occur in valid/test but not in the train split; "
            f"a model cannot serve a domain it never trained on. Use another split or drop those rows"
        )
    parts = [ParquetRowSource(plan, k, counts[:, k], enc) for k in range(3)]
    out = Splits(enc.schema, *parts, encoder=enc)
    out.validate()
    return out
