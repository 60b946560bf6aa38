"""Domain-personalised parts in the spirit of PEPNet (Chang et al., KDD 2023).

`ppnet` expert: an MLP whose every hidden layer is scaled element-wise by a
Gate Neural Unit, gamma * sigmoid(MLP([domain embedding, x])), so each domain
re-weights the shared layers (PEPNet's PPNet, with the domain as prior).
`domain_lora` adapter: h + B_d A_d h, a per-domain low-rank residual with B
initialised to zero (the adapter starts as the identity); rows are routed to
their domain's matrices, never computed for all domains and masked.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mdmt_nas.components import Adapter, Context, Dims, Expert


class PPNetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden: list[int] = Field(
        default_factory=lambda: [128, 64], min_length=1, description="layer sizes; the last is the output size"
    )
    domain_dim: int = Field(default=8, ge=1, description="size of the learned domain embedding fed to the gates")
    gate_hidden: int = Field(default=32, ge=1, description="hidden size of each gate unit")
    gamma: float = Field(default=2.0, gt=0, description="gate range (0, gamma); 2 keeps the identity at the midpoint")
    detach_gate_input: bool = Field(default=True, description="gates read a stop-gradient copy of x (PEPNet)")


class GateNU(nn.Module):
    """gamma * sigmoid(W2 relu(W1 z)): per-row, per-unit scales in (0, gamma)."""

    def __init__(self, d_in: int, hidden: int, d_out: int, gamma: float):
        super().__init__()
        self.l1, self.l2, self.gamma = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out), gamma

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.gamma * torch.sigmoid(self.l2(F.relu(self.l1(z))))


class PPNetExpert(Expert):
    """PPNet-style expert: MLP layers scaled per row by gate units fed with the domain embedding (PEPNet)."""

    name = "ppnet"
    Params = PPNetParams

    def __init__(self, params: PPNetParams, dims: Dims):
        super().__init__(params, dims)
        in_dim, num_domains = dims.in_dim, dims.num_domains
        sizes = [in_dim] + list(params.hidden)
        self.domain_emb = nn.Embedding(num_domains, params.domain_dim)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.gates = nn.ModuleList(
            GateNU(params.domain_dim + in_dim, params.gate_hidden, b, params.gamma) for b in sizes[1:]
        )

    @classmethod
    def output_dim(cls, params: PPNetParams, dims: Dims) -> int:
        return params.hidden[-1]

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        z = torch.cat([self.domain_emb(ctx.domain), x.detach() if self.params.detach_gate_input else x], dim=1)
        h = x
        for layer, gate in zip(self.layers, self.gates):
            h = F.relu(layer(h)) * gate(z)
        return h


class DomainLoRAParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rank: int = Field(default=4, ge=1, description="rank of each domain's residual")
    alpha: float = Field(default=1.0, gt=0, description="scale of the residual (LoRA's alpha / rank)")


class DomainLoRAAdapter(Adapter):
    """Per-domain low-rank residual h + alpha/r * B_d A_d h, starting as the identity (rows routed by domain)."""

    name = "domain_lora"
    Params = DomainLoRAParams

    def __init__(self, params: DomainLoRAParams, dims: Dims):
        super().__init__(params, dims)
        dim, num_domains = dims.in_dim, dims.num_domains
        r = params.rank
        self.down = nn.Parameter(torch.randn(num_domains, dim, r) / math.sqrt(dim))
        self.up = nn.Parameter(torch.zeros(num_domains, r, dim))

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        low = ctx.routing.grouped_linear(h, self.down)  # [B, r]
        return h + (self.params.alpha / self.params.rank) * ctx.routing.grouped_linear(low, self.up)
