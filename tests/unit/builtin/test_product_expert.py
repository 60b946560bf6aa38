"""The `product` expert: pairwise field products against a hand computation, its bank against
single experts, and the reason it exists: it fits a field-pair product that an MLP of the same
size fits poorly."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mdmt_nas.arch import Architecture
from mdmt_nas.builtin.basic import MLPExpert, MLPParams
from mdmt_nas.builtin.interactions import ProductBank, ProductExpert, ProductParams, pair_products
from mdmt_nas.components import Context, Dims
from mdmt_nas.data.schema import Schema, SparseField
from mdmt_nas.model import build_model
from mdmt_nas.testing import contract_test

test_contract = contract_test(ProductExpert)


def ctx_for(fields: torch.Tensor) -> Context:
    n = fields.shape[0]
    return Context(
        domain=torch.zeros(n, dtype=torch.long), fields=fields, embedding=fields.flatten(1), num_domains=1, num_tasks=1
    )


@pytest.mark.parametrize(("skip", "act"), [(False, "none"), (True, "none"), (False, "relu")])
def test_product_matches_hand_computation(skip, act):
    torch.manual_seed(0)
    F_, E, out, in_dim = 4, 3, 2, 5
    ex = ProductExpert(
        ProductParams(out_dim=out, input_skip=skip, out_activation=act), Dims(in_dim=in_dim, num_fields=F_, field_dim=E)
    )
    with torch.no_grad():
        ex.net.b.normal_()
    fields, x = torch.randn(3, F_, E), torch.randn(3, in_dim)
    got = ex(x, ctx_for(fields))
    W, b = ex.net.w[0].tolist(), ex.net.b[0].tolist()
    for r in range(3):
        v = fields[r].tolist()
        flat = [v[i][e] * v[j][e] for i, j in itertools.combinations(range(F_), 2) for e in range(E)]
        pre = [sum(flat[k] * W[k][o] for k in range(len(flat))) + b[o] for o in range(out)]
        if skip:
            S = ex.net.skip_w[0].tolist()
            pre = [pre[o] + sum(x[r, i].item() * S[i][o] for i in range(in_dim)) for o in range(out)]
        want = [max(p, 0.0) for p in pre] if act == "relu" else pre
        assert got[r].tolist() == pytest.approx(want, abs=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 4),
    fields=st.integers(2, 6),
    dim=st.integers(1, 5),
    rows=st.integers(1, 7),
    skip=st.booleans(),
    per_expert=st.booleans(),
)
def test_a_bank_equals_its_experts_one_by_one(n, fields, dim, rows, skip, per_expert):
    torch.manual_seed(n * 100 + fields)
    dims = Dims(in_dim=3, num_fields=fields, field_dim=dim)
    bank = ProductExpert.bank(n, ProductParams(out_dim=4, input_skip=skip), dims)
    f = torch.randn(rows, fields, dim)
    x = torch.randn(rows, n, 3) if per_expert else torch.randn(rows, 3)
    full = bank(x, ctx_for(f))
    assert full.shape == (rows, n, 4)
    assert pair_products(f).shape == (rows, fields * (fields - 1) // 2 * dim)
    for k in range(n):
        xk = x[:, k : k + 1] if per_expert else x
        assert torch.allclose(bank(xk, ctx_for(f), k, k + 1)[:, 0], full[:, k], atol=1e-5)


def test_fewer_than_two_fields_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 fields"):
        ProductExpert(ProductParams(), Dims(in_dim=4, num_fields=1, field_dim=4))


def _fit(expert: torch.nn.Module, fields: torch.Tensor, target: torch.Tensor, steps: int = 300) -> float:
    opt = torch.optim.Adam(expert.parameters(), lr=1e-2)
    head = torch.nn.Linear(expert.out_dim, 1)
    opt.add_param_group({"params": head.parameters()})
    ctx = ctx_for(fields)
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(head(expert(fields.flatten(1), ctx)).squeeze(1), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


def test_it_fits_a_field_pair_product_that_an_mlp_of_the_same_size_does_not():
    """Why the expert exists: a label driven by <v_1, v_3> (a weighted inner product of two fields)."""
    torch.manual_seed(0)
    F_, E = 4, 8
    fields = torch.randn(2048, F_, E)
    target = (fields[:, 1] * fields[:, 3] * torch.linspace(-1, 1, E)).sum(1)
    dims = Dims(in_dim=F_ * E, num_fields=F_, field_dim=E)
    product = ProductExpert(ProductParams(out_dim=16), dims)
    n_params = sum(p.numel() for p in product.parameters())
    mlp = MLPExpert(MLPParams(hidden=[n_params // (F_ * E + 17), 16], layernorm=False), dims)
    assert sum(p.numel() for p in mlp.parameters()) <= 1.2 * n_params
    var = float(target.var())
    product_mse, mlp_mse = _fit(product, fields, target), _fit(mlp, fields, target)
    assert product_mse < 0.05 * var
    assert mlp_mse > 4 * product_mse


def test_a_model_with_product_experts_on_the_task_path_trains():
    schema = Schema(
        sparse=[SparseField(name=f"f{i}", vocab_size=20) for i in range(4)],
        dense=["x0"],
        domain_names=["d0", "d1"],
        tasks=["t0", "t1"],
    )
    arch = Architecture.model_validate(
        {
            "embedding_dim": 8,
            "shared": {"expert": {"name": "mlp", "params": {"hidden": [16]}}, "num": 2},
            "task": {"expert": {"name": "product", "params": {"out_dim": 16}}, "num": 1, "fusion": "own"},
            "gate": "softmax",
            "gate_scope": ["shared"],
            "fusion": "sum",
            "heads": "task",
        }
    )
    torch.manual_seed(0)
    model = build_model(arch, schema)
    sparse, dense = torch.randint(0, 20, (32, 4)), torch.randn(32, 1)
    domain, labels = torch.arange(32) % 2, (torch.rand(32, 2) < 0.5).float()
    logits = model(sparse, dense, domain)
    assert logits.shape == (32, 2) and torch.isfinite(logits).all()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    loss.backward()
    banks = [m for m in model.modules() if isinstance(m, ProductBank)]
    assert len(banks) == 1 and banks[0].num_experts == 2  # one product expert per task
    assert banks[0].net.w.grad is not None and (banks[0].net.w.grad.abs().sum(dim=(1, 2)) > 0).all()
