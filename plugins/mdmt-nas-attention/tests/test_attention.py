"""The attention plugin: contract kit, registration, and the behaviour each component promises."""

from importlib.metadata import entry_points

import mdmt_nas_attention
import pytest
import torch
from mdmt_nas_attention import AnnealedSoftmaxGate, PartAttentionFusion
from pydantic import ValidationError

from mdmt_nas.components import Dims
from mdmt_nas.testing import contract_test, make_context

test_part_attention_contract = contract_test(PartAttentionFusion)
test_part_attention_plain_contract = contract_test(
    PartAttentionFusion, params={"per_domain": False, "scale_by_parts": False}
)
test_annealed_softmax_contract = contract_test(AnnealedSoftmaxGate)


def test_entry_point_is_installed():
    eps = {ep.name: ep for ep in entry_points(group="mdmt_nas")}
    assert eps["attention"].value == "mdmt_nas_attention"


def test_registers_through_the_hooks(mdmt_plugin_host):
    host = mdmt_plugin_host(attention=mdmt_nas_attention)
    assert not host.failures
    assert host.registry.get("fusion", "part_attention") is PartAttentionFusion
    assert host.registry.get("gate", "annealed_softmax") is AnnealedSoftmaxGate


def test_temperature_anneals_with_training_steps_only():
    gate = AnnealedSoftmaxGate(
        AnnealedSoftmaxGate.Params(t_start=2.0, t_end=0.5, anneal_steps=4),
        Dims(in_dim=8, num_experts=3, num_tasks=2, num_domains=3),
    )
    ctx = make_context(5)
    h = torch.randn(5, 8)
    gate.eval()
    gate(h, ctx)
    assert float(gate.temperature()) == pytest.approx(2.0)  # eval does not count
    gate.train()
    first = gate(h, ctx)
    for _ in range(10):
        last = gate(h, ctx)
    assert float(gate.temperature()) == pytest.approx(0.5)
    assert ctx.aux.metrics["gate_temperature"] == pytest.approx(0.5)
    # a colder softmax is sharper
    assert last.max(-1).values.mean() > first.max(-1).values.mean()
    assert "step" in gate.state_dict()  # resumes where it stopped


def test_params_reject_a_rising_temperature():
    with pytest.raises(ValidationError, match="t_end"):
        AnnealedSoftmaxGate.Params(t_start=0.5, t_end=2.0)


def test_attention_weights_depend_on_the_row():
    torch.manual_seed(0)
    fusion = PartAttentionFusion(
        PartAttentionFusion.Params(scale_by_parts=False),
        Dims(in_dim=8, members=("shared", "domain", "task"), num_tasks=2, num_domains=3),
    )
    parts = {p: torch.randn(4, 2, 8) for p in fusion.members}
    out = fusion(parts, make_context(4))
    stacked = torch.stack([parts[p] for p in fusion.members], dim=2)
    # a convex combination of the parts per row and head, not one fixed weighting
    uniform = stacked.mean(2)
    assert out.shape == (4, 2, 8) and not torch.allclose(out, uniform)
