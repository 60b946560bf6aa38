"""`mdmt-nas search` and `mdmt-nas ui` from the command line."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from helpers import run_cli
from test_runner import _one_thread, mlflow_uri, runs_of, test_plugin, write_space  # noqa: F401

SMALL = [
    "--set",
    "dataset.params.n_rows=3000",
    "--set",
    "train.batch_size=512",
    "--set",
    "train.threads=1",
    "--set",
    "train.patience=0",
]


@pytest.fixture(autouse=True)
def _wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


def test_search_prints_leaderboard_and_best_arch_path(tmp_path, mlflow_uri, capsys):
    out = tmp_path / "out"
    code, text, err = run_cli(
        [
            "search",
            "--space",
            write_space(tmp_path),
            "--searcher",
            "optuna-tpe",
            "--budget",
            "3",
            "--epochs",
            "1",
            "--pruner",
            "none",
            "--output",
            out,
            "--tracking-uri",
            mlflow_uri,
            "--seed",
            "3",
            *SMALL,
            "--set",
            "tracking.experiment=cli-search",
        ],
        capsys,
    )
    assert code == 0, err
    assert "tiny / optuna-tpe:" in text and "valid AUC" in text
    assert f"best architecture: {out / 'best_arch.json'}" in text
    summary = json.loads((out / "search.json").read_text())
    assert f"winner {summary['best']['arch_id']}" in text and "per-(domain, task) AUC" in text
    cells = [ln for ln in text.splitlines() if re.search(r"domain_\d .*task_\d .*0\.\d{4} .*0\.\d{4}", ln)]
    assert len(cells) == 6, text  # 3 domains x 2 tasks of the synthetic data
    assert f"export it: mdmt-nas export {out}" in text
    summary = json.loads((out / "search.json").read_text())
    assert summary["seed"] == 3 and summary["searcher"] == "optuna-tpe" and summary["budget"] == 3
    parents, children = runs_of(mlflow_uri, "cli-search")
    assert len(parents) == 1 and parents[0].data.params["searcher_params.pruner"] == "none"
    assert all(c.data.params["train.seed"] == "3" for c in children)

    # the same output again: refused without --resume, continued with it
    code, _, err = run_cli(
        [
            "search",
            "--space",
            write_space(tmp_path),
            "--searcher",
            "optuna-tpe",
            "--budget",
            "4",
            "--output",
            out,
            "--tracking-uri",
            mlflow_uri,
            "--seed",
            "3",
            "--epochs",
            "1",
            *SMALL,
            "--set",
            "tracking.experiment=cli-search",
        ],
        capsys,
    )
    assert code == 2 and "already exists and is not empty" in err and "--resume" in err
    code, text, err = run_cli(
        [
            "search",
            "--space",
            write_space(tmp_path),
            "--searcher",
            "optuna-tpe",
            "--budget",
            "4",
            "--output",
            out,
            "--tracking-uri",
            mlflow_uri,
            "--seed",
            "3",
            "--epochs",
            "1",
            "--pruner",
            "none",
            "--resume",
            *SMALL,
            "--set",
            "tracking.experiment=cli-search",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads((out / "search.json").read_text())["budget"] == 4
    assert len(runs_of(mlflow_uri, "cli-search")[0]) == 1


def test_unknown_searcher_suggests_the_closest_names(tmp_path, capsys):
    code, _, err = run_cli(
        ["search", "--space", write_space(tmp_path), "--searcher", "optuna-tp", "--output", tmp_path / "o"], capsys
    )
    assert code == 2
    assert "unknown searcher 'optuna-tp'" in err and "optuna-tpe" in err
    assert not (tmp_path / "o").exists()


def test_cli_errors_exit_2(tmp_path, mlflow_uri, capsys):
    space = write_space(tmp_path)
    code, _, err = run_cli(["search", "--searcher", "optuna-tpe"], capsys)
    assert code == 2 and "--space" in err
    code, _, err = run_cli(
        [
            "search",
            "--space",
            space,
            "--searcher",
            "optuna-tpe",
            "--objectives",
            "auc,params",
            "--output",
            tmp_path / "a",
            "--tracking-uri",
            mlflow_uri,
            *SMALL,
        ],
        capsys,
    )
    assert code == 2 and "optuna-nsga2" in err
    code, _, err = run_cli(
        ["search", "--space", space, "--searcher", "optuna-tpe", "--objectives", "params", "--output", tmp_path / "b"],
        capsys,
    )
    assert code == 2 and "objectives must start with 'auc'" in err
    code, _, err = run_cli(
        [
            "search",
            "--space",
            space,
            "--searcher",
            "optuna-tpe",
            "--pruner",
            "sometimes",
            "--output",
            tmp_path / "c",
            "--tracking-uri",
            mlflow_uri,
            *SMALL,
        ],
        capsys,
    )
    assert code == 2 and "search.params.pruner" in err


def test_all_candidates_failing_exits_2_with_a_summary(tmp_path, mlflow_uri, capsys, test_plugin):
    from test_runner import write_space as ws

    space = ws(tmp_path, {"boom": {"name": "boom"}})
    code, text, err = run_cli(
        [
            "search",
            "--space",
            space,
            "--searcher",
            "optuna-random",
            "--budget",
            "2",
            "--output",
            tmp_path / "o",
            "--tracking-uri",
            mlflow_uri,
            *SMALL,
        ],
        capsys,
    )
    assert code == 2
    assert "no candidate finished" in err and "expert 'boom' from plugin 'searchtest'" in err
    assert "Traceback" not in err + text


def test_default_searcher_is_darts(tmp_path, mlflow_uri, capsys):
    from mdmt_nas.plugins import get_registry

    if "darts" not in get_registry().names("searcher"):
        pytest.skip("the darts searcher is not registered in this tree yet")
    out = tmp_path / "out"
    code, text, err = run_cli(
        [
            "search",
            "--space",
            write_space(tmp_path),
            "--budget",
            "1",
            "--output",
            out,
            "--tracking-uri",
            mlflow_uri,
            *SMALL,
            "--set",
            "train.epochs=1",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads((out / "search.json").read_text())["searcher"] == "darts"
    assert (out / "best_arch.json").exists() and (out / "weights.pt").exists()


def test_ui_dry_run_and_remote_store(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    code, text, _ = run_cli(["ui", "--dry-run", "--tracking-uri", uri, "--port", "5123"], capsys)
    assert (
        code == 0
        and "http://127.0.0.1:5123" in text
        and f"--backend-store-uri {uri}" in text
        and "--host 127.0.0.1" in text
    )
    code, text, _ = run_cli(["ui", "--tracking-uri", "http://mlflow.example:5000"], capsys)
    assert code == 0 and "server already" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_and_stops_cleanly(tmp_path):
    psutil = pytest.importorskip("psutil")
    port = _free_port()
    env = {**os.environ, "MDMT_NAS_LOAD_PLUGINS": ""}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mdmt_nas",
            "ui",
            "--port",
            str(port),
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'm.db'}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
            if proc.poll() is not None:
                pytest.fail("mdmt-nas ui exited:\n" + proc.stdout.read())
        else:
            pytest.fail("the MLflow UI did not answer within 180 s")
        time.sleep(2)  # let the server start its background job runner too
        family = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert family
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        proc.wait(timeout=60)

        def alive() -> list[int]:
            out = []
            for pid in family:
                try:
                    if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                        out.append(pid)
                except psutil.NoSuchProcess:
                    pass
            return out

        deadline = time.monotonic() + 20
        while alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert alive() == []
        assert f"http://127.0.0.1:{port}" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
