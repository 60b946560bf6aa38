"""DEPHN: different expression parallel heterogeneous network.

Paper: "Different Expression Parallel Heterogeneous Network using virtual
gradient optimization for Multi-task Learning", IJCNN 2023 (arXiv 2307.12519).
A reconstruction from the paper.

Components (registered through the ordinary hooks, like a third-party plugin):

- expert `cross`: DCN-v2 cross network, x_{l+1} = x_0 * (x_l W_l + b_l) + x_l
  (optionally low-rank W_l = U_l V_l), then a projection to `out_dim` so it
  can be mixed with other experts. Identical cross experts form one stacked
  bank (batched matmuls, no Python loop over experts).
- expert `fint`: FINT-style field-aware interaction on the per-field
  embeddings `ctx.fields` [B, F, E]:
      V^l = V^{l-1} * (W^l V^0) + u^l * V^{l-1},   W^l [F, F], u^l [F]
  (field i of layer l interacts with a learned mix of all input fields),
  flattened and projected to `out_dim` (with `input_skip`, plus a linear map
  of the expert's input x, so a bottom or a lower PLE level feeds into it).
  (The DNN expert is the existing `mlp`.)
- adapter `soft_selection` (site "fields", an input adapter): soft selection
  of inputs E_sg = G * E_sa + (1 - G) * E, E_sa multi-head self-attention
  over the field embeddings, G = sigmoid(g) a trainable [F, E] vector.
- gate `dephn`: trainable global scalar gates per (task, expert, map) over the
  explicit feature maps (identity, sin, cos) of each candidate's output
  (`combine` adds the mapped copies as extra candidates), with the virtual
  gradient coefficient: the gate's value is unchanged, its gradient is scaled
  by Gamma_t = prod_{j != t} gamma_jt,
      gamma_jt = 2 |x_jt + y_jt - 1| ** 0.5,
      x_jt = |Pearson(y_j, y_t)| of the batch labels, y_jt = min(1, |G_t - G_j|),
  as G.detach() + Gamma.detach() * (G - G.detach()) (coefficient 1 when the
  context has no labels). `forward` returns the usual weights [B, T, N]
  (each candidate's gate summed over its maps) and attaches the per-map
  gates [B, T, N, M] to that tensor as `weights.dephn_maps`; `combine` uses
  them. Weights that did not come from this gate's forward (e.g. mixed by a
  supernet) are combined like a plain gate's (identity map only).

The paper's best layout (examples/dephn.yaml): DNN shared, Cross and FINT
private per task, `gate_scope: [shared, task]`, gate `dephn`,
`input_adapter: soft_selection`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mdmt_nas.components import Adapter, Context, Dims, Expert, ExpertBank, Gate
from mdmt_nas.errors import ConfigError
from mdmt_nas.plugins import hookimpl


def _uniform(shape: tuple[int, ...], fan_in: int) -> nn.Parameter:
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


def _activate(h: torch.Tensor, kind: str) -> torch.Tensor:
    return F.relu(h) if kind == "relu" else h


# ----------------------------------------------------------------------------- cross (DCN-v2)
class CrossParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    layers: int = Field(default=5, ge=0, le=32, description="cross layers")
    low_rank: int | None = Field(
        default=None, ge=1, description="rank r of W_l = U_l V_l (DCN-v2 low-rank); None = full matrices"
    )
    out_dim: int | None = Field(
        default=64, ge=1, description="output projection size; None = no projection (output size = input size)"
    )
    out_activation: Literal["relu", "none"] = "relu"


class StackedCross(nn.Module):
    """n cross networks with identical shapes: forward(x [B, d] or [B, k, d], start, stop) -> [B, k, out]."""

    def __init__(self, n: int, in_dim: int, p: CrossParams):
        super().__init__()
        self.n, self.p, self.in_dim = n, p, in_dim
        d, L = in_dim, p.layers
        if p.low_rank is None:
            self.w = _uniform((n, L, d, d), d)
        else:
            self.u = _uniform((n, L, d, p.low_rank), d)
            self.v = _uniform((n, L, p.low_rank, d), p.low_rank)
        self.b = nn.Parameter(torch.zeros(n, L, d))
        self.out_dim = p.out_dim if p.out_dim is not None else d
        if p.out_dim is not None:
            self.proj_w = _uniform((n, d, p.out_dim), d)
            self.proj_b = nn.Parameter(torch.zeros(n, p.out_dim))

    def forward(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        stop = self.n if stop is None else stop
        k = stop - start
        x0 = x.unsqueeze(0).expand(k, -1, -1) if x.dim() == 2 else x.transpose(0, 1)  # [k, B, d]
        xl = x0
        for layer in range(self.p.layers):
            b = self.b[start:stop, layer].unsqueeze(1)
            if self.p.low_rank is None:
                lin = torch.baddbmm(b, xl, self.w[start:stop, layer])
            else:
                lin = torch.baddbmm(b, torch.bmm(xl, self.u[start:stop, layer]), self.v[start:stop, layer])
            xl = x0 * lin + xl
        if self.p.out_dim is not None:
            xl = _activate(
                torch.baddbmm(self.proj_b[start:stop].unsqueeze(1), xl, self.proj_w[start:stop]), self.p.out_activation
            )
        return xl.transpose(0, 1)


class CrossBank(ExpertBank):
    def __init__(self, n: int, in_dim: int, params: CrossParams):
        super().__init__()
        self.net = StackedCross(n, in_dim, params)
        self.num_experts, self.out_dim = n, self.net.out_dim

    def forward(self, x: torch.Tensor, ctx: Context, start: int = 0, stop: int | None = None) -> torch.Tensor:
        return self.net(x, start, stop)


class CrossExpert(Expert):
    """DCN-v2 cross network (explicit bounded-degree feature crosses) with an output projection."""

    name = "cross"
    Params = CrossParams

    def __init__(self, params: CrossParams, dims: Dims):
        super().__init__(params, dims)
        in_dim = dims.in_dim
        self.net = StackedCross(1, in_dim, params)

    @classmethod
    def output_dim(cls, params: CrossParams, dims: Dims) -> int:
        in_dim = dims.in_dim
        return params.out_dim if params.out_dim is not None else in_dim

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return self.net(x).squeeze(1)

    @classmethod
    def bank(cls, n, params, dims: Dims) -> ExpertBank:
        in_dim = dims.in_dim
        return CrossBank(n, in_dim, params)


# ----------------------------------------------------------------------------- FINT
class FintParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    layers: int = Field(default=3, ge=1, le=16, description="field-aware interaction layers")
    out_dim: int = Field(default=64, ge=1, description="output projection size")
    out_activation: Literal["relu", "none"] = "relu"
    input_skip: bool = Field(
        default=True,
        description="also add a linear map of the expert's input x to the projection, so a bottom or a lower "
        "extraction level feeds into it; false = pure FINT on ctx.fields",
    )


class StackedFint(nn.Module):
    """n FINT interaction stacks: forward(fields [B, F, E], start, stop) -> [B, k, out]."""

    def __init__(self, n: int, in_dim: int, num_fields: int, field_dim: int, p: FintParams):
        super().__init__()
        self.n, self.p = n, p
        Fn, E = num_fields, field_dim
        self.w = _uniform((n, p.layers, Fn, Fn), Fn)
        self.u = nn.Parameter(torch.ones(n, p.layers, Fn))
        self.proj_w = _uniform((n, Fn * E, p.out_dim), Fn * E)
        self.proj_b = nn.Parameter(torch.zeros(n, p.out_dim))
        if p.input_skip:
            self.skip_w = _uniform((n, in_dim, p.out_dim), in_dim)
        self.out_dim = p.out_dim

    def forward(self, x: torch.Tensor, fields: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """x [B, in] or [B, k, in] (used only with input_skip), fields [B, F, E] -> [B, k, out]."""
        stop = self.n if stop is None else stop
        v0 = fields
        v = v0.unsqueeze(0).expand(stop - start, -1, -1, -1)  # [k, B, F, E]
        for layer in range(self.p.layers):
            mix = torch.einsum("kfg,bge->kbfe", self.w[start:stop, layer], v0)  # sum_j W_ij v0_j
            v = v * mix + self.u[start:stop, layer][:, None, :, None] * v
        flat = v.flatten(2)  # [k, B, F*E]
        out = torch.baddbmm(self.proj_b[start:stop].unsqueeze(1), flat, self.proj_w[start:stop])
        if self.p.input_skip:
            xs = x.unsqueeze(0).expand(stop - start, -1, -1) if x.dim() == 2 else x.transpose(0, 1)
            out = out + torch.bmm(xs, self.skip_w[start:stop])
        return _activate(out, self.p.out_activation).transpose(0, 1)


class FintBank(ExpertBank):
    def __init__(self, n: int, in_dim: int, num_fields: int, field_dim: int, params: FintParams):
        super().__init__()
        self.net = StackedFint(n, in_dim, num_fields, field_dim, params)
        self.num_experts, self.out_dim = n, params.out_dim

    def forward(self, x: torch.Tensor, ctx: Context, start: int = 0, stop: int | None = None) -> torch.Tensor:
        return self.net(x, ctx.fields, start, stop)


class FintExpert(Expert):
    """FINT field-aware interaction over ctx.fields [B, F, E], projected to out_dim (+ a linear map of x if input_skip)."""

    name = "fint"
    Params = FintParams

    def __init__(self, params: FintParams, dims: Dims):
        super().__init__(params, dims)
        in_dim, num_fields, field_dim = dims.in_dim, dims.num_fields, dims.field_dim
        self.net = StackedFint(1, in_dim, num_fields, field_dim, params)

    @classmethod
    def output_dim(cls, params: FintParams, dims: Dims) -> int:
        return params.out_dim

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return self.net(x, ctx.fields).squeeze(1)

    @classmethod
    def bank(cls, n, params, dims: Dims) -> ExpertBank:
        in_dim, num_fields, field_dim = dims.in_dim, dims.num_fields, dims.field_dim
        return FintBank(n, in_dim, num_fields, field_dim, params)


# ----------------------------------------------------------------------------- soft selection
class SoftSelectionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    heads: int = Field(default=2, ge=1, description="attention heads; must divide the embedding size")
    gate_init: float = Field(default=0.0, description="initial raw gate; G = sigmoid(raw), 0 -> 0.5")
    dropout: float = Field(default=0.0, ge=0, lt=1)


class SoftSelection(Adapter):
    """DEPHN soft input selection: G * MHSA(E) + (1 - G) * E over the field embeddings."""

    name = "soft_selection"
    Params = SoftSelectionParams
    site = "fields"

    def __init__(self, params: SoftSelectionParams, dims: Dims):
        super().__init__(params, dims)
        num_fields, field_dim = dims.num_fields, dims.field_dim
        if field_dim % params.heads:
            raise ConfigError(
                f"arch.input_adapter.params.heads: {params.heads} heads do not divide the embedding size {field_dim}; "
                "pick a divisor of embedding_dim"
            )
        self.attn = nn.MultiheadAttention(field_dim, params.heads, dropout=params.dropout, batch_first=True)
        self.gate = nn.Parameter(torch.full((num_fields, field_dim), float(params.gate_init)))

    def forward(self, f: torch.Tensor, ctx: Context) -> torch.Tensor:
        sa, _ = self.attn(f, f, f, need_weights=False)
        g = torch.sigmoid(self.gate)
        return g * sa + (1 - g) * f


# ----------------------------------------------------------------------------- gate
MAPS = {"identity": lambda x: x, "sin": torch.sin, "cos": torch.cos}


class DephnGateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    maps: list[Literal["identity", "sin", "cos"]] = Field(
        default_factory=lambda: ["identity", "sin", "cos"],
        min_length=1,
        description="explicit feature maps of each candidate",
    )
    normalize: Literal["none", "softmax"] = Field(
        default="none", description="none: raw scalar gates (the paper); softmax over (expert, map) per task"
    )
    init: float | None = Field(default=None, description="initial gate value; None = 1 / (experts * maps)")
    virtual_gradient: bool = True


def label_correlation(labels: torch.Tensor) -> torch.Tensor:
    """|Pearson correlation| between the label columns of a batch: [T, T] (0 where a column is constant)."""
    y = labels.float()
    y = y - y.mean(dim=0, keepdim=True)
    sd = y.pow(2).sum(dim=0).sqrt()
    cov = y.t() @ y
    denom = sd[:, None] * sd[None, :]
    corr = torch.where(denom > 0, cov / denom.clamp_min(1e-12), torch.zeros_like(cov))
    return corr.abs().clamp(max=1.0)


def virtual_coefficient(gates: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
    """Gamma [..., T, K] for gate values [..., T, K] and |Pearson| [T, T]: prod_{j != t} 2 |x_jt + y_jt - 1| ** 0.5."""
    g = gates.detach()
    T = g.shape[-2]
    y = (g.unsqueeze(-3) - g.unsqueeze(-2)).abs().clamp(max=1.0)  # [..., j, t, K]: |G_t - G_j|
    gamma = 2 * (corr.unsqueeze(-1) + y - 1).abs().sqrt()  # corr[j, t]
    eye = torch.eye(T, dtype=torch.bool, device=g.device).unsqueeze(-1)
    gamma = torch.where(eye, torch.ones_like(gamma), gamma)
    return gamma.prod(dim=-3)  # over j -> [..., t, K]


class DephnGate(Gate):
    """DEPHN gate: global scalar gates per (task, expert, feature map) over explicit maps of the candidates, trained with the virtual gradient."""

    name = "dephn"
    Params = DephnGateParams
    per_head_input = True  # ignores its input

    def __init__(self, params: DephnGateParams, dims: Dims):
        super().__init__(params, dims)
        num_experts, num_tasks, num_domains, per_domain = (
            dims.num_experts,
            dims.num_tasks,
            dims.num_domains,
            dims.per_domain,
        )
        self.maps = list(params.maps)
        K = num_experts * len(self.maps)
        init = params.init if params.init is not None else 1.0 / K
        groups = num_domains if per_domain else 1
        if params.normalize == "softmax":
            init = 0.0  # logits; softmax of equal logits is 1/K
        self.gates = nn.Parameter(torch.full((groups, num_tasks, K), float(init)))

    def gate_values(self, ctx: Context) -> torch.Tensor:
        """[G, T, N*M] gate values (index n * M + m: map m of candidate n) with the virtual gradient applied (G = domains if per_domain else 1)."""
        g = self.gates
        if self.params.normalize == "softmax":
            g = torch.softmax(g, dim=-1)
        if self.params.virtual_gradient and ctx.labels is not None and self.num_tasks > 1:
            gamma = virtual_coefficient(g, label_correlation(ctx.labels))
            g = g.detach() + gamma.detach() * (g - g.detach())
        return g

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        g = self.gate_values(ctx).unflatten(-1, (self.num_experts, len(self.maps)))  # [G, T, N, M]
        per_row = g[ctx.domain] if self.per_domain else g.expand(h.shape[0], -1, -1, -1)
        weights = per_row.sum(dim=-1)  # [B, T, N]: each candidate's total gate over its maps
        weights.dephn_maps = per_row  # the per-map gates, read by combine (see the module docstring)
        return weights

    def combine(self, weights: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        # candidates [B, N, H] or [B, T, N, H]; maps stacked on a new axis -> [..., N, M, H]
        coeffs = getattr(weights, "dephn_maps", None)
        if coeffs is None or coeffs.shape[:3] != weights.shape:  # weights not from this gate's forward
            return super().combine(weights, candidates)
        mapped = torch.stack([MAPS[m](candidates) for m in self.maps], dim=-2)
        if candidates.dim() == 3:
            return torch.einsum("btnm,bnmh->bth", coeffs, mapped)
        return torch.einsum("btnm,btnmh->bth", coeffs, mapped)


@hookimpl
def register_experts(register):
    register(CrossExpert)
    register(FintExpert)


@hookimpl
def register_adapters(register):
    register(SoftSelection)


@hookimpl
def register_gates(register):
    register(DephnGate)
