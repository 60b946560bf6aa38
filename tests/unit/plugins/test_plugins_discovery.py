"""Discovery switches (allow-list, disable, hook tracing) and the hook documentation."""

import inspect
import json
import re
from pathlib import Path

from helpers import run_cli
from plugin_helpers import make_dist
from test_plugins_faults import GOOD

from mdmt_nas.plugins import HOOK_KINDS, get_host, hookspecs

DOCS = Path(__file__).resolve().parents[3] / "docs" / "hooks.md"


def two_plugins(site):
    for name, cname in (("alpha", "alpha_expert"), ("beta", "beta_expert")):
        src = (
            GOOD.replace('"good_expert"', f'"{cname}"')
            + "\n@hookimpl\ndef register_experts(register):\n    register(GoodExpert)\n"
        )
        make_dist(site, f"mdmt-nas-{name}", {name: f"{name}_plugin"}, {f"{name}_plugin.py": src})


def loaded(capsys):
    code, out, err = run_cli(["plugins", "--json"], capsys)
    return {p["name"] for p in json.loads(out)["plugins"]}


def test_allow_list_loads_only_named_third_party_plugins(site, monkeypatch, capsys):
    two_plugins(site)
    monkeypatch.setenv("MDMT_NAS_LOAD_PLUGINS", "alpha")
    names = loaded(capsys)
    assert "alpha" in names and "beta" not in names and "basic" in names  # built-ins always load
    from mdmt_nas import plugins

    plugins.reset()
    monkeypatch.setenv("MDMT_NAS_LOAD_PLUGINS", "mdmt-nas-beta")  # distribution names work too
    assert loaded(capsys) & {"alpha", "beta"} == {"beta"}
    plugins.reset()
    monkeypatch.setenv("MDMT_NAS_LOAD_PLUGINS", "")
    names = loaded(capsys)
    assert not names & {"alpha", "beta"} and "basic" in names


def test_disable_skips_third_party_and_builtin_plugins(site, monkeypatch, capsys):
    two_plugins(site)
    monkeypatch.setenv("MDMT_NAS_LOAD_PLUGINS", "alpha,beta")
    monkeypatch.setenv("MDMT_NAS_DISABLE_PLUGINS", "beta,m3oe")
    names = loaded(capsys)
    assert "alpha" in names and "beta" not in names and "m3oe" not in names and "basic" in names
    assert ("fusion", "weighted") not in get_host().registry


def test_trace_hooks_prints_calls_and_registrations(site, monkeypatch, capsys):
    two_plugins(site)
    monkeypatch.setenv("MDMT_NAS_LOAD_PLUGINS", "alpha")
    monkeypatch.setenv("MDMT_NAS_TRACE_HOOKS", "1")
    code, out, err = run_cli(["plugins"], capsys)
    assert code == 0
    assert "[mdmt-nas] calling alpha.register_experts(register) from alpha_plugin" in err
    assert "[mdmt-nas] alpha.register_experts registered expert 'alpha_expert'" in err
    assert "[mdmt-nas] loaded plugin 'alpha' (mdmt-nas-alpha 0.1.0): 1 component(s)" in err
    assert "[mdmt-nas] basic.register_gates registered gate 'softmax'" in err


def _hooks():
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "mdmt_nas_spec")]


def test_every_hook_has_a_docstring_a_kind_and_a_docs_section():
    hooks = _hooks()
    assert hooks and set(hooks) == set(HOOK_KINDS)
    text = DOCS.read_text()
    sections = re.findall(r"^## (\w+)\(register\)$", text, flags=re.M)
    for h in hooks:
        assert (getattr(hookspecs, h).__doc__ or "").strip(), f"hook {h} has no docstring"
        assert h in sections, f"docs/hooks.md has no section '## {h}(register)'"
    assert set(sections) <= set(hooks), f"docs/hooks.md documents unknown hooks {set(sections) - set(hooks)}"
