"""Helpers of the seed-system tests: a tiny schema, random batches, a minimal training loop."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mdmt_nas.arch import Architecture
from mdmt_nas.components import BalanceContext
from mdmt_nas.data.schema import Schema, SparseField
from mdmt_nas.model import MDMTModel, build_balancer, build_model

VOCAB = 20


def tiny_schema(num_tasks: int = 2, num_domains: int = 3) -> Schema:
    return Schema(
        sparse=[SparseField(name=f"f{i}", vocab_size=VOCAB) for i in range(4)],
        dense=["x0", "x1"],
        domain_names=[f"d{d}" for d in range(num_domains)],
        tasks=[f"t{t}" for t in range(num_tasks)][:num_tasks],
    )


def batch(schema: Schema, n: int = 48, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    domain = torch.arange(n) % schema.num_domains
    return {
        "sparse": torch.randint(0, VOCAB, (n, schema.num_sparse), generator=g),
        "dense": torch.randn(n, schema.num_dense, generator=g),
        "domain": domain,
        "labels": (torch.rand(n, schema.num_tasks, generator=g) < 0.4).float(),
    }


def make_model(arch: dict[str, Any] | Architecture, schema: Schema | None = None, seed: int = 0) -> MDMTModel:
    schema = schema or tiny_schema()
    if not isinstance(arch, Architecture):
        arch = Architecture.model_validate({"embedding_dim": 8, **arch})
    torch.manual_seed(seed)
    return build_model(arch, schema)


def step(
    model: MDMTModel, balancer, b: dict[str, torch.Tensor], step_no: int = 0
) -> tuple[torch.Tensor, BalanceContext]:
    """One training step as the trainer runs it (balancer.backward fills .grad); returns (total, bctx)."""
    ctx = model.make_context(b["sparse"], b["dense"], b["domain"], b["labels"])
    logits = model.forward_context(ctx)
    row = F.binary_cross_entropy_with_logits(logits, b["labels"], reduction="none")
    bctx = BalanceContext(
        model.shared_parameters(),
        list(model.parameters()),
        ctx.embedding,
        b["domain"],
        b["labels"],
        ctx.aux.total_loss(),
        step_no,
    )
    total = balancer.backward(row.mean(0), row, bctx)
    return total, bctx


def train_steps(arch: dict[str, Any], steps: int = 4, schema: Schema | None = None, lr: float = 0.01) -> list[float]:
    schema = schema or tiny_schema()
    model = make_model(arch, schema)
    balancer = build_balancer(model.arch, schema)
    opt = torch.optim.Adam(list(model.parameters()) + [p for p in balancer.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for s in range(steps):
        opt.zero_grad(set_to_none=True)
        total, _ = step(model, balancer, batch(schema, seed=s), s)
        opt.step()
        losses.append(float(total))
    return losses
