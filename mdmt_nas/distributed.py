"""Data-parallel training on CPU: `torchrun --nproc-per-node N -m mdmt_nas train ...` (torch.distributed, gloo).

Every rank builds the same model (same seed; rank 0's weights are broadcast once to be sure) and takes the
same optimiser steps on gradients averaged over the ranks, as DistributedDataParallel does. The average is
one flat all-reduce per step (gradient x rows, then / all rows), done after the balancer's backward instead of
inside DDP's autograd hooks: balancers (GradNorm, PCGrad, ...) compute and set gradients themselves, with
several backward passes or `autograd.grad`, which DDP's reducer does not see. Parameters no rank reached keep
no gradient, as in one process. The step's loss is averaged in the same all-reduce, so a non-finite loss on
any rank fails every rank at the same step.

Data, by split kind:

* in memory (synthetic, csv, parquet without streaming): every rank draws the same shuffled order of the
  global batches (`train.batch_size` rows, the one-process order) and takes its contiguous slice of each, so
  the ranks' slices of a step are disjoint and together are the one-process batch; with
  `train.loss_reduction: row_mean` and a balancer linear in the task losses N ranks compute its gradient;
* streaming Parquet (`streaming: true`): each rank streams only its own row groups (round robin), in batches
  of batch_size / N rows; every epoch every rank takes as many steps as the smallest shard allows.

Valid and test metrics are computed on the full splits: each rank scores a contiguous share (its row groups
when streaming) and the probabilities, labels and domains are all-gathered, so every rank computes the same
metrics; the early-stopping decision (improved, stop) is nevertheless rank 0's, broadcast, so the ranks
cannot drift apart. Rank 0 alone logs to MLflow and writes the output directory, after training (experiment.py);
a rank that dies makes the others fail at their next collective with `DistributedFailure` (torchrun also stops
them and exits non-zero, naming the rank), and nothing is written.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mdmt_nas.data.tensors import MDMTTensors, Splits
from mdmt_nas.errors import ConfigError, UserError
from mdmt_nas.metrics import Metrics, compute_metrics
from mdmt_nas.train import Trainer, predict

#: test-only hook: "RANK:STEP" makes that rank exit (os._exit(17)) before its STEP-th training step
DIE_ENV = "MDMT_NAS_TEST_DIE"


class DistributedFailure(UserError):
    """A collective operation failed: another rank died or the group broke up."""

    exit_code = 1


@dataclass(frozen=True)
class World:
    """This process's place in a torchrun job."""

    rank: int
    size: int

    @property
    def leader(self) -> bool:
        return self.rank == 0


def launched() -> World | None:
    """The torchrun world of this process (RANK and WORLD_SIZE set by torchrun), None for a plain process."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1 or "RANK" not in os.environ:
        return None
    return World(int(os.environ["RANK"]), size)


def start(world: World) -> None:
    """Join the process group (gloo: CPU); MDMT_NAS_DIST_TIMEOUT (seconds, default 600) bounds a wait for a hung peer."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    seconds = float(os.environ.get("MDMT_NAS_DIST_TIMEOUT", "600"))
    try:
        dist.init_process_group(
            "gloo", rank=world.rank, world_size=world.size, timeout=datetime.timedelta(seconds=seconds)
        )
    except Exception as exc:  # noqa: BLE001 - the rendezvous failed
        raise DistributedFailure(
            f"rank {world.rank}: cannot join the torchrun process group: {type(exc).__name__}: {exc}"
        ) from None


def stop() -> None:
    """Leave the process group (best effort: a peer may be gone already)."""
    import torch.distributed as dist

    if dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def active() -> World | None:
    """The world while a process group of more than one rank is up, else None."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return None
    return World(dist.get_rank(), dist.get_world_size())


@contextlib.contextmanager
def collective(world: World, what: str) -> Iterator[None]:
    """Turn a failed collective into one clear message (the usual cause: a peer rank died)."""
    try:
        yield
    except UserError:
        raise
    except (RuntimeError, OSError) as exc:
        first = " ".join(str(exc).split())[:300]
        raise DistributedFailure(
            f"data-parallel training stopped on rank {world.rank} of {world.size} during {what}: another rank died or "
            f"left ({type(exc).__name__}: {first}); torchrun's summary names the rank that failed first. "
            "Nothing was written"
        ) from None


def check_config(cfg: Any) -> None:
    """Settings data-parallel training cannot honour (ConfigError)."""
    if cfg.sparse_embedding:
        raise ConfigError(
            "train.sparse_embedding cannot be used under torchrun (sparse gradients are not all-reduced); "
            "set train.sparse_embedding=false"
        )


# ------------------------------------------------------------------------------ data
def part(n: int, world: World) -> slice:
    """This rank's contiguous share of n rows."""
    return slice(n * world.rank // world.size, n * (world.rank + 1) // world.size)


def my_row_groups(source: Any, world: World) -> Any:
    """A streaming Parquet split restricted to this rank's row groups (round robin over the non-empty ones)."""
    from mdmt_nas.data.parquet_stream import ParquetRowSource

    counts = source.counts.copy()
    mine = np.flatnonzero(counts > 0)[world.rank :: world.size]
    keep = np.zeros_like(counts)
    keep[mine] = counts[mine]
    if keep.sum() == 0:
        raise UserError(
            f"{source.name} split: {int((counts > 0).sum())} row group(s) for {world.size} ranks; "
            "write the Parquet file with more, smaller row groups"
        )
    return ParquetRowSource(source.plan, source.part, keep, source.encoder)


def shard_of(source: Any, world: World) -> Any:
    """This rank's share of an evaluation split: contiguous rows in memory, its row groups when streaming."""
    if isinstance(source, MDMTTensors):
        return source.index(part(len(source), world))
    if hasattr(source, "counts") and hasattr(source, "plan"):
        return my_row_groups(source, world)
    raise UserError(
        f"data-parallel training cannot shard a split of type {type(source).__name__}; "
        "use in-memory data or streaming Parquet"
    )


# ------------------------------------------------------------------------------ the trainer
class DistributedTrainer(Trainer):
    """Trainer whose steps use gradients averaged over the ranks and whose metrics cover the whole splits."""

    def __init__(self, *args: Any, world: World, **kwargs: Any):
        super().__init__(*args, **kwargs)
        import torch.distributed as dist

        check_config(self.cfg)
        self.world, self.dist = world, dist
        if not world.leader:
            self.cfg = self.cfg.model_copy(update={"progress": False})
        seen: set[int] = set()
        self._params = [
            p
            for p in [*self.model.parameters(), *self.balancer.parameters()]
            if p.requires_grad and not (id(p) in seen or seen.add(id(p)))
        ]
        with collective(world, "the start (broadcasting rank 0's weights)"):
            for t in [*self.model.state_dict().values(), *self.balancer.state_dict().values()]:
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    dist.broadcast(t, 0)
        self.streaming = not isinstance(self.splits.train, MDMTTensors)
        if self.streaming:  # each rank streams its own row groups, batch_size / N rows a step
            local = max(1, self.cfg.batch_size // world.size)
            rows = None if self.cfg.epoch_rows is None else max(local, self.cfg.epoch_rows // world.size)
            self.cfg = self.cfg.model_copy(update={"batch_size": local, "epoch_rows": rows})
            self.splits = Splits(
                self.splits.schema,
                shard_of(self.splits.train, world),
                self.splits.valid,
                self.splits.test,
                self.splits.oracle,
                self.splits.encoder,
            )
        self._eval_shards: dict[int, Any] = {}
        self._rows = 0
        self._die = _die_at(world)

    # -------------------------------------------------------------- gradients
    def _average(self, params: list[torch.nn.Parameter], rows: int, loss: torch.Tensor, what: str) -> torch.Tensor:
        """grad <- sum over ranks of (grad x rows) / all rows (None where no rank had one); returns the averaged loss."""
        parts = [(p.grad.detach() * rows).reshape(-1) if p.grad is not None else torch.zeros(p.numel()) for p in params]
        present = torch.tensor([float(p.grad is not None) for p in params] + [float(rows), float(loss) * rows])
        flat = torch.cat([*parts, present.to(parts[0].dtype if parts else torch.float32)])
        with collective(self.world, what):
            self.dist.all_reduce(flat)
        flags = flat[-(len(params) + 2) :]
        total = max(float(flags[-2]), 1.0)
        offset = 0
        for i, p in enumerate(params):
            n = p.numel()
            p.grad = (flat[offset : offset + n].view_as(p) / total).to(p.dtype).clone() if float(flags[i]) > 0 else None
            offset += n
        return torch.tensor(float(flags[-1]) / total)

    def sync_gradients(self, loss: torch.Tensor) -> torch.Tensor:
        """Called by steps.weight_step between the balancer's backward and the optimiser step."""
        return self._average(self._params, self._rows, loss.detach(), "a gradient all-reduce")

    def train_step(self, batch: MDMTTensors) -> float:
        if self._die is not None and self.step_count == self._die:
            os._exit(17)  # test-only (DIE_ENV): this rank dies as a crashed or killed process would
        self._rows = len(batch)
        if len(batch) == 0:  # this rank's slice of a short last batch is empty: it still joins the all-reduce
            self.opt.zero_grad(set_to_none=True)
            total = self.sync_gradients(torch.tensor(0.0))
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(list(self.model.parameters()), self.cfg.grad_clip)
            self.opt.step()
            self.step_count += 1
            return float(total)
        return super().train_step(batch)

    def arch_update(self, batch: MDMTTensors) -> None:
        """M3oE's structure step on this rank's slice of the structure batch, its gradient averaged over the ranks."""
        assert self.structure is not None
        mine = batch if self.streaming else batch.index(part(len(batch), self.world))
        st = self.structure
        st.new_step()
        loss, grads = st.gradients(None, mine) if len(mine) else (torch.tensor(0.0), [None] * len(st.alphas))
        st.opt.zero_grad(set_to_none=True)
        for a, g in zip(st.alphas, grads):
            a.grad = g
        self._average(st.alphas, len(mine), loss.detach(), "the structure step's all-reduce")
        st.opt.step()

    # -------------------------------------------------------------- batches
    def _epoch_batches(self) -> Iterator[MDMTTensors]:
        """In memory: this rank's slice of each one-process global batch; streaming: its own row groups, as many
        steps on every rank (the smallest shard's)."""
        if not self.streaming:
            for batch in super()._epoch_batches():
                yield batch.index(part(len(batch), self.world))
            return
        cfg = self.cfg
        local = math.ceil((cfg.epoch_rows or len(self.splits.train)) / cfg.batch_size)
        steps = torch.tensor([local], dtype=torch.long)
        with collective(self.world, "agreeing on the steps of an epoch"):
            self.dist.all_reduce(steps, op=self.dist.ReduceOp.MIN)
        for _ in range(int(steps.item())):
            yield self.stream.take()

    # -------------------------------------------------------------- metrics on the full splits, rank 0's decisions
    def evaluate_split(self, data: Any) -> Metrics:
        key = id(data)
        if key not in self._eval_shards:
            self._eval_shards[key] = shard_of(data, self.world)
        p, y, d = predict(self.model, self._eval_shards[key], self.cfg.eval_batch_size, self.pass_latency)
        with collective(self.world, "gathering the valid/test predictions"):
            p, y, d = (self._gather(t) for t in (p, y, d))
        return compute_metrics(p, y, d, self.splits.schema)

    def agree(self, improved: bool, stop: bool) -> tuple[bool, bool]:
        flags = torch.tensor([int(improved), int(stop)], dtype=torch.long)
        with collective(self.world, "broadcasting rank 0's early-stopping decision"):
            self.dist.broadcast(flags, 0)
        return bool(flags[0]), bool(flags[1])

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        n = torch.tensor([t.shape[0]], dtype=torch.long)
        sizes = [torch.zeros_like(n) for _ in range(self.world.size)]
        self.dist.all_gather(sizes, n)
        top = int(max(s.item() for s in sizes))
        padded = torch.zeros((top, *t.shape[1:]), dtype=t.dtype)
        padded[: t.shape[0]] = t
        out = [torch.zeros_like(padded) for _ in range(self.world.size)]
        self.dist.all_gather(out, padded)
        return torch.cat([o[: int(s.item())] for o, s in zip(out, sizes)])


def _die_at(world: World) -> int | None:
    spec = os.environ.get(DIE_ENV, "")
    if ":" not in spec:
        return None
    rank, step = spec.split(":", 1)
    return int(step) if int(rank) == world.rank else None


def splits_note(splits: Splits, world: World) -> str:
    """One line about how the data is divided among the ranks."""
    if isinstance(splits.train, MDMTTensors):
        return (
            f"data-parallel on {world.size} ranks (gloo): each takes 1/{world.size} of every global batch of the "
            f"{len(splits.train):,} in-memory train rows; valid/test scored in shares and gathered"
        )
    return f"data-parallel on {world.size} ranks (gloo): each streams its own row groups of the Parquet train split"
