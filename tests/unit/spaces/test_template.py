"""The template visitor (spaces/template.py) and the folds over it: resolve, check, relax.

The pinned ids were recorded before the folds moved onto the visitor; they must not change.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdmt_nas.errors import ConfigError
from mdmt_nas.search.darts.relax import _Expander, relax
from mdmt_nas.spaces import load_space_file, parse_space
from mdmt_nas.spaces.template import Placeholders, TemplateVisitor, merge_options, top_fields

SHIPPED = Path(__file__).resolve().parents[3] / "search_spaces"

#: default-point architecture id and supernet id of each shipped space
PINNED = {
    "cesaa": ("50dc3d431e", "73ef195591"),
    "dephn": ("0a500e9ab9", "219716d220"),
    "hamur": ("715cd67ba5", "aa0dff7adc"),
    "m3oe": ("0acda38e7b", "71461a0f2f"),
    "mmoe": ("2457b6a9aa", "e32055410a"),
    "ple": ("b6af2e9cff", "e49551d0a5"),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_spaces_keep_their_default_and_supernet_ids(name):
    space = load_space_file(SHIPPED / f"{name}.yaml")
    assert (space.to_arch(space.default_assignment()).id, relax(space).arch.id) == PINNED[name]


SPACE = {
    "name": "walk",
    "template": {
        "shared": {"expert": {"choice": "expert"}, "num": {"choice": "n"}},
        "$merge": [{"choice": "task"}],
        "tower": {"name": "mlp_tower", "params": {"hidden": [{"choice": "width"}]}},
    },
    "choices": {
        "expert": {"options": ["mlp", {"name": "mlp", "params": {"hidden": [{"choice": "inner"}]}}]},
        "inner": {"low": 4, "high": 8, "step": 4},
        "n": {"low": 1, "high": 2},
        "task": {
            "type": "bool",
            "default": False,
            "when_on": {"task": {"expert": "mlp", "num": {"choice": "tn"}}, "gate_scope": ["shared", "task"]},
        },
        "tn": {"low": 1, "high": 2},
        "width": {"options": [8, 16]},
    },
}


@pytest.fixture(scope="module")
def space():
    return parse_space(SPACE, "walk.yaml")


def test_placeholders_in_template_order_and_transitively(space):
    assert Placeholders(space.choices).visit(space.template) == ["expert", "n", "task", "width"]
    assert Placeholders(space.choices, follow=True).visit(space.template) == [
        "expert",
        "inner",
        "n",
        "task",
        "tn",
        "width",
    ]
    assert Placeholders(space.choices, follow=True, seen=["expert"]).visit(space.template) == [
        "n",
        "task",
        "tn",
        "width",
    ]
    assert Placeholders(space.choices).visit({"no": ["placeholders", 1]}) == []


def test_top_fields_walk_into_merged_options(space):
    fields = [(k, w) for k, _v, w in top_fields(TemplateVisitor(space.choices), space.template, "template")]
    assert fields == [
        ("shared", "template.shared"),
        ("task", "choices.task.when_on.task"),
        ("gate_scope", "choices.task.when_on.gate_scope"),
        ("tower", "template.tower"),
    ]


def test_a_merge_of_something_else_is_an_error_naming_the_path(space):
    walk = TemplateVisitor(space.choices)
    with pytest.raises(ConfigError, match=r"f.yaml: template.\$merge: expected \{choice: NAME\} placeholders, got 3"):
        list(merge_options(walk, [3], "template", "f.yaml"))
    with pytest.raises(ConfigError, match=r"choices.width.options\[0\]: a \$merge choice's value must be a mapping"):
        list(merge_options(walk, {"choice": "width"}, "template", "f.yaml"))
    assert list(merge_options(walk, {"choice": "width"}, "template", strict=False)) == []


def test_the_expansion_holds_every_resolved_point_under_its_condition(space):
    expansions = _Expander(space, {}).full(space.template, ())
    points = list(space.enumerate())
    assert len(points) == space.size() == 36  # (1 + 2 inner) x 2 n x (1 + 2 tn) x 2 width
    for assignment, _arch in points:
        resolved = space._resolve(space.template, space.normalize(assignment, strict=False))
        index = {c.name: c.values().index(assignment[c.name]) for c in space.choices if c.name in assignment}
        assert any(d == resolved and all(index.get(c) == i for c, i in t) for d, t in expansions), assignment


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), name=st.sampled_from(sorted(PINNED)))
def test_a_resolved_point_has_no_placeholder_left(seed, name):
    space = load_space_file(SHIPPED / f"{name}.yaml")
    assignment = space.sample_assignment(random.Random(seed))
    resolved = space._resolve(space.template, space.normalize(assignment))
    assert Placeholders(space.choices).visit(resolved) == []
