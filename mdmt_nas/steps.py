"""One optimisation step: a batch's losses, the weight step and the first-order structure step.

`Trainer` (train.py) and the DARTS searcher take their steps here, so a change
to how a batch is scored or how a balancer's update is applied changes both:

    losses(model, batch, reduction)    -> per-row BCE [B, T], per-task losses [T], Context
    weight_step(...)                   -> zero_grad, forward, balancer backward, finite check, clip, step
    StructureStep(params, loss_fn)     -> alpha <- Adam step on d loss(batch) / d alpha, weights as they are

`StructureStep` is the first-order architecture step: M3oE's structure step on
its `arch_*` scalars (train.arch_step) and DARTS' first-order alpha step; the
DARTS `Architect` adds the second-order (unrolled) gradient on top of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from mdmt_nas.components import BalanceContext, Balancer, Context
from mdmt_nas.errors import TrialFailed

if TYPE_CHECKING:  # pragma: no cover
    from mdmt_nas.data.tensors import MDMTTensors
    from mdmt_nas.model import MDMTModel

#: loss(batch) -> scalar tensor (a fresh forward of the model)
LossFn = Callable[[Any], torch.Tensor]


def task_losses(
    logits: torch.Tensor, labels: torch.Tensor, domain: torch.Tensor, num_domains: int, reduction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row BCE [B, T] and per-task losses [T] (row mean, or sum over domains of per-domain means)."""
    row = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    if reduction == "row_mean":
        return row, row.mean(0)
    sums = row.new_zeros(num_domains, row.shape[1]).index_add(0, domain, row)
    counts = torch.bincount(domain, minlength=num_domains).clamp(min=1).to(row.dtype)
    return row, (sums / counts.unsqueeze(1)).sum(0)


def losses(model: Any, batch: Any, reduction: str) -> tuple[torch.Tensor, torch.Tensor, Context]:
    """Per-row losses [B, T], per-task losses [T] and the forward's Context of one batch (rows in the given order)."""
    ctx = model.make_context(batch.sparse, batch.dense, batch.domain, batch.labels)
    logits = model.forward_context(ctx)
    row, per_task = task_losses(logits, batch.labels, batch.domain, model.num_domains, reduction)
    return row, per_task, ctx


def objective(per_task: torch.Tensor, ctx: Context) -> torch.Tensor:
    """The plain objective: the sum of the task losses plus the components' auxiliary losses."""
    aux = ctx.aux.total_loss()
    return per_task.sum() + (aux if aux is not None else 0.0)


def weight_step(
    model: Any,
    balancer: Balancer,
    opt: torch.optim.Optimizer,
    batch: Any,
    *,
    reduction: str,
    shared: list[nn.Parameter],
    all_params: list[nn.Parameter],
    step: int,
    grad_clip: float | None,
    clip_params: Sequence[nn.Parameter],
    nan_reason: Callable[[torch.Tensor, torch.Tensor], str],
    sync: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, Context, BalanceContext]:
    """One weight update: the balancer turns the batch's task losses into gradients, then the optimiser steps.

    A non-finite total loss raises TrialFailed(nan_reason(total, per_task)) before the step; `sync` (data-parallel
    training, distributed.py) runs between the backward and the finite check: it averages the gradients over the
    ranks and returns the ranks' average loss (so every rank sees a non-finite loss at the same step).
    Returns the total loss (detached), the forward's Context and the BalanceContext (for their metrics).
    """
    opt.zero_grad(set_to_none=True)
    row, per_task, ctx = losses(model, batch, reduction)
    assert ctx.labels is not None
    bctx = BalanceContext(shared, all_params, ctx.embedding, ctx.domain, ctx.labels, ctx.aux.total_loss(), step)
    total = balancer.backward(per_task, row, bctx)
    if sync is not None:
        total = sync(total)
    if not torch.isfinite(total).all():
        raise TrialFailed(nan_reason(total, per_task))
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(clip_params, grad_clip)
    opt.step()
    return total, ctx, bctx


class StructureStep:
    """First-order architecture step: Adam on d loss(batch) / d params for the architecture parameters only.

    zero_unused: a parameter the loss does not reach gets a zero gradient (DARTS: Adam's moments
    still decay) instead of none (M3oE's structure step: Adam leaves it alone).
    """

    def __init__(
        self,
        params: list[nn.Parameter],
        loss_fn: LossFn,
        lr: float,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        zero_unused: bool = False,
        new_step: Callable[[], None] | None = None,
    ):
        self.alphas = [a for a in params if a.requires_grad]
        self.loss_fn = loss_fn
        self.zero_unused = zero_unused
        self.new_step = new_step or (lambda: None)
        self.opt = torch.optim.Adam(self.alphas, lr=lr, betas=betas, weight_decay=weight_decay)

    def gradients(self, train_batch: Any, valid_batch: Any) -> tuple[torch.Tensor, Sequence[torch.Tensor | None]]:
        """The loss on `valid_batch` and its gradient w.r.t. the architecture parameters (first order)."""
        loss = self.loss_fn(valid_batch)
        return loss, torch.autograd.grad(loss, self.alphas, allow_unused=True)

    def step(self, train_batch: Any, valid_batch: Any) -> float:
        """One update of the architecture parameters; returns the loss it was computed on."""
        self.new_step()
        loss, grads = self.gradients(train_batch, valid_batch)
        self.opt.zero_grad(set_to_none=True)
        for a, g in zip(self.alphas, grads):
            a.grad = torch.zeros_like(a) if (g is None and self.zero_unused) else g
        self.opt.step()
        return float(loss.detach())


def nan_reason(model: MDMTModel, batch: MDMTTensors, total: torch.Tensor, per_task: torch.Tensor, step: int) -> str:
    """Why a step's loss is not finite: the task(s) whose loss is, and (one forward re-run with hooks) the first module
    whose output was non-finite, with the component and plugin it belongs to."""
    from mdmt_nas.plugins import first_nonfinite

    names = list(model.schema.tasks)
    values = per_task.detach().tolist()
    cells = ", ".join(f"{t}={v:.4g}" for t, v in zip(names, values))
    bad = [t for t, v in zip(names, values) if not math.isfinite(v)]
    which = (
        f"non-finite loss of task{'s' if len(bad) > 1 else ''} {', '.join(repr(t) for t in bad)} ({cells})"
        if bad
        else f"the task losses are finite ({cells}): an auxiliary loss or the balancer is not"
    )
    try:
        was = model.training
        with torch.no_grad():
            source = first_nonfinite(model, lambda: model(batch.sparse, batch.dense, batch.domain))
        model.train(was)
    except Exception:  # noqa: BLE001 - the diagnosis is best effort; the loss already says enough
        source = None
    where = ""
    fix = "lower the learning rate (train.lr), set train.grad_clip, or check the data"
    if source is not None:
        path, ref = source
        where = (
            f"; the first non-finite output is {ref}"
            if ref is not None
            else f"; the first non-finite output is at model.{path}"
        )
        if ref is not None and ref.dist != "mdmt-nas":
            fix = f"check the component (mdmt-nas plugins check {ref.plugin}), or {fix}"
    return f"loss became {float(total)} at step {step}: {which}{where}; {fix}"
