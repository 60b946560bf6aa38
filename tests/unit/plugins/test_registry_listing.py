"""Registry conveniences: shell-style pattern listing and deprecated names of renamed components."""

from __future__ import annotations

import json
import types
import warnings

import pytest
from helpers import run_cli
from hypothesis import given
from hypothesis import strategies as st
from plugin_helpers import make_dist

from mdmt_nas.arch import Architecture
from mdmt_nas.components import Gate
from mdmt_nas.errors import DeprecatedNameWarning, DuplicateComponentError, UnknownComponentError
from mdmt_nas.plugins import PluginHost, hookimpl, list_components
from mdmt_nas.plugins.registry import KINDS, Registry, matches


def _renamed_gate(new: str = "renamed_softmax") -> type[Gate]:
    from mdmt_nas.builtin.basic import SoftmaxGate

    return type("RenamedSoftmax", (SoftmaxGate,), {"name": new, "__doc__": "A softmax gate under its new name."})


def _plugin(**registrations) -> types.SimpleNamespace:
    """An in-process plugin whose register_gates calls register(cls, **kw) for each (cls, kw)."""

    @hookimpl
    def register_gates(register):
        for cls, kw in registrations.values():
            register(cls, **kw)

    return types.SimpleNamespace(register_gates=register_gates, __name__="renamer")


def _host(*plugins) -> PluginHost:
    return PluginHost().load(use_entry_points=False, extra=list(plugins))


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return _host(("renamer", _plugin(g=(_renamed_gate(), {"deprecated_names": ["old_softmax", "older_softmax"]}))))


# ------------------------------------------------------------------------------ patterns
def test_list_components_filters_a_kind_by_a_wildcard(host):
    assert list_components("gate", "*topk*", registry=host.registry) == ["noisy_topk"]
    assert list_components("gate", ["soft*", "uni*"], registry=host.registry) == ["softmax", "uniform"]
    assert list_components("gate", "*TOPK*", registry=host.registry) == ["noisy_topk"]  # case does not matter
    assert list_components("gate", "topk", registry=host.registry) == []  # no wildcard: the whole name
    everything = list_components(registry=host.registry)
    assert "mlp" in everything and "softmax" in everything and everything == sorted(everything)


def test_an_unknown_kind_names_the_closest_kind(host):
    with pytest.raises(ValueError, match=r"unknown component kind 'gates' \(did you mean 'gate'\?"):
        list_components("gates", "*", registry=host.registry)


def test_deprecated_names_are_listed_only_when_asked(host):
    assert list_components("gate", "*softmax*", registry=host.registry) == ["renamed_softmax", "softmax"]
    assert list_components("gate", "*softmax*", deprecated=True, registry=host.registry) == [
        "old_softmax",
        "older_softmax",
        "renamed_softmax",
        "softmax",
    ]


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789.", min_size=1, max_size=12)


@given(name=names, cut=st.integers(0, 12), length=st.integers(0, 12))
def test_a_substring_between_stars_matches(name, cut, length):
    part = name[cut : cut + length]
    assert matches(name, f"*{part}*")
    assert matches(name, "*") and matches(name, None) and matches(name, name) and matches(name.upper(), name)
    assert not matches(name, name + "x")


@given(pattern=st.sampled_from(["*", "*o*", "m*", "*_*", "?????", "[a-m]*", "*mlp*", "x"]), kind=st.sampled_from(KINDS))
def test_a_pattern_lists_a_sorted_subset_of_the_kind(host, pattern, kind):
    every = host.registry.names(kind)
    listed = host.registry.names(kind, pattern)
    assert listed == sorted(listed) and set(listed) <= set(every)
    assert listed == [n for n in every if matches(n, pattern)]
    assert [e.name for e in host.registry.entries(kind, pattern)] == listed


# ------------------------------------------------------------------------------ deprecated names
def test_an_old_name_resolves_to_the_new_component_with_a_warning_naming_both(host):
    with pytest.warns(
        DeprecatedNameWarning,
        match=r"gate 'old_softmax' is a deprecated name of gate 'renamed_softmax' "
        r"\(plugin 'renamer'\); write 'renamed_softmax' instead",
    ):
        entry = host.registry.entry("gate", "old_softmax")
    assert entry.name == "renamed_softmax" and entry.plugin == "renamer"
    assert issubclass(DeprecatedNameWarning, DeprecationWarning)
    assert ("gate", "old_softmax") in host.registry and ("expert", "old_softmax") not in host.registry
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert host.registry.get("gate", "renamed_softmax") is entry.obj  # the new name: no warning


def test_an_architecture_written_with_the_old_name_still_builds(host):
    from mdmt_nas.model import build_model
    from mdmt_nas.testing import make_schema

    old = Architecture.model_validate({"shared": {"expert": "mlp", "num": 2}, "gate": "old_softmax"})
    old = Architecture.from_json(old.to_json())  # the JSON hand-off, as a search writes it
    with pytest.warns(DeprecatedNameWarning, match="old_softmax"):
        model = build_model(old, make_schema(), host.registry)
    assert type(model).__name__ and any(type(m).__name__ == "RenamedSoftmax" for m in model.modules())


def test_a_space_naming_the_old_name_loads(host, tmp_path):
    from mdmt_nas.spaces import load_space_file

    path = tmp_path / "s.yaml"
    path.write_text(
        "template: {shared: {expert: mlp, num: {choice: n}}, gate: older_softmax}\nchoices: {n: {low: 1, high: 2}}\n"
    )
    with pytest.warns(DeprecatedNameWarning, match="older_softmax"):
        space = load_space_file(path, registry=host.registry)
    assert space.size() == 2


def test_a_real_name_wins_over_another_plugins_alias():
    shadow = _renamed_gate("old_softmax")
    h = _host(
        ("renamer", _plugin(g=(_renamed_gate(), {"deprecated_names": "old_softmax"}))),
        ("other", _plugin(g=(shadow, {}))),
    )
    assert h.failures == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert h.registry.get("gate", "old_softmax") is shadow
    assert h.registry.aliases("gate") == []


def test_two_plugins_renaming_to_different_names_make_the_old_name_ambiguous():
    h = _host(
        ("renamer", _plugin(g=(_renamed_gate("new_a"), {"deprecated_names": ["old_gate"]}))),
        ("other", _plugin(g=(_renamed_gate("new_b"), {"deprecated_names": ["old_gate"]}))),
    )
    with pytest.raises(
        DuplicateComponentError, match=r"'old_gate' is a deprecated name of two components .*'new_a' or 'new_b'"
    ):
        h.registry.get("gate", "old_gate")


@pytest.mark.parametrize(
    "olds, message", [(["renamed_softmax"], "a deprecated name of itself"), ([""], "must be a non-empty string")]
)
def test_a_plugin_declaring_a_bad_deprecated_name_fails_to_load_by_name(olds, message):
    h = _host(("renamer", _plugin(g=(_renamed_gate(), {"deprecated_names": olds}))))
    assert [f.plugin for f in h.failures] == ["renamer"] and message in h.failures[0].message
    with pytest.raises(UnknownComponentError):
        h.registry.get("gate", "renamed_softmax")  # nothing of the failed plugin stays


def test_a_plugin_that_registers_and_aliases_one_name_fails_to_load():
    h = _host(
        ("renamer", _plugin(a=(_renamed_gate("old_x"), {}), b=(_renamed_gate(), {"deprecated_names": ["old_x"]})))
    )
    assert "registers gate 'old_x' and also declares it a deprecated name" in h.failures[0].message


def test_removing_a_plugin_drops_its_deprecated_names():
    r = Registry()
    r.add("gate", "new", object, "p", "d", "1")
    r.add_alias("gate", "old", "new", "p", "d", "1")
    r.remove_plugin("p")
    assert r.aliases() == [] and ("gate", "old") not in r


# ------------------------------------------------------------------------------ CLI
RENAMING_PLUGIN = '''
from mdmt_nas.builtin.basic import SoftmaxGate
from mdmt_nas.plugins import hookimpl

class Sharp(SoftmaxGate):
    """A sharper softmax gate."""
    name = "sharp_softmax"

@hookimpl
def register_gates(register):
    register(Sharp, deprecated_names=["pointy_softmax"])
'''


@pytest.fixture
def renaming_site(site, monkeypatch):
    make_dist(site, "mdmt-nas-sharp", {"sharp": "sharp_plugin"}, {"sharp_plugin.py": RENAMING_PLUGIN})
    monkeypatch.setenv("MDMT_NAS_LOAD_PLUGINS", "sharp")
    return site


def test_cli_list_filters_by_pattern_and_kind(renaming_site, capsys):
    code, out, err = run_cli(["plugins", "list", "*topk*"], capsys)
    assert code == 0, err
    assert "noisy_topk" in out and "softmax" not in out and "1 component(s)" in out
    code, out, err = run_cli(["plugins", "list", "--kind", "tower", "--json"], capsys)
    assert code == 0 and {c["kind"] for c in json.loads(out)["components"]} == {"tower"}


def test_cli_list_finds_a_component_by_its_deprecated_name(renaming_site, capsys):
    code, out, err = run_cli(["plugins", "list", "pointy*", "--json"], capsys)
    assert code == 0, err
    [row] = json.loads(out)["components"]
    assert row["name"] == "sharp_softmax" and row["deprecated_names"] == ["pointy_softmax"] and row["plugin"] == "sharp"
    code, out, err = run_cli(["plugins", "list", "pointy*"], capsys)
    assert "sharp_softmax (was pointy_softmax)" in out


def test_cli_list_without_a_match_explains_patterns(renaming_site, capsys):
    code, out, err = run_cli(["plugins", "list", "topk"], capsys)
    assert code == 2 and "no component matches 'topk'; patterns are shell-style" in err
    code, out, err = run_cli(["plugins", "list", "-k", "gat"], capsys)
    assert code == 2 and "did you mean 'gate'" in err


def test_cli_show_of_a_deprecated_name_shows_the_new_component(renaming_site, capsys):
    code, out, err = run_cli(["plugins", "show", "pointy_softmax"], capsys)
    assert code == 0, err
    assert "gate sharp_softmax" in out and "'pointy_softmax' is a deprecated name of gate 'sharp_softmax'" in err
