"""`run_until_exit`, the one run-a-server-until-it-ends block of `mdmt-nas ui` and `mdmt-nas server`."""

from __future__ import annotations

import sys

import pytest

from mdmt_nas.cli.ui import run_until_exit
from mdmt_nas.errors import UserError


def test_a_server_that_ends_cleanly_returns_after_started_saw_it():
    seen = []
    run_until_exit([sys.executable, "-c", "pass"], 5000, started=lambda proc: seen.append(proc.pid))
    assert len(seen) == 1


def test_a_server_that_fails_names_its_status_and_the_port():
    with pytest.raises(UserError, match=r"exited with status 3 \(is port 5123 in use\? try --port\)"):
        run_until_exit([sys.executable, "-c", "raise SystemExit(3)"], 5123)


def test_a_command_that_cannot_start_is_named():
    with pytest.raises(UserError, match="cannot start the MLflow server .*no-such-mlflow-binary"):
        run_until_exit(["/nonexistent/no-such-mlflow-binary", "server"], 5000)


def test_ctrl_c_while_starting_stops_the_process_group():
    procs = []

    def interrupted(proc):
        procs.append(proc)
        raise KeyboardInterrupt

    run_until_exit([sys.executable, "-c", "import time; time.sleep(60)"], 5000, started=interrupted)
    assert procs[0].poll() is not None  # stopped, not left running
