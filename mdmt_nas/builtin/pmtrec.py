"""PMTRec: personalized multi-task training, as a balancer.

Paper: Yang et al., "Personalized Multi-task Training for Recommender System",
IEEE BigData 2024 (arXiv 2407.21364). A reconstruction (the abstract names the
three modules; the details below are our choices and are configurable).

Balancer `pmtrec` (registered through `register_balancers`), one training step:

1. Personalised task weights. For each task t one autograd.grad of the task's
   summed row losses w.r.t. the flat input embedding [B, F*E] gives every row's
   gradient on its own embedding; its norm n[b, t] is divided by the task's
   batch mean (scale-free) and w[b, :] = softmax(n[b, :] / temperature) over
   tasks (`prefer: small` uses -n). Each row's weights sum to 1; the task
   loss becomes L_t = (T / B) sum_b w[b, t] l[b, t] (uniform weights give the
   plain mean).
2. Task Focusing: g_t = grad of L_t on the shared parameters; an auxiliary
   gradient whose cosine with the main task's is negative has its conflicting
   part projected out: g_t <- g_t - (g_t . g_m / |g_m|^2) g_m.
3. Gradient Magnitude Balancing (MetaBalance-style): running norms
   n_k <- beta n_k + (1 - beta) |g_k|, then for auxiliary tasks
   g_k <- r (n_main / n_k) g_k + (1 - r) g_k (`balance_mode`: all auxiliary
   tasks, or only those whose running norm is above / below the main task's).
The shared parameters get sum_t g_t; the rest of the model gets the gradient
of sum_t L_t. Diagnostics per step in `bctx.metrics` (pmtrec.*).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from mdmt_nas.builtin.balancers import cosine, finish, task_gradients, trainable
from mdmt_nas.components import Balancer, Dims
from mdmt_nas.errors import ConfigError
from mdmt_nas.plugins import hookimpl


class PMTRecParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    main_task: int | str = Field(default=0, description="the main task (index or name); the others are auxiliary")
    personalize: bool = Field(default=True, description="per-row task weights from per-row gradient norms")
    temperature: float = Field(default=1.0, gt=0, description="softmax temperature of the per-row weights")
    prefer: Literal["large", "small"] = Field(
        default="large", description="large: more weight where a task's gradient on the row is relatively large"
    )
    focus: bool = Field(
        default=True,
        description="Task Focusing: project out the part of an auxiliary gradient conflicting with the main task",
    )
    balance: bool = Field(
        default=True, description="Gradient Magnitude Balancing of auxiliary gradients toward the main task's norm"
    )
    beta: float = Field(default=0.9, ge=0, lt=1, description="momentum of the running gradient norms")
    r: float = Field(
        default=0.7, ge=0, le=1, description="relax factor: 1 = auxiliary norms set to the main norm, 0 = unchanged"
    )
    balance_mode: Literal["both", "reduce", "enlarge"] = Field(
        default="both",
        description="MetaBalance's strategies: rescale every auxiliary gradient (both), only those larger than the main "
        "task's (reduce), or only the smaller ones (enlarge)",
    )


def row_task_weights(
    row_losses: torch.Tensor, embedding: torch.Tensor, temperature: float = 1.0, prefer: str = "large"
) -> torch.Tensor:
    """Per-row task weights [B, T] (rows sum to 1) from per-row gradient norms on the embedding."""
    B, T = row_losses.shape
    if not embedding.requires_grad:
        return row_losses.new_full((B, T), 1.0 / T)
    norms = []
    for t in range(T):
        (g,) = torch.autograd.grad(
            row_losses[:, t].sum(), embedding, retain_graph=True, allow_unused=True, materialize_grads=True
        )
        norms.append(g.reshape(B, -1).norm(dim=1))
    n = torch.stack(norms, dim=1)  # [B, T]
    n = n / n.mean(dim=0, keepdim=True).clamp_min(1e-12)
    if prefer == "small":
        n = -n
    return torch.softmax(n / temperature, dim=1).detach()


def focus_and_balance(
    grads: torch.Tensor,
    main: int,
    running: torch.Tensor | None,
    *,
    focus: bool = True,
    balance: bool = True,
    beta: float = 0.9,
    r: float = 0.7,
    mode: str = "both",
) -> tuple[torch.Tensor, torch.Tensor | None, list[bool]]:
    """Task Focusing then Gradient Magnitude Balancing of per-task gradients [T, P].

    Returns (new grads, updated running norms, which auxiliary tasks were projected).
    `running` is updated out of place (pass None to skip balancing).
    """
    out = grads.clone()
    T = grads.shape[0]
    gm = grads[main]
    gm_sq = (gm @ gm).clamp_min(1e-20)
    projected = [False] * T
    if focus:
        for t in range(T):
            if t == main:
                continue
            dot = out[t] @ gm
            if dot < 0:
                out[t] = out[t] - dot / gm_sq * gm
                projected[t] = True
    if balance and running is not None:
        norms = out.norm(dim=1)
        running = beta * running + (1 - beta) * norms
        for t in range(T):
            if t != main:
                scale = running[main] / running[t].clamp_min(1e-20)
                if (mode == "reduce" and scale >= 1) or (mode == "enlarge" and scale <= 1):
                    continue
                out[t] = r * scale * out[t] + (1 - r) * out[t]
    return out, running, projected


class PMTRec(Balancer):
    """PMTRec (BigData 2024): personalised row task weights, Task Focusing, Gradient Magnitude Balancing."""

    name = "pmtrec"
    Params = PMTRecParams

    def __init__(self, params: PMTRecParams, dims: Dims):
        super().__init__(params, dims)
        num_tasks = dims.num_tasks
        m = params.main_task
        if isinstance(m, str):
            if m not in self.task_names:
                raise ConfigError(
                    f"arch.balancer.params.main_task: unknown task {m!r}; tasks: {', '.join(self.task_names)}"
                )
            m = self.task_names.index(m)
        if not 0 <= m < num_tasks:
            raise ConfigError(f"arch.balancer.params.main_task: index {m} out of range for {num_tasks} tasks")
        self.main = m
        self.register_buffer("running_norms", torch.zeros(num_tasks))

    def backward(self, task_losses, row_losses, bctx):
        p, T = self.params, self.num_tasks
        B = row_losses.shape[0]
        if p.personalize and T > 1:
            w = row_task_weights(row_losses, bctx.embedding, p.temperature, p.prefer)
        else:
            w = row_losses.new_full(row_losses.shape, 1.0 / T)
        losses = T * (w * row_losses).sum(dim=0) / max(B, 1)  # [T]
        shared = trainable(bctx.shared_params)
        if not shared:
            return finish(bctx, shared, torch.zeros(0), losses.sum())
        grads = task_gradients(list(losses), shared)
        new, running, projected = focus_and_balance(
            grads,
            self.main,
            self.running_norms.clone(),
            focus=p.focus,
            balance=p.balance,
            beta=p.beta,
            r=p.r,
            mode=p.balance_mode,
        )
        if running is not None and p.balance:
            self.running_norms.copy_(running)
        for t, name in enumerate(self.task_names):
            bctx.metrics[f"pmtrec.w.{name}"] = float(w[:, t].mean())
            bctx.metrics[f"pmtrec.grad_norm.{name}"] = float(new[t].norm())
            if t != self.main:
                bctx.metrics[f"pmtrec.cos.{name}"] = cosine(grads[t], grads[self.main])
                bctx.metrics[f"pmtrec.projected.{name}"] = float(projected[t])
        return finish(bctx, shared, new.sum(0), losses.sum())


@hookimpl
def register_balancers(register):
    register(PMTRec)
