"""DEPHN: cross and FINT experts against hand computations, soft input selection, explicit
feature maps in the gate, and the virtual gradient coefficient."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mdmt_nas.builtin.dephn import (
    CrossExpert,
    CrossParams,
    DephnGate,
    DephnGateParams,
    FintExpert,
    FintParams,
    SoftSelection,
    SoftSelectionParams,
)
from mdmt_nas.components import Context, Dims
from seed_helpers import train_steps

D = 2


def ctx_for(fields: torch.Tensor, labels: torch.Tensor | None = None, tasks: int = 2) -> Context:
    n = fields.shape[0]
    return Context(
        domain=torch.arange(n) % D,
        fields=fields,
        embedding=fields.flatten(1),
        num_domains=D,
        num_tasks=tasks,
        labels=labels,
    )


def relu(v: float) -> float:
    return max(v, 0.0)


# ----------------------------------------------------------------------------- cross
@pytest.mark.parametrize("low_rank", [None, 2])
def test_cross_matches_hand_computation(low_rank):
    torch.manual_seed(0)
    d, L, out = 3, 2, 2
    ex = CrossExpert(CrossParams(layers=L, out_dim=out, low_rank=low_rank), Dims(in_dim=d, num_fields=1, field_dim=d))
    with torch.no_grad():
        ex.net.b.normal_()
        ex.net.proj_b.normal_()
    x = torch.randn(2, d)
    got = ex(x, ctx_for(x.view(2, 1, d)))
    net = ex.net
    W = [net.w[0, l].tolist() if low_rank is None else (net.u[0, l] @ net.v[0, l]).tolist() for l in range(L)]
    b, P, pb = net.b[0].tolist(), net.proj_w[0].tolist(), net.proj_b[0].tolist()
    for r in range(2):
        x0 = x[r].tolist()
        xl = list(x0)
        for l in range(L):  # x_{l+1} = x0 * (x_l W_l + b_l) + x_l
            lin = [sum(xl[i] * W[l][i][j] for i in range(d)) + b[l][j] for j in range(d)]
            xl = [x0[j] * lin[j] + xl[j] for j in range(d)]
        want = [relu(sum(xl[i] * P[i][o] for i in range(d)) + pb[o]) for o in range(out)]
        assert got[r].tolist() == pytest.approx(want, abs=1e-5)


def test_cross_bank_ranges_and_per_expert_inputs():
    torch.manual_seed(0)
    bank = CrossExpert.bank(3, CrossParams(layers=2, out_dim=4), Dims(in_dim=5, num_fields=1, field_dim=5))
    x = torch.randn(6, 5)
    ctx = ctx_for(x.view(6, 1, 5))
    full = bank(x, ctx)
    assert full.shape == (6, 3, 4)
    assert torch.allclose(bank(x, ctx, 1, 3), full[:, 1:3], atol=1e-6)
    per = torch.randn(6, 2, 5)
    both = bank(per, ctx, 1, 3)
    assert torch.allclose(both[:, 0], bank(per[:, 0], ctx, 1, 2)[:, 0], atol=1e-6)


# ----------------------------------------------------------------------------- FINT
@pytest.mark.parametrize("skip", [False, True])
def test_fint_matches_hand_computation(skip):
    torch.manual_seed(0)
    F_, E, L, out, in_dim = 3, 2, 2, 2, 4
    ex = FintExpert(FintParams(layers=L, out_dim=out, input_skip=skip), Dims(in_dim=in_dim, num_fields=F_, field_dim=E))
    with torch.no_grad():
        ex.net.u.normal_()
        ex.net.proj_b.normal_()
    fields, x = torch.randn(2, F_, E), torch.randn(2, in_dim)
    got = ex(x, ctx_for(fields))
    net = ex.net
    W, u, P, pb = net.w[0].tolist(), net.u[0].tolist(), net.proj_w[0].tolist(), net.proj_b[0].tolist()
    for r in range(2):
        v0 = fields[r].tolist()
        v = [list(f) for f in v0]
        for l in range(L):  # v_i <- v_i * (sum_j W_ij v0_j) + u_i * v_i
            mix = [[sum(W[l][i][j] * v0[j][e] for j in range(F_)) for e in range(E)] for i in range(F_)]
            v = [[v[i][e] * mix[i][e] + u[l][i] * v[i][e] for e in range(E)] for i in range(F_)]
        flat = [v[i][e] for i in range(F_) for e in range(E)]
        pre = [sum(flat[i] * P[i][o] for i in range(F_ * E)) + pb[o] for o in range(out)]
        if skip:
            S = net.skip_w[0].tolist()
            pre = [pre[o] + sum(x[r, i].item() * S[i][o] for i in range(in_dim)) for o in range(out)]
        assert got[r].tolist() == pytest.approx([relu(p) for p in pre], abs=1e-5)


# ----------------------------------------------------------------------------- soft selection
def test_soft_selection_mixes_attention_and_input():
    torch.manual_seed(0)
    f = torch.randn(5, 4, 6)
    sel = SoftSelection(SoftSelectionParams(heads=2), Dims(in_dim=24, num_fields=4, field_dim=6, num_domains=D))
    with torch.no_grad():
        sel.gate.normal_()
    sa, _ = sel.attn(f, f, f, need_weights=False)
    g = torch.sigmoid(sel.gate)
    assert torch.allclose(sel(f, ctx_for(f)), g * sa + (1 - g) * f, atol=1e-6)
    closed = SoftSelection(
        SoftSelectionParams(heads=2, gate_init=-30.0), Dims(in_dim=24, num_fields=4, field_dim=6, num_domains=D)
    )
    assert torch.allclose(closed(f, ctx_for(f)), f, atol=1e-6)


def test_soft_selection_rejects_bad_heads():
    with pytest.raises(Exception, match="heads"):
        SoftSelection(SoftSelectionParams(heads=4), Dims(in_dim=24, num_fields=4, field_dim=6, num_domains=D))


# ----------------------------------------------------------------------------- gate: maps and virtual gradient
def dephn_gate(vg: bool, tasks: int = 3, n: int = 2, maps=("identity", "sin", "cos"), per_domain=False) -> DephnGate:
    g = DephnGate(
        DephnGateParams(maps=list(maps), virtual_gradient=vg),
        Dims(in_dim=4, num_experts=n, num_tasks=tasks, num_domains=D, per_domain=per_domain),
    )
    with torch.no_grad():
        g.gates.copy_(torch.linspace(-0.9, 1.3, g.gates.numel()).view_as(g.gates) ** 2 - 0.4)
    return g


def test_combine_mixes_explicit_feature_maps():
    g = dephn_gate(False, tasks=2, n=2, maps=("identity", "sin", "cos"))
    cands = torch.randn(3, 2, 5)
    w = g(torch.randn(3, 4), ctx_for(torch.randn(3, 2, 2)))
    assert w.shape == (3, 2, 2)
    G = g.gates[0].view(2, 2, 3)  # [T, N, M]
    want = torch.zeros(3, 2, 5)
    for t in range(2):
        for e in range(2):
            for m, f in enumerate((lambda v: v, torch.sin, torch.cos)):
                want[:, t] += G[t, e, m] * f(cands[:, e])
    assert torch.allclose(g.combine(w, cands), want, atol=1e-6)
    assert torch.allclose(w, G.sum(-1).expand(3, -1, -1))
    per_head = torch.randn(3, 2, 2, 5)
    assert torch.allclose(
        g.combine(w, per_head)[:, 1],
        sum(
            G[1, e, m] * f(per_head[:, 1, e])
            for e in range(2)
            for m, f in enumerate((lambda v: v, torch.sin, torch.cos))
        ),
        atol=1e-6,
    )
    # weights from elsewhere (e.g. mixed by a supernet) combine like a plain gate
    foreign = torch.softmax(torch.randn(3, 2, 2), -1)
    assert torch.allclose(g.combine(foreign, cands), torch.einsum("btn,bnh->bth", foreign, cands), atol=1e-6)


def hand_gamma(G: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """prod_{j != t} 2 |x_jt + y_jt - 1| ** 0.5 for gate values G [T, K]."""
    T, K = G.shape
    corr = np.abs(np.corrcoef(labels.T))
    out = np.ones((T, K))
    for t in range(T):
        for j in range(T):
            if j == t:
                continue
            for k in range(K):
                y = min(1.0, abs(G[t, k] - G[j, k]))
                out[t, k] *= 2 * abs(corr[j, t] + y - 1) ** 0.5
    return out


def test_virtual_gradient_scales_the_gradient_not_the_value():
    labels = torch.tensor(
        [[1, 0, 1], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float
    )
    fields = torch.randn(8, 2, 2)
    cands = torch.randn(8, 2, 5)
    R = torch.randn(8, 3, 5)
    outs, grads = [], []
    for vg in (False, True):
        g = dephn_gate(vg)
        ctx = ctx_for(fields, labels, tasks=3)
        w = g(torch.randn(8, 4), ctx)
        out = g.combine(w, cands)
        (out * R).sum().backward()
        outs.append(out.detach())
        grads.append(g.gates.grad[0].clone())
    assert torch.equal(outs[0], outs[1]), "the virtual gradient must not change the forward value"
    gamma = hand_gamma(
        dephn_gate(False).gates[0].detach().numpy().astype(np.float64), labels.numpy().astype(np.float64)
    )
    assert (np.abs(gamma - 1) > 0.1).sum() >= gamma.size // 2  # the check is not trivial
    assert torch.allclose(grads[1], grads[0] * torch.tensor(gamma, dtype=torch.float), rtol=1e-4, atol=1e-6)


def test_virtual_gradient_coefficient_is_one_without_labels():
    grads = []
    for vg in (False, True):
        g = dephn_gate(vg)
        ctx = ctx_for(torch.randn(4, 2, 2), None, tasks=3)
        g.combine(g(torch.randn(4, 4), ctx), torch.ones(4, 2, 5)).sum().backward()
        grads.append(g.gates.grad.clone())
    assert torch.equal(grads[0], grads[1])


def test_per_domain_gates_follow_the_row_domain():
    g = dephn_gate(True, tasks=2, per_domain=True)
    ctx = ctx_for(torch.randn(4, 2, 2), (torch.rand(4, 2) < 0.5).float())
    w = g(torch.randn(4, 4), ctx)
    G = g.gates.view(D, 2, 2, 3).sum(-1)
    assert torch.allclose(w, G[ctx.domain])


# ----------------------------------------------------------------------------- in a model
DEPHN_LAYOUT = {
    "shared": {"experts": [{"name": "mlp", "params": {"hidden": [16, 8]}}]},
    "task": {
        "experts": [
            {"name": "cross", "params": {"layers": 3, "out_dim": 8}},
            {"name": "fint", "params": {"layers": 2, "out_dim": 8}},
        ]
    },
    "gate_scope": ["shared", "task"],
    "gate": "dephn",
    "input_adapter": {"name": "soft_selection", "params": {"heads": 2}},
}


@pytest.mark.parametrize(
    "arch",
    [
        DEPHN_LAYOUT,
        {
            **DEPHN_LAYOUT,
            "heads": "domain_task",
            "gate": {"name": "dephn", "params": {"normalize": "softmax", "maps": ["identity", "sin"]}},
        },
        {
            "shared": {
                "experts": [
                    {"name": "cross", "params": {"out_dim": 8}},
                    {"name": "fint", "params": {"out_dim": 8}},
                    {"name": "mlp", "params": {"hidden": [8]}},
                ]
            }
        },
    ],
    ids=["paper layout", "per-domain heads", "heterogeneous mmoe"],
)
def test_dephn_models_train_with_finite_loss(arch):
    losses = train_steps(arch, steps=4)
    assert all(math.isfinite(v) for v in losses)
