"""Search spaces: YAML validation errors, size counting with conditional choices,
sampling/enumeration into buildable architectures, the built-in spaces, the CLI."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdmt_nas.arch import Architecture
from mdmt_nas.errors import ConfigError, UnknownComponentError
from mdmt_nas.search.darts.relax import discretize
from mdmt_nas.spaces import Space, auto_labels, load_space, parse_space

ROOT = Path(__file__).resolve().parents[3]

SMALL = """
name: small
description: a small test space
template:
  embedding_dim: 4
  shared: {expert: {choice: expert}, num: {choice: num}}
  $merge: [{choice: task_module}]
  tower: {name: mlp_tower, params: {hidden: [{choice: tower_width}]}}
choices:
  expert:
    options:
      - {label: small, value: {name: mlp, params: {hidden: [8]}}}
      - {label: big, value: {name: mlp, params: {hidden: [16, 8]}}}
  num: {type: int, low: 1, high: 3}
  task_module:
    type: bool
    default: false
    when_on:
      task: {expert: {name: mlp, params: {hidden: [8]}}, num: {choice: task_num}}
      gate_scope: [shared, task]
  task_num: {type: int, low: 1, high: 2}
  tower_width: {options: [4, 8]}
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def small(tmp_path: Path) -> Space:
    return load_space(write(tmp_path, SMALL))


# ------------------------------------------------------------------------------ basics
def test_small_space_choices_parents_and_size(tmp_path):
    s = small(tmp_path)
    assert [c.name for c in s.choices] == ["expert", "num", "task_module", "task_num", "tower_width"]
    assert s.choice("task_num").parent == "task_module" and s.choice("task_num").parent_value is True
    # expert 2 x num 3 x (task off 1 + on 2) x tower 2
    assert s.size() == 2 * 3 * 3 * 2
    pairs = list(s.enumerate())
    assert len(pairs) == s.size()
    assert len({json.dumps(a, sort_keys=True) for a, _ in pairs}) == s.size()
    assert len({arch.id for _, arch in pairs}) == s.size()


def test_to_arch_ignores_inactive_and_requires_active(tmp_path):
    s = small(tmp_path)
    a = {"expert": "big", "num": 2, "task_module": False, "task_num": 2, "tower_width": "8"}
    arch = s.to_arch(a)
    assert arch.task is None and arch.tower.params == {"hidden": [8]}
    assert s.to_arch({k: v for k, v in a.items() if k != "task_num"}).id == arch.id  # inactive: not needed
    with pytest.raises(ConfigError, match="task_num.*not one of"):
        s.to_arch({**a, "task_module": True, "task_num": 5})
    b = dict(a, task_module=True)
    del b["task_num"]
    with pytest.raises(ConfigError, match="no value for the active choice 'task_num'"):
        s.to_arch(b)
    with pytest.raises(ConfigError, match="unknown option 'bgi'.*'big'"):
        s.to_arch({**a, "expert": "bgi"})


def test_active_follows_the_parent_chain(tmp_path):
    s = small(tmp_path)
    assert s.active({"task_module": True}, "task_num")
    assert not s.active({"task_module": False}, "task_num")
    assert not s.active({}, "task_num")
    assert s.active({}, "expert")


def test_labels_are_unique_and_mlflow_safe():
    opts = [
        {"name": "mlp", "params": {"hidden": [64, 32]}},
        {"name": "mlp", "params": {"hidden": [128, 64]}},
        "softmax",
        None,
        3,
    ]
    labels = auto_labels(opts)
    assert labels == ["mlp-hidden64x32", "mlp-hidden128x64", "softmax", "none", "3"]
    import re

    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+", lab) for lab in labels)


def test_discretize_picks_the_argmax_of_active_choices(tmp_path):
    s = small(tmp_path)
    alphas = {
        "expert": torch.tensor([0.1, 0.9]),
        "num": torch.tensor([0.0, 0.0, 2.0]),
        "task_module": torch.tensor([1.0, 0.0]),
        "task_num": torch.tensor([0.0, 5.0]),
    }
    a, arch = discretize(s, alphas)  # tower_width has no alpha: its default
    assert a == {"expert": "big", "num": 3, "task_module": False, "tower_width": "4"}
    assert arch.shared is not None and len(arch.shared.experts) == 3 and arch.task is None
    a2, _ = discretize(s, {**alphas, "task_module": torch.tensor([0.0, 1.0])})
    assert a2["task_module"] is True and a2["task_num"] == 2
    with pytest.raises(ConfigError, match="3 entries"):
        discretize(s, {"expert": torch.zeros(3)})


def test_sampled_and_enumerated_architectures_build(tmp_path, tiny_splits):
    from mdmt_nas.model import build_balancer, build_model

    s = small(tmp_path)
    b = next(iter(tiny_splits.train.batches(16)))
    for _, arch in s.enumerate():
        m = build_model(Architecture.from_json(arch.to_json()), tiny_splits.schema)
        assert m(b.sparse, b.dense, b.domain).shape == (16, tiny_splits.schema.num_tasks)
    rng = random.Random(0)
    for name in ("m3oe", "mmoe", "ple"):
        space = load_space(name)
        for _ in range(3):
            a, arch = space.sample(rng)
            assert space.normalize(a) == a
            m = build_model(arch, tiny_splits.schema)
            build_balancer(arch, tiny_splits.schema)
            assert m(b.sparse, b.dense, b.domain).shape == (16, tiny_splits.schema.num_tasks), a


def test_enumerate_refuses_huge_spaces():
    with pytest.raises(ConfigError, match="more than limit"):
        next(load_space("m3oe").enumerate(limit=1000))


# ------------------------------------------------------------------------------ built-in spaces
def test_builtin_spaces_are_registered_and_load():
    from mdmt_nas.spaces import list_spaces

    names = {n: (plugin, s) for n, plugin, s in list_spaces()}
    assert {"m3oe", "mmoe", "ple"} <= set(names)
    assert names["m3oe"][0] == "spaces"
    assert all(s.size() > 1 for _, s in names.values())


def test_reference_m3oe_is_a_point_of_the_m3oe_space():
    ref = Architecture.load(ROOT / "examples" / "m3oe.yaml")
    space = load_space("m3oe")
    assignment = {
        "input_adapter": "none",
        "bottom": "m3oe_star",
        "shared_module": True,
        "shared_expert": "mlp",
        "shared_num": 4,
        "gate": "softmax",
        "fusion": "weighted",
        "domain_module": True,
        "domain_expert": "mlp",
        "domain_num": 1,
        "domain_fusion": "balance",
        "task_module": True,
        "task_expert": "mlp",
        "task_num": 1,
        "task_fusion": "balance",
        "adapter": "none",
        "tower": "mlp-64",
        "balancer": "equal",
        "domain_feature": True,
        "heads": "domain_task",
        "gate_detach_input": True,
        "dense_input": "raw",
    }
    assert space.to_arch(assignment).id == ref.id
    assert space.to_arch(space.default_assignment()).id == ref.id  # the default point is the reference


def test_mmoe_and_ple_examples_are_points_of_their_spaces():
    for name, assignment in (
        (
            "mmoe",
            {
                "bottom": "none",
                "expert": "mlp-256",
                "num_experts": 6,
                "gate": "softmax",
                "adapter": "none",
                "tower": "mlp-64",
                "balancer": "equal",
            },
        ),
        (
            "ple",
            {
                "shared_expert": "mlp-128",
                "shared_num": 2,
                "task_expert": "mlp-128",
                "task_num": 2,
                "levels": 2,
                "gate": "softmax",
                "tower": "mlp-64",
                "balancer": "equal",
            },
        ),
    ):
        assert load_space(name).to_arch(assignment).id == Architecture.load(ROOT / "examples" / f"{name}.yaml").id


def test_m3oe_space_offers_every_registered_expert_gate_adapter_and_balancer():
    from mdmt_nas.plugins import get_registry

    reg = get_registry()
    text = (ROOT / "search_spaces" / "m3oe.yaml").read_text()
    builtin = {
        e.name
        for kind in ("expert", "gate", "adapter", "balancer")
        for e in reg.entries(kind)
        if e.dist == "mdmt-nas" and not e.name.startswith("darts.")
    }
    missing = sorted(n for n in builtin if n not in text)
    assert not missing, f"m3oe space lacks {missing}"


def test_load_space_unknown_name_suggests():
    with pytest.raises(UnknownComponentError, match="did you mean 'm3oe'"):
        load_space("m3eo")


# ------------------------------------------------------------------------------ validation errors
def test_unknown_component_names_file_path_and_closest(tmp_path):
    p = write(tmp_path, SMALL.replace("{label: big, value: {name: mlp,", "{label: big, value: {name: mpl,"))
    with pytest.raises(UnknownComponentError) as exc:
        load_space(p)
    msg = str(exc.value)
    assert str(p) in msg and "choices.expert.options[1].name" in msg and "'mlp'" in msg


def test_unknown_component_in_template(tmp_path):
    p = write(tmp_path, SMALL.replace("tower: {name: mlp_tower,", "tower: {name: mlp_towr,"))
    with pytest.raises(UnknownComponentError, match=r"template\.tower\.name.*mlp_tower"):
        load_space(p)


def test_bad_component_params_are_reported(tmp_path):
    p = write(tmp_path, SMALL.replace("params: {hidden: [16, 8]}", "params: {hiden: [16, 8]}"))
    with pytest.raises(ConfigError, match=r"choices\.expert\.options\[1\]\.params\.hiden"):
        load_space(p)


@pytest.mark.parametrize(
    "replace,match",
    [
        (("num: {type: int, low: 1, high: 3}", "num: {type: int, low: 3, high: 1}"), "empty range"),
        (("num: {type: int, low: 1, high: 3}", "num: {type: int, low: 1, high: 3, step: 0}"), "step: must be >= 1"),
        (("num: {type: int, low: 1, high: 3}", "num: {type: int, low: 1}"), "needs `low` and `high`"),
        (("tower_width: {options: [4, 8]}", "tower_width: {options: []}"), "at least one option"),
        (("tower_width: {options: [4, 8]}", "tower_width: {options: [4, 4]}"), "duplicate labels"),
        (("tower_width: {options: [4, 8]}", "tower_width: {options: [4, 8], default: 16}"), "default"),
        (("tower_width: {options: [4, 8]}", "tower_width: {options: [4, 8], low: 1}"), "do not apply"),
        (("tower_width: {options: [4, 8]}", "tower_width: {options: [4, 8], colour: red}"), "unknown key"),
        (("{choice: tower_width}", "{choice: tower_wdth}"), "unknown choice 'tower_wdth'.*did you mean 'tower_width'"),
        (
            ("  tower_width: {options: [4, 8]}", "  tower_width: {options: [4, 8]}\n  unused: {options: [1, 2]}"),
            "never used",
        ),
    ],
)
def test_bad_choices_are_config_errors(tmp_path, replace, match):
    p = write(tmp_path, SMALL.replace(*replace))
    with pytest.raises(ConfigError, match=match) as exc:
        load_space(p)
    assert str(p) in str(exc.value)


def test_empty_space_is_an_error(tmp_path):
    p = write(tmp_path, "name: empty\ntemplate: {embedding_dim: 4}\nchoices: {}\n")
    with pytest.raises(ConfigError, match="no choices"):
        load_space(p)


def test_unknown_and_contradictory_parents(tmp_path):
    text = SMALL.replace("  tower_width: {options: [4, 8]}", "  tower_width: {options: [4, 8], parent: task_modul}")
    with pytest.raises(ConfigError, match="unknown choice 'task_modul'.*'task_module'"):
        load_space(write(tmp_path, text, "a.yaml"))
    text = SMALL.replace(
        "  task_num: {type: int, low: 1, high: 2}",
        "  task_num: {type: int, low: 1, high: 2, parent: expert, parent_value: big}",
    )
    with pytest.raises(ConfigError, match="contradicts its placement"):
        load_space(write(tmp_path, text, "b.yaml"))
    text = SMALL.replace(
        "  tower_width: {options: [4, 8]}", "  tower_width: {options: [4, 8], parent: expert, parent_value: huge}"
    )
    with pytest.raises(ConfigError, match="parent_value.*unknown option 'huge'"):
        load_space(write(tmp_path, text, "c.yaml"))


def test_choice_used_under_two_parents_is_contradictory(tmp_path):
    text = SMALL.replace(
        "task: {expert: {name: mlp, params: {hidden: [8]}}, num: {choice: task_num}}",
        "task: {expert: {name: mlp, params: {hidden: [8]}}, num: {choice: num}}",
    )
    with pytest.raises(ConfigError, match="choice 'num' is used under task_module=True here but under the template"):
        load_space(write(tmp_path, text.replace("  task_num: {type: int, low: 1, high: 2}\n", "")))


def test_explicit_parent_of_a_template_choice(tmp_path):
    text = SMALL.replace("  tower_width: {options: [4, 8]}", "  tower_width: {options: [4, 8], parent: task_module}")
    s = load_space(write(tmp_path, text))
    assert s.size() == 2 * 3 * (1 + 2 * 2)
    arch = s.to_arch({"expert": "small", "num": 1, "task_module": False})
    assert arch.tower.params == {"hidden": []}  # the inactive placeholder disappeared from the list


def test_invalid_combination_names_the_space(tmp_path):
    text = SMALL.replace("embedding_dim: 4", "embedding_dim: {choice: emb}").replace(
        "  tower_width:", "  emb: {options: [4, 0]}\n  tower_width:"
    )
    s = load_space(write(tmp_path, text))
    with pytest.raises(ConfigError, match="space 'small'.*embedding_dim"):
        s.to_arch({**s.default_assignment(), "emb": "0"})


# ------------------------------------------------------------------------------ size (hypothesis)
def _tree():
    leaf = st.one_of(st.tuples(st.just("int"), st.integers(1, 3)), st.tuples(st.just("const"), st.integers(1, 9)))
    return st.recursive(
        leaf,
        lambda kids: st.one_of(
            st.tuples(st.just("cat"), st.lists(kids, min_size=1, max_size=3)),
            st.tuples(st.just("bool"), kids),
        ),
        max_leaves=6,
    )


def _build(node, choices: dict, counter: list[int]):
    """A template value for a node: a constant int, or a placeholder of a new choice."""
    kind = node[0]
    if kind == "const":  # distinct constants: a categorical's options must differ
        counter[0] += 1
        return 100 + counter[0]
    name = f"c{counter[0]}"
    counter[0] += 1
    if kind == "int":
        choices[name] = {"type": "int", "low": 1, "high": node[1]}
    elif kind == "cat":
        choices[name] = {
            "options": [{"label": f"o{i}", "value": _build(k, choices, counter)} for i, k in enumerate(node[1])]
        }
    else:
        choices[name] = {"type": "bool", "when_on": _build(node[1], choices, counter), "when_off": 2}
    return {"choice": name}


def _count(node) -> int:
    kind = node[0]
    if kind == "const":
        return 1
    if kind == "int":
        return node[1]
    if kind == "cat":
        return sum(_count(k) for k in node[1])
    return _count(node[1]) + 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_tree(), min_size=1, max_size=3))
def test_size_counts_conditional_choices(roots):
    choices: dict = {}
    counter = [0]
    hidden = [_build(r, choices, counter) for r in roots]
    if not choices:
        choices["extra"] = {"options": [1, 2]}
        hidden.append({"choice": "extra"})
        roots = roots + [("cat", [("const", 1), ("const", 2)])]
    data = {
        "name": "h",
        "template": {"embedding_dim": 4, "tower": {"name": "mlp_tower", "params": {"hidden": hidden}}},
        "choices": choices,
    }
    space = parse_space(data)
    expected = 1
    for r in roots:
        expected *= _count(r)
    assert space.size() == expected
    if expected <= 300:
        pts = list(space.enumerate())
        assert len(pts) == expected
        assert len({json.dumps(a, sort_keys=True) for a, _ in pts}) == expected
    rng = random.Random(0)
    for _ in range(3):
        a, arch = space.sample(rng)
        assert all(space.active(a, space.choice(n)) for n in a)
        assert len(arch.tower.params["hidden"]) == len(hidden)


# ------------------------------------------------------------------------------ CLI
def test_cli_spaces_list_and_show(capsys):
    from mdmt_nas.cli import main

    main(["spaces", "--json"])
    data = json.loads(capsys.readouterr().out)
    by = {s["name"]: s for s in data["spaces"]}
    assert by["m3oe"]["size"] == load_space("m3oe").size() and by["m3oe"]["plugin"] == "spaces"
    main(["spaces", "show", "ple"])
    out = capsys.readouterr().out
    assert "shared_expert" in out and "8,100" in out and "mlp-128" in out
    main(["spaces", "show", "m3oe", "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert {c["name"]: c["parent"] for c in shown["choices"]}["shared_expert"] == "shared_module"


def test_cli_spaces_show_unknown_exits_2(capsys):
    from mdmt_nas.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["spaces", "show", "mmeo"])
    assert exc.value.code == 2
    assert "did you mean 'mmoe'" in capsys.readouterr().err
