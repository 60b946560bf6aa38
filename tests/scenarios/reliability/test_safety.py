"""Safety: safe YAML only, no pickle of files a user may be handed, the UI on 127.0.0.1 by default,
and plugin loading that can be restricted to an allow-list."""

from __future__ import annotations

import ast
import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rel_helpers import ROOT, cli_inprocess

PACKAGE = ROOT / "mdmt_nas"
#: modules allowed to unpickle, with the reason (reviewed; see docs/reliability.md)
PICKLE_ALLOWED = {"search/nni.py": "NNI searcher state written by this process's own checkpointing"}


def _calls(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = (
                f"{f.value.id}.{f.attr}"
                if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                else getattr(f, "id", "")
            )
            yield name, node


def test_code_uses_safe_loaders_only():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        for name, node in _calls(path):
            where = f"{rel}:{node.lineno}"
            if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all"):
                problems.append(f"{where}: {name} (use yaml.safe_load)")
            if name == "torch.load":
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
            if name in ("pickle.load", "pickle.loads", "dill.load", "joblib.load") and rel not in PICKLE_ALLOWED:
                problems.append(f"{where}: {name}")
    assert not problems, "unsafe loading:\n" + "\n".join(problems)


def test_yaml_python_tags_are_refused_in_configs_spaces_and_architectures(tmp_path):
    marker = tmp_path / "pwned"
    evil = f"!!python/object/apply:os.system ['touch {marker}']"
    (tmp_path / "c.yaml").write_text(f"train: {evil}\n")
    (tmp_path / "space.yaml").write_text(f"name: x\ntemplate: {evil}\nchoices: {{}}\n")
    (tmp_path / "arch.yaml").write_text(f"shared: {evil}\n")
    for argv in (
        ["train", "--config", "c.yaml", "--no-track"],
        ["search", "--space", "space.yaml", "--searcher", "optuna-random", "--no-track", "--output", "o"],
        ["train", "--arch", "arch.yaml", "--no-track"],
    ):
        code, text = cli_inprocess(*argv, cwd=tmp_path)
        assert code == 2, text
        assert "the Python tag !!python/object/apply:os.system is not allowed" in text and "Traceback" not in text, text
    assert not marker.exists()


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_checkpoints_are_loaded_without_unpickling_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"weights": torch.zeros(2), "payload": _Evil(str(marker))}, tmp_path / "weights.pt")
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        torch.load(tmp_path / "weights.pt", map_location="cpu", weights_only=True)
    assert not marker.exists()


def test_ui_binds_loopback_unless_told_otherwise(tmp_path):
    pytest.importorskip("mdmt_nas.cli.ui", reason="the ui command is not in this build")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, text = cli_inprocess("ui", "--dry-run", "--tracking-uri", uri, cwd=tmp_path)
    assert code == 0, text
    line = next(ln for ln in text.splitlines() if " server " in ln)
    assert "--host 127.0.0.1" in line and "--backend-store-uri " + uri in line
    assert "anyone who can reach" not in text
    code, text = cli_inprocess(
        "ui", "--dry-run", "--tracking-uri", uri, "--host", "0.0.0.0", "--port", "5055", cwd=tmp_path
    )
    assert code == 0 and "--host 0.0.0.0" in text and "--port 5055" in text
    assert (
        "anyone who can reach this machine can read the runs" in text
    )  # binding elsewhere is explicit and warned about


PLUGIN = """
from pathlib import Path
Path({marker!r}).write_text("imported")  # a plugin's code runs on import: the allow-list must keep it from running
from mdmt_nas.components import Expert
from mdmt_nas.plugins import hookimpl

class Spy(Expert):
    name = "spy_expert"
    @classmethod
    def output_dim(cls, params, in_dim):
        return 8
    def forward(self, x, ctx):
        return x[:, :8]

@hookimpl
def register_experts(register):
    register(Spy)
"""


@pytest.mark.parametrize(
    "allow, disable, loaded",
    [
        (None, None, True),  # default: every installed plugin
        ("", None, False),  # empty allow-list: built-ins only
        ("other,third", None, False),
        ("spy", None, True),
        ("spy", "spy", False),  # the deny-list wins
    ],
)
def test_plugin_allow_list(tmp_path, monkeypatch, allow, disable, loaded):
    from mdmt_nas import plugins

    site = tmp_path / "site"
    (site / "spy_plugin").mkdir(parents=True)
    marker = tmp_path / "imported"
    (site / "spy_plugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN.format(marker=str(marker))))
    dist = site / "mdmt_nas_spy-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mdmt-nas-spy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mdmt_nas]\nspy = spy_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    for var, value in (("MDMT_NAS_LOAD_PLUGINS", allow), ("MDMT_NAS_DISABLE_PLUGINS", disable)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
    try:
        host = plugins.PluginHost().load()
        assert (("expert", "spy_expert") in host.registry) is loaded
        assert marker.exists() is loaded  # not even imported when not allowed
        assert ("expert", "mlp") in host.registry  # built-ins always load
    finally:
        sys.modules.pop("spy_plugin", None)
