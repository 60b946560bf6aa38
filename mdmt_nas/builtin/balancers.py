"""Multi-task loss balancers beyond equal weights (`equal` lives in basic.py).

- `uncertainty`: homoscedastic uncertainty weighting, Kendall, Gal & Cipolla,
  "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry
  and Semantics", CVPR 2018 (arXiv 1705.07115). Loss
  sum_t 0.5 * exp(-s_t) * L_t + 0.5 * s_t with learnable log-variances s_t
  (parameters of the balancer, optimised with the model).
- `gradnorm`: Chen et al., "GradNorm: Gradient Normalization for Adaptive Loss
  Balancing in Deep Multitask Networks", ICML 2018 (arXiv 1711.02257).
  Learnable task weights w_t (renormalised to sum to T before each step)
  get the gradient of sum_t |w_t |grad L_t| - mean_G * r_t ** alpha|, r_t the
  relative inverse training rate; the model gets the w-weighted losses.
- `pcgrad`: Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020
  (arXiv 2001.06782). Each task's gradient has its component along any other
  task gradient it conflicts with (negative dot product) projected out, in a
  random order; the projected gradients are summed.

Gradient-level balancers compute per-task gradients on `bctx.shared_params`
only (one autograd.grad per task with retain_graph), combine them there and
backpropagate the plain (weighted) sum for the rest of the model, leaving the
final gradients in `.grad` (`finish`). Per-step diagnostics go to
`bctx.metrics`. The helpers here are shared with `pmtrec`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mdmt_nas.components import BalanceContext, Balancer, Dims
from mdmt_nas.plugins import hookimpl


# ----------------------------------------------------------------------------- helpers
def trainable(params: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    seen: set[int] = set()
    out = []
    for p in params:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def task_gradients(losses: Sequence[torch.Tensor], params: Sequence[nn.Parameter]) -> torch.Tensor:
    """Flattened gradient of each loss w.r.t. params: [len(losses), P] (zeros where a loss does not reach a param)."""
    rows = []
    for loss in losses:
        if not loss.requires_grad:
            rows.append(torch.zeros(sum(p.numel() for p in params)))
            continue
        grads = torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True, materialize_grads=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def add_flat_grad(params: Sequence[nn.Parameter], flat: torch.Tensor) -> None:
    """Accumulate a flattened gradient into `.grad` (like backward does)."""
    offset = 0
    for p in params:
        g = flat[offset : offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()
        p.grad = g.clone() if p.grad is None else p.grad + g
    assert offset == flat.numel()


def finish(
    bctx: BalanceContext,
    shared: Sequence[nn.Parameter],
    shared_grad: torch.Tensor,
    rest_loss: torch.Tensor,
    extra: Sequence[nn.Parameter] = (),
) -> torch.Tensor:
    """Leave the step's gradients in `.grad`.

    Shared params get `shared_grad` (flattened, as combined by the balancer) plus
    the gradient of the components' auxiliary loss; every other parameter gets
    the gradient of `rest_loss + aux_loss`. Returns that total, detached.
    """
    total = rest_loss if bctx.aux_loss is None else rest_loss + bctx.aux_loss
    if bctx.aux_loss is not None and bctx.aux_loss.requires_grad and shared:
        shared_grad = shared_grad + task_gradients([bctx.aux_loss], shared)[0]
    ids = {id(p) for p in shared}
    others = [p for p in trainable(list(bctx.all_params) + list(extra)) if id(p) not in ids]
    if others and total.requires_grad:
        torch.autograd.backward(total, inputs=others)
    if shared:
        add_flat_grad(shared, shared_grad)
    return total.detach()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-20))


# ----------------------------------------------------------------------------- uncertainty
class UncertaintyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    init: float = Field(default=0.0, description="initial log-variance s_t")


class UncertaintyWeighting(Balancer):
    """Kendall et al. 2018: sum_t 0.5 exp(-s_t) L_t + 0.5 s_t, learnable log-variances s_t."""

    name = "uncertainty"
    Params = UncertaintyParams

    def __init__(self, params: UncertaintyParams, dims: Dims):
        super().__init__(params, dims)
        num_tasks = dims.num_tasks
        self.log_vars = nn.Parameter(torch.full((num_tasks,), float(params.init)))

    def combine(self, task_losses: torch.Tensor) -> torch.Tensor:
        return (0.5 * torch.exp(-self.log_vars) * task_losses + 0.5 * self.log_vars).sum()

    def backward(self, task_losses, row_losses, bctx):
        total = super().backward(task_losses, row_losses, bctx)
        w = 0.5 * torch.exp(-self.log_vars.detach())
        for t, name in enumerate(self.task_names):
            bctx.metrics[f"uncertainty.w.{name}"] = float(w[t])
        return total


# ----------------------------------------------------------------------------- GradNorm
class GradNormParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alpha: float = Field(
        default=1.5, ge=0, description="asymmetry: how strongly slow tasks are pushed (0 = equal gradient norms)"
    )


class GradNorm(Balancer):
    """Chen et al. 2018: learnable task weights pulled so that weighted gradient norms follow the tasks' training rates."""

    name = "gradnorm"
    Params = GradNormParams

    def __init__(self, params: GradNormParams, dims: Dims):
        super().__init__(params, dims)
        num_tasks = dims.num_tasks
        self.task_weights = nn.Parameter(torch.ones(num_tasks))
        self.register_buffer("initial_losses", torch.zeros(num_tasks))
        self.register_buffer("started", torch.tensor(False))

    def backward(self, task_losses, row_losses, bctx):
        T = self.num_tasks
        with torch.no_grad():  # the optimiser stepped w since the last call: renormalise to sum T
            self.task_weights.clamp_(min=1e-3)
            self.task_weights.mul_(T / self.task_weights.sum())
        shared = trainable(bctx.shared_params)
        losses = task_losses.detach()
        if not bool(self.started):
            self.initial_losses.copy_(losses.clamp_min(1e-12))
            self.started.fill_(True)
        grads = task_gradients(list(task_losses), shared) if shared else torch.zeros(T, 0)
        norms = grads.norm(dim=1)
        gw = self.task_weights * norms  # graph on the weights only
        ratio = losses / self.initial_losses
        target = (gw.mean() * (ratio / ratio.mean()) ** self.params.alpha).detach()
        grad_w = torch.autograd.grad((gw - target).abs().sum(), self.task_weights)[0]
        self.task_weights.grad = grad_w if self.task_weights.grad is None else self.task_weights.grad + grad_w
        w = self.task_weights.detach()
        total = finish(bctx, shared, (w[:, None] * grads).sum(0), (w * task_losses).sum())
        for t, name in enumerate(self.task_names):
            bctx.metrics[f"gradnorm.w.{name}"] = float(w[t])
            bctx.metrics[f"gradnorm.grad_norm.{name}"] = float(norms[t])
        return total


# ----------------------------------------------------------------------------- PCGrad
class PCGradParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = Field(default=0, description="seed of the random projection order")


def pcgrad(grads: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """Project conflicting components out of each row of grads [T, P]; returns (projected, conflicts)."""
    T = grads.shape[0]
    out = grads.clone()
    conflicts = 0
    sq = (grads * grads).sum(dim=1).clamp_min(1e-20)
    for t in range(T):
        for j in torch.randperm(T, generator=generator).tolist():
            if j == t:
                continue
            dot = out[t] @ grads[j]
            if dot < 0:
                out[t] = out[t] - dot / sq[j] * grads[j]
                conflicts += 1
    return out, conflicts


class PCGrad(Balancer):
    """Yu et al. 2020: gradient surgery on the shared parameters (conflicting components projected out)."""

    name = "pcgrad"
    Params = PCGradParams

    def __init__(self, params: PCGradParams, dims: Dims):
        super().__init__(params, dims)
        self.generator = torch.Generator().manual_seed(params.seed)

    def backward(self, task_losses, row_losses, bctx):
        shared = trainable(bctx.shared_params)
        grads = task_gradients(list(task_losses), shared) if shared else torch.zeros(self.num_tasks, 0)
        projected, conflicts = pcgrad(grads, self.generator)
        pairs = max(self.num_tasks * (self.num_tasks - 1), 1)
        bctx.metrics["pcgrad.conflicts"] = conflicts / pairs
        return finish(bctx, shared, projected.sum(0), task_losses.sum())


@hookimpl
def register_balancers(register):
    register(UncertaintyWeighting)
    register(GradNorm)
    register(PCGrad)
