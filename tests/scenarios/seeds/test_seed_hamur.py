"""HAMUR: per-row adapter weights from a shared hyper-network; a fixed hyper output is a static
adapter; the adapter wraps several backbones without changing shapes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mdmt_nas.builtin.hamur import HamurParams, HyperAdapter
from mdmt_nas.components import Context, Dims
from seed_helpers import batch, make_model, train_steps

NF, E, DIM, D = 4, 3, 10, 3


def ctx_of(embedding: torch.Tensor, domain: torch.Tensor) -> Context:
    return Context(domain=domain, fields=embedding.view(-1, NF, E), embedding=embedding, num_domains=D, num_tasks=2)


def adapter(**kw) -> HyperAdapter:
    torch.manual_seed(0)
    return HyperAdapter(
        HamurParams(bottleneck=5, k=4, hyper_hidden=[8], **kw),
        Dims(in_dim=DIM, num_fields=NF, field_dim=E, num_domains=D),
    )


def test_rows_of_different_domains_or_embeddings_get_different_weights():
    a = adapter()
    emb = torch.randn(1, NF * E)
    same_emb = ctx_of(emb.expand(2, -1), torch.tensor([0, 2]))
    down, up = a.effective_weights(same_emb)
    assert not torch.allclose(down[0], down[1]) and not torch.allclose(up[0], up[1])
    other_emb = ctx_of(torch.randn(2, NF * E), torch.tensor([1, 1]))
    down, up = a.effective_weights(other_emb)
    assert not torch.allclose(down[0], down[1]) and not torch.allclose(up[0], up[1])
    # without a domain input, identical embeddings give identical adapters
    plain = adapter(domain_dim=0)
    down, _ = plain.effective_weights(same_emb)
    assert torch.allclose(down[0], down[1])


def test_forward_uses_the_effective_per_row_weights():
    a = adapter(norm="none")
    ctx = ctx_of(torch.randn(6, NF * E), torch.arange(6) % D)
    h = torch.randn(6, DIM)
    down, up = a.effective_weights(ctx)
    z = torch.sigmoid(torch.einsum("bi,bij->bj", h, down) + a.b0)
    want = h + a.scale * (torch.einsum("bi,bij->bj", z, up) + a.b1) + a.shift
    assert torch.allclose(a(h, ctx), want, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), norm=st.sampled_from(["layer", "none"]))
def test_fixed_hyper_output_reduces_to_a_static_adapter(seed, norm):
    a = adapter(norm=norm)
    g = torch.Generator().manual_seed(seed)
    H0 = torch.randn(a.k, a.k, generator=g)
    a.hyper = lambda ctx: H0.expand(ctx.batch_size, -1, -1)  # the hyper-network's output, frozen
    # the hand-built static adapter: two nn.Linear layers with W = U H0 V, the same norm and residual
    down, up = torch.nn.Linear(DIM, 5), torch.nn.Linear(5, DIM)
    with torch.no_grad():
        down.weight.copy_((a.u0 @ H0 @ a.v0).t())
        down.bias.copy_(a.b0)
        up.weight.copy_((a.u1 @ H0 @ a.v1).t())
        up.bias.copy_(a.b1)
    h = torch.randn(9, DIM, generator=g)
    u = up(torch.sigmoid(down(h)))
    if norm == "layer":
        u = F.layer_norm(u, (DIM,))
    static = h + a.scale * u + a.shift
    ctx = ctx_of(torch.randn(9, NF * E, generator=g), torch.arange(9) % D)  # embeddings no longer matter
    assert torch.allclose(a(h, ctx), static, atol=1e-5)


def test_batch_norm_variant_uses_batch_statistics():
    a = adapter(norm="batch", init_scale=1.0)
    ctx = ctx_of(torch.randn(16, NF * E), torch.arange(16) % D)
    h = torch.randn(16, DIM)
    delta = a(h, ctx) - h - a.shift
    assert torch.allclose(delta.mean(0), torch.zeros(DIM), atol=1e-5)  # normalised over rows


BACKBONES = {
    "mlp tower": {
        "bottom": {"name": "mlp", "params": {"hidden": [16]}},
        "tower": {"name": "mlp_tower", "params": {"hidden": [8]}},
        "adapter": "hamur",
        "adapter_sites": ["towers"],
    },
    "mmoe expert": {
        "shared": {"expert": {"name": "mlp", "params": {"hidden": [16, 12]}}, "num": 3},
        "adapter": "hamur",
        "adapter_sites": ["experts"],
    },
    "dcn bottom": {
        "bottom": {"name": "cross", "params": {"layers": 3, "out_dim": 16}},
        "adapter": "hamur",
        "adapter_sites": ["bottom"],
    },
}


@pytest.mark.parametrize("name", list(BACKBONES))
def test_wrapping_a_backbone_keeps_shapes(name, schema):
    arch = dict(BACKBONES[name])
    arch["adapter"] = {"name": "hamur", "params": {"bottleneck": 8, "k": 6, "hyper_hidden": [16]}}
    model = make_model(arch, schema)
    adapters = [m for m in model.modules() if isinstance(m, HyperAdapter)]
    assert adapters, "no hamur adapter was built"
    shapes = []
    for a in adapters:
        orig = a.forward

        def spy(h, ctx, _orig=orig):
            out = _orig(h, ctx)
            shapes.append((tuple(h.shape), tuple(out.shape)))
            return out

        a.forward = spy
    b = batch(schema, n=20)
    out = model(b["sparse"], b["dense"], b["domain"])
    assert out.shape == (20, schema.num_tasks)
    assert shapes and all(i == o for i, o in shapes)
    bare = make_model({k: v for k, v in arch.items() if k not in ("adapter", "adapter_sites")}, schema)
    assert bare(b["sparse"], b["dense"], b["domain"]).shape == out.shape
    assert all(math.isfinite(v) for v in train_steps(arch, steps=3, schema=schema))
