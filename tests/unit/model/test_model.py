"""Model assembly: shapes, routing invariants, batched experts, every baseline builds."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mdmt_nas.arch import Architecture
from mdmt_nas.builtin.basic import MLPExpert, MLPParams, StackedMLP
from mdmt_nas.components import Dims
from mdmt_nas.config import load_config
from mdmt_nas.data.schema import Schema, SparseField
from mdmt_nas.model import build_model
from mdmt_nas.routing import DomainRouting, masked_reference

SCHEMA = Schema(
    sparse=[SparseField(name=f"f{i}", vocab_size=30) for i in range(3)],
    dense=["x"],
    domain_names=["a", "b", "c"],
    tasks=["click", "like"],
)
EXAMPLES = ["shared_bottom", "mmoe", "ple", "star", "m3oe"]


def batch(n: int, seed: int = 0, domains: list[int] | None = None):
    g = torch.Generator().manual_seed(seed)
    sparse = torch.randint(0, 30, (n, 3), generator=g)
    dense = torch.randn(n, 1, generator=g)
    pool = torch.tensor(domains if domains is not None else [0, 1, 2])
    domain = pool[torch.randint(0, len(pool), (n,), generator=g)]
    return sparse, dense, domain


def small(arch: Architecture) -> Architecture:
    """The same wiring with small layers, so property tests stay fast."""
    data = arch.model_dump()

    def shrink(spec):
        if spec and spec.get("name") in ("mlp", "star"):
            spec["params"]["hidden"] = [16, 8]
        if spec and spec.get("name") == "m3oe_star":
            spec["params"].update(star_dim=16, out_dim=8)
        return spec

    data["bottom"] = shrink(data["bottom"])
    for g in ("shared", "domain", "task"):
        if data[g]:
            data[g]["experts"] = [shrink(e) for e in data[g]["experts"]]
    return Architecture.model_validate(data)


@pytest.fixture(scope="module", params=EXAMPLES)
def example_model(request):
    torch.manual_seed(0)
    arch = small(load_config(f"examples/{request.param}.yaml").arch)
    return build_model(arch, SCHEMA).eval()


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 64), seed=st.integers(0, 1000))
def test_every_baseline_outputs_one_logit_per_task(example_model, n, seed):
    out = example_model(*batch(n, seed))
    assert out.shape == (n, 2) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 40), seed=st.integers(0, 1000))
def test_rows_are_scored_independently_of_their_batch(example_model, n, seed):
    """Routing must not mix rows: scoring a batch equals scoring each domain's rows alone."""
    sparse, dense, domain = batch(n, seed)
    full = example_model(sparse, dense, domain)
    for d in range(3):
        idx = torch.nonzero(domain == d).squeeze(1)
        if idx.numel():
            alone = example_model(sparse[idx], dense[idx], domain[idx])
            torch.testing.assert_close(full[idx], alone, rtol=1e-4, atol=1e-5)


def test_batch_with_a_domain_missing(example_model):
    out = example_model(*batch(9, 3, domains=[0, 2]))
    assert out.shape == (9, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", EXAMPLES)
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(small(load_config(f"examples/{name}.yaml").arch), SCHEMA)
    model(*batch(64, 1)).sum().backward()
    missing = [
        n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert not missing, f"no gradient reached {missing}"


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 33), k=st.integers(1, 5), seed=st.integers(0, 99))
def test_stacked_bank_equals_separate_experts(n, k, seed):
    """Experts evaluated together (one GEMM + batched matmul) match each expert run alone."""
    torch.manual_seed(seed)
    params = MLPParams(hidden=[12, 5])
    bank = StackedMLP(k, 7, params)
    x = torch.randn(n, 7)
    together = bank(x)
    for j in range(k):
        torch.testing.assert_close(together[:, j : j + 1], bank(x, j, j + 1), rtol=1e-5, atol=1e-6)
    per_expert_inputs = torch.randn(n, k, 7)
    alone = torch.stack([bank(per_expert_inputs[:, j], j, j + 1)[:, 0] for j in range(k)], 1)
    torch.testing.assert_close(bank(per_expert_inputs), alone, rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 50), seed=st.integers(0, 99))
def test_routing_equals_reference_masking(n, seed):
    """Gather-compute-scatter per domain gives what the reference's mask-after computes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    domain = torch.randint(0, 3, (n,), generator=g)
    w = torch.randn(3, 4, 5, generator=g)
    b = torch.randn(3, 5, generator=g)
    routed = DomainRouting(domain, 3).grouped_linear(x, w, b)
    masked = masked_reference(x, domain, 3, lambda d, xs: xs @ w[d] + b[d])
    torch.testing.assert_close(routed, masked)


def test_domain_branches_see_only_their_rows():
    """A per-domain branch is called with its domain's rows only (no compute-then-mask)."""
    domain = torch.tensor([0, 2, 2, 0, 2])
    seen: dict[int, list[float]] = {}

    def branch(d, xs, idx):
        seen[d] = xs.squeeze(1).tolist()
        return xs * (d + 1)

    out = DomainRouting(domain, 3).apply(torch.arange(5.0).unsqueeze(1), branch)
    assert seen == {0: [0.0, 3.0], 1: [], 2: [1.0, 2.0, 4.0]}
    assert out.squeeze(1).tolist() == [0.0, 3.0, 6.0, 3.0, 12.0]


def test_mlp_expert_matches_hand_computation():
    torch.manual_seed(0)
    e = MLPExpert(MLPParams(hidden=[3], layernorm=False), Dims(in_dim=2, num_fields=1, field_dim=1))
    x = torch.tensor([[1.0, -2.0]])
    w, b = e.mlp.weights[0][0], e.mlp.biases[0][0]
    torch.testing.assert_close(e(x, None), torch.relu(x @ w + b))


def test_arch_parameters_are_separated_from_weights():
    model = build_model(small(load_config("examples/m3oe.yaml").arch), SCHEMA)
    names = {n for n, p in model.named_parameters() if any(p is q for q in model.arch_parameters())}
    assert names == {
        "group_fusion.domain.arch_b",
        "group_fusion.task.arch_b",
        "fusion.arch_a_domain",
        "fusion.arch_a_task",
    }
    assert len(model.weight_parameters()) + 4 == len(list(model.parameters()))


def test_raw_dense_values_are_appended_to_the_flat_input():
    arch = small(load_config("examples/mmoe.yaml").arch).model_copy(update={"dense_input": "raw"})
    model = build_model(arch, SCHEMA)
    sparse, dense, domain = batch(8, 2)
    ctx = model.make_context(sparse, dense, domain)
    E = arch.embedding_dim
    assert ctx.fields.shape == (8, 4, E)  # 3 sparse fields + the domain; no dense field
    assert ctx.embedding.shape == (8, 4 * E + 1)
    torch.testing.assert_close(ctx.embedding[:, -1:], dense)
    assert model.dense_proj is None and "dense_proj" not in dict(model.named_parameters())
    out = model(sparse, dense, domain)
    assert not torch.allclose(out, model(sparse, dense + 1.0, domain))  # the values reach the experts


def test_dense_input_default_keeps_architecture_ids():
    arch = load_config("examples/mmoe.yaml").arch
    assert arch.model_copy(update={"dense_input": "project"}).id == arch.id
    assert Architecture.model_validate({**arch.model_dump(), "dense_input": "raw"}).id != arch.id


def test_field_wise_components_work_with_raw_dense():
    for name in ("hamur_mlp", "dephn"):
        arch = load_config(f"examples/{name}.yaml").arch
        arch = Architecture.model_validate({**arch.model_dump(), "dense_input": "raw"})
        out = build_model(arch, SCHEMA)(*batch(16, 4))
        assert out.shape == (16, 2) and torch.isfinite(out).all()


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 60),
    d_in=st.integers(1, 12),
    star=st.integers(1, 24),
    out=st.integers(1, 10),
    seed=st.integers(0, 99),
)
def test_m3oe_star_composed_maps_equal_the_two_layers(n, d_in, star, out, seed):
    """M3oEStar composes its linear star layer with star_mlp's Linear when that is cheaper: the same
    outputs and gradients (up to rounding) as running the two layers."""
    from mdmt_nas.builtin.m3oe import M3oEStar, M3oEStarParams
    from mdmt_nas.components import Context, Dims

    torch.manual_seed(seed)
    star_ = M3oEStar(
        M3oEStarParams(star_dim=star, out_dim=out), Dims(in_dim=d_in, num_fields=1, field_dim=d_in, num_domains=3)
    )
    x = torch.randn(n, d_in)
    domain = torch.sort(torch.randint(0, 3, (n,)))[0]
    results = []
    for compose in (True, False):
        star_.compose = lambda rows, c=compose: c  # force each path
        star_.zero_grad()
        xx = x.clone().requires_grad_()
        ctx = Context(domain=domain, fields=xx.view(n, 1, d_in), embedding=xx, num_domains=3, num_tasks=1)
        y = star_(xx, ctx)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results.append((y.detach(), xx.grad, [p.grad.clone() for p in star_.parameters()]))
    (y1, gx1, gp1), (y2, gx2, gp2) = results
    torch.testing.assert_close(y1, y2, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gx1, gx2, rtol=1e-4, atol=1e-4)
    for a, b in zip(gp1, gp2):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_m3oe_star_composes_only_when_cheaper():
    from mdmt_nas.builtin.m3oe import M3oEStar, M3oEStarParams
    from mdmt_nas.components import Dims

    star_ = M3oEStar(
        M3oEStarParams(star_dim=512, out_dim=256), Dims(in_dim=113, num_fields=7, field_dim=16, num_domains=3)
    )
    assert star_.compose(4096) and not star_.compose(
        1
    )  # the reference M3oE's sizes: break-even near 278 rows for 3 domains
    assert star_.compose(279) and not star_.compose(277)


@settings(max_examples=25, deadline=None)
@given(M=st.integers(1, 5), n=st.integers(1, 9), init=st.floats(-3, 3), seed=st.integers(0, 99))
def test_m3oe_balance_and_weighted_fusions_follow_the_reference_formulas(M, n, init, seed):
    """balance: member i = b E_i + (1 - b) / (M - 1) sum_{j != i} E_j; weighted: shared + a_d domain + a_t task."""
    from mdmt_nas.builtin.m3oe import BalanceFusion, BalanceParams, WeightedFusion, WeightedParams
    from mdmt_nas.components import Dims

    torch.manual_seed(seed)
    x = torch.randn(n, M, 6)
    f = BalanceFusion(BalanceParams(init=init), Dims(in_dim=6, members=M))
    b = torch.sigmoid(torch.tensor(init))
    want = x if M == 1 else torch.stack([b * x[:, i] + (1 - b) / (M - 1) * (x.sum(1) - x[:, i]) for i in range(M)], 1)
    torch.testing.assert_close(f(x, None), want, rtol=1e-5, atol=1e-5)
    parts = {
        "shared": torch.randn(n, 2, 6),
        "domain": torch.randn(n, 1, 6).expand(-1, 2, -1),
        "task": torch.randn(n, 2, 6),
    }
    w = WeightedFusion(WeightedParams(init_domain=init, init_task=-init), Dims(in_dim=6, members=list(parts)))
    want = parts["shared"] + b * parts["domain"] + torch.sigmoid(torch.tensor(-init)) * parts["task"]
    torch.testing.assert_close(w(parts, None), want, rtol=1e-5, atol=1e-5)
