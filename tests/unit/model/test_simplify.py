"""Inert fusion choices: simplify() gives every spelling of one model one id, and the simpler model computes the
same function (the original's extra fusion parameters, whatever their values, change nothing)."""

from __future__ import annotations

import functools
import random

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mdmt_nas.data.schema import Schema, SparseField
from mdmt_nas.model import build_model
from mdmt_nas.model.simplify import simplify
from mdmt_nas.spaces import load_space


def schema(domains: int, tasks: int) -> Schema:
    return Schema(
        sparse=[SparseField(name=f"f{i}", vocab_size=30) for i in range(3)],
        dense=["x"],
        domain_names=[f"d{i}" for i in range(domains)],
        tasks=[f"t{i}" for i in range(tasks)],
    )


def batch(n: int, domains: int):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 30, (n, 3), generator=g), torch.randn(n, 1, generator=g), torch.randint(0, domains, (n,), generator=g)


@given(seed=st.integers(0, 100_000), domains=st.sampled_from([1, 3]), tasks=st.sampled_from([1, 2]))
@settings(max_examples=30, deadline=None)
def test_the_simplified_architecture_is_the_same_function(seed, domains, tasks):
    sch = schema(domains, tasks)
    _, arch = load_space("m3oe").sample(random.Random(seed))
    simple = simplify(arch, sch)
    torch.manual_seed(0)
    model = build_model(arch, sch).eval()
    other = build_model(simple, sch).eval()
    missing, unexpected = other.load_state_dict(model.state_dict(), strict=False)
    assert not missing, "the simpler model has parameters the original lacks"
    assert all("fusion" in k for k in unexpected), unexpected  # only the dropped fusions' own parameters
    with torch.no_grad():  # the dropped parameters are inert: any value gives the same output
        for name, p in model.named_parameters():
            if name in unexpected:
                p.normal_()
        x = batch(16, domains)
        torch.testing.assert_close(other(*x), model(*x), rtol=1e-5, atol=1e-5)
    assert simplify(simple, sch) == simple  # idempotent
    if simple != arch:
        assert simple.id != arch.id and sum(p.numel() for p in other.parameters()) <= sum(p.numel() for p in model.parameters())


def test_spellings_of_one_model_share_an_id():
    """The TPE case seen on ML-100K: without common experts, a task group's level-2 fusion `gated` (softmax over
    one part) is `sum`; with common experts only, `weighted` and `gated` are `sum` too."""
    sch = schema(3, 2)
    space = load_space("m3oe")
    bound = space.simplified_by(functools.partial(simplify, schema=sch))
    base = space.default_assignment() | {"shared_module": False, "domain_module": False, "task_module": True}
    ids = {bound.to_arch(base | {"fusion_no_shared": f}).id for f in ("sum", "gated")}
    assert len(ids) == 1
    assert len({space.to_arch(base | {"fusion_no_shared": f}).id for f in ("sum", "gated")}) == 2  # unbound: as written
    mmoe = space.default_assignment() | {"shared_module": True, "domain_module": False, "task_module": False}
    assert len({bound.to_arch(mmoe | {"fusion": f}).id for f in ("sum", "gated", "weighted")}) == 1
    full = space.default_assignment() | {"shared_module": True, "domain_module": True, "task_module": True}
    assert len({bound.to_arch(full | {"fusion": f}).id for f in ("sum", "gated", "weighted")}) == 3  # not inert there
