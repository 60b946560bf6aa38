"""The architecture spec: validation, JSON round trip, stable ids, summaries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mdmt_nas.arch import Architecture
from mdmt_nas.config import load_config

EXPERT = st.fixed_dictionaries(
    {
        "name": st.just("mlp"),
        "params": st.fixed_dictionaries(
            {"hidden": st.lists(st.sampled_from([8, 16]), min_size=1, max_size=2).map(lambda h: h[:-1] + [8])}
        ),
    }
)


@st.composite
def architectures(draw):
    data = {"embedding_dim": draw(st.sampled_from([4, 8]))}
    groups = draw(st.sets(st.sampled_from(["shared", "domain", "task"])))
    for g in groups:
        data[g] = {"expert": draw(EXPERT), "num": draw(st.integers(1, 3))}
        if g != "shared":
            data[g]["fusion"] = draw(st.sampled_from(["own", "mean", "balance"]))
    if "shared" in groups:
        scope = ["shared"] + [g for g in ("domain", "task") if g in groups and draw(st.booleans())]
        data["gate_scope"] = scope
        data["gate"] = draw(st.sampled_from(["softmax", "uniform"]))
    if draw(st.booleans()):
        data["bottom"] = {"name": "mlp", "params": {"hidden": [16]}}
    data["heads"] = draw(st.sampled_from(["task", "domain_task"]))
    data["fusion"] = draw(st.sampled_from(["sum", "gated", "weighted"]))
    return Architecture.model_validate(data)


@settings(max_examples=40, deadline=None)
@given(architectures())
def test_json_round_trip_preserves_spec_and_id(arch):
    again = Architecture.from_json(arch.to_json())
    assert again == arch
    assert again.id == arch.id
    assert len(arch.id) == 10


def test_id_ignores_name_but_not_structure():
    a = Architecture(name="x", shared={"expert": "mlp", "num": 2})
    b = Architecture(name="y", shared={"expert": "mlp", "num": 2})
    c = Architecture(name="x", shared={"expert": "mlp", "num": 3})
    assert a.id == b.id
    assert a.id != c.id


def test_shorthand_expands_to_expert_list():
    a = Architecture(shared={"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 3})
    assert len(a.shared.experts) == 3 and all(e.name == "mlp" for e in a.shared.experts)


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"gate_scope": ["task"]}, "no 'task' expert group"),
        ({"shared": {"expert": "mlp"}, "gate_scope": []}, "must be in gate_scope"),
        ({"adapter": "bottleneck"}, "adapter_sites is empty"),
        ({"adapter_sites": ["towers"]}, "no adapter is given"),
        ({"shared": {"expert": "mlp", "num": 0}}, "positive integer"),
        ({"levels": 2, "shared": {"expert": "mlp"}}, "levels > 1"),
        ({"embedding_dim": -1}, "greater than or equal to 1"),
    ],
)
def test_contradictory_wiring_is_rejected(data, needle):
    with pytest.raises(ValidationError) as exc:
        Architecture.model_validate(data)
    assert needle in str(exc.value)


def test_summary_names_components():
    arch = load_config("examples/m3oe.yaml").arch
    text = arch.summary()
    for word in ("m3oe_star", "4x mlp", "balance", "weighted", "softmax", "stop-gradient", "domain x task"):
        assert word in text


def test_summary_of_an_ungated_architecture_says_so():
    """The derived DARTS architectures often fuse every group by level-1 fusion: no 'over ,' line."""
    data = load_config("examples/m3oe.yaml").arch.model_dump(mode="json")
    data["gate_scope"] = []
    data["shared"] = None
    data["task"] = None
    text = Architecture.model_validate(data).summary()
    assert "gate       none (no expert group in gate_scope" in text and "over ," not in text
    assert "softmax over shared" in load_config("examples/m3oe.yaml").arch.summary()
