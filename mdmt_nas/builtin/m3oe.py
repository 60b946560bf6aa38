"""M3oE's components: the star bottom, the balance fusion and the weighted fusion (Zhang et al., SIGIR 2024).

"M3oE: Multi-Domain Multi-Task Mixture-of-Experts Recommendation Framework",
faithful to its public reference implementation.

Components:
- `m3oe_star` bottom: one star layer (shared weight times per-domain weight,
  shared plus per-domain bias) to `star_dim`, an MLP to `out_dim`, plus a skip
  branch (Linear, LayerNorm, ReLU) from the raw embedding.
- `balance` (level-1 fusion): member i gets b * E_i + (1 - b) / (M - 1) * sum of the others,
  b = sigmoid(arch_b) (the reference's bal_d / bal_t).
- `weighted` (level-2 fusion): shared mixture + a_d * domain part + a_t * task part,
  a = sigmoid(arch_a) (the reference's exp_d / exp_t).
The `arch_*` scalars are the reference's "AutoML" parameters: with
`train.arch_step: train` they are updated by a second Adam on a separate batch.
Works for any number of domains and tasks (the reference is wired to 3 x 2).
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mdmt_nas.components import Context, Dims, Expert, Fusion
from mdmt_nas.plugins import hookimpl


class M3oEStarParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    star_dim: int = Field(default=512, ge=1)
    out_dim: int = Field(default=256, ge=1)
    skip: bool = True


def _ln_relu_linear(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(a, b), nn.LayerNorm(b), nn.ReLU())


class M3oEStar(Expert):
    """M3oE's STAR-style bottom with skip branch (reference: star layer -> MLP, + skip MLP)."""

    name = "m3oe_star"
    Params = M3oEStarParams

    def __init__(self, params: M3oEStarParams, dims: Dims):
        super().__init__(params, dims)
        in_dim, num_domains = dims.in_dim, dims.num_domains
        p = params
        self.shared_weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(in_dim, p.star_dim)))
        self.shared_bias = nn.Parameter(torch.zeros(p.star_dim))
        slot = torch.empty(num_domains, in_dim, p.star_dim)
        for d in range(num_domains):
            nn.init.xavier_uniform_(slot[d])
        self.slot_weight = nn.Parameter(slot)
        self.slot_bias = nn.Parameter(torch.zeros(num_domains, p.star_dim))
        self.star_mlp = _ln_relu_linear(p.star_dim, p.out_dim)
        self.skip_conn = _ln_relu_linear(in_dim, p.out_dim) if p.skip else None

    @classmethod
    def output_dim(cls, params: M3oEStarParams, dims: Dims) -> int:
        return params.out_dim

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        weight = self.slot_weight * self.shared_weight  # [D, in, star]
        bias = self.slot_bias + self.shared_bias  # [D, star]
        lin, norm, act = self.star_mlp
        if self.compose(x.shape[0]):
            # The star layer is linear and star_mlp starts with a Linear, so both are one affine map
            # per domain: (x W_d + b_d) W + c = x (W_d W) + (b_d W + c). The same function and gradients
            # (autograd differentiates the product), rounded differently; per row in*out multiply-adds
            # instead of in*star + star*out (113*256 vs 113*512 + 512*256 in the reference M3oE).
            h = ctx.routing.grouped_linear(x, weight @ lin.weight.t(), torch.addmm(lin.bias, bias, lin.weight.t()))
            h = act(norm(h))
        else:
            h = self.star_mlp(ctx.routing.grouped_linear(x, weight, bias))
        return h + self.skip_conn(x) if self.skip_conn is not None else h

    def compose(self, rows: int) -> bool:
        """Whether composing the two maps (a per-batch cost of D * in * star * out) beats running them on `rows` rows.

        A symbolic batch size (torch.export with a dynamic batch) takes the plain path: no branch on the batch size."""
        if not isinstance(rows, int):
            return False
        d_in, star, out = self.shared_weight.shape[0], self.shared_weight.shape[1], self.params.out_dim
        return rows * (d_in * star + star * out - d_in * out) > self.num_domains * d_in * star * out


class BalanceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    init: float = Field(default=1.0, description="initial raw value; the weight is sigmoid(init) (reference: 1)")
    learnable: bool = True


class BalanceFusion(Fusion):
    """Level 1 (M3oE): member i = b * E_i + (1 - b) / (M - 1) * sum_{j != i} E_j, b = sigmoid(arch_b)."""

    name = "balance"
    level = 1
    Params = BalanceParams

    def __init__(self, params: BalanceParams, dims: Dims):
        super().__init__(params, dims)
        self.arch_b = nn.Parameter(torch.tensor(float(params.init)), requires_grad=params.learnable)

    def forward(self, outputs: torch.Tensor, ctx: Context) -> torch.Tensor:
        M = outputs.shape[1]
        b = torch.sigmoid(self.arch_b)
        if M == 1:
            return outputs
        c = (1 - b) / (M - 1)  # b E_i + c (S - E_i) = c S + (b - c) E_i: two passes over the members, not four
        return torch.addcmul(c * outputs.sum(dim=1, keepdim=True), b - c, outputs)

    @classmethod
    def same_as(cls, params, members) -> str | None:
        return "own" if members == 1 else None  # one member keeps itself whatever b is


class WeightedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    init_domain: float = Field(default=1.0, description="raw init of a_d (weight = sigmoid)")
    init_task: float = Field(default=1.0, description="raw init of a_t (weight = sigmoid)")
    learnable: bool = True


class WeightedFusion(Fusion):
    """Level 2 (M3oE): shared mixture + a_d * domain part + a_t * task part, a = sigmoid(arch_a)."""

    name = "weighted"
    level = 2
    Params = WeightedParams

    def __init__(self, params: WeightedParams, dims: Dims):
        super().__init__(params, dims)
        self.arch_a_domain = nn.Parameter(torch.tensor(float(params.init_domain)), requires_grad=params.learnable)
        self.arch_a_task = nn.Parameter(torch.tensor(float(params.init_task)), requires_grad=params.learnable)

    def forward(self, parts: dict[str, torch.Tensor], ctx: Context) -> torch.Tensor:
        out = parts.get("shared")
        for key, a in (("domain", self.arch_a_domain), ("task", self.arch_a_task)):
            if key in parts:  # out + sigmoid(a) * part in one kernel; no stacked copy of broadcast parts
                out = torch.sigmoid(a) * parts[key] if out is None else torch.addcmul(out, torch.sigmoid(a), parts[key])
        assert out is not None
        return out

    @classmethod
    def same_as(cls, params, members) -> str | None:
        return "sum" if tuple(members) == ("shared",) else None  # the shared mixture is never weighted


@hookimpl
def register_experts(register):
    register(M3oEStar)


@hookimpl
def register_fusions(register):
    register(BalanceFusion)
    register(WeightedFusion)
