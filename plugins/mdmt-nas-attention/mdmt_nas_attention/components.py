"""Attention over module parts (level-2 fusion) and a temperature-annealed softmax gate."""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from mdmt_nas.components import Context, Dims, Fusion, Gate


class PartAttentionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key_dim: int = Field(default=16, ge=1, description="size of the attention keys and queries")
    per_domain: bool = Field(default=True, description="add a learned per-domain query to each task's query")
    scale_by_parts: bool = Field(
        default=True, description="multiply the mixture by the number of parts (sum-like scale, as 'gated')"
    )


class PartAttentionFusion(Fusion):
    """Level 2: each (domain, task) head attends over the parts with a learned query (row-dependent weights)."""

    name = "part_attention"
    level = 2
    Params = PartAttentionParams

    def __init__(self, params: PartAttentionParams, dims: Dims):
        super().__init__(params, dims)
        dim, num_tasks, num_domains = dims.in_dim, dims.num_tasks, dims.num_domains
        k = params.key_dim
        self.key = nn.Linear(dim, k, bias=False)
        self.task_query = nn.Parameter(torch.randn(num_tasks, k) / math.sqrt(k))
        self.domain_query = nn.Parameter(torch.zeros(num_domains, k)) if params.per_domain else None

    def forward(self, parts: dict[str, torch.Tensor], ctx: Context) -> torch.Tensor:
        stacked = torch.stack([parts[m] for m in self.members], dim=2)  # [B, T, P, H]
        q = self.task_query.unsqueeze(0)  # [1, T, k]
        if self.domain_query is not None:
            q = q + self.domain_query[ctx.domain].unsqueeze(1)  # [B, T, k]
        scores = torch.einsum("btpk,btk->btp", self.key(stacked), q.expand(stacked.shape[0], -1, -1)) / math.sqrt(
            q.shape[-1]
        )
        w = torch.softmax(scores, dim=-1)  # [B, T, P]
        out = torch.einsum("btp,btph->bth", w, stacked)
        return out * len(self.members) if self.params.scale_by_parts else out


class AnnealedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    t_start: float = Field(default=2.0, gt=0, description="temperature at the first training step")
    t_end: float = Field(default=0.5, gt=0, description="temperature after anneal_steps training steps")
    anneal_steps: int = Field(
        default=1000, ge=1, description="training forwards over which the temperature moves (geometrically)"
    )

    @model_validator(mode="after")
    def _order(self) -> AnnealedParams:
        if self.t_end > self.t_start:
            raise ValueError(
                f"t_end ({self.t_end}) must not exceed t_start ({self.t_start}): annealing lowers the temperature"
            )
        return self


class AnnealedSoftmaxGate(Gate):
    """Softmax gate whose temperature anneals from t_start to t_end over training steps (soft, then sharp)."""

    name = "annealed_softmax"
    Params = AnnealedParams
    per_head_input = True

    def __init__(self, params: AnnealedParams, dims: Dims):
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
        self.register_buffer(
            "step", torch.zeros((), dtype=torch.float32)
        )  # training forwards so far (saved with the model)

    def temperature(self) -> torch.Tensor:
        p = self.params
        frac = (self.step / p.anneal_steps).clamp(max=1.0)
        return p.t_start * (p.t_end / p.t_start) ** frac

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        T, N, G = self.num_tasks, self.num_experts, self.weight.shape[0]
        if h.dim() == 3:  # per-head inputs [B, T, in]
            w = self.weight.view(G, self.in_dim, T, N)
            logits = torch.einsum("bti,gitn->bgtn", h, w) + self.bias.view(1, G, T, N)
        else:
            logits = torch.einsum("bi,gio->bgo", h, self.weight).add(self.bias).view(-1, G, T, N)
        if self.per_domain:
            logits = logits.gather(1, ctx.domain.view(-1, 1, 1, 1).expand(-1, 1, T, N))
        logits = logits[:, 0]
        weights = torch.softmax(logits / self.temperature(), dim=-1)
        if self.training:
            with torch.no_grad():
                self.step.add_(1.0)
            ctx.aux.add_metric("gate_temperature", self.temperature())
        return weights
