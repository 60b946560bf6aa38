"""The interface of each component kind: constructor arguments, shapes in and out.

Notation: B rows, D domains, T tasks, N experts (candidates of a gate), H hidden
size, F fields, E field embedding size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from mdmt_nas.components.base import Component, Context


# --------------------------------------------------------------------------- experts
class Expert(Component):
    """Maps a representation to a hidden vector: forward(x [B, in_dim], ctx) -> [B, out_dim].

    Construct with `(params, in_dim, num_fields, field_dim, num_domains)`;
    `num_fields`/`field_dim` give the shape of `ctx.fields` for experts that work
    on per-field embeddings (interaction experts); `num_domains` is for
    domain-aware experts (e.g. STAR, which route rows by `ctx.domain`). `output_dim(params, in_dim)` must tell the output size
    before construction. An expert class may override `bank` to evaluate many
    identical experts together (batched matmul); the default loops over experts.
    """

    kind = "expert"

    def __init__(self, params: BaseModel, in_dim: int, num_fields: int, field_dim: int, num_domains: int = 1):
        super().__init__()
        self.params = params
        self.in_dim = in_dim
        self.num_fields = num_fields
        self.field_dim = field_dim
        self.num_domains = num_domains
        self.out_dim = self.output_dim(params, in_dim)

    @classmethod
    def output_dim(cls, params: BaseModel, in_dim: int) -> int:  # pragma: no cover - interface
        raise NotImplementedError(f"{cls.__name__}.output_dim")

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def bank(cls, n: int, params: BaseModel, in_dim: int, num_fields: int, field_dim: int, num_domains: int = 1) -> "ExpertBank":
        return LoopBank([cls(params, in_dim, num_fields, field_dim, num_domains) for _ in range(n)])


class ExpertBank(nn.Module):
    """n experts of one type and shape: forward(x [B, in], ctx, start, stop) -> [B, stop-start, out].

    x may also be [B, stop-start, in]: one input per expert (multi-level PLE).

    `start`/`stop` pick a contiguous range of experts, so routing can run only the
    experts a row needs (its domain's, or the ones its gate selected).
    """

    num_experts: int
    out_dim: int
    torchscript: bool = True

    def forward(self, x: torch.Tensor, ctx: Context, start: int = 0, stop: int | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward_each(self, xs: list[torch.Tensor], ctxs: list[Context], start: int = 0) -> list[torch.Tensor]:
        """Expert start + j on its own rows xs[j] [b_j, in] -> [b_j, out], for each j (sparse dispatch).

        The default calls `forward` once per expert; stacked banks override it to slice their
        weights once for all experts (a slice per expert makes each backward write a full-size
        gradient of the stacked tensor)."""
        return [self.forward(x, c, start + j, start + j + 1)[:, 0] for j, (x, c) in enumerate(zip(xs, ctxs))]


class LoopBank(ExpertBank):
    """Fallback bank: a Python loop over experts (not over rows)."""

    def __init__(self, experts: list[Expert]):
        super().__init__()
        self.experts = nn.ModuleList(experts)
        self.num_experts = len(experts)
        self.out_dim = experts[0].out_dim
        self.torchscript = all(e.torchscript for e in experts)

    def forward(self, x: torch.Tensor, ctx: Context, start: int = 0, stop: int | None = None) -> torch.Tensor:
        stop = self.num_experts if stop is None else stop
        if x.dim() == 3:  # one input per expert
            return torch.stack([self.experts[j](x[:, j - start], ctx) for j in range(start, stop)], dim=1)
        return torch.stack([self.experts[j](x, ctx) for j in range(start, stop)], dim=1)


# --------------------------------------------------------------------------- gates
class Gate(Component):
    """Per-row mixture weights over N candidates, one mixture per task head.

    Construct with `(params, in_dim, num_experts, num_tasks, num_domains, per_domain)`;
    `per_domain=True` means one gate per (domain, task): each row uses its domain's.
    forward(h [B, in_dim], ctx) -> weights [B, T, N].
    combine(weights, candidates) -> [B, T, H], candidates [B, N, H] (shared by the
    heads) or [B, T, N, H] (per head). A `sparse` gate returns exact zeros for
    unselected experts, and the model then dispatches rows only to selected experts.
    """

    kind = "gate"
    sparse: ClassVar[bool] = False
    #: accepts per-head inputs h [B, T, in_dim] (needed by multi-level PLE)
    per_head_input: ClassVar[bool] = False

    def __init__(self, params: BaseModel, in_dim: int, num_experts: int, num_tasks: int, num_domains: int, per_domain: bool):
        super().__init__()
        self.params = params
        self.in_dim, self.num_experts = in_dim, num_experts
        self.num_tasks, self.num_domains, self.per_domain = num_tasks, num_domains, per_domain

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def combine(self, weights: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        if candidates.dim() == 3:
            return torch.einsum("btn,bnh->bth", weights, candidates)
        return torch.einsum("btn,btnh->bth", weights, candidates)


# --------------------------------------------------------------------------- fusion
class Fusion(Component):
    """Combines representations. Two levels (class attribute `level`):

    level 1 (within a group: domain experts or task experts), constructed with
    `(params, dim, num_members, num_tasks, num_domains)`:
        forward(outputs [B, M, H], ctx) -> [B, M, H], the view of each member
        (row r of domain i later keeps member i). `uses_other_members=False` lets
        the model run only each row's own member (routing).
    level 2 (across modules), constructed with `(params, dim, parts, num_tasks, num_domains)`:
        forward(parts: dict name -> [B, T, H], ctx) -> [B, T, H], parts among
        "shared" (gated mixture), "domain", "task".
    """

    kind = "fusion"
    level: ClassVar[int] = 2
    uses_other_members: ClassVar[bool] = True

    def __init__(self, params: BaseModel, dim: int, members: Any, num_tasks: int, num_domains: int):
        super().__init__()
        self.params = params
        self.dim = dim
        self.members = members
        self.num_tasks, self.num_domains = num_tasks, num_domains


# --------------------------------------------------------------------------- adapters
class Adapter(Component):
    """A shape-preserving module that wraps a representation.

    `site = "hidden"`: forward(h [B, dim], ctx) -> [B, dim] (after a bottom, an
    expert, or before a tower). `site = "fields"`: forward(f [B, F, E], ctx) ->
    [B, F, E] (input selection on per-field embeddings). Constructed with
    `(params, dim, num_fields, field_dim, num_domains)`; `dim` is the hidden size for
    hidden adapters.
    """

    kind = "adapter"
    site: ClassVar[str] = "hidden"

    def __init__(self, params: BaseModel, dim: int, num_fields: int, field_dim: int, num_domains: int):
        super().__init__()
        self.params = params
        self.dim, self.num_fields, self.field_dim, self.num_domains = dim, num_fields, field_dim, num_domains


# --------------------------------------------------------------------------- towers
class Tower(Component):
    """Per-head prediction: forward(h [B, T, in_dim], ctx) -> logits [B, T].

    Constructed with `(params, in_dim, num_tasks, num_domains, per_domain)`;
    `per_domain=True` means one tower per (domain, task) and each row uses its
    domain's (routing, not masking).
    """

    kind = "tower"

    def __init__(self, params: BaseModel, in_dim: int, num_tasks: int, num_domains: int, per_domain: bool):
        super().__init__()
        self.params = params
        self.in_dim, self.num_tasks, self.num_domains, self.per_domain = in_dim, num_tasks, num_domains, per_domain


# --------------------------------------------------------------------------- balancers
@dataclass
class BalanceContext:
    """What a balancer may use besides the losses.

    shared_params: parameters every task depends on (embeddings, bottom, shared
    experts): gradient-level balancers compute per-task gradients on these only.
    embedding: the flat input embedding [B, F*E] of the batch (part of the graph),
    for per-row gradients. aux_loss: the components' auxiliary loss (or None),
    which balancers add unweighted.
    """

    shared_params: list[nn.Parameter]
    all_params: list[nn.Parameter]
    embedding: torch.Tensor
    domain: torch.Tensor
    labels: torch.Tensor
    aux_loss: torch.Tensor | None = None
    step: int = 0
    metrics: dict[str, float] = field(default_factory=dict)


class Balancer(Component):
    """Turns per-task losses into the update of one training step.

    Constructed with `(params, num_tasks, task_names)`. Loss-weighting balancers
    override `combine(task_losses [T]) -> scalar`; gradient-level balancers
    override `backward(task_losses [T], row_losses [B, T], bctx)`, which must leave
    the gradients in `.grad` of the parameters (the trainer then steps the
    optimiser). A balancer may own parameters (e.g. uncertainty log-variances):
    the trainer optimises them with the model.
    """

    kind = "balancer"
    torchscript: ClassVar[bool] = False

    def __init__(self, params: BaseModel, num_tasks: int, task_names: list[str]):
        super().__init__()
        self.params = params
        self.num_tasks = num_tasks
        self.task_names = list(task_names)

    def combine(self, task_losses: torch.Tensor) -> torch.Tensor:
        return task_losses.sum()

    def backward(self, task_losses: torch.Tensor, row_losses: torch.Tensor, bctx: BalanceContext) -> torch.Tensor:
        loss = self.combine(task_losses)
        total = loss if bctx.aux_loss is None else loss + bctx.aux_loss
        total.backward()
        return total.detach()
