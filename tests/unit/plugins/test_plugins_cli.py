"""`mdmt-nas plugins`, `plugins check`, `plugins new`."""

import importlib
import json
import sys

import pytest
from helpers import run_cli
from plugin_helpers import make_dist
from test_plugins_faults import PLUGINS

from mdmt_nas.scaffold import KINDS, create_plugin
from mdmt_nas.testing import check_component


def test_listing_table_shows_every_plugin_with_components(site, capsys):
    code, out, err = run_cli(["plugins"], capsys)
    assert code == 0, err
    for word in ("basic", "(built-in)", "mdmt-nas", "register_experts", "expert", "mlp", "softmax", "mlp_tower"):
        assert word in out
    assert "failure(s)" in out


def test_listing_json(site, monkeypatch, capsys):
    make_dist(site, "mdmt-nas-good", {"good": "good_plugin"}, {"good_plugin.py": PLUGINS["good"][1]}, version="1.2.3")
    monkeypatch.setenv("MDMT_NAS_LOAD_PLUGINS", "good")
    code, out, err = run_cli(["plugins", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["failures"] == []
    good = next(p for p in data["plugins"] if p["name"] == "good")
    assert good == {
        "name": "good",
        "distribution": "mdmt-nas-good",
        "version": "1.2.3",
        "module": "good_plugin",
        "builtin": False,
        "hooks": ["register_experts"],
        "components": [{"kind": "expert", "name": "good_expert"}],
    }
    basic = next(p for p in data["plugins"] if p["name"] == "basic")
    assert basic["builtin"] and {"kind": "gate", "name": "softmax"} in basic["components"]


def test_check_by_plugin_or_distribution_name(site, monkeypatch, capsys):
    make_dist(site, "mdmt-nas-good", {"good": "good_plugin"}, {"good_plugin.py": PLUGINS["good"][1]})
    monkeypatch.setenv("MDMT_NAS_LOAD_PLUGINS", "good")
    code, out, err = run_cli(["plugins", "check", "good"], capsys)
    assert code == 0, out + err
    assert "expert 'good_expert'" in out and "PASS shapes" in out and "all checks passed" in out
    code, out, err = run_cli(["plugins", "check", "mdmt-nas-good", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["components"][0]["name"] == "good_expert"


def test_check_one_builtin_component(site, capsys):
    code, out, err = run_cli(["plugins", "check", "basic", "--component", "mlp"], capsys)
    assert code == 0 and "expert 'mlp'" in out and "softmax" not in out


def test_check_unknown_plugin_suggests(site, capsys):
    code, out, err = run_cli(["plugins", "check", "basik"], capsys)
    assert code == 2 and "no plugin named 'basik'" in err and "'basic'" in err


def test_show_prints_kind_docstring_distribution_and_parameter_table(site, monkeypatch, capsys):
    code, out, err = run_cli(["plugins", "show", "mlp"], capsys)
    assert code == 0, err
    from mdmt_nas.builtin.basic import MLPExpert

    assert "expert mlp" in out and "plugin basic, distribution mdmt-nas" in out and "(built-in)" in out
    assert MLPExpert.__doc__.strip().splitlines()[0] in out and "mdmt_nas.builtin.basic.MLPExpert" in out
    for row in (
        ["hidden", "list[int]", "[256, 64]", "length >= 1", "the last is the expert's output"],
        ["activation", "str", '"relu"', "one of relu, gelu, silu, tanh"],
        ["dropout", "float", "0.0", ">= 0, < 1"],
    ):
        line = next((ln for ln in out.splitlines() if f" {row[0]} " in ln), "")
        assert all(cell in line for cell in row), (row, line)
    code, out, _ = run_cli(["plugins", "show", "noisy_topk"], capsys)
    assert code == 0 and "gate noisy_topk" in out and "sparse = True" in out and "plugin cesaa" in out
    make_dist(site, "mdmt-nas-good", {"good": "good_plugin"}, {"good_plugin.py": PLUGINS["good"][1]}, version="1.2.3")
    monkeypatch.setenv("MDMT_NAS_LOAD_PLUGINS", "good")
    from mdmt_nas import plugins

    plugins.reset()  # reload with the new distribution
    code, out, _ = run_cli(["plugins", "show", "good_expert"], capsys)
    assert code == 0 and "plugin good, distribution mdmt-nas-good 1.2.3" in out and "(built-in)" not in out
    code, out, _ = run_cli(["plugins", "show", "mmoe"], capsys)
    assert code == 0 and "space mmoe" in out and "architectures" in out and "mdmt-nas spaces show mmoe" in out
    code, _, err = run_cli(["plugins", "show", "mmoe", "--json"], capsys)
    assert code == 2 and "has no parameters" in err
    code, _, err = run_cli(["plugins", "show", "mlpp"], capsys)
    assert code == 2 and "no component named 'mlpp'" in err and "'mlp'" in err
    code, _, err = run_cli(["plugins", "show", "mlp", "--kind", "gate"], capsys)
    assert code == 2 and "no gate named 'mlp'" in err
    code, _, err = run_cli(["plugins", "show", "mlp", "--kind", "expertt"], capsys)
    assert code == 2 and "unknown kind" in err and "'expert'" in err


@pytest.mark.parametrize("name", ["mlp", "noisy_topk", "identity", "synthetic", "optuna-tpe"])
def test_show_json_is_a_valid_json_schema_of_the_params(site, capsys, name):
    import jsonschema

    code, out, err = run_cli(["plugins", "show", name, "--json"], capsys)
    assert code == 0, err
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({}) and not validator.is_valid(
        {"no_such_param": 1}
    )  # defaults are valid; unknown keys are not
    assert schema["x-mdmt-nas"]["name"] == name and schema["x-mdmt-nas"]["distribution"] == "mdmt-nas"
    from mdmt_nas.plugins import get_registry

    entry = next(e for e in get_registry().entries() if e.name == name)
    params = entry.obj.Params
    for field, prop in schema["properties"].items():  # every default in the schema is the component's own
        if "default" in prop:
            assert prop["default"] == params.model_fields[field].get_default(call_default_factory=True) or hasattr(
                params.model_fields[field].get_default(call_default_factory=True), "model_dump"
            )
    if name == "mlp":
        assert (
            schema["properties"]["hidden"]["default"] == [256, 64]
            and schema["properties"]["dropout"]["exclusiveMaximum"] == 1
        )
        assert not validator.is_valid({"hidden": "wide"}) and not validator.is_valid({"activation": "swish"})
        assert validator.is_valid({"hidden": [16], "activation": "gelu", "dropout": 0.5})


def test_new_writes_a_package_that_loads_and_passes(site, monkeypatch, capsys, tmp_path):
    code, out, err = run_cli(["plugins", "new", "my-expert", "--kind", "expert", "--dir", str(tmp_path)], capsys)
    assert code == 0, err
    root = tmp_path / "mdmt-nas-my-expert"
    for rel in (
        "pyproject.toml",
        "README.md",
        "mdmt_nas_my_expert/__init__.py",
        "mdmt_nas_my_expert/expert.py",
        "mdmt_nas_my_expert/my_expert.yaml",
        "tests/test_my_expert.py",
    ):
        assert (root / rel).is_file(), rel
        assert rel.split("/")[-1] in out
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points.mdmt_nas]\nmy_expert = "mdmt_nas_my_expert"' in pyproject
    # "install" it: the package on sys.path plus its entry point
    monkeypatch.syspath_prepend(str(root))
    make_dist(site, "mdmt-nas-my-expert", {"my_expert": "mdmt_nas_my_expert"}, {})
    monkeypatch.setenv("MDMT_NAS_LOAD_PLUGINS", "my_expert")
    code, out, err = run_cli(["plugins", "--json"], capsys)
    mine = next(p for p in json.loads(out)["plugins"] if p["name"] == "my_expert")
    assert {"kind": "expert", "name": "my_expert"} in mine["components"] and {
        "kind": "space",
        "name": "my_expert",
    } in mine["components"]
    code, out, err = run_cli(["plugins", "check", "my_expert"], capsys)
    assert code == 0, out + err
    # refuses to overwrite without --force
    code, out, err = run_cli(["plugins", "new", "my-expert", "--dir", str(tmp_path)], capsys)
    assert code == 2 and "--force" in err
    code, out, err = run_cli(["plugins", "new", "my-expert", "--dir", str(tmp_path), "--force"], capsys)
    assert code == 0


@pytest.mark.parametrize("bad", ["My Expert", "9lives", "a--b"])
def test_new_rejects_bad_names(capsys, tmp_path, bad):
    code, out, err = run_cli(["plugins", "new", bad, "--dir", str(tmp_path)], capsys)
    assert code == 2 and "plugin name" in err


def test_new_rejects_unknown_kind(capsys, tmp_path):
    code, out, err = run_cli(["plugins", "new", "x", "--kind", "searcher", "--dir", str(tmp_path)], capsys)
    assert code == 2 and "unknown --kind" in err


@pytest.mark.parametrize("kind", KINDS)
def test_every_scaffold_kind_passes_the_kit(tmp_path, monkeypatch, kind):
    result = create_plugin(f"demo-{kind}", kind, tmp_path)
    monkeypatch.syspath_prepend(str(result.root))
    try:
        mod = importlib.import_module(result.names.package)
        report = check_component(getattr(mod, result.names.cls), kind, raise_on_fail=False)
        assert report.ok, str(report)
        compile((result.root / f"tests/test_demo_{kind}.py").read_text(), "test", "exec")
    finally:
        for name in [m for m in sys.modules if m.startswith(result.names.package)]:
            del sys.modules[name]
