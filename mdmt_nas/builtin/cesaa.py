"""CESAA: conditional expert selection and adaptive aggregation.

Paper: "Multi-domain recommendation with conditional expert selection and
adaptive expert aggregation" (arXiv 2411.06826). Only the abstract is public;
this is a reconstruction from it.

Component (registered through `register_gates`, like any third-party plugin):

- gate `noisy_topk` (sparse): the first `num_always_on` candidates are the
  domain-shared experts and are always on; among the remaining ones a noisy
  top-k picks `k` per row (Shazeer et al. 2017):
      x = concat(h, domain_emb[d]),  logits = W_g x + eps * softplus(W_n x)
  (noise only in training), keep the always-on and top-k candidates, softmax
  over the kept ones, exact zeros elsewhere. Because the gate is `sparse`, the
  model dispatches each row only to its selected experts when the gate mixes
  the shared group, so compute grows with k, not with the size of the pool.
- Adaptive expert aggregation: a mutual-information loss between experts and
  domains. With M[d, e] = (1/B) sum of p_i(e) over the rows i of domain d
  (p_i: the gate's output weights over the selectable experts, renormalised and
  averaged over heads; `mi_on: probs` uses the full softmax instead),
      L_MI = - sum_{d,e} M[d,e] log(M[d,e] / (P(d) P(e)) + 1e-4)
  and `mi_weight * L_MI` is added through `ctx.aux.add_loss("cesaa.mi", ...)`.
  Minimising it raises the expert-domain MI: experts specialise on domains.
- Metrics (`ctx.aux.add_metric`): `cesaa.load.e<j>` fraction of rows routed to
  expert j, `cesaa.load_cv` coefficient of variation of the selectable
  experts' load, `cesaa.mi` expert-domain MI (nats) of the p_i(e) above and
  `cesaa.mi_sel` of the hard selections.

Typical layout: `shared: {expert: mlp, num: N_s + N_p}` with
`gate: {name: noisy_topk, params: {k: 2, num_always_on: N_s}}`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mdmt_nas.components import Context, Dims, Gate
from mdmt_nas.errors import ConfigError
from mdmt_nas.plugins import hookimpl


class NoisyTopKParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(default=2, ge=0, description="experts picked per row among the selectable (non-always-on) ones")
    num_always_on: int = Field(
        default=0, ge=0, description="the first N_s candidates (domain-shared experts) are always on"
    )
    noise: bool = Field(default=True, description="add eps * softplus(W_n x) to the logits in training")
    domain_dim: int = Field(
        default=8, ge=0, description="domain embedding size concatenated to the gate input; 0 = none"
    )
    select: Literal["task", "row"] = Field(
        default="task",
        description="task: each task head picks its own top-k; row: one top-k per row (mean of the heads' logits), "
        "each head softmaxes its own logits over that set, so exactly k selectable experts run per row",
    )
    mi_weight: float = Field(
        default=0.01, ge=0, description="w_MI: weight of the expert-domain mutual-information loss; 0 = off"
    )
    mi_on: Literal["weights", "probs"] = Field(
        default="weights",
        description="p_i(e) of the MI loss: weights = the gate's sparse output weights over the selectable experts, "
        "renormalised (what aggregates the experts); probs = softmax over all selectable experts (smoother, but "
        "near uniform while the logits are small, so a much weaker push: see benchmarks/seed_claims.py)",
    )
    balance_weight: float = Field(
        default=0.0, ge=0, description="weight of Shazeer's importance loss (CV^2 of the summed weights); 0 = off"
    )
    temperature: float = Field(default=1.0, gt=0)
    metrics: bool = Field(default=True, description="log expert load and expert-domain MI through ctx.aux")


def mi_loss(probs: torch.Tensor, domain: torch.Tensor, num_domains: int, eps: float = 1e-4) -> torch.Tensor:
    """L_MI = - sum M[d,e] log(M[d,e] / (P(d) P(e)) + eps) for probs [B, N] (rows sum to 1)."""
    M = joint(probs, domain, num_domains)
    pd, pe = M.sum(1, keepdim=True), M.sum(0, keepdim=True)
    ratio = M / (pd * pe).clamp_min(1e-12)  # absent domains: M = 0 there, so the term is 0
    return -(M * torch.log(ratio + eps)).sum()


def joint(probs: torch.Tensor, domain: torch.Tensor, num_domains: int) -> torch.Tensor:
    """M[d, e] = (1/B) * sum of probs[i, e] over rows i of domain d: [D, N], sums to 1."""
    B = max(probs.shape[0], 1)  # no int(): a symbolic batch size stays symbolic under torch.export
    return probs.new_zeros(num_domains, probs.shape[1]).index_add(0, domain, probs) / B


def mutual_information(M: torch.Tensor) -> torch.Tensor:
    """MI (nats) of a joint distribution M [D, N] (zeros allowed)."""
    M = M / M.sum().clamp_min(1e-12)
    pd, pe = M.sum(1, keepdim=True), M.sum(0, keepdim=True)
    terms = M * torch.log(M.clamp_min(1e-30) / (pd * pe).clamp_min(1e-30))
    return torch.where(M > 0, terms, torch.zeros_like(terms)).sum()


class NoisyTopKGate(Gate):
    """CESAA conditional expert selection: always-on shared experts + noisy top-k of the rest, domain-aware input."""

    name = "noisy_topk"
    Params = NoisyTopKParams
    sparse = True
    per_head_input = False
    torchscript = False  # data-dependent top-k dispatch

    def __init__(self, params: NoisyTopKParams, dims: Dims):
        super().__init__(params, dims)
        in_dim, num_experts, num_tasks, num_domains, per_domain = (
            dims.in_dim,
            dims.num_experts,
            dims.num_tasks,
            dims.num_domains,
            dims.per_domain,
        )
        S = params.num_always_on
        if S > num_experts:
            raise ConfigError(
                f"arch.gate.params.num_always_on: {S} always-on experts but the gate has only {num_experts} candidates"
            )
        if params.k > num_experts - S:
            raise ConfigError(
                f"arch.gate.params.k: k={params.k} but only {num_experts - S} selectable candidates "
                f"({num_experts} candidates, {S} always on); lower k or add experts"
            )
        if params.k + S == 0:
            raise ConfigError("arch.gate.params.k: k = 0 with no always-on experts would select nothing; set k >= 1")
        self.k, self.num_always_on = params.k, S
        self.domain_emb = nn.Embedding(num_domains, params.domain_dim) if params.domain_dim else None
        if self.domain_emb is not None:
            nn.init.normal_(self.domain_emb.weight, std=0.1)
        groups = num_domains if per_domain else 1
        x_dim = in_dim + params.domain_dim
        bound = 1.0 / math.sqrt(x_dim)
        TN = num_tasks * num_experts
        self.w_gate = nn.Parameter(torch.empty(groups, x_dim, TN).uniform_(-bound, bound))
        self.b_gate = nn.Parameter(torch.zeros(groups, TN))
        if params.noise:
            # zero weights and a negative bias: the noise starts small (softplus(-1) ~ 0.31) and is learned
            self.w_noise = nn.Parameter(torch.zeros(groups, x_dim, TN))
            self.b_noise = nn.Parameter(torch.full((groups, TN), -1.0))

    def _affine(self, x: torch.Tensor, ctx: Context, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        T, N = self.num_tasks, self.num_experts
        if self.per_domain:
            return ctx.routing.apply(x, lambda d, xs, _idx: (xs @ w[d] + b[d]).view(-1, T, N))
        return (x @ w[0] + b[0]).view(-1, T, N)

    def logits(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        """Gate logits [B, T, N] (noisy in training)."""
        x = torch.cat([h, self.domain_emb(ctx.domain)], dim=-1) if self.domain_emb is not None else h
        out = self._affine(x, ctx, self.w_gate, self.b_gate)
        if self.params.noise and self.training:
            std = F.softplus(self._affine(x, ctx, self.w_noise, self.b_noise))
            out = out + torch.randn_like(out) * std
        return out / self.params.temperature

    def select_mask(self, logits: torch.Tensor) -> torch.Tensor:
        """bool [B, T, N]: the always-on candidates plus the top-k selectable ones."""
        S, k = self.num_always_on, self.k
        routable = logits[..., S:]
        mask = torch.zeros_like(logits, dtype=torch.bool)
        mask[..., :S] = True
        if k == routable.shape[-1]:
            mask[..., S:] = True
        elif k > 0:
            score = routable if self.params.select == "task" else routable.mean(dim=1, keepdim=True)
            top = score.topk(k, dim=-1).indices.expand(-1, logits.shape[1], -1)
            mask[..., S:] = torch.zeros_like(routable, dtype=torch.bool).scatter(-1, top, True)
        return mask

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        logits = self.logits(h, ctx)
        mask = self.select_mask(logits)
        weights = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        weights = weights.masked_fill(~mask, 0.0)  # exact zeros, whatever softmax does with -inf
        self._auxiliary(logits, mask, weights, ctx)
        return weights

    def _auxiliary(self, logits: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor, ctx: Context) -> None:
        p, S = self.params, self.num_always_on
        n_sel = self.num_experts - S
        probs = None
        if n_sel > 0 and (p.mi_weight > 0 or p.metrics):
            if p.mi_on == "probs":
                probs = torch.softmax(logits[..., S:], dim=-1).mean(dim=1)  # [B, N_p]
            else:
                sel = weights[..., S:]
                probs = (sel / sel.sum(dim=-1, keepdim=True).clamp_min(1e-12)).mean(dim=1)
        if probs is not None and p.mi_weight > 0 and self.training:
            ctx.aux.add_loss("cesaa.mi", p.mi_weight * mi_loss(probs, ctx.domain, ctx.num_domains))
        if p.balance_weight > 0 and self.training and n_sel > 1:
            imp = weights[..., S:].sum(dim=(0, 1))
            ctx.aux.add_loss("cesaa.balance", p.balance_weight * (imp.std() / imp.mean().clamp_min(1e-9)) ** 2)
        if not p.metrics:
            return
        with torch.no_grad():
            used = mask.any(dim=1).float()  # [B, N]: rows dispatched to each expert
            load = used.mean(dim=0)
            for j in range(self.num_experts):
                ctx.aux.add_metric(f"cesaa.load.e{j}", load[j])
            if n_sel > 1:
                sel = load[S:]
                ctx.aux.add_metric("cesaa.load_cv", sel.std() / sel.mean().clamp_min(1e-9))
            if probs is not None:
                ctx.aux.add_metric("cesaa.mi", mutual_information(joint(probs, ctx.domain, ctx.num_domains)))
                sel_rows = used[:, S:] / used[:, S:].sum(dim=1, keepdim=True).clamp_min(1e-9)
                ctx.aux.add_metric("cesaa.mi_sel", mutual_information(joint(sel_rows, ctx.domain, ctx.num_domains)))


@hookimpl
def register_gates(register):
    register(NoisyTopKGate)
