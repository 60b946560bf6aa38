"""PMTRec, uncertainty weighting, GradNorm and PCGrad: defining properties and the gradients they leave."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mdmt_nas.builtin.balancers import (
    GradNorm,
    GradNormParams,
    UncertaintyParams,
    UncertaintyWeighting,
    pcgrad,
    task_gradients,
)
from mdmt_nas.builtin.pmtrec import PMTRec, PMTRecParams, focus_and_balance, row_task_weights
from mdmt_nas.components import BalanceContext, Dims
from mdmt_nas.model import build_balancer
from seed_helpers import batch, make_model, step, tiny_schema, train_steps

CESAA = {
    "shared": {"expert": {"name": "mlp", "params": {"hidden": [16]}}, "num": 4},
    "gate": {"name": "noisy_topk", "params": {"k": 2, "mi_weight": 0.05}},
}
MMOE = {
    "shared": {"expert": {"name": "mlp", "params": {"hidden": [16]}}, "num": 3},
    "task": {"expert": {"name": "mlp", "params": {"hidden": [16]}}, "num": 1},
    "gate_scope": ["shared", "task"],
}


def _forward(model, b):
    ctx = model.make_context(b["sparse"], b["dense"], b["domain"], b["labels"])
    row = F.binary_cross_entropy_with_logits(model.forward_context(ctx), b["labels"], reduction="none")
    return ctx, row


def _shared_grad(model) -> torch.Tensor:
    return torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in model.shared_parameters()]
    )


# ----------------------------------------------------------------------------- PMTRec
def test_personalised_row_weights_sum_to_one(schema):
    model = make_model(MMOE, schema)
    ctx, row = _forward(model, batch(schema, n=30))
    w = row_task_weights(row, ctx.embedding)
    assert w.shape == (30, 2) and (w > 0).all()
    assert torch.allclose(w.sum(1), torch.ones(30), atol=1e-6)
    assert w.std(0).max() > 1e-4, "weights should differ between rows"


def test_row_weights_follow_per_row_gradient_norms():
    emb = torch.randn(4, 3, requires_grad=True)
    scale = torch.tensor([[1.0, 3.0], [3.0, 1.0], [1.0, 1.0], [2.0, 0.5]])
    row = torch.stack([(emb * scale[:, :1]).sum(1), (emb * scale[:, 1:]).sum(1)], dim=1)  # |grad| proportional to scale
    w = row_task_weights(row, emb)
    assert (w[0, 1] > w[0, 0]) and (w[1, 0] > w[1, 1])
    small = row_task_weights(row, emb, prefer="small")
    assert small[0, 0] > small[0, 1]


@settings(max_examples=80, deadline=None)
@given(
    T=st.integers(2, 5),
    P=st.integers(1, 12),
    main=st.integers(0, 4),
    seed=st.integers(0, 100_000),
    balance=st.booleans(),
    r=st.floats(0, 1),
)
def test_task_focusing_never_opposes_the_main_task(T, P, main, seed, balance, r):
    main = main % T
    g = torch.randn(T, P, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    running = torch.rand(T, dtype=torch.float64) + 0.1
    new, _, projected = focus_and_balance(g, main, running, focus=True, balance=balance, r=r)
    gm = g[main]
    tol = 1e-9 * float(gm.norm() * g.norm(dim=1).max() + 1)
    for t in range(T):
        assert float(new[t] @ gm) >= -tol
        assert projected[t] == (t != main and float(g[t] @ gm) < 0)
    assert float(new.sum(0) @ gm) >= -tol
    assert torch.equal(new[main], g[main])


@settings(max_examples=60, deadline=None)
@given(
    norms=st.lists(st.floats(0.01, 100.0), min_size=2, max_size=5), r=st.floats(0.05, 1.0), beta=st.floats(0.0, 0.99)
)
def test_gradient_magnitude_balancing_moves_aux_norms_toward_main(norms, r, beta):
    T = len(norms)
    dirs = torch.nn.functional.normalize(torch.rand(T, 6, dtype=torch.float64) + 0.1, dim=1)  # no conflicts
    g = dirs * torch.tensor(norms, dtype=torch.float64)[:, None]
    running = torch.zeros(T, dtype=torch.float64)
    for _ in range(3):  # constant gradients: running norms converge to the true ones
        new, running, _ = focus_and_balance(g, 0, running, focus=False, balance=True, beta=beta, r=r)
    main = norms[0]
    for t in range(1, T):
        before, after = abs(norms[t] - main), abs(float(new[t].norm()) - main)
        assert after <= before + 1e-9
        assert after == pytest.approx((1 - r) * before, rel=1e-6, abs=1e-9)  # exact for constant gradients


@pytest.mark.parametrize("mode", ["reduce", "enlarge"])
def test_gradient_magnitude_balancing_modes_touch_one_side_only(mode):
    g = torch.tensor([[2.0, 0.0], [0.5, 0.5], [3.0, 3.0]], dtype=torch.float64)  # main norm 2; aux below, above
    new, _, _ = focus_and_balance(
        g, 0, torch.zeros(3, dtype=torch.float64), focus=False, balance=True, r=1.0, mode=mode
    )
    norms = new.norm(dim=1)
    if mode == "reduce":
        assert torch.equal(new[1], g[1]) and norms[2] == pytest.approx(2.0)
    else:
        assert torch.equal(new[2], g[2]) and norms[1] == pytest.approx(2.0)


def _pmtrec_grad(schema, params, b, model_seed=0):
    model = make_model(MMOE, schema, seed=model_seed)
    bal = PMTRec(PMTRecParams(**params), Dims(num_tasks=schema.num_tasks, task_names=tuple(schema.tasks)))
    total, bctx = step(model, bal, b)
    return model, bal, total, bctx


@pytest.mark.parametrize("personalize", [False, True])
def test_pmtrec_shared_gradient_never_opposes_the_main_task(schema, personalize):
    for seed in range(4):
        b = batch(schema, n=40, seed=seed)
        model, bal, total, bctx = _pmtrec_grad(schema, {"personalize": personalize, "main_task": 1}, b, model_seed=seed)
        combined = _shared_grad(model)
        # the main task's own gradient on the shared params, from the same weighting
        ctx, row = _forward(model, b)
        w = row_task_weights(row, ctx.embedding) if personalize else torch.full_like(row, 0.5)
        main_loss = 2 * (w[:, 1] * row[:, 1]).sum() / row.shape[0]
        gm = task_gradients([main_loss], model.shared_parameters())[0]
        assert float(combined @ gm) >= -1e-7 * float(combined.norm() * gm.norm())
        assert {"pmtrec.w.t0", "pmtrec.cos.t0", "pmtrec.projected.t0", "pmtrec.grad_norm.t1"} <= set(bctx.metrics)


def test_pmtrec_main_task_by_name_and_errors():
    assert PMTRec(PMTRecParams(main_task="b"), Dims(num_tasks=2, task_names=("a", "b"))).main == 1
    with pytest.raises(Exception, match="unknown task"):
        PMTRec(PMTRecParams(main_task="c"), Dims(num_tasks=2, task_names=("a", "b")))


# ----------------------------------------------------------------------------- PCGrad / GradNorm / uncertainty
@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 100_000), P=st.integers(2, 10))
def test_pcgrad_two_tasks_removes_conflicts(seed, P):
    g = torch.randn(2, P, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out, conflicts = pcgrad(g, torch.Generator().manual_seed(0))
    assert float(out[0] @ g[1]) >= -1e-9 and float(out[1] @ g[0]) >= -1e-9
    assert conflicts == (2 if float(g[0] @ g[1]) < 0 else 0)
    if conflicts == 0:
        assert torch.equal(out, g)


def test_gradnorm_weights_stay_normalised_and_favour_the_small_gradient_task():
    torch.manual_seed(0)
    shared = torch.nn.Parameter(torch.randn(5))
    bal = GradNorm(GradNormParams(alpha=0.0), Dims(num_tasks=2, task_names=("a", "b")))
    opt = torch.optim.SGD([shared, bal.task_weights], lr=0.05)
    for s in range(30):
        opt.zero_grad()
        losses = torch.stack([(shared**2).sum() * 0.1, (shared**2).sum() * 5.0])  # task b: 50x larger gradients
        bctx = BalanceContext(
            [shared],
            [shared],
            shared.detach().unsqueeze(0),
            torch.zeros(1, dtype=torch.long),
            torch.zeros(1, 2),
            None,
            s,
        )
        bal.backward(losses, losses.unsqueeze(0), bctx)
        opt.step()
    w = bal.task_weights.detach()
    w = w * 2 / w.sum()
    assert w[0] > w[1] and math.isclose(float(w.sum()), 2.0, rel_tol=1e-6)
    assert bctx.metrics["gradnorm.w.a"] > bctx.metrics["gradnorm.w.b"]


def test_uncertainty_log_variances_converge_to_log_losses():
    bal = UncertaintyWeighting(UncertaintyParams(), Dims(num_tasks=2, task_names=("a", "b")))
    opt = torch.optim.Adam(bal.parameters(), lr=0.05)
    losses = torch.tensor([0.2, 2.0])
    for _ in range(400):
        opt.zero_grad()
        bal.combine(losses).backward()
        opt.step()
    assert torch.allclose(bal.log_vars.detach(), losses.log(), atol=0.02)


@pytest.mark.parametrize("name", ["pcgrad", "pmtrec", "gradnorm"])
def test_single_task_gradients_equal_plain_backward_with_aux_loss(name):
    """With one task there is nothing to balance: gradient-level balancers leave the equal-weights
    gradients (here with the CESAA auxiliary MI loss, which must reach shared and gate parameters alike)."""
    schema = tiny_schema(num_tasks=1)
    b = batch(schema, n=36)
    grads = {}
    for bal_name in ("equal", name):
        arch = {
            **CESAA,
            "gate": {"name": "noisy_topk", "params": {"k": 2, "mi_weight": 0.05, "noise": False}},
            "balancer": bal_name,
        }
        model = make_model(arch, schema).train()
        step(model, build_balancer(model.arch, schema), b)
        grads[bal_name] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads["equal"].keys() == grads[name].keys()
    for n, g in grads["equal"].items():
        assert torch.allclose(grads[name][n], g, atol=1e-6), n


@pytest.mark.parametrize(
    "name,params", [("pmtrec", {"main_task": "t0"}), ("pcgrad", {}), ("gradnorm", {"alpha": 1.5}), ("uncertainty", {})]
)
def test_balancers_train_a_model_with_finite_loss(name, params):
    losses = train_steps({**CESAA, "balancer": {"name": name, "params": params}}, steps=4)
    assert all(math.isfinite(v) for v in losses)
