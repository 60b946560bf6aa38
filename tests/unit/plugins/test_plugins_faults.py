"""Fault isolation: a broken plugin is named, skipped, and never hides the healthy ones."""

import json

import pytest
from helpers import run_cli
from plugin_helpers import make_dist

from mdmt_nas.arch import Architecture
from mdmt_nas.model import build_model
from mdmt_nas.plugins import (
    ComponentFailure,
    attribute_error,
    describe_component_error,
    find_culprit,
    get_host,
    guard_shapes,
)
from mdmt_nas.testing import make_schema

GOOD = '''
from torch import nn
from mdmt_nas.components import Expert
from mdmt_nas.plugins import hookimpl


class GoodExpert(Expert):
    """A linear expert from a third-party plugin."""

    name = "good_expert"

    def __init__(self, params, in_dim, num_fields, field_dim, num_domains=1):
        super().__init__(params, in_dim, num_fields, field_dim, num_domains)
        self.lin = nn.Linear(in_dim, 8)

    @classmethod
    def output_dim(cls, params, in_dim):
        return 8

    def forward(self, x, ctx):
        return self.lin(x)
'''

PLUGINS = {
    "good": ("mdmt-nas-good", GOOD + "\n@hookimpl\ndef register_experts(register):\n    register(GoodExpert)\n"),
    "broken": ("mdmt-nas-broken", "import faiss_not_installed_xyz\n"),
    "raiser": (
        "mdmt-nas-raiser",
        GOOD
        + "\n@hookimpl\ndef register_experts(register):\n    register(GoodExpert, name='raiser_expert')\n    raise RuntimeError('config file missing')\n",
    ),
    "twin": ("mdmt-nas-twin", GOOD + "\n@hookimpl\ndef register_experts(register):\n    register(GoodExpert)\n"),
    "typo": (
        "mdmt-nas-typo",
        GOOD + "\n@hookimpl\ndef register_expert(register):\n    register(GoodExpert, name='typo_expert')\n",
    ),
    "unmarked": (
        "mdmt-nas-unmarked",
        GOOD + "\ndef register_experts(register):\n    register(GoodExpert, name='unmarked_expert')\n",
    ),
    "wrongbase": (
        "mdmt-nas-wrongbase",
        GOOD + "\n@hookimpl\ndef register_experts(register):\n    register(dict, name='wrongbase_expert')\n",
    ),
    "crashy": (
        "mdmt-nas-crashy",
        GOOD.replace("return self.lin(x)", "raise RuntimeError('boom: lookup table not loaded')").replace(
            '"good_expert"', '"crashy_expert"'
        )
        + "\n@hookimpl\ndef register_experts(register):\n    register(GoodExpert)\n",
    ),
    "shapeshifter": (
        "mdmt-nas-shapeshifter",
        GOOD.replace("return self.lin(x)", "return self.lin(x)[:, :3]").replace('"good_expert"', '"shifty_expert"')
        + "\n@hookimpl\ndef register_experts(register):\n    register(GoodExpert)\n",
    ),
}


def install(site, monkeypatch, *names):
    """Write each named plugin as its own installed distribution and allow only those to load."""
    for n in names:
        dist, src = PLUGINS[n]
        make_dist(site, dist, {n: f"{n}_plugin"}, {f"{n}_plugin.py": src})
    monkeypatch.setenv("MDMT_NAS_LOAD_PLUGINS", ",".join(names))


def listing(capsys, *extra):
    code, out, err = run_cli(["plugins", "--json", *extra], capsys)
    return code, json.loads(out), err


def failure_of(data, plugin):
    return next(f for f in data["failures"] if f["plugin"] == plugin)


@pytest.mark.parametrize(
    "bad,stage,words",
    [
        (
            "broken",
            "import",
            ['Error importing plugin "broken" (distribution mdmt-nas-broken)', "faiss_not_installed_xyz"],
        ),
        (
            "raiser",
            "register",
            [
                'Error registering plugin "raiser" (distribution mdmt-nas-raiser)',
                "register_experts raised RuntimeError: config file missing",
                "raiser_plugin.py",
            ],
        ),
        ("typo", "hook", ['Invalid hook in plugin "typo"', "'register_expert' (did you mean 'register_experts'?)"]),
        ("unmarked", "hook", ['Invalid hook in plugin "unmarked"', "@hookimpl"]),
        ("wrongbase", "register", ["wrongbase_expert", "not a subclass of mdmt_nas.components.Expert"]),
    ],
)
def test_bad_plugin_is_named_and_healthy_ones_stay(site, monkeypatch, capsys, bad, stage, words):
    install(site, monkeypatch, "good", bad)
    code, data, err = listing(capsys)
    assert code == 0
    names = [p["name"] for p in data["plugins"]]
    assert "good" in names and "basic" in names and bad not in names
    assert failure_of(data, bad)["stage"] == stage
    text = " ".join(err.split())  # rich may wrap long lines
    for w in words:
        assert w in text, err
    assert f"MDMT_NAS_DISABLE_PLUGINS={bad}" in text
    # nothing the bad plugin registered survives; the good one is usable
    reg = get_host().registry
    assert ("expert", "good_expert") in reg
    assert not any(e.plugin == bad for e in reg.entries())
    # --strict turns failures into exit status 1, still listing the healthy ones
    code, out, err = run_cli(["plugins", "--strict"], capsys)
    assert code == 1 and "good_expert" in out and bad in err


def test_taken_name_is_unusable_until_picked_and_names_both_distributions(site, monkeypatch, capsys):
    install(site, monkeypatch, "good", "twin")
    code, data, err = listing(capsys)
    assert code == 0
    msg = failure_of(data, "twin")["message"]
    assert "expert 'good_expert' is registered by 2 plugins" in msg
    assert "mdmt-nas-good" in msg and "mdmt-nas-twin" in msg and "MDMT_NAS_PREFER=expert:good_expert=twin" in msg
    assert err.count("MDMT_NAS_DISABLE_PLUGINS=twin") == 1
    names = [p["name"] for p in data["plugins"]]
    assert "good" in names and "twin" in names  # both stay loaded: only the shared name is blocked
    from mdmt_nas.errors import DuplicateComponentError

    reg = get_host().registry
    with pytest.raises(
        DuplicateComponentError,
        match=r"arch\.shared: expert 'good_expert' is registered by 2 plugins.*mdmt-nas-good.*mdmt-nas-twin",
    ):
        reg.entry("expert", "good_expert", where="arch.shared")
    assert ("expert", "mlp") in reg and reg.entry("expert", "mlp").plugin == "basic"  # the rest works


@pytest.mark.parametrize(
    "pick,dist", [("twin", "mdmt-nas-twin"), ("good", "mdmt-nas-good"), ("mdmt-nas-twin", "mdmt-nas-twin")]
)
def test_a_picked_plugin_resolves_the_conflict(site, monkeypatch, capsys, pick, dist):
    install(site, monkeypatch, "good", "twin")
    monkeypatch.setenv("MDMT_NAS_PREFER", f"expert:good_expert={pick}")
    code, data, err = listing(capsys)
    assert code == 0 and not data["failures"] and not data["warnings"], data
    assert get_host().registry.entry("expert", "good_expert").dist == dist


@pytest.mark.parametrize(
    "prefer,needle",
    [
        ("expert:good_expert=twn", "'twn' does not register 'expert:good_expert'"),
        ("expert:mlp=basic", "no two plugins register 'expert:mlp'"),
        ("good_expert", "is not KIND:NAME=PLUGIN"),
    ],
)
def test_a_bad_pick_is_a_warning_and_the_conflict_stays(site, monkeypatch, capsys, prefer, needle):
    install(site, monkeypatch, "good", "twin")
    monkeypatch.setenv("MDMT_NAS_PREFER", prefer)
    code, data, err = listing(capsys)
    assert any(needle in w for w in data["warnings"]), data["warnings"]
    assert needle in " ".join(err.split())
    assert failure_of(data, "twin")["stage"] == "conflict"


def test_taken_builtin_name(site, monkeypatch, capsys):
    dist, src = PLUGINS["good"]
    make_dist(
        site,
        "mdmt-nas-mlp-clash",
        {"clash": "clash_plugin"},
        {"clash_plugin.py": src.replace('name = "good_expert"', 'name = "mlp"')},
    )
    monkeypatch.setenv("MDMT_NAS_LOAD_PLUGINS", "clash")
    code, data, err = listing(capsys)
    msg = failure_of(data, "clash")["message"]
    assert "'mlp'" in msg and "plugin 'basic' (distribution mdmt-nas" in msg and "mdmt-nas-mlp-clash" in msg
    from mdmt_nas.errors import DuplicateComponentError

    with pytest.raises(DuplicateComponentError):  # not the built-in one silently
        get_host().registry.entry("expert", "mlp")


@pytest.mark.parametrize("var", ["MDMT_NAS_DISABLE_PLUGINS", "MDMT_NAS_LOAD_PLUGINS"])
def test_unknown_plugin_names_in_the_switches_warn_with_the_closest(site, monkeypatch, capsys, var):
    install(site, monkeypatch, "good")
    monkeypatch.setenv(var, "goood,nosuchplugin" if var == "MDMT_NAS_DISABLE_PLUGINS" else "good,goood")
    code, data, err = listing(capsys)
    text = " ".join(err.split())
    assert f"{var} names 'goood', which is no installed plugin (did you mean 'good'" in text, err
    if var == "MDMT_NAS_DISABLE_PLUGINS":
        assert "names 'nosuchplugin'" in text and "installed: " in text
    assert not any("'good'," in w and "names 'good'" in w for w in data["warnings"])  # real names never warn


def test_in_process_registration_failures():
    from mdmt_nas.plugins import PluginHost, hookimpl

    class Raises:
        @staticmethod
        @hookimpl
        def register_gates(register):
            raise ValueError("bad gate table")

    host = PluginHost().load(use_entry_points=False, extra=[("raises", Raises)])
    assert [f.plugin for f in host.failures] == ["raises"]
    assert "register_gates raised ValueError: bad gate table" in str(host.failures[0])
    assert any(p.name == "basic" for p in host.plugins)


def test_check_of_a_plugin_that_failed_to_load(site, monkeypatch, capsys):
    install(site, monkeypatch, "broken")
    code, out, err = run_cli(["plugins", "check", "broken"], capsys)
    assert code == 1 and 'Error importing plugin "broken"' in " ".join(err.split())


def _arch(expert):
    first = {"name": expert, "params": {"hidden": [8]} if expert == "mlp" else {}}
    return Architecture.model_validate(
        {"embedding_dim": 4, "shared": {"experts": [first, {"name": "mlp", "params": {"hidden": [8]}}]}}
    )


def _batch():
    from mdmt_nas.testing import make_batch as b

    return b(6)[:3]


def test_component_crash_during_a_run_names_the_plugin(site, monkeypatch, capsys):
    install(site, monkeypatch, "crashy")
    model = build_model(_arch("crashy_expert"), make_schema())
    with pytest.raises(RuntimeError) as info:
        model(*_batch())
    ref = find_culprit(info.value, model)
    assert (ref.kind, ref.name, ref.plugin, ref.dist) == ("expert", "crashy_expert", "crashy", "mdmt-nas-crashy")
    assert ref.path.startswith("levels.0.groups.shared.banks")
    msg = describe_component_error(info.value, model)
    for w in (
        "expert 'crashy_expert'",
        "plugin 'crashy'",
        "mdmt-nas-crashy",
        "boom: lookup table not loaded",
        "crashy_plugin.py",
        "mdmt-nas plugins check crashy",
    ):
        assert w in msg, msg
    wrapped = attribute_error(info.value, model)
    assert isinstance(wrapped, ComponentFailure) and wrapped.__cause__ is info.value
    # without the model, the class on the traceback still identifies it
    assert find_culprit(info.value).name == "crashy_expert"
    # the contract kit catches it before any search: `plugins check` exits 1 naming it
    code, out, err = run_cli(["plugins", "check", "crashy"], capsys)
    assert code == 1 and "crashy_expert" in out and "FAIL" in out and "boom" in out


def test_error_outside_components_is_left_alone(site):
    model = build_model(_arch("mlp"), make_schema())
    exc = ValueError("data loader ran dry")
    assert find_culprit(exc, model) is None
    assert describe_component_error(exc, model) == "ValueError: data loader ran dry"
    assert attribute_error(exc, model) is exc


def test_wrong_shape_is_blamed_on_the_component_that_produced_it(site, monkeypatch, capsys):
    install(site, monkeypatch, "shapeshifter")
    model = build_model(_arch("shifty_expert"), make_schema())
    with pytest.raises(ComponentFailure) as info, guard_shapes(model):
        model(*_batch())
    msg = str(info.value)
    assert "expert 'shifty_expert' from plugin 'shapeshifter' (distribution mdmt-nas-shapeshifter" in msg
    assert "returned shape [6, 3], expected [6, 8]" in msg
    assert describe_component_error(info.value, model) == msg
    import pickle

    assert str(pickle.loads(pickle.dumps(info.value))) == msg  # survives a worker process boundary
    # hooks are gone after the block; a healthy model runs under the guard
    healthy = build_model(_arch("mlp"), make_schema())
    with guard_shapes(healthy):
        assert healthy(*_batch()).shape == (6, 2)
    code, out, err = run_cli(["plugins", "check", "shapeshifter"], capsys)
    assert code == 1 and "output shape" in out


SPACE = """\
name: faulty
template:
  embedding_dim: 4
  shared: {experts: [{choice: expert}, {name: mlp, params: {hidden: [8]}}]}
  tower: {name: mlp_tower, params: {hidden: [8]}}
choices:
  expert:
    options:
      - crashy_expert
      - shifty_expert
      - {name: mlp, params: {hidden: [8]}}
"""


@pytest.mark.slow
def test_search_survives_broken_components_and_names_them(site, monkeypatch, capsys, tmp_path):
    """A crashing and a wrong-shape component fail only their candidates; the reasons name plugin and component."""
    import csv

    install(site, monkeypatch, "crashy", "shapeshifter")
    space = tmp_path / "faulty.yaml"
    space.write_text(SPACE)
    out_dir = tmp_path / "out"
    code, out, err = run_cli(
        [
            "search",
            "--space",
            str(space),
            "--searcher",
            "optuna-grid",
            "--budget",
            "3",
            "--epochs",
            "1",
            "--no-track",
            "--set",
            "dataset.params.n_rows=2000",
            "--output",
            str(out_dir),
        ],
        capsys,
    )
    assert code == 0, out + err
    rows = list(csv.DictReader((out_dir / "leaderboard.csv").open()))
    by_state = {}
    for r in rows:
        by_state.setdefault(r["state"], []).append(r)
    assert len(by_state.get("finished", [])) == 1 and len(by_state.get("failed", [])) == 2, rows
    reasons = " | ".join(r["reason"] for r in by_state["failed"])
    assert (
        "expert 'crashy_expert' from plugin 'crashy' (distribution mdmt-nas-crashy" in reasons
        and "boom: lookup table not loaded" in reasons
    )
    assert (
        "expert 'shifty_expert' from plugin 'shapeshifter' (distribution mdmt-nas-shapeshifter" in reasons
        and "returned shape" in reasons
    )
    assert "mdmt-nas plugins check crashy" in reasons
