"""The interface of each component kind: what it is built from (`Dims`), shapes in and out.

Every kind is constructed as `cls(params, dims)` (see `components.base.Dims`).
A subclass written for the older signature, `cls(params, in_dim, num_fields, ...)`
with the sizes as positional arguments, still builds: the base classes accept
both, and `components.table.build` calls each class the way it is written.

Notation: B rows, D domains, T tasks, N experts (candidates of a gate), H hidden
size, F fields, E field embedding size.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from mdmt_nas.components.base import Component, Context, Dims, as_dims, takes_dims


# --------------------------------------------------------------------------- experts
class Expert(Component):
    """Maps a representation to a hidden vector: forward(x [B, in_dim], ctx) -> [B, out_dim].

    Reads `dims.in_dim`; `dims.num_fields`/`dims.field_dim` give the shape of
    `ctx.fields` for experts that work on per-field embeddings (interaction
    experts); `dims.num_domains` is for domain-aware experts (e.g. STAR, which
    route rows by `ctx.domain`). `output_dim(params, dims)` must tell the output
    size before construction. An expert class may override `bank(n, params, dims)`
    to evaluate many identical experts together (batched matmul); the default
    loops over experts.
    """

    kind = "expert"
    #: the positional sizes of the constructor before `Dims`
    legacy_args: ClassVar[tuple[str, ...]] = ("in_dim", "num_fields", "field_dim", "num_domains")

    def __init__(self, params: BaseModel, dims: Dims, *legacy: Any, **legacy_kw: Any):
        super().__init__()
        dims = as_dims(self.legacy_args, dims, legacy, legacy_kw)
        self.params = params
        self.in_dim = dims.in_dim
        self.num_fields = dims.num_fields
        self.field_dim = dims.field_dim
        self.num_domains = dims.num_domains
        self.out_dim = output_size(type(self), params, dims)

    @classmethod
    def output_dim(cls, params: BaseModel, dims: Dims) -> int:  # pragma: no cover - interface
        raise NotImplementedError(f"{cls.__name__}.output_dim")

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def bank(cls, n: int, params: BaseModel, dims: Dims, *legacy: Any, **legacy_kw: Any) -> ExpertBank:
        dims = as_dims(cls.legacy_args, dims, legacy, legacy_kw)
        return LoopBank([build(cls, params, dims) for _ in range(n)])


def output_size(cls: type[Expert], params: BaseModel, dims: Dims) -> int:
    """`cls.output_dim(params, dims)`, or `(params, in_dim)` for an expert written for the older signature."""
    return cls.output_dim(params, dims) if takes_dims(cls.output_dim) else cls.output_dim(params, dims.in_dim)


def build(cls: type[Component], params: BaseModel, dims: Dims) -> Component:
    """One component, called the way its class is written: `cls(params, dims)`, or the older positional sizes."""
    if takes_dims(cls.__init__):
        return cls(params, dims)
    _warn_legacy(cls)
    return cls(params, *dims.args(cls.legacy_args))  # type: ignore[attr-defined]


@functools.cache
def _warn_legacy(cls: type) -> None:
    names = ", ".join(cls.legacy_args)  # type: ignore[attr-defined]
    warnings.warn(
        f"{cls.__module__}.{cls.__qualname__} takes (params, {names}); write __init__(self, params, dims) "
        "and read the sizes from dims (mdmt_nas.components.Dims)",
        DeprecationWarning,
        stacklevel=3,
    )


def build_bank(cls: type[Expert], n: int, params: BaseModel, dims: Dims) -> ExpertBank:
    """`cls.bank(n, params, dims)`, called the way the class's `bank` is written."""
    return cls.bank(n, params, dims) if takes_dims(cls.bank) else cls.bank(n, params, *dims.args(cls.legacy_args))


class ExpertBank(nn.Module):
    """n experts of one type and shape: forward(x [B, in], ctx, start, stop) -> [B, stop-start, out].

    x may also be [B, stop-start, in]: one input per expert (multi-level PLE).

    `start`/`stop` pick a contiguous range of experts, so routing can run only the
    experts a row needs (its domain's, or the ones its gate selected).
    """

    num_experts: int
    out_dim: int
    torchscript: bool = True

    def forward(
        self, x: torch.Tensor, ctx: Context, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:  # pragma: no cover
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

    Reads `dims.in_dim`, `dims.num_experts`, `dims.num_tasks`, `dims.num_domains`
    and `dims.per_domain` (True: one gate per (domain, task): each row uses its domain's).
    forward(h [B, in_dim], ctx) -> weights [B, T, N].
    combine(weights, candidates) -> [B, T, H], candidates [B, N, H] (shared by the
    heads) or [B, T, N, H] (per head). A `sparse` gate returns exact zeros for
    unselected experts, and the model then dispatches rows only to selected experts.
    """

    kind = "gate"
    sparse: ClassVar[bool] = False
    #: accepts per-head inputs h [B, T, in_dim] (needed by multi-level PLE)
    per_head_input: ClassVar[bool] = False

    legacy_args: ClassVar[tuple[str, ...]] = ("in_dim", "num_experts", "num_tasks", "num_domains", "per_domain")

    def __init__(self, params: BaseModel, dims: Dims, *legacy: Any, **legacy_kw: Any):
        super().__init__()
        dims = as_dims(self.legacy_args, dims, legacy, legacy_kw)
        self.params = params
        self.in_dim, self.num_experts = dims.in_dim, dims.num_experts
        self.num_tasks, self.num_domains, self.per_domain = dims.num_tasks, dims.num_domains, dims.per_domain

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def combine(self, weights: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        if candidates.dim() == 3:
            return torch.einsum("btn,bnh->bth", weights, candidates)
        return torch.einsum("btn,btnh->bth", weights, candidates)


# --------------------------------------------------------------------------- fusion
class Fusion(Component):
    """Combines representations. Two levels (class attribute `level`):

    Reads `dims.in_dim` (the hidden size H, kept as `self.dim`), `dims.members`,
    `dims.num_tasks` and `dims.num_domains`.

    level 1 (within a group: domain experts or task experts), `dims.members` the
    number of members M:
        forward(outputs [B, M, H], ctx) -> [B, M, H], the view of each member
        (row r of domain i later keeps member i). `uses_other_members=False` lets
        the model run only each row's own member (routing).
    level 2 (across modules), `dims.members` the part names:
        forward(parts: dict name -> [B, T, H], ctx) -> [B, T, H], parts among
        "shared" (gated mixture), "domain", "task".
    """

    kind = "fusion"
    level: ClassVar[int] = 2
    uses_other_members: ClassVar[bool] = True

    legacy_args: ClassVar[tuple[str, ...]] = ("in_dim", "members", "num_tasks", "num_domains")

    def __init__(self, params: BaseModel, dims: Dims, *legacy: Any, **legacy_kw: Any):
        super().__init__()
        dims = as_dims(self.legacy_args, dims, legacy, legacy_kw)
        self.params = params
        self.dim = dims.in_dim
        self.members = list(dims.members) if isinstance(dims.members, tuple) else dims.members
        self.num_tasks, self.num_domains = dims.num_tasks, dims.num_domains

    @classmethod
    def same_as(cls, params: BaseModel, members: int | tuple[str, ...]) -> str | None:
        """The name of a simpler fusion (taken with its default parameters) that computes the same function as
        this one over `members` (a level-1 member count, or the level-2 part names), or None.

        Most fusions are the identity over one member. Declaring it lets a search treat two architectures that
        differ only in such an inert choice as one (the repeat is not trained again) and keep the simpler one."""
        return None


# --------------------------------------------------------------------------- adapters
class Adapter(Component):
    """A shape-preserving module that wraps a representation.

    `site = "hidden"`: forward(h [B, dim], ctx) -> [B, dim] (after a bottom, an
    expert, or before a tower). `site = "fields"`: forward(f [B, F, E], ctx) ->
    [B, F, E] (input selection on per-field embeddings). Reads `dims.in_dim`
    (kept as `self.dim`: the hidden size of a hidden adapter, F*E for a fields
    adapter), `dims.num_fields`, `dims.field_dim` and `dims.num_domains`.
    """

    kind = "adapter"
    site: ClassVar[str] = "hidden"

    legacy_args: ClassVar[tuple[str, ...]] = ("in_dim", "num_fields", "field_dim", "num_domains")

    def __init__(self, params: BaseModel, dims: Dims, *legacy: Any, **legacy_kw: Any):
        super().__init__()
        dims = as_dims(self.legacy_args, dims, legacy, legacy_kw)
        self.params = params
        self.dim, self.num_fields, self.field_dim, self.num_domains = (
            dims.in_dim,
            dims.num_fields,
            dims.field_dim,
            dims.num_domains,
        )


# --------------------------------------------------------------------------- towers
class Tower(Component):
    """Per-head prediction: forward(h [B, T, in_dim], ctx) -> logits [B, T].

    Reads `dims.in_dim`, `dims.num_tasks`, `dims.num_domains` and `dims.per_domain`
    (True: one tower per (domain, task) and each row uses its domain's: routing,
    not masking).
    """

    kind = "tower"

    legacy_args: ClassVar[tuple[str, ...]] = ("in_dim", "num_tasks", "num_domains", "per_domain")

    def __init__(self, params: BaseModel, dims: Dims, *legacy: Any, **legacy_kw: Any):
        super().__init__()
        dims = as_dims(self.legacy_args, dims, legacy, legacy_kw)
        self.params = params
        self.in_dim, self.num_tasks, self.num_domains, self.per_domain = (
            dims.in_dim,
            dims.num_tasks,
            dims.num_domains,
            dims.per_domain,
        )


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

    Reads `dims.num_tasks` and `dims.task_names`. Loss-weighting balancers
    override `combine(task_losses [T]) -> scalar`; gradient-level balancers
    override `backward(task_losses [T], row_losses [B, T], bctx)`, which must leave
    the gradients in `.grad` of the parameters (the trainer then steps the
    optimiser). A balancer may own parameters (e.g. uncertainty log-variances):
    the trainer optimises them with the model.
    """

    kind = "balancer"
    torchscript: ClassVar[bool] = False

    legacy_args: ClassVar[tuple[str, ...]] = ("num_tasks", "task_names")

    def __init__(self, params: BaseModel, dims: Dims, *legacy: Any, **legacy_kw: Any):
        super().__init__()
        dims = as_dims(self.legacy_args, dims, legacy, legacy_kw)
        self.params = params
        self.num_tasks = dims.num_tasks
        self.task_names = list(dims.task_names)

    def combine(self, task_losses: torch.Tensor) -> torch.Tensor:
        return task_losses.sum()

    def backward(self, task_losses: torch.Tensor, row_losses: torch.Tensor, bctx: BalanceContext) -> torch.Tensor:
        loss = self.combine(task_losses)
        total = loss if bctx.aux_loss is None else loss + bctx.aux_loss
        total.backward()
        return total.detach()
