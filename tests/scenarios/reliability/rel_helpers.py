"""Helpers of the reliability tests: a tiny space, CLI processes, MLflow and Optuna state, atomic-file checks."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

TINY_SPACE = """\
name: {name}
description: tiny space of the reliability tests
template:
  embedding_dim: 4
  shared: {{expert: {{choice: expert}}, num: {{choice: num_experts}}}}
  tower: {{name: mlp_tower, params: {{hidden: [8]}}}}
choices:
  expert:
    options:
{options}
  num_experts: {{type: int, low: 1, high: 3}}
"""
MLP_OPTIONS = {
    "mlp-8": "{name: mlp, params: {hidden: [8]}}",
    "mlp-16": "{name: mlp, params: {hidden: [16]}}",
    "mlp-8-8": "{name: mlp, params: {hidden: [8, 8]}}",
}

#: settings that keep a candidate well under a second of training
SMALL = [
    "--set",
    "dataset.params.n_rows=3000",
    "--set",
    "train.batch_size=256",
    "--set",
    "train.threads=1",
    "--set",
    "train.patience=0",
    "--set",
    "train.progress=false",
]


def write_space(directory: Path, options: dict[str, str] | None = None, name: str = "tiny") -> Path:
    options = options or MLP_OPTIONS
    lines = "\n".join(f"      - {{label: {lab}, value: {spec}}}" for lab, spec in options.items())
    path = directory / f"{name}.yaml"
    path.write_text(TINY_SPACE.format(name=name, options=lines))
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "200", "MDMT_NAS_LOAD_PLUGINS": "", "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


def start(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, log: Path | None = None
) -> subprocess.Popen:
    out = open(log, "a") if log else subprocess.PIPE
    return subprocess.Popen(
        [sys.executable, "-m", "mdmt_nas", *map(str, args)],
        env=env or cli_env(),
        cwd=cwd,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out or ""


def wait_for(cond, proc: subprocess.Popen, timeout: float = 300, what: str = "", poll: float = 0.05) -> None:
    """Poll `cond()` until true; fail if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the process ended (status {proc.returncode}) before {what}:\n{out}")
        time.sleep(poll)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 120) -> int:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode


def trial_states(db: Path) -> list[str]:
    """States of every trial in an Optuna SQLite study database (read-only, tolerant of a busy file)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return [r[0] for r in con.execute("select state from trials")]
    except sqlite3.Error:
        return []


def mlflow_runs(db: Path, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=5000) if exp else []


def run_statuses(db: Path) -> list[tuple[str, str]]:
    """(status, parentRunId or '') of every MLflow run in a SQLite store, straight from the database."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            rows = con.execute(
                "select r.status, coalesce(t.value, '') from runs r left join tags t "
                "on t.run_uuid = r.run_uuid and t.key = 'mlflow.parentRunId'"
            ).fetchall()
            return [(s, p) for s, p in rows]
    except sqlite3.Error:
        return []


def cli_inprocess(*argv: str, cwd: Path | None = None) -> tuple[int, str]:
    """`mdmt-nas ARGV` in this process: (exit status, stdout + stderr)."""
    import contextlib
    import io

    from mdmt_nas.cli.app import main

    buf = io.StringIO()
    old = os.getcwd()
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                main([str(a) for a in argv])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
    finally:
        os.chdir(old)
    return code, buf.getvalue()


def make_read_only(path: Path, stack) -> str:
    """Make an SQLite file or a folder read-only for this process, root included; undone by `stack` (an ExitStack).

    Not root: chmod. Root (chmod does not stop it): `chattr +i`; a file where that is not possible gets the write
    version 3 in its header, which SQLite itself opens read-only. Returns how it was done."""
    import shutil

    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        stack.callback(path.chmod, mode)
        return "chmod"
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        stack.callback(subprocess.run, ["chattr", "-i", str(path)], capture_output=True)
        return "chattr +i"
    if path.is_dir():
        pytest.skip("root without chattr +i: no way to make a folder read-only here")
    with open(path, "r+b") as fh:  # https://www.sqlite.org/fileformat.html: write version > 2 -> read-only
        fh.seek(18)
        fh.write(bytes([3]))
    return "header write version 3"
