"""The MLflow UI served by `mdmt-nas ui`, opened in a real headless Chromium (Debian's `chromium`; .ci/run installs it):
the parent run's page shows the leaderboard and the winner's table, a child run's page its AUC table.

Screenshots go to the test's tmp dir (screenshots/); docs/images/ holds two of them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_runner import _one_thread, load_tiny, make_config, mlflow_uri, runs_of, splits  # noqa: F401

#: the flags that work on these machines (no network beyond loopback, root, no GPU)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1500,1100",
]


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _render(exe: str, url: str, profile: Path, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran (and a screenshot of it)."""
    extra = [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    proc = subprocess.run(
        [exe, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=25000", *extra, url],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_mlflow_ui_shows_the_leaderboard_and_the_auc_tables(tmp_path, mlflow_uri, splits):
    from mdmt_nas.cli.ui import stop_group
    from mdmt_nas.search.runner import run_search

    exe = _chromium()
    cfg = make_config(mlflow_uri, searcher="optuna-random", budget=2, epochs=1)
    outcome = run_search(cfg, tmp_path / "out", space=load_tiny(tmp_path), splits=splits)
    parents, children = runs_of(mlflow_uri, cfg.tracking.experiment)
    parent = parents[0]
    child = next(c for c in children if c.data.tags.get("state") == "finished")
    port = _free_port()
    log = open(tmp_path / "ui.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdmt_nas", "ui", "--port", str(port), "--tracking-uri", mlflow_uri],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "ui.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the MLflow UI did not answer within 180 s"
            time.sleep(1)
        exp = parent.info.experiment_id
        parent_url = f"{base}/#/experiments/{exp}/runs/{parent.info.run_id}"
        child_url = f"{base}/#/experiments/{exp}/runs/{child.info.run_id}"
        dom = _render(exe, parent_url, tmp_path / "profile-1")
        best = outcome.best
        assert "Winner" in dom and best.arch.id in dom and "per-(domain, task) AUC" in dom, dom[-3000:]
        assert f"{best.valid_mean_auc:.4f}" in dom
        dom = _render(exe, child_url, tmp_path / "profile-2")
        assert child.info.run_name in dom or child.info.run_name.replace("·", "&middot;") in dom
        assert "valid AUC" in dom and "domain_0" in dom and "task_1" in dom, dom[-3000:]
        _render(exe, parent_url, tmp_path / "profile-3", shots / "parent_run.png")
        _render(exe, child_url, tmp_path / "profile-4", shots / "child_run.png")
        _render(exe, f"{base}/#/experiments/{exp}", tmp_path / "profile-5", shots / "runs_list.png")
        for png in shots.iterdir():
            assert png.stat().st_size > 10_000, png  # a rendered page, not a blank one
    finally:
        stop_group(proc)
        log.close()
