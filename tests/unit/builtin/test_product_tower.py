"""The `product_tower`: mlp_tower plus a per-head linear term on the pairwise field products. It starts equal to
mlp_tower, its per-(domain, task) heads use each row's own domain's weights (hypothesis against a row-by-row hand
computation), and it fits a label driven by a field pair through the logit directly."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mdmt_nas.builtin.basic import MLPTower, MLPTowerParams
from mdmt_nas.builtin.interactions import ProductTower, ProductTowerParams, group_norms, pair_products
from mdmt_nas.components import Context, Dims
from mdmt_nas.testing import contract_test

test_contract = contract_test(ProductTower)


def _ctx(fields: torch.Tensor, domain: torch.Tensor, num_domains: int, num_tasks: int) -> Context:
    return Context(
        domain=domain, fields=fields, embedding=fields.flatten(1), num_domains=num_domains, num_tasks=num_tasks
    )


@settings(max_examples=30, deadline=None)
@given(
    tasks=st.integers(1, 3),
    domains=st.integers(1, 4),
    per_domain=st.booleans(),
    fields=st.integers(2, 5),
    dim=st.integers(1, 4),
    rows=st.integers(1, 9),
    hidden=st.sampled_from([[], [5]]),
    scale=st.sampled_from([1.0, 0.5, 16.0]),
    seed=st.integers(0, 100),
)
def test_logit_is_the_mlp_towers_plus_the_rows_own_heads_wide_term(
    tasks, domains, per_domain, fields, dim, rows, hidden, scale, seed
):
    torch.manual_seed(seed)
    in_dim = 6
    dims = Dims(
        in_dim=in_dim, num_fields=fields, field_dim=dim, num_domains=domains, num_tasks=tasks, per_domain=per_domain
    )
    tower = ProductTower(ProductTowerParams(hidden=hidden, layernorm=False, scale=scale), dims)
    plain = MLPTower(MLPTowerParams(hidden=hidden, layernorm=False), dims)
    plain.load_state_dict({k: v for k, v in tower.state_dict().items() if k != "wide"})
    h, f = torch.randn(rows, tasks, in_dim), torch.randn(rows, fields, dim)
    domain = torch.randint(0, domains, (rows,))
    ctx = _ctx(f, domain, domains, tasks)
    assert torch.allclose(tower(h, ctx), plain(h, ctx))  # zero wide weights at start: it is mlp_tower
    with torch.no_grad():
        tower.wide.normal_()
    with torch.no_grad():
        got, base = tower(h, ctx), plain(h, ctx)
    p = pair_products(f)
    for r in range(rows):  # hand computation, row by row
        for t in range(tasks):
            head = (int(domain[r]) * tasks + t) if per_domain else t
            assert got[r, t].item() == pytest.approx(
                base[r, t].item() + scale * float(p[r] @ tower.wide[:, head].detach()), abs=1e-4 * max(1.0, scale)
            )


def test_fewer_than_two_fields_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 fields"):
        ProductTower(MLPTowerParams(), Dims(in_dim=4, num_fields=1, field_dim=4, num_tasks=1))


def _pair_label_fit(std: float, steps: int, strength: float = 2.0):
    """Fields of `std` and a logit of <v_0, v_2> only (the tower's input h carries no information):
    returns fit(tower) -> the train loss after `steps` Adam steps."""
    torch.manual_seed(0)
    rows, F_, E = 4096, 4, 6
    f = torch.randn(rows, F_, E)
    target = (f[:, 0] * f[:, 2]).sum(1, keepdim=True)
    y = (torch.rand(rows, 1) < torch.sigmoid(strength * target)).float()
    f = f * std
    h = torch.randn(rows, 1, 8)
    dims = Dims(in_dim=8, num_fields=F_, field_dim=E, num_domains=1, num_tasks=1)
    ctx = _ctx(f, torch.zeros(rows, dtype=torch.long), 1, 1)

    def fit(tower: torch.nn.Module) -> float:
        opt = torch.optim.Adam(tower.parameters(), lr=3e-2)
        for _ in range(steps):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(tower(h, ctx), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.item()

    return fit, dims


def test_it_fits_a_field_pair_label_that_the_mlp_tower_does_not():
    fit, dims = _pair_label_fit(std=1.0, steps=200)
    wide = fit(ProductTower(ProductTowerParams(hidden=[8], scale=1.0), dims))
    plain = fit(MLPTower(MLPTowerParams(hidden=[8]), dims))
    assert wide < plain - 0.1, (wide, plain)


def test_the_scale_lets_the_wide_term_learn_at_the_models_embedding_size():
    """Fields at the model's embedding init (std 0.05): their products are ~0.0025, so in a short training the
    unscaled wide term barely moves the logit, the default scale learns the pair label."""
    fit, dims = _pair_label_fit(std=0.05, steps=300, strength=1.0)
    scaled = fit(ProductTower(ProductTowerParams(hidden=[8]), dims))
    unscaled = fit(ProductTower(ProductTowerParams(hidden=[8], scale=1.0), dims))
    assert scaled < unscaled - 0.05, (scaled, unscaled)


@settings(max_examples=25, deadline=None)
@given(
    tasks=st.integers(1, 3),
    domains=st.integers(1, 3),
    per_domain=st.booleans(),
    fields=st.integers(2, 5),
    dim=st.integers(1, 4),
    scale=st.sampled_from([1.0, 16.0]),
    pair_l1=st.sampled_from([0.0, 1e-3, 0.5]),
    seed=st.integers(0, 100),
)
def test_pair_l1_adds_the_group_lasso_of_the_scaled_wide_weights_in_training_only(
    tasks, domains, per_domain, fields, dim, scale, pair_l1, seed
):
    torch.manual_seed(seed)
    dims = Dims(in_dim=3, num_fields=fields, field_dim=dim, num_domains=domains, num_tasks=tasks, per_domain=per_domain)
    tower = ProductTower(ProductTowerParams(hidden=[], scale=scale, pair_l1=pair_l1), dims)
    with torch.no_grad():
        tower.wide.normal_()
    h, f = torch.randn(4, tasks, 3), torch.randn(4, fields, dim)
    ctx = _ctx(f, torch.randint(0, domains, (4,)), domains, tasks)
    logit = tower(h, ctx)
    expected = sum(  # by hand: one group per (pair, head), the pair's E weights of that head
        float(torch.linalg.vector_norm(scale * tower.wide[p * dim : (p + 1) * dim, head].detach()))
        for p in range(fields * (fields - 1) // 2)
        for head in range(tower.wide.shape[1])
    )
    got = ctx.aux.total_loss()
    if pair_l1 == 0:
        assert got is None
    else:
        assert got.item() == pytest.approx(pair_l1 * expected, rel=1e-4, abs=1e-6)
    tower.eval()
    eval_ctx = _ctx(f, ctx.domain, domains, tasks)
    assert torch.allclose(tower(h, eval_ctx), logit, atol=1e-5)  # the penalty never changes the logit
    assert eval_ctx.aux.total_loss() is None  # and is not added outside training


def test_pair_l1_takes_the_pairs_a_head_does_not_need_back_towards_zero():
    """Two heads, a label driven by <v_0, v_2> for head 0 and by nothing for head 1: with the group lasso the
    wide weight mass outside (pair (0, 2), head 0) is a small share of it; without, the noise keeps far more."""
    torch.manual_seed(0)
    rows, F_, E = 4096, 4, 6
    f = torch.randn(rows, F_, E)
    y0 = torch.rand(rows) < torch.sigmoid(2.0 * (f[:, 0] * f[:, 2]).sum(1))
    y = torch.stack([y0, torch.rand(rows) < 0.3], 1).float()
    h = torch.randn(rows, 2, 8)
    dims = Dims(in_dim=8, num_fields=F_, field_dim=E, num_domains=1, num_tasks=2)
    true_pair = 1  # (0, 2) in row-major pair order

    def noise_share(pair_l1: float) -> float:
        torch.manual_seed(1)
        tower = ProductTower(ProductTowerParams(hidden=[8], scale=1.0, pair_l1=pair_l1), dims)
        opt = torch.optim.Adam(tower.parameters(), lr=3e-2)
        for _ in range(300):
            ctx = _ctx(f, torch.zeros(rows, dtype=torch.long), 1, 2)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(tower(h, ctx), y)
            if ctx.aux.total_loss() is not None:
                loss = loss + ctx.aux.total_loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
        norms = group_norms(tower.wide.detach(), E)  # [P, heads]
        return float((norms.sum() - norms[true_pair, 0]) / norms[true_pair, 0])

    off, on = noise_share(0.0), noise_share(1e-2)
    assert on < 0.5 * off, (on, off)
