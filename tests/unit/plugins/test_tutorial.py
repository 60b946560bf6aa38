"""Runs every command of docs/writing-plugins.md, in order, in a fresh directory.

The commands are read from the `$ ` lines of the doc's console blocks, so the
doc and this test cannot drift apart. One substitution: `pip install -e DIR`
runs as `pip install --no-deps --target SITE DIR` with SITE on PYTHONPATH, so the
test does not touch the environment (and `--no-build-isolation` when the
environment's setuptools can build wheels, so it downloads nothing).
MDMT_NAS_LOAD_PLUGINS=my_expert keeps other third-party plugins that may be
installed (CI installs plugins/*) out of the listing; built-ins always load.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "writing-plugins.md"


def doc_commands() -> list[str]:
    text = DOC.read_text()
    blocks = re.findall(r"```console\n(.*?)```", text, flags=re.S)
    return [line[2:].strip() for b in blocks for line in b.splitlines() if line.startswith("$ ")]


def test_tutorial_is_short():
    cmds = doc_commands()
    assert 0 < len(cmds) < 15, cmds
    assert cmds[0].startswith("mdmt-nas plugins new") and any(c.startswith("mdmt-nas search") for c in cmds)


def _can_build_offline() -> bool:
    """Whether this environment's setuptools can build a wheel itself (setuptools >= 70.1, or `wheel` installed)."""
    try:
        from setuptools.command import bdist_wheel  # noqa: F401
    except ImportError:
        return importlib.util.find_spec("wheel") is not None
    return True


def _argv(cmd: str, site: Path) -> list[str]:
    argv = shlex.split(cmd)
    if argv[0] == "mdmt-nas":
        return [sys.executable, "-m", "mdmt_nas", *argv[1:]]
    if argv[:3] == ["pip", "install", "-e"]:
        isolation = ["--no-build-isolation"] if _can_build_offline() else []  # else pip fetches setuptools to build
        return [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation, "--target", str(site), *argv[3:]]
    if argv[0] == "pytest":
        return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *argv[1:]]
    raise AssertionError(f"the tutorial test does not know how to run {cmd!r}")


def _needs(cmd: str) -> str | None:
    """The CLI module a command needs, if it is not there yet (other command groups land separately)."""
    words = shlex.split(cmd)
    if words[:2] == ["mdmt-nas", "search"]:
        return "mdmt_nas.cli.search"
    if words[:2] == ["mdmt-nas", "spaces"]:
        return "mdmt_nas.cli.spaces"
    return None


def _mlflow_params(uri: str) -> list[dict[str, str]]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = []
    for exp in client.search_experiments():
        runs += client.search_runs([exp.experiment_id])
    return [dict(r.data.params, **{"_parent": r.data.tags.get("mlflow.parentRunId", "")}) for r in runs]


@pytest.mark.slow
def test_every_tutorial_command_runs(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        COLUMNS="200",
        MLFLOW_TRACKING_URI=uri,
        MDMT_NAS_LOAD_PLUGINS="my_expert",
    )
    env.pop("MDMT_NAS_DISABLE_PLUGINS", None)
    outputs: dict[str, str] = {}
    for cmd in doc_commands():
        missing = _needs(cmd)
        if missing and importlib.util.find_spec(missing) is None:
            pytest.skip(f"{missing} has not landed yet; ran the commands before {cmd!r}")
        proc = subprocess.run(_argv(cmd, site), cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"$ {cmd}\n{proc.stdout}\n{proc.stderr}"
        outputs[cmd] = proc.stdout + proc.stderr
        # what each step promises
        if cmd.startswith("mdmt-nas plugins new"):
            assert (work / "mdmt-nas-my-expert" / "mdmt_nas_my_expert" / "expert.py").is_file()
        elif cmd.startswith("pip install"):
            assert (site / "mdmt_nas_my_expert" / "my_expert.yaml").is_file()
        elif cmd == "mdmt-nas plugins":
            assert "my_expert" in proc.stdout and "mdmt-nas-my-expert" in proc.stdout
            assert "failure" in proc.stdout and "Error" not in proc.stderr
        elif cmd.startswith("mdmt-nas plugins show"):
            assert "expert my_expert" in proc.stdout and "distribution mdmt-nas-my-expert 0.1.0" in proc.stdout
            assert "residual two-layer perceptron" in proc.stdout  # the class docstring
            assert "out_dim" in proc.stdout and "output size; experts mixed by one gate need equal sizes" in proc.stdout
        elif cmd.startswith("mdmt-nas plugins check"):
            assert "expert 'my_expert'" in proc.stdout and "space 'my_expert'" in proc.stdout
            assert "FAIL" not in proc.stdout and "all checks passed" in proc.stdout
        elif cmd.startswith("mdmt-nas spaces show"):
            assert "my_expert" in proc.stdout and "8 distinct architectures" in proc.stdout
        elif cmd.startswith("pytest"):
            assert "passed" in proc.stdout and "failed" not in proc.stdout
        elif cmd.startswith("mdmt-nas search"):
            children = [p for p in _mlflow_params(uri) if p["_parent"]]
            assert children, "the search logged no candidate runs"
            with_expert = [p for p in children if p.get("assignment.expert") == "my_expert"]
            assert with_expert, (
                f"no candidate run has my_expert in its params: {json.dumps(children[:2], indent=1)[:2000]}"
            )
            assert with_expert[0]["arch.shared.experts.0.name"] == "my_expert"
            assert (work / "runs" / "my-search" / "best_arch.json").is_file()
