"""Basic components: MLP expert, softmax/uniform gates, simple fusions, MLP tower, equal weights.

These are the parts Shared-Bottom, MMoE and PLE are made of. Identical MLP
experts are evaluated together as one stacked bank (one GEMM for the first
layer, batched matmuls after), not in a Python loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mdmt_nas.components import Adapter, Balancer, Context, Dims, Expert, ExpertBank, Fusion, Gate, NoParams, Tower
from mdmt_nas.plugins import hookimpl

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh}


# ----------------------------------------------------------------------------- experts
class MLPParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden: list[int] = Field(
        default_factory=lambda: [256, 64],
        min_length=1,
        description="output size of each layer (Linear + norm + activation), in order; the last is the expert's "
        "output: [256, 64] = in -> 256 -> 64 (two layers), [64] = in -> 64 (one layer)",
    )
    layernorm: bool = True
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    dropout: float = Field(default=0.0, ge=0, lt=1)

    def model_post_init(self, _ctx: object) -> None:
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be positive, got {self.hidden}")


def _stacked_init(n: int, fan_in: int, fan_out: int) -> tuple[nn.Parameter, nn.Parameter]:
    bound = 1.0 / math.sqrt(fan_in)
    w = torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)
    b = torch.empty(n, fan_out).uniform_(-bound, bound)
    return nn.Parameter(w), nn.Parameter(b)


class StackedMLP(nn.Module):
    """n MLPs with identical shapes stored as [n, in, out] tensors.

    forward(x [B, in] or [B, k, in], start, stop) -> [B, k, out] for experts
    start..stop-1. A shared input uses one GEMM for the first layer of all k
    experts; later layers use one batched matmul.
    """

    def __init__(self, n: int, in_dim: int, p: MLPParams):
        super().__init__()
        self.n, self.p = n, p
        dims = [in_dim] + list(p.hidden)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.ln_w = nn.ParameterList()
        self.ln_b = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:]):
            w, bias = _stacked_init(n, a, b)
            self.weights.append(w)
            self.biases.append(bias)
            if p.layernorm:
                self.ln_w.append(nn.Parameter(torch.ones(n, b)))
                self.ln_b.append(nn.Parameter(torch.zeros(n, b)))
        self.act = ACTIVATIONS[p.activation]
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        stop = self.n if stop is None else stop
        k = stop - start
        h = x
        # internal layout [k, B, features], contiguous, so every op is one dense kernel
        for i in range(len(self.weights)):
            w = self.weights[i][start:stop]  # [k, a, b]
            b = self.biases[i][start:stop]
            if i == 0 and x.dim() == 2:  # shared input: one GEMM for all k experts
                a, out = w.shape[1], w.shape[2]
                h = torch.addmm(b.reshape(-1), x, w.transpose(0, 1).reshape(a, k * out))
                h = h.view(-1, k, out).transpose(0, 1).contiguous()
            else:
                src = x.transpose(0, 1) if i == 0 else h  # per-expert inputs [k, B, a]
                h = torch.baddbmm(b.unsqueeze(1), src, w)
            if self.p.layernorm:
                h = torch.stack(self._norm_each(i, h.unbind(0), start, stop))
            h = self.act(h)
            if self.p.dropout and self.training:
                h = F.dropout(h, self.p.dropout, True)
        return h.transpose(0, 1)  # [B, k, out]

    def _norm_each(self, i: int, hs: Sequence[torch.Tensor], start: int, stop: int) -> list[torch.Tensor]:
        """Layer i's LayerNorm, one native affine call per expert (a loop over experts, not rows):
        its fused forward/backward is ~2x faster than a stacked layer_norm + addcmul."""
        shape = (hs[0].shape[-1],)
        return [
            F.layer_norm(h, shape, w, b)
            for h, w, b in zip(hs, self.ln_w[i][start:stop].unbind(0), self.ln_b[i][start:stop].unbind(0))
        ]

    def forward_each(self, xs: list[torch.Tensor], start: int = 0) -> list[torch.Tensor]:
        """Expert start + j on xs[j] [b_j, in] -> [b_j, out]: weights unbound once per layer, so the
        backward writes each stacked gradient once, not once per expert."""
        stop = start + len(xs)
        hs = list(xs)
        for i in range(len(self.weights)):
            ws, bs = self.weights[i][start:stop].unbind(0), self.biases[i][start:stop].unbind(0)
            hs = [torch.addmm(b, h, w) for h, w, b in zip(hs, ws, bs)]
            if self.p.layernorm:
                hs = self._norm_each(i, hs, start, stop)
            hs = [self.act(h) for h in hs]
            if self.p.dropout and self.training:
                hs = [F.dropout(h, self.p.dropout, True) for h in hs]
        return hs


class StackedMLPBank(ExpertBank):
    def __init__(self, n: int, in_dim: int, params: MLPParams):
        super().__init__()
        self.mlp = StackedMLP(n, in_dim, params)
        self.num_experts = n
        self.out_dim = self.mlp.out_dim

    def forward(self, x: torch.Tensor, ctx: Context, start: int = 0, stop: int | None = None) -> torch.Tensor:
        return self.mlp(x, start, stop)

    def forward_each(self, xs: list[torch.Tensor], ctxs: list[Context], start: int = 0) -> list[torch.Tensor]:
        return self.mlp.forward_each(xs, start)


class MLPExpert(Expert):
    """Feed-forward expert: (Linear, LayerNorm, activation) per layer. The workhorse of MoE models."""

    name = "mlp"
    Params = MLPParams

    def __init__(self, params: MLPParams, dims: Dims):
        super().__init__(params, dims)
        in_dim = dims.in_dim
        self.mlp = StackedMLP(1, in_dim, params)

    @classmethod
    def output_dim(cls, params: MLPParams, dims: Dims) -> int:
        return params.hidden[-1]

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return self.mlp(x).squeeze(1)

    @classmethod
    def bank(cls, n: int, params: MLPParams, dims: Dims) -> ExpertBank:
        in_dim = dims.in_dim
        return StackedMLPBank(n, in_dim, params)


class IdentityExpert(Expert):
    """Passes its input through: a zero-cost candidate for searches (e.g. 'no bottom')."""

    name = "identity"
    Params = NoParams

    @classmethod
    def output_dim(cls, params: NoParams, dims: Dims) -> int:
        in_dim = dims.in_dim
        return in_dim

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return x


# ----------------------------------------------------------------------------- gates
def softmax_last(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim. A short last dim (a gate's few experts) is moved to the front first:
    torch's CPU softmax over a last dim of 4 is ~3x slower than over a leading one."""
    if x.dim() < 2 or x.shape[-1] > 16:
        return torch.softmax(x, dim=-1)
    return torch.softmax(x.movedim(-1, 0).contiguous(), dim=0).movedim(0, -1).contiguous()


class SoftmaxGateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(default=1.0, gt=0)


class SoftmaxGate(Gate):
    """Dense softmax gate: one linear map per head (task, or (domain, task)), softmax over experts (MMoE)."""

    name = "softmax"
    Params = SoftmaxGateParams

    def __init__(self, params, dims: Dims):
        super().__init__(params, dims)
        in_dim, num_experts, num_tasks, num_domains, per_domain = (
            dims.in_dim,
            dims.num_experts,
            dims.num_tasks,
            dims.num_domains,
            dims.per_domain,
        )
        groups = num_domains if per_domain else 1
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(groups, in_dim, num_tasks * num_experts).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(groups, num_tasks * num_experts))

    per_head_input = True

    def _logits(self, h: torch.Tensor, g: int) -> torch.Tensor:
        T, N = self.num_tasks, self.num_experts
        if h.dim() == 3:  # per-head inputs [b, T, in]
            w = self.weight[g].view(self.in_dim, T, N)
            return torch.einsum("bti,itn->btn", h, w) + self.bias[g].view(T, N)
        return (h @ self.weight[g] + self.bias[g]).view(-1, T, N)

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        if self.per_domain:
            logits = ctx.routing.apply(h, lambda d, hs, _idx: self._logits(hs, d))
        else:
            logits = self._logits(h, 0)
        return softmax_last(logits / self.params.temperature)


class UniformGate(Gate):
    """Equal weights over all candidates (no parameters): averaging, e.g. always-on experts."""

    name = "uniform"
    Params = NoParams

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        return h.new_full((h.shape[0], self.num_tasks, self.num_experts), 1.0 / self.num_experts)


# ----------------------------------------------------------------------------- fusions
class OwnFusion(Fusion):
    """Level 1: each row keeps its own domain's (each head its own task's) experts only.

    Lets the model run a domain's experts only on that domain's rows.
    """

    name = "own"
    level = 1
    uses_other_members = False

    def forward(self, outputs: torch.Tensor, ctx: Context) -> torch.Tensor:
        return outputs


class MeanFusion(Fusion):
    """Level 1: every member sees the mean of all members (full sharing)."""

    name = "mean"
    level = 1

    def forward(self, outputs: torch.Tensor, ctx: Context) -> torch.Tensor:
        return outputs.mean(dim=1, keepdim=True).expand_as(outputs)

    @classmethod
    def same_as(cls, params, members) -> str | None:
        return "own" if members == 1 else None  # the mean of one member is the member


class SumFusion(Fusion):
    """Level 2: the parts are added."""

    name = "sum"
    level = 2

    def forward(self, parts: dict[str, torch.Tensor], ctx: Context) -> torch.Tensor:
        return torch.stack(list(parts.values())).sum(0)


class GatedFusion(Fusion):
    """Level 2: a learned softmax per task head over the parts (a tiny attention over modules)."""

    name = "gated"
    level = 2

    def __init__(self, params, dims: Dims):
        super().__init__(params, dims)
        members, num_tasks = self.members, dims.num_tasks
        self.logits = nn.Parameter(torch.zeros(num_tasks, len(members)))

    def forward(self, parts: dict[str, torch.Tensor], ctx: Context) -> torch.Tensor:
        w = torch.softmax(self.logits, dim=-1)  # [T, P]
        stacked = torch.stack([parts[m] for m in self.members], dim=2)  # [B, T, P, H]
        return torch.einsum("btph,tp->bth", stacked, w) * len(self.members)

    @classmethod
    def same_as(cls, params, members) -> str | None:
        return "sum" if len(members) == 1 else None  # softmax over one part is 1: its logits never learn


# ----------------------------------------------------------------------------- adapters
class BottleneckParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bottleneck: int = Field(default=32, ge=1)


class BottleneckAdapter(Adapter):
    """Static residual bottleneck adapter h + up(relu(down(h))) (Houlsby-style), shared by all domains."""

    name = "bottleneck"
    Params = BottleneckParams

    def __init__(self, params, dims: Dims):
        super().__init__(params, dims)
        dim = dims.in_dim
        self.down = nn.Linear(dim, params.bottleneck)
        self.up = nn.Linear(params.bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        return h + self.up(F.relu(self.down(h)))


# ----------------------------------------------------------------------------- towers
class MLPTowerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden: list[int] = Field(
        default_factory=lambda: [64], description="hidden sizes before the output logit; [] = linear"
    )
    layernorm: bool = True
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"


class MLPTower(Tower):
    """One MLP per head, stored stacked: per-task heads run as one batched matmul,
    per-(domain, task) heads run each domain's towers on that domain's rows only."""

    name = "mlp_tower"
    Params = MLPTowerParams

    def __init__(self, params, dims: Dims):
        super().__init__(params, dims)
        in_dim, num_tasks, num_domains, per_domain = dims.in_dim, dims.num_tasks, dims.num_domains, dims.per_domain
        heads = num_tasks * (num_domains if per_domain else 1)
        self.mlp: StackedMLP | None = None
        last = in_dim
        if params.hidden:  # hidden layers; the logit layer below has no norm/activation
            hp = MLPParams(hidden=list(params.hidden), layernorm=params.layernorm, activation=params.activation)
            self.mlp = StackedMLP(heads, in_dim, hp)
            last = params.hidden[-1]
        self.out_w, self.out_b = _stacked_init(heads, last, 1)

    def _heads(self, h: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        # h: [b, T, in] -> logits [b, T] using heads start..stop-1
        if self.mlp is not None:
            h = self.mlp(h, start, stop)  # per-head inputs -> [b, T, hid]
        out = torch.baddbmm(self.out_b[start:stop].unsqueeze(1), h.transpose(0, 1), self.out_w[start:stop])  # [T, b, 1]
        return out.squeeze(-1).transpose(0, 1)

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        T = self.num_tasks
        if not self.per_domain:
            return self._heads(h, 0, T)
        return ctx.routing.apply(h, lambda d, hs, _idx: self._heads(hs, d * T, (d + 1) * T))


# ----------------------------------------------------------------------------- balancers
class EqualWeights(Balancer):
    """Sum of the per-task losses (equal weights): the default."""

    name = "equal"
    Params = NoParams


@hookimpl
def register_experts(register):
    register(MLPExpert)
    register(IdentityExpert)


@hookimpl
def register_gates(register):
    register(SoftmaxGate)
    register(UniformGate)


@hookimpl
def register_fusions(register):
    register(OwnFusion)
    register(MeanFusion)
    register(SumFusion)
    register(GatedFusion)


@hookimpl
def register_adapters(register):
    register(BottleneckAdapter)


@hookimpl
def register_towers(register):
    register(MLPTower)


@hookimpl
def register_balancers(register):
    register(EqualWeights)
