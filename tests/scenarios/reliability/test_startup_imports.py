"""Fail fast: `mdmt-nas --help` and a config error do not import torch, MLflow or Optuna (checked in a fresh
interpreter's sys.modules, not by timing; benchmarks/startup.py times them)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from rel_helpers import ROOT, cli_env

CHECK = """
import atexit, json, sys
atexit.register(lambda: print("IMPORTED=" + json.dumps([m for m in ("torch", "mlflow", "optuna") if m in sys.modules])))
sys.argv = ["mdmt-nas", *sys.argv[1:]]
from mdmt_nas.cli import main
main()
"""


@pytest.mark.parametrize("case", ["--help", "misspelt-key", "bad-set"])
def test_help_and_config_errors_do_not_import_torch(tmp_path, case):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: {name: synthetic}\ntrian: {epochs: 1}\n")
    args = {
        "--help": ["--help"],
        "misspelt-key": ["train", "--config", str(bad), "--no-track"],
        "bad-set": ["search", "--space", "m3oe", "--set", "train.epochs=abc", "--no-track"],
    }[case]
    env = cli_env(PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", CHECK, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == (0 if case == "--help" else 2), out
    if case == "misspelt-key":
        assert "trian: unknown key (did you mean 'train'?)" in out, out
    if case == "bad-set":
        assert "--set train.epochs=abc" in out, out
    imported = json.loads(out.split("IMPORTED=", 1)[1].splitlines()[0])
    assert imported == [], f"{args} imported {imported}"
