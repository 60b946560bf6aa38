"""`mdmt-nas dashboard RUN_DIR`: optuna-dashboard on 127.0.0.1 for the study of an Optuna search."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

from helpers import run_cli
from test_runner import _one_thread, load_tiny, make_config, mlflow_uri, splits  # noqa: F401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_dashboard_serves_the_study_of_a_search(tmp_path, mlflow_uri, splits):
    from mdmt_nas.cli.dashboard import find_study
    from mdmt_nas.cli.ui import stop_group
    from mdmt_nas.search.runner import run_search

    out = tmp_path / "search"
    outcome = run_search(
        make_config(mlflow_uri, searcher="optuna-random", budget=2), out, space=load_tiny(tmp_path), splits=splits
    )
    info = outcome.summary["searcher_info"]
    assert find_study(out) == (info["storage"], info["study_name"])
    port = _free_port()
    log = open(tmp_path / "dashboard.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdmt_nas", "dashboard", str(out), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "dashboard.log").read_text()
            try:
                studies = _get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard did not answer within 120 s"
                time.sleep(0.5)
        assert [s["study_name"] for s in studies] == [info["study_name"]]
        detail = _get(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}")
        assert len(detail["trials"]) == info["trials"] == 2
    finally:
        stop_group(proc)
        log.close()
    text = (tmp_path / "dashboard.log").read_text()
    assert f"http://127.0.0.1:{port}/dashboard/studies/{studies[0]['study_id']}" in text and "dashboard stopped" in text
    assert proc.returncode == 0, text


def test_dashboard_errors(tmp_path, capsys, monkeypatch):
    (tmp_path / "darts").mkdir()
    (tmp_path / "darts" / "search.json").write_text(json.dumps({"searcher": "darts", "searcher_info": {}}))
    code, _, err = run_cli(["dashboard", tmp_path / "darts"], capsys)
    assert code == 2 and "holds a darts search" in err and "optuna-tpe" in err
    code, _, err = run_cli(["dashboard", tmp_path / "nowhere"], capsys)
    assert code == 2 and "not a directory" in err
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # as if the extra were not installed
    code, _, err = run_cli(["dashboard", tmp_path / "darts"], capsys)
    assert code == 2 and "pip install 'mdmt-nas[dashboard]'" in err
