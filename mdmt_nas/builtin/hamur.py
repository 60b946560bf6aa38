"""HAMUR: hyper adapter for multi-domain recommendation.

Paper: Li et al., "HAMUR: Hyper Adapter for Multi-Domain Recommendation",
CIKM 2023 (arXiv 2309.06217); reference code
github.com/Applied-Machine-Learning-Lab/HAMUR.

Component (registered through `register_adapters`, like any third-party plugin):

- adapter `hamur` (site "hidden"): a pluggable bottleneck cell for any
  backbone's hidden vector h [B, dim]:
      out = h + norm(up(sigmoid(down(h))))
  whose weights are generated per row by a domain-shared hyper-network. The
  hyper-network (an MLP on the row's flat field embeddings `ctx.fields`,
  optionally concatenated with a learned domain embedding) outputs a k x k
  matrix H per row, and
      W_down = U0 H V0  [dim, bottleneck],   W_up = U1 H V1  [bottleneck, dim]
  with U, V learned. The per-row weights are never materialised: the cell is
  evaluated as ((h U0) H) V0, batched over rows with einsum, so its cost is
  O(B (dim k + k^2 + k bottleneck)). `norm` is a normalisation with learned
  scale/shift after the up-projection: "layer" (per row, default),
  "batch" (statistics over the rows of the batch, as the reference code
  does; its output then depends on the batch) or "none".

Put it in `adapter` with `adapter_sites` [bottom] / [experts] / [towers] to
wrap a DCN-style bottom, the experts of an MMoE, or the towers (see
examples/hamur_*.yaml).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mdmt_nas.components import Adapter, Context, Dims
from mdmt_nas.plugins import hookimpl


class HamurParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bottleneck: int = Field(default=32, ge=1, description="adapter bottleneck size")
    k: int = Field(default=32, ge=1, description="size of the per-row k x k matrix H the hyper-network outputs")
    hyper_hidden: list[int] = Field(default_factory=lambda: [64], description="hidden layers of the hyper-network MLP")
    domain_dim: int = Field(
        default=8,
        ge=0,
        description="learned domain embedding concatenated to the hyper-network input; 0 = embedding only",
    )
    norm: Literal["layer", "batch", "none"] = "layer"
    init_scale: float = Field(
        default=1.0, ge=0, description="initial scale of the norm (reference: 1); small values start near identity"
    )


class HyperAdapter(Adapter):
    """HAMUR hyper adapter: per-row bottleneck adapter whose weights U H V come from a shared hyper-network."""

    name = "hamur"
    Params = HamurParams
    site = "hidden"

    def __init__(self, params: HamurParams, dims: Dims):
        super().__init__(params, dims)
        dim, num_fields, field_dim, num_domains = dims.in_dim, dims.num_fields, dims.field_dim, dims.num_domains
        p = params
        k, r = p.k, p.bottleneck
        self.domain_emb = nn.Embedding(num_domains, p.domain_dim) if p.domain_dim else None
        if self.domain_emb is not None:
            nn.init.normal_(self.domain_emb.weight, std=0.1)
        layers: list[nn.Module] = []
        last = num_fields * field_dim + p.domain_dim
        for width in p.hyper_hidden:
            layers += [nn.Linear(last, width), nn.ReLU()]
            last = width
        layers.append(nn.Linear(last, k * k))
        self.hyper_net = nn.Sequential(*layers)
        # factors of W_down = U0 H V0 and W_up = U1 H V1, scaled so each product keeps unit variance
        self.u0 = nn.Parameter(torch.randn(dim, k) / math.sqrt(dim))
        self.v0 = nn.Parameter(torch.randn(k, r) / math.sqrt(k))
        self.b0 = nn.Parameter(torch.zeros(r))
        self.u1 = nn.Parameter(torch.randn(r, k) / math.sqrt(r))
        self.v1 = nn.Parameter(torch.randn(k, dim) / math.sqrt(k))
        self.b1 = nn.Parameter(torch.zeros(dim))
        self.scale = nn.Parameter(torch.full((dim,), float(p.init_scale)))
        self.shift = nn.Parameter(torch.zeros(dim))
        self.k = k

    def hyper(self, ctx: Context) -> torch.Tensor:
        """The per-row matrix H [B, k, k] (scaled by 1/sqrt(k))."""
        x = ctx.fields.flatten(1)  # = ctx.embedding unless dense values are fed raw
        if self.domain_emb is not None:
            x = torch.cat([x, self.domain_emb(ctx.domain)], dim=-1)
        return self.hyper_net(x).view(-1, self.k, self.k) / math.sqrt(self.k)

    def cell(self, h: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
        """The adapter given H [B, k, k]: h + norm(up(sigmoid(down(h))))."""
        z = torch.einsum("bi,bij->bj", h @ self.u0, H) @ self.v0 + self.b0  # h W_down + b, W_down = U0 H V0
        z = torch.sigmoid(z)
        u = torch.einsum("bi,bij->bj", z @ self.u1, H) @ self.v1 + self.b1  # z W_up + b, W_up = U1 H V1
        if self.params.norm == "layer":
            u = F.layer_norm(u, (u.shape[-1],))
        elif self.params.norm == "batch" and u.shape[0] > 1:
            u = (u - u.mean(dim=0)) / torch.sqrt(u.var(dim=0) + 1e-5)
        return h + self.scale * u + self.shift

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        return self.cell(h, self.hyper(ctx))

    def effective_weights(self, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row W_down [B, dim, bottleneck] and W_up [B, bottleneck, dim] (for inspection and tests only)."""
        H = self.hyper(ctx)
        w_down = torch.einsum("mi,bij,jn->bmn", self.u0, H, self.v0)
        w_up = torch.einsum("mi,bij,jn->bmn", self.u1, H, self.v1)
        return w_down, w_up


@hookimpl
def register_adapters(register):
    register(HyperAdapter)
