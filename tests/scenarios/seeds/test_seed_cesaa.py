"""CESAA: the noisy top-k gate selects exactly k (+ always-on), dispatches rows only to selected
experts, and its mutual-information loss prefers a one-to-one expert-domain assignment."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mdmt_nas.builtin.cesaa import NoisyTopKGate, NoisyTopKParams, joint, mi_loss, mutual_information
from mdmt_nas.components import Context, Dims
from mdmt_nas.errors import ConfigError
from seed_helpers import batch, make_model, tiny_schema, train_steps

D = 3


def ctx_for(n: int, num_tasks: int = 2, seed: int = 0) -> Context:
    g = torch.Generator().manual_seed(seed)
    fields = torch.randn(n, 4, 2, generator=g)
    return Context(
        domain=torch.arange(n) % D,
        fields=fields,
        embedding=fields.flatten(1),
        num_domains=D,
        num_tasks=num_tasks,
        labels=None,
        training=True,
    )


def gate(n_exp: int, k: int, always: int = 0, tasks: int = 2, per_domain: bool = False, **kw) -> NoisyTopKGate:
    return NoisyTopKGate(
        NoisyTopKParams(k=k, num_always_on=always, **kw),
        Dims(in_dim=6, num_experts=n_exp, num_tasks=tasks, num_domains=D, per_domain=per_domain),
    )


@settings(max_examples=40, deadline=None)
@given(
    n_exp=st.integers(2, 10),
    data=st.data(),
    tasks=st.integers(1, 3),
    per_domain=st.booleans(),
    select=st.sampled_from(["task", "row"]),
    noise=st.booleans(),
    training=st.booleans(),
)
def test_exactly_k_plus_always_on_nonzero(n_exp, data, tasks, per_domain, select, noise, training):
    always = data.draw(st.integers(0, n_exp - 1))
    k = data.draw(st.integers(1, n_exp - always))
    torch.manual_seed(0)
    g = gate(n_exp, k, always, tasks, per_domain, select=select, noise=noise)
    g.train(training)
    w = g(torch.randn(17, 6), ctx_for(17, tasks))
    assert w.shape == (17, tasks, n_exp)
    nonzero = w != 0
    assert (nonzero.sum(-1) == k + always).all()
    assert nonzero[..., :always].all(), "always-on experts must be on for every row and head"
    assert torch.allclose(w.sum(-1), torch.ones(17, tasks), atol=1e-6)
    if select == "row":  # one selected set per row, shared by the heads
        assert (nonzero == nonzero[:, :1]).all()


def test_noise_only_in_training_and_off_is_deterministic():
    torch.manual_seed(0)
    h, ctx = torch.randn(32, 6), ctx_for(32)
    quiet = gate(8, 2, noise=False).train()
    assert torch.equal(quiet(h, ctx), quiet(h, ctx))
    noisy = gate(8, 2, noise=True).train()
    assert not torch.equal(noisy.logits(h, ctx), noisy.logits(h, ctx))
    noisy.eval()
    assert torch.equal(noisy(h, ctx), noisy(h, ctx))


def test_invalid_k_names_the_param():
    with pytest.raises(ConfigError, match="k=7"):
        gate(8, 7, always=2)
    with pytest.raises(ConfigError, match="num_always_on"):
        gate(4, 1, always=5)


def _count_rows(model) -> dict[int, int]:
    """Instrument the shared group's banks: rows each expert receives in one forward."""
    counts: dict[int, int] = {}
    runner = model.levels[0].groups["shared"]
    offset = 0
    for bank, c in zip(runner.banks, runner.counts):
        orig, orig_each = bank.forward, bank.forward_each
        inside_each = [False]  # the default forward_each calls forward: count those rows once

        def counted(x, ctx, start=0, stop=None, _orig=orig, _off=offset, _n=bank.num_experts, _inside=inside_each):
            stop = _n if stop is None else stop
            if not _inside[0]:
                for j in range(start, stop):
                    counts[_off + j] = counts.get(_off + j, 0) + int(x.shape[0])
            return _orig(x, ctx, start, stop)

        def counted_each(xs, ctxs, start=0, _orig=orig_each, _off=offset, _inside=inside_each):
            for j, x in enumerate(xs):
                counts[_off + start + j] = counts.get(_off + start + j, 0) + int(x.shape[0])
            _inside[0] = True
            try:
                return _orig(xs, ctxs, start)
            finally:
                _inside[0] = False

        bank.forward, bank.forward_each = counted, counted_each
        offset += c
    return counts


def _capture_gate(model) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    g = model.levels[0].gates["task"]
    orig = g.forward

    def capture(h, ctx):
        w = orig(h, ctx)
        seen.append(w.detach())
        return w

    g.forward = capture
    return seen


@pytest.mark.parametrize("tasks,select", [(1, "task"), (2, "task"), (2, "row")])
def test_unselected_experts_receive_no_rows(tasks, select):
    schema = tiny_schema(num_tasks=tasks)
    arch = {
        "shared": {"expert": {"name": "mlp", "params": {"hidden": [16]}}, "num": 8},
        "gate": {"name": "noisy_topk", "params": {"k": 2, "num_always_on": 1, "select": select}},
    }
    model = make_model(arch, schema).train()
    counts, seen = _count_rows(model), _capture_gate(model)
    b = batch(schema, n=60)
    model(b["sparse"], b["dense"], b["domain"])
    selected = (seen[0] != 0).any(dim=1)  # [B, N]: selected by any head
    for j in range(8):
        assert counts.get(j, 0) == int(selected[:, j].sum()), f"expert {j} ran on rows it was not selected for"
    if tasks == 1 or select == "row":
        assert sum(counts.values()) == 60 * (1 + 2)  # always-on + k per row


def test_compute_grows_with_k_not_pool_size():
    schema = tiny_schema(num_tasks=1)
    rows = {}
    for pool in (8, 16):
        for k in (1, 2, 4):
            arch = {
                "shared": {"expert": {"name": "mlp", "params": {"hidden": [16]}}, "num": pool},
                "gate": {"name": "noisy_topk", "params": {"k": k}},
            }
            model = make_model(arch, schema).train()
            counts = _count_rows(model)
            b = batch(schema, n=50)
            model(b["sparse"], b["dense"], b["domain"])
            rows[pool, k] = sum(counts.values())
    assert all(rows[p, k] == 50 * k for p in (8, 16) for k in (1, 2, 4))


# ----------------------------------------------------------------------------- MI loss
def one_hot_assignment(domain: torch.Tensor, n: int, perm: list[int]) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(perm)[domain], n).float()


@settings(max_examples=60, deadline=None)
@given(d=st.integers(2, 5), n_rows=st.integers(10, 60), seed=st.integers(0, 10_000), sharp=st.floats(0.1, 8.0))
def test_mi_loss_is_minimal_for_one_to_one_assignment(d, n_rows, seed, sharp):
    g = torch.Generator().manual_seed(seed)
    domain = torch.cat([torch.arange(d), torch.randint(0, d, (n_rows - d,), generator=g)])  # every domain present
    perm = torch.randperm(d, generator=g).tolist()
    best = mi_loss(one_hot_assignment(domain, d, perm), domain, d)
    other = torch.softmax(sharp * torch.randn(n_rows, d, generator=g), dim=-1)
    assert best <= mi_loss(other, domain, d) + 1e-6
    # the one-to-one loss is -H(domain) up to the 1e-4 smoothing, and any permutation is as good
    pd = torch.bincount(domain, minlength=d).float() / n_rows
    assert math.isclose(float(best), float((pd * torch.log(pd)).sum()), abs_tol=1e-3)
    assert math.isclose(float(best), float(mi_loss(one_hot_assignment(domain, d, perm[::-1]), domain, d)), abs_tol=1e-6)
    uniform = torch.full((n_rows, d), 1.0 / d)
    assert float(best) < float(mi_loss(uniform, domain, d)) - 1e-3


def test_mutual_information_of_joint():
    domain = torch.tensor([0, 0, 1, 1])
    assert math.isclose(
        float(mutual_information(joint(one_hot_assignment(domain, 2, [0, 1]), domain, 2))), math.log(2), rel_tol=1e-5
    )
    assert float(mutual_information(joint(torch.full((4, 2), 0.5), domain, 2))) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("mi_on", ["weights", "probs"])
def test_mi_gradient_reaches_gate_parameters(mi_on):
    torch.manual_seed(0)
    g = gate(6, 2, always=1, mi_weight=0.1, mi_on=mi_on).train()
    ctx = ctx_for(30)
    g(torch.randn(30, 6), ctx)
    assert set(ctx.aux.losses) == {"cesaa.mi"}
    ctx.aux.losses["cesaa.mi"].backward()
    for name in ("w_gate", "domain_emb.weight"):
        grad = dict(g.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, f"no MI gradient on {name}"


def test_mi_loss_alone_raises_measured_mi():
    torch.manual_seed(0)
    g = gate(6, 2, mi_weight=1.0, noise=False).train()
    h, ctx0 = torch.randn(60, 6), ctx_for(60)
    opt = torch.optim.Adam(g.parameters(), lr=0.05)
    mis = []
    for _ in range(60):
        ctx = Context(
            domain=ctx0.domain, fields=ctx0.fields, embedding=ctx0.embedding, num_domains=D, num_tasks=2, training=True
        )
        g(h, ctx)
        mis.append(ctx.aux.metrics["cesaa.mi"])
        opt.zero_grad()
        ctx.aux.losses["cesaa.mi"].backward()
        opt.step()
    assert mis[-1] > mis[0] + 0.5 and mis[-1] <= math.log(D) + 1e-6


def test_load_metrics_count_dispatched_rows():
    torch.manual_seed(0)
    g = gate(8, 3, always=2, tasks=1).eval()
    ctx = ctx_for(40, num_tasks=1)
    g(torch.randn(40, 6), ctx)
    loads = [ctx.aux.metrics[f"cesaa.load.e{j}"] for j in range(8)]
    assert loads[:2] == [1.0, 1.0]
    assert sum(loads) == pytest.approx(2 + 3)
    assert ctx.aux.metrics["cesaa.mi"] >= 0 and "cesaa.load_cv" in ctx.aux.metrics


def test_trains_in_a_model_with_finite_loss():
    arch = {
        "shared": {"expert": {"name": "mlp", "params": {"hidden": [16]}}, "num": 6},
        "gate": {
            "name": "noisy_topk",
            "params": {"k": 2, "num_always_on": 2, "mi_weight": 0.01, "balance_weight": 0.01},
        },
        "heads": "domain_task",
    }
    losses = train_steps(arch, steps=5)
    assert all(math.isfinite(v) for v in losses)
