"""In-memory MDMT data as pre-built tensors, batched by slicing (no per-row collate)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from mdmt_nas.data.schema import Schema


@dataclass
class MDMTTensors:
    """Rows of an MDMT dataset: all tensors share the first dimension N.

    sparse: int64 [N, F_sparse] (0 = unknown), dense: float32 [N, F_dense],
    domain: int64 [N] in [0, D), labels: float32 [N, T] in {0, 1}.
    """

    sparse: torch.Tensor
    dense: torch.Tensor
    domain: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.domain.shape[0])

    def index(self, idx: torch.Tensor | slice) -> "MDMTTensors":
        """Rows selected by a slice or an index tensor (one gather per column)."""
        return MDMTTensors(self.sparse[idx], self.dense[idx], self.domain[idx], self.labels[idx])

    def validate(self, schema: Schema, where: str = "data") -> None:
        """Raise DataError if shapes, dtypes or value ranges disagree with the schema."""
        from mdmt_nas.errors import DataError

        n = len(self)
        checks = [
            (
                self.sparse.shape == (n, schema.num_sparse),
                f"sparse has shape {tuple(self.sparse.shape)}, expected ({n}, {schema.num_sparse})",
            ),
            (
                self.dense.shape == (n, schema.num_dense),
                f"dense has shape {tuple(self.dense.shape)}, expected ({n}, {schema.num_dense})",
            ),
            (
                self.labels.shape == (n, schema.num_tasks),
                f"labels have shape {tuple(self.labels.shape)}, expected ({n}, {schema.num_tasks})",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise DataError(f"{where}: {msg}")
        if n == 0:
            return
        if int(self.domain.min()) < 0 or int(self.domain.max()) >= schema.num_domains:
            raise DataError(
                f"{where}: domain ids must be in [0, {schema.num_domains}); found {int(self.domain.min())}..{int(self.domain.max())}"
            )
        if not torch.isfinite(self.dense).all():
            raise DataError(f"{where}: dense features contain NaN or inf; impute or drop those rows")
        bad = ~((self.labels == 0) | (self.labels == 1))
        if bad.any():
            col = int(bad.any(0).nonzero()[0])
            raise DataError(
                f"{where}: labels of task {schema.tasks[col]!r} must be 0/1; found {self.labels[bad][0].item()!r}"
            )
        for j, f in enumerate(schema.sparse):
            col = self.sparse[:, j]
            if int(col.min()) < 0 or int(col.max()) >= f.vocab_size:
                raise DataError(f"{where}: sparse field {f.name!r} has ids outside [0, {f.vocab_size})")

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None, start_batch: int = 0
    ) -> Iterator["MDMTTensors"]:
        """The `RowSource` protocol: iterate batches of this split."""
        return iterate_batches(self, batch_size, shuffle, generator, start_batch)

    @staticmethod
    def concat(parts: list["MDMTTensors"]) -> "MDMTTensors":
        return MDMTTensors(
            *(torch.cat([getattr(p, k) for p in parts]) for k in ("sparse", "dense", "domain", "labels"))
        )


@runtime_checkable
class RowSource(Protocol):
    """What the trainer iterates: in-memory `MDMTTensors` or a streaming (e.g. Parquet) split."""

    def __len__(self) -> int: ...

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None, start_batch: int = 0
    ) -> Iterator[MDMTTensors]: ...


@dataclass
class Splits:
    """Train/valid/test splits of one dataset. Searchers optimise on valid; test is only reported.

    `encoder` is the fitted raw-to-tensor encoding (`mdmt_nas.data.encode.Encoder`) when the dataset
    was encoded from a raw table; it lets a served model take raw rows. None for pre-encoded data.
    """

    schema: Schema
    train: MDMTTensors | RowSource
    valid: MDMTTensors | RowSource
    test: MDMTTensors | RowSource
    #: Bayes-optimal probabilities float32 [N, T] per split name, when the data's generator knows
    #: them (the synthetic dataset): the ceiling of what any model can score on that split.
    oracle: dict[str, torch.Tensor] | None = None
    encoder: Any = None

    def validate(self) -> None:
        from mdmt_nas.errors import DataError

        for name in ("train", "valid", "test"):
            part = getattr(self, name)
            if len(part) == 0:
                raise DataError(f"the {name} split is empty; lower the other split fractions or add rows")
            if isinstance(part, MDMTTensors):
                part.validate(self.schema, where=f"{name} split")


def iterate_batches(
    data: MDMTTensors,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    start_batch: int = 0,
) -> Iterator[MDMTTensors]:
    """Yield batches by slicing (or one permutation gather per batch when shuffling).

    `start_batch` skips the first batches of this epoch's order, so a resumed run
    sees exactly the rows an uninterrupted one would.
    """
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else None
    for start in range(start_batch * batch_size, n, batch_size):
        stop = min(start + batch_size, n)
        yield data.index(order[start:stop] if order is not None else slice(start, stop))
