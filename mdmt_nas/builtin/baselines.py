"""The STAR expert: a domain-aware bottom whose weights are shared times per-domain (Sheng et al., CIKM 2021).

"One Model to Serve All: Star Topology Adaptive Recommender for Multi-Domain CTR Prediction".

Each layer's weight is the element-wise product of a shared weight and the
row's domain weight, its bias the sum of both; rows are routed to their
domain's product weight (never computed for all domains and masked).
Shared-Bottom, MMoE and PLE need no components beyond `basic`: see examples/.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mdmt_nas.builtin.basic import ACTIVATIONS
from mdmt_nas.components import Context, Dims, Expert
from mdmt_nas.plugins import hookimpl


class StarParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden: list[int] = Field(default_factory=lambda: [256, 64], min_length=1)
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    partitioned_norm: bool = Field(
        default=True, description="per-domain scale/shift after a shared LayerNorm (STAR's partitioned normalisation)"
    )


class StarLayer(nn.Module):
    """One star-topology layer: y = x @ (W_shared * W_domain) + b_shared + b_domain."""

    def __init__(self, in_dim: int, out_dim: int, num_domains: int):
        super().__init__()
        self.shared_weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(in_dim, out_dim)))
        self.shared_bias = nn.Parameter(torch.zeros(out_dim))
        # domain weights start at 1 so the product starts as the shared weight (STAR's init)
        self.domain_weight = nn.Parameter(torch.ones(num_domains, in_dim, out_dim))
        self.domain_bias = nn.Parameter(torch.zeros(num_domains, out_dim))

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        weight = self.domain_weight * self.shared_weight  # [D, in, out], per step not per row
        return ctx.routing.grouped_linear(x, weight, self.domain_bias + self.shared_bias)


class StarExpert(Expert):
    """STAR bottom: star-topology layers with partitioned normalisation (domain-aware)."""

    name = "star"
    Params = StarParams

    def __init__(self, params: StarParams, dims: Dims):
        super().__init__(params, dims)
        in_dim, num_domains = dims.in_dim, dims.num_domains
        sizes = [in_dim] + list(params.hidden)
        self.layers = nn.ModuleList(StarLayer(a, b, num_domains) for a, b in zip(sizes[:-1], sizes[1:]))
        if params.partitioned_norm:
            self.pn_scale = nn.Parameter(torch.ones(len(self.layers), num_domains, 1))
            self.pn_shift = nn.Parameter(torch.zeros(len(self.layers), num_domains, 1))
        self.act = ACTIVATIONS[params.activation]

    @classmethod
    def output_dim(cls, params: StarParams, dims: Dims) -> int:
        return params.hidden[-1]

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h, ctx)
            if self.params.partitioned_norm:
                h = F.layer_norm(h, (h.shape[-1],)) * self.pn_scale[i][ctx.domain] + self.pn_shift[i][ctx.domain]
            h = self.act(h)
        return h


@hookimpl
def register_experts(register):
    register(StarExpert)
