"""Training and evaluation of one architecture.

The trainer knows nothing about particular components: the balancer turns
per-task losses into gradients, components add auxiliary losses and metrics
through `ctx.aux`, and `arch_*` parameters are either trained with the weights
or, with `train.arch_step`, by a second Adam on a separate batch (M3oE's
alternating structure step).
"""

from __future__ import annotations

import copy
import math
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mdmt_nas.arch import Architecture
from mdmt_nas.components import Balancer
from mdmt_nas.config import TrainConfig
from mdmt_nas.data.schema import Schema
from mdmt_nas.data.tensors import MDMTTensors, RowSource, Splits
from mdmt_nas.errors import ConfigError, DeadlineReached, TrialFailed, check_interrupt, suspended_deadline
from mdmt_nas.metrics import Metrics, compute_metrics
from mdmt_nas.model import MDMTModel, build_balancer, build_model
from mdmt_nas.plugins import guard_shapes
from mdmt_nas.routing import is_sorted
from mdmt_nas.steps import StructureStep, losses, nan_reason, objective, weight_step
from mdmt_nas.training_progress import Progress

#: epoch callback: (epoch, epoch_metrics) -> None; may raise (e.g. optuna.TrialPruned) to stop
EpochCallback = Callable[[int, dict[str, float]], None]


def _by_domain(batch: MDMTTensors) -> MDMTTensors:
    return batch if is_sorted(batch.domain) else batch.index(torch.argsort(batch.domain, stable=True))


def set_seed(seed: int) -> None:
    """Seed every RNG a training touches (CPU runs are then deterministic)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainResult:
    model: MDMTModel
    arch: Architecture
    valid: Metrics
    test: Metrics | None
    history: list[dict[str, float]]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    num_params: int
    train_seconds: float
    rows_per_second: float
    latency_ms_per_1k: float = float("nan")
    #: passes the latency is the minimum of (Trainer._latency; 3 timed passes of its own with the latency objective)
    latency_repeats: int = 0
    aux_metrics: dict[str, float] = field(default_factory=dict)
    #: why the training stopped before its epochs ran out other than by patience (the search's deadline), else ""
    stopped: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "arch_id": self.arch.id,
            "valid_mean_auc": self.valid.mean_auc,
            "test_mean_auc": self.test.mean_auc if self.test else None,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "num_params": self.num_params,
            "train_seconds": self.train_seconds,
            "rows_per_second": self.rows_per_second,
            "latency_ms_per_1k": self.latency_ms_per_1k,
        }


@torch.no_grad()
def predict(
    model: MDMTModel, data: RowSource, batch_size: int, pass_latency: list[float] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Probabilities, labels and domains of a split, batch by batch. `pass_latency` gets the pass's model time in ms
    per 1k rows: the inference latency, timed on a pass that runs anyway instead of on passes of its own."""
    was = model.training
    model.eval()
    probs, labels, domains = [], [], []
    forward, rows = 0.0, 0
    for b in data.batches(batch_size):
        check_interrupt()  # Ctrl-C / SIGTERM / the search's deadline within a batch of a long evaluation too
        t0 = time.perf_counter()
        probs.append(torch.sigmoid(model(b.sparse, b.dense, b.domain)))
        forward += time.perf_counter() - t0
        rows += len(b)
        labels.append(b.labels)
        domains.append(b.domain)
    model.train(was)
    if pass_latency is not None and rows:
        pass_latency.append(forward * 1e6 / rows)
    if not probs:
        T = model.num_tasks
        return torch.zeros(0, T), torch.zeros(0, T), torch.zeros(0, dtype=torch.long)
    return torch.cat(probs), torch.cat(labels), torch.cat(domains)


def evaluate(
    model: MDMTModel, data: RowSource, schema: Schema, batch_size: int = 16384, pass_latency: list[float] | None = None
) -> Metrics:
    p, y, d = predict(model, data, batch_size, pass_latency)
    return compute_metrics(p, y, d, schema)


def measure_latency(model: MDMTModel, data: RowSource, rows: int = 1000, repeats: int = 3, warm_up: bool = True) -> float:
    """Inference latency in milliseconds per 1k rows (median of a few repeats; warm_up=False for a model
    that has just run inference, e.g. after its test evaluation)."""
    batch = next(iter(data.batches(rows)))
    model.eval()
    times = []
    with torch.no_grad():
        if warm_up:
            model(batch.sparse, batch.dense, batch.domain)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(batch.sparse, batch.dense, batch.domain)
            times.append(time.perf_counter() - t0)
    model.train()
    return float(np.median(times)) * 1000.0 * 1000.0 / max(len(batch), 1)


def _peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 1024.0 / 1024.0


def _rss_mb() -> float:
    """Resident memory now (Linux /proc), else the process's peak: a search process trains many candidates,
    and the lifetime peak would charge every later candidate with the largest one before it."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except (OSError, ValueError, IndexError):
        return _peak_rss_mb()


class _Optimizers:
    """Several optimisers stepped as one (the weights' optimiser and the sparse table's)."""

    def __init__(self, opts: list[torch.optim.Optimizer]):
        self.opts = opts

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.opts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.opts:
            o.step()

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.opts for g in o.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"opts": [o.state_dict() for o in self.opts]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for o, st in zip(self.opts, state["opts"], strict=True):
            o.load_state_dict(st)


@dataclass
class Loop:
    """Where a training is, after its last completed epoch (what a checkpoint saves besides weights and RNG states)."""

    epoch: int = 0  # the next epoch to run
    history: list[dict[str, float]] = field(default_factory=list)
    best_auc: float = -math.inf
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    rows_seen: int = 0
    train_time: float = 0.0


class Passes:
    """Endless shuffled passes over a split, one batch at a time; resumable: (generator state at the start of the current
    pass, batches taken from it) give the same batches again."""

    def __init__(self, source: RowSource, batch_size: int, gen: torch.Generator):
        self.source, self.batch_size, self.gen = source, batch_size, gen
        self.pass_state: torch.Tensor | None = None
        self.taken = 0
        self._it: Iterator[MDMTTensors] | None = None

    def take(self) -> MDMTTensors:
        while True:
            if self._it is None:
                self.pass_state, self.taken = self.gen.get_state(), 0
                self._it = iter(self.source.batches(self.batch_size, shuffle=True, generator=self.gen))
            batch = next(self._it, None)
            if batch is not None:
                self.taken += 1
                return batch
            self._it = None

    def state(self) -> dict[str, Any]:
        return {"pass_state": self.pass_state, "taken": self.taken, "gen": self.gen.get_state()}

    def restore(self, st: dict[str, Any]) -> None:
        if st.get("pass_state") is None:  # no pass started yet
            self.gen.set_state(st["gen"])
            return
        self.gen.set_state(st["pass_state"])
        self.pass_state, self.taken = st["pass_state"], int(st["taken"])
        self._it = iter(self.source.batches(self.batch_size, shuffle=True, generator=self.gen, start_batch=self.taken))


class Trainer:
    """Fits one model: main optimiser on weights, optional structure step, early stopping on mean valid AUC."""

    def __init__(
        self,
        model: MDMTModel,
        balancer: Balancer,
        splits: Splits,
        cfg: TrainConfig,
        callbacks: list[EpochCallback] | None = None,
        label: str = "train",
    ):
        self.model, self.balancer, self.splits, self.cfg = model, balancer, splits, cfg
        self.callbacks = list(callbacks or [])
        self.label = label
        arch_params = model.arch_parameters()
        self.arch_step = cfg.arch_step != "off" and bool(arch_params)
        weights = model.weight_parameters() if self.arch_step else list(model.parameters())
        weights = weights + [p for p in balancer.parameters() if p.requires_grad]
        opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[cfg.optimizer]
        extra = {"fused": True} if cfg.optimizer in ("adam", "adamw") else {}  # one kernel per step for all tensors: ~9% faster steps on CPU
        table = model.embedding.weight
        sparse = cfg.sparse_embedding and table.requires_grad
        if sparse and cfg.grad_clip:
            raise ConfigError("train.sparse_embedding cannot be combined with train.grad_clip (gradient clipping needs dense gradients); drop one")
        dense = [p for p in weights if p.requires_grad and not (sparse and p is table)]
        self.opt: torch.optim.Optimizer | _Optimizers = opt_cls(dense, lr=cfg.lr, weight_decay=cfg.weight_decay, **extra)
        if sparse:
            model.sparse_grad = True
            table_opt = torch.optim.SGD([table], lr=cfg.lr) if cfg.optimizer == "sgd" else torch.optim.SparseAdam([table], lr=cfg.lr)
            self.opt = _Optimizers([self.opt, table_opt])
        #: M3oE's structure step on the `arch_*` parameters (a second Adam, on a separate batch)
        self.structure = StructureStep(arch_params, lambda b: objective(*self._losses(b)[1:]), cfg.arch_lr) if self.arch_step else None
        # gradient-level balancers combine flattened dense gradients: a sparse table takes the plain summed gradient
        self.shared = [p for p in model.shared_parameters() if not (sparse and p is table)]
        self.step_count = 0
        self._aux_acc: dict[str, tuple[float, int]] = {}
        #: ms per 1k rows of each evaluation pass's model forwards, in order (the result's latency: `_latency`)
        self.pass_latency: list[float] = []

    # ---------------------------------------------------------------- one step
    def _losses(self, batch: MDMTTensors) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Losses of a batch whose rows are sorted by domain first (routing then slices, no scatter)."""
        return losses(self.model, _by_domain(batch), self.cfg.loss_reduction)

    def train_step(self, batch: MDMTTensors) -> float:
        n = self.step_count
        batch = _by_domain(batch)
        total, ctx, bctx = weight_step(
            self.model, self.balancer, self.opt, batch, reduction=self.cfg.loss_reduction, shared=self.shared,
            all_params=list(self.model.parameters()), step=n, grad_clip=self.cfg.grad_clip, clip_params=list(self.model.parameters()),
            nan_reason=lambda total, per_task: nan_reason(self.model, batch, total, per_task, n), sync=self.sync_gradients,
        )
        self.step_count += 1
        self._aux_metrics(ctx.aux.metrics, bctx.metrics)
        return float(total)

    sync_gradients: Callable[[torch.Tensor], torch.Tensor] | None = None  # data-parallel: the ranks' average (distributed.py)
    def evaluate_split(self, data: RowSource) -> Metrics:
        """Metrics of the model on a split (the data-parallel trainer scores shares and gathers them); the pass's
        model time goes to `pass_latency`."""
        return evaluate(self.model, data, self.splits.schema, self.cfg.eval_batch_size, self.pass_latency)

    def agree(self, improved: bool, stop: bool) -> tuple[bool, bool]:
        """An epoch's early-stopping decision (the data-parallel trainer takes rank 0's on every rank)."""
        return improved, stop

    def arch_update(self, batch: MDMTTensors) -> None:
        """M3oE's structure step: gradient of the loss on a separate batch w.r.t. `arch_*` only."""
        assert self.structure is not None
        self.structure.step(None, batch)

    def _aux_metrics(self, *dicts: dict[str, float]) -> None:
        for d in dicts:
            for k, v in d.items():
                s, n = self._aux_acc.get(k, (0.0, 0))
                self._aux_acc[k] = (s + v, n + 1)

    def _epoch_batches(self) -> Iterator[MDMTTensors]:
        """One epoch's batches: a shuffled pass, or `epoch_rows` rows of an endless sequence of shuffled passes."""
        cfg = self.cfg
        if cfg.epoch_rows is None:
            yield from self.splits.train.batches(cfg.batch_size, shuffle=True, generator=self.gen)
            return
        rows = 0
        while rows < cfg.epoch_rows:
            batch = self.stream.take()
            rows += len(batch)
            yield batch

    # ---------------------------------------------------------------- loop
    def start_streams(self) -> None:
        """The batch generators of a fresh training (fit calls it; a checkpoint restores their states afterwards)."""
        cfg = self.cfg
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.stream = Passes(self.splits.train, cfg.batch_size, self.gen)
        src = self.splits.valid if cfg.arch_step == "valid" else self.splits.train
        self.arch_stream = Passes(src, cfg.batch_size, torch.Generator().manual_seed(cfg.seed + 7919)) if self.arch_step else None

    def train_epoch(self, t_start: float | None = None, progress: Progress | None = None) -> tuple[float, int, int]:
        """One epoch of fit's loop (its steps and the structure steps; after start_streams): (loss sum, batches, rows)."""
        cfg = self.cfg
        self.model.train()
        self._aux_acc = {}
        t_start = time.perf_counter() if t_start is None else t_start
        loss_sum, n_batches, rows = 0.0, 0, 0
        for batch in self._epoch_batches():
            if self.arch_stream is not None and cfg.arch_step_every == "batch":
                self.arch_update(self.arch_stream.take())
            loss = self.train_step(batch)
            loss_sum += loss
            n_batches += 1
            rows += len(batch)
            if progress is not None:
                progress.batch(loss)
            self._check_limits(t_start)
        if self.arch_stream is not None and cfg.arch_step_every == "epoch":
            self.arch_update(self.arch_stream.take())
        return loss_sum, n_batches, rows

    def fit(self, checkpoint: Any = None) -> TrainResult:
        """Train (early stopping on mean valid AUC), then evaluate the best epoch's weights on valid and test.

        checkpoint: an object with `restore(trainer)` (called once before the first epoch: continue a run) and
        `save(trainer)` (after every epoch), e.g. mdmt_nas.checkpoint.EpochCheckpoint. The search's deadline
        (errors.search_deadline) stops the training at the next batch; the best epoch so far is kept and
        `TrainResult.stopped` says why (DeadlineReached before the first epoch ends goes up).
        """
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.start_streams()
        self.loop = loop = Loop()
        if checkpoint is not None:
            checkpoint.restore(self)
        n_train = len(self.splits.train)
        steps = max(1, math.ceil((cfg.epoch_rows or n_train) / cfg.batch_size))
        t_start = time.perf_counter()
        progress = Progress(cfg.progress, cfg.epochs, steps, self.label, terminal=sys.stderr.isatty() and sys.stdout.isatty(),
                             first_epoch=loop.epoch)
        last_valid: Metrics | None = None
        stopped = ""
        try:
            for epoch in range(loop.epoch, cfg.epochs):
                if loop.stopped_early:
                    break
                t0 = time.perf_counter()
                loss_sum, n_batches, rows = self.train_epoch(t_start, progress)
                loop.rows_seen += rows
                loop.train_time += time.perf_counter() - t0
                valid = self.evaluate_split(self.splits.valid)
                last_valid = valid
                record = {"epoch": epoch, "train_loss": loss_sum / max(n_batches, 1), "valid_mean_auc": valid.mean_auc, "valid_mean_logloss": valid.mean_logloss}
                record.update({k: s / n for k, (s, n) in self._aux_acc.items()})
                for p_name, p in self.model.named_parameters():
                    if p_name.rsplit(".", 1)[-1].startswith("arch_") and p.numel() == 1:
                        record[f"arch/{p_name}"] = float(torch.sigmoid(p.detach()))
                loop.history.append(record)
                progress.epoch(f"valid AUC {valid.mean_auc:.4f}", epoch, record, loop.rows_seen / max(loop.train_time, 1e-9))
                improved = valid.mean_auc > loop.best_auc + cfg.min_delta or loop.best_epoch < 0
                improved, stop = self.agree(improved, bool(cfg.patience and loop.bad_epochs + 1 >= cfg.patience))
                if improved:
                    loop.best_auc, loop.best_epoch = valid.mean_auc, epoch
                    # the last epoch's best weights are the model's own (nothing trains after it): no copy, unless a
                    # checkpoint saves them
                    last = epoch == cfg.epochs - 1 and checkpoint is None
                    loop.best_state = None if last else copy.deepcopy(self.model.state_dict())
                    loop.bad_epochs = 0
                else:
                    loop.bad_epochs += 1
                loop.epoch = epoch + 1
                loop.stopped_early = not improved and stop
                for cb in self.callbacks:
                    cb(epoch, record)
                if checkpoint is not None:
                    checkpoint.save(self)
        except DeadlineReached as exc:  # the search's time is up: keep the best epoch so far
            if loop.best_epoch < 0:
                raise
            stopped = str(exc)
        finally:
            progress.close()
        with suspended_deadline():  # the best epoch's metrics are the result: measured even past the deadline
            return self._result(last_valid, stopped)

    def _result(self, last_valid: Metrics | None, stopped: str) -> TrainResult:
        loop, history, best_epoch = self.loop, self.loop.history, self.loop.best_epoch
        if loop.best_state is not None:  # None: no epoch ended, or the best is the last one, still in the model
            self.model.load_state_dict(loop.best_state)
        valid = last_valid if best_epoch == len(history) - 1 and last_valid is not None else self.evaluate_split(self.splits.valid)
        timed = len(self.pass_latency)
        test = self.evaluate_split(self.splits.test)
        aux_final = {k: v for k, v in history[best_epoch].items() if k not in ("epoch", "train_loss", "valid_mean_auc", "valid_mean_logloss")} if history else {}
        return TrainResult(
            model=self.model, arch=self.model.arch, valid=valid, test=test, history=history, best_epoch=best_epoch,
            epochs_run=len(history), stopped_early=loop.stopped_early, num_params=self.model.num_parameters(),
            train_seconds=loop.train_time, rows_per_second=loop.rows_seen / max(loop.train_time, 1e-9),
            aux_metrics=aux_final, stopped=stopped, **self._latency(timed),
        )

    def _latency(self, timed: int) -> dict[str, Any]:
        """The result's inference latency: the faster of the final weights' last valid pass and the test pass (the
        minimum, as timeit takes it: the pass least disturbed by other work), no pass of its own; timed by a pass of
        1k rows when no evaluation pass was (an empty split, or a trainer whose passes are not timed)."""
        passes = self.pass_latency[max(0, timed - 1) :]  # the valid pass (the last one before the test) and the test's
        if passes:
            return {"latency_ms_per_1k": min(passes), "latency_repeats": len(passes)}
        return {"latency_ms_per_1k": measure_latency(self.model, self.splits.valid, repeats=1, warm_up=False), "latency_repeats": 1}

    def _check_limits(self, t_start: float) -> None:
        check_interrupt()
        cfg = self.cfg
        if cfg.max_seconds is not None and time.perf_counter() - t_start > cfg.max_seconds:
            raise TrialFailed(f"time limit exceeded: training took more than train.max_seconds={cfg.max_seconds:g}s")
        if cfg.max_memory_mb is not None and self.step_count % 10 == 1:  # the first step, then every 10th
            rss = _rss_mb()
            if rss > cfg.max_memory_mb:
                raise TrialFailed(f"memory limit exceeded: RSS {rss:.0f} MB > train.max_memory_mb={cfg.max_memory_mb:g}; "
                                  "raise the limit or lower train.batch_size / the model size")


def train_architecture(
    arch: Architecture,
    splits: Splits,
    cfg: TrainConfig,
    callbacks: list[EpochCallback] | None = None,
    label: str = "train",
    *,
    registry: Any = None,
    guard: bool = False,
    built: Callable[[MDMTModel], None] | None = None,
    checkpoint: Any = None,
    trainer: Callable[..., Trainer] = Trainer,
) -> TrainResult:
    """Build, train (with early stopping on mean valid AUC) and evaluate one architecture: the one way to train one.

    guard: check every component's output shape while training, so a wrong shape is blamed on the
    component that produced it (a search's candidates); built: called with the model as soon as it
    is built (the search's evaluator names the culprit of a failure from it); checkpoint: saved after every
    epoch and restored before the first (`Trainer.fit`), so an interrupted training continues where it was;
    trainer: the Trainer class (distributed.DistributedTrainer under torchrun).
    """
    set_seed(cfg.seed)
    model = build_model(arch, splits.schema, registry)
    if built is not None:
        built(model)
    balancer = build_balancer(arch, splits.schema, registry)
    if not guard:
        return trainer(model, balancer, splits, cfg, callbacks, label).fit(checkpoint)
    with guard_shapes(model, registry):
        return trainer(model, balancer, splits, cfg, callbacks, label).fit(checkpoint)
