"""AutoInt and FiBiNET as mdmt-nas experts over the per-field embeddings `ctx.fields` [B, F, E].

AutoInt (Song et al., CIKM 2019): each layer is multi-head self-attention across
fields with a residual projection and ReLU; the last layer's field vectors are
flattened. FiBiNET (Huang et al., RecSys 2019): a squeeze-excitation network
re-weights fields, a bilinear layer forms p_ij = (v_i W) * v_j for every field
pair of the original and the re-weighted embeddings, and an MLP maps them on.
Both add a linear projection of their input `x` so they can sit on a bottom or
mix with other experts; everything is batched (no loop over rows or pairs).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mdmt_nas.components import Context, Dims, Expert


class AutoIntParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    heads: int = Field(default=2, ge=1, description="attention heads per layer")
    head_dim: int = Field(default=8, ge=1, description="size of each head's query/key/value")
    layers: int = Field(default=2, ge=1, description="stacked interacting layers")
    out_dim: int = Field(default=64, ge=1, description="output size (equal to the other experts it is mixed with)")
    use_input: bool = Field(default=True, description="add a linear projection of the input x")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="dropout on the attention weights")


class InteractingLayer(nn.Module):
    """Multi-head self-attention across fields: [B, F, d_in] -> [B, F, heads * head_dim]."""

    def __init__(self, d_in: int, heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, head_dim, dropout
        d = heads * head_dim
        self.qkv = nn.Linear(d_in, 3 * d, bias=False)
        self.res = nn.Linear(d_in, d, bias=False)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        B, Fn, _ = f.shape
        q, k, v = self.qkv(f).view(B, Fn, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3 x [B, h, F, d]
        attn = torch.softmax(q @ k.transpose(-1, -2) / self.head_dim**0.5, dim=-1)  # [B, h, F, F]
        if self.dropout and self.training:
            attn = F.dropout(attn, self.dropout, True)
        out = (attn @ v).transpose(1, 2).reshape(B, Fn, self.heads * self.head_dim)
        return F.relu(out + self.res(f))


class AutoIntExpert(Expert):
    """AutoInt: multi-head self-attention across field embeddings (explicit high-order interactions)."""

    name = "autoint"
    Params = AutoIntParams

    def __init__(self, params: AutoIntParams, dims: Dims):
        super().__init__(params, dims)
        in_dim, num_fields, field_dim = dims.in_dim, dims.num_fields, dims.field_dim
        d = params.heads * params.head_dim
        self.layers = nn.ModuleList(
            InteractingLayer(field_dim if i == 0 else d, params.heads, params.head_dim, params.dropout)
            for i in range(params.layers)
        )
        self.out = nn.Linear(num_fields * d, params.out_dim)
        self.inp = nn.Linear(in_dim, params.out_dim, bias=False) if params.use_input else None

    @classmethod
    def output_dim(cls, params: AutoIntParams, dims: Dims) -> int:
        return params.out_dim

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        h = ctx.fields
        for layer in self.layers:
            h = layer(h)
        out = self.out(h.flatten(1))
        return out + self.inp(x) if self.inp is not None else out


class FiBiNetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reduction: int = Field(default=3, ge=1, description="SENet reduction ratio")
    bilinear: Literal["all", "each"] = Field(
        default="all", description="one bilinear matrix for all fields, or one per field"
    )
    hidden: int = Field(default=64, ge=1, description="hidden size of the MLP after the bilinear layer")
    out_dim: int = Field(default=64, ge=1)
    use_input: bool = Field(default=True, description="add a linear projection of the input x")


class FiBiNetExpert(Expert):
    """FiBiNET: SENet field importance plus bilinear field-pair interactions, then an MLP."""

    name = "fibinet"
    Params = FiBiNetParams

    def __init__(self, params: FiBiNetParams, dims: Dims):
        super().__init__(params, dims)
        in_dim, num_fields, field_dim = dims.in_dim, dims.num_fields, dims.field_dim
        Fn, E = num_fields, field_dim
        squeeze = max(1, Fn // params.reduction)
        self.se = nn.Sequential(nn.Linear(Fn, squeeze), nn.ReLU(), nn.Linear(squeeze, Fn), nn.ReLU())
        n_w = 1 if params.bilinear == "all" else Fn
        self.bilinear = nn.Parameter(torch.randn(n_w, E, E) / E**0.5)
        i, j = torch.triu_indices(Fn, Fn, 1)
        self.register_buffer("pair_i", i, persistent=False)
        self.register_buffer("pair_j", j, persistent=False)
        pairs = max(len(i), 1)
        self.mlp = nn.Sequential(
            nn.Linear(2 * pairs * E, params.hidden), nn.ReLU(), nn.Linear(params.hidden, params.out_dim)
        )
        self.inp = nn.Linear(in_dim, params.out_dim, bias=False) if params.use_input else None

    @classmethod
    def output_dim(cls, params: FiBiNetParams, dims: Dims) -> int:
        return params.out_dim

    def _pairs(self, v: torch.Tensor) -> torch.Tensor:
        """p_ij = (v_i W_i) * v_j for i < j: [B, F, E] -> [B, pairs, E]."""
        if self.pair_i.numel() == 0:  # a single field has no pairs
            return torch.zeros_like(v[:, :1])
        vi, vj = v.index_select(1, self.pair_i), v.index_select(1, self.pair_j)
        w = self.bilinear if self.bilinear.shape[0] == 1 else self.bilinear.index_select(0, self.pair_i)
        return torch.einsum("bpe,pef->bpf", vi, w.expand(vi.shape[1], -1, -1)) * vj

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        f = ctx.fields
        weights = self.se(f.mean(dim=-1))  # [B, F] field importance
        both = torch.cat([self._pairs(f), self._pairs(f * weights.unsqueeze(-1))], dim=1)
        out = self.mlp(both.flatten(1))
        return out + self.inp(x) if self.inp is not None else out
