"""train.sparse_embedding: the embedding table gets sparse gradients and a sparse-aware optimiser."""

from __future__ import annotations

import math

import pytest
import torch

from mdmt_nas.config import TrainConfig, load_config
from mdmt_nas.errors import ConfigError
from mdmt_nas.model import build_balancer, build_model
from mdmt_nas.train import Trainer


def trainer(tiny_splits, balancer: str = "equal", **cfg):
    arch = load_config("examples/mmoe.yaml").arch
    arch = type(arch).model_validate({**arch.model_dump(), "balancer": {"name": balancer}})
    torch.manual_seed(0)
    model = build_model(arch, tiny_splits.schema)
    return Trainer(
        model, build_balancer(arch, tiny_splits.schema), tiny_splits, TrainConfig(progress=False, lr=1e-2, **cfg)
    )


def test_a_step_touches_only_the_batch_rows(tiny_splits):
    t = trainer(tiny_splits, sparse_embedding=True)
    table = t.model.embedding.weight
    before = table.detach().clone()
    batch = next(iter(tiny_splits.train.batches(64)))
    t.train_step(batch)
    assert table.grad is not None and table.grad.is_sparse
    touched = torch.zeros(table.shape[0], dtype=torch.bool)
    touched[(batch.sparse + t.model.offsets).reshape(-1)] = True
    changed = (table.detach() != before).any(dim=1)
    assert changed[touched].all() and not changed[~touched].any()


def test_dense_and_sparse_tables_train_alike(tiny_splits):
    """One epoch each from the same start: both learn (the sparse optimiser is lazy Adam, so not identical)."""
    aucs = []
    for sparse in (False, True):
        t = trainer(tiny_splits, sparse_embedding=sparse, epochs=3, batch_size=256, patience=0)
        aucs.append(t.fit().valid.mean_auc)
    assert all(math.isfinite(a) and a > 0.55 for a in aucs)
    assert abs(aucs[0] - aucs[1]) < 0.05


def test_gradient_level_balancers_leave_the_sparse_table_out(tiny_splits):
    t = trainer(tiny_splits, balancer="pcgrad", sparse_embedding=True)
    assert all(p is not t.model.embedding.weight for p in t.shared)
    t.train_step(next(iter(tiny_splits.train.batches(64))))
    assert t.model.embedding.weight.grad.is_sparse


def test_gradient_clipping_is_refused(tiny_splits):
    with pytest.raises(ConfigError, match="train.sparse_embedding cannot be combined with train.grad_clip"):
        trainer(tiny_splits, sparse_embedding=True, grad_clip=1.0)
