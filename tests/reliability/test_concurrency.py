"""Several `mdmt-nas search` processes sharing one Optuna study (--storage URL --study-name S):
no lost or duplicated trials, one MLflow parent run, nothing left RUNNING.

SQLite (Optuna RDBStorage with a 60 s busy timeout; MLflow's SQLite store) is the local choice, see
docs/reliability.md; the PostgreSQL variant runs when the server binaries and psycopg2 are installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from rel_helpers import SMALL, cli_env, finish, start, write_space

WORKERS = 4
BUDGET = 4


def _worker_args(space: Path, storage: str, study: str, out: Path, mlflow: str, experiment: str) -> list[str]:
    return ["search", "--space", space, "--searcher", "optuna-random", "--budget", str(BUDGET), "--epochs", "1", "--seed", "3",
            "--storage", storage, "--study-name", study, "--output", out, "--tracking-uri", mlflow, *SMALL,
            "--set", f"tracking.experiment={experiment}", "--set", "search.params.pruner=none"]


def _check_shared_study(storage: str, study_name: str, mlflow: str, experiment: str, logs: list[str]) -> None:
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.trials
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == max(numbers) + 1, f"trial numbers lost or duplicated: {sorted(numbers)}"
    states = [t.state for t in trials]
    done = states.count(TrialState.COMPLETE)
    assert BUDGET <= done <= BUDGET + WORKERS - 1, (states, logs)  # workers finish the trial they hold when the budget is reached
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    client = MlflowClient(mlflow)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1, f"{len(parents)} parent runs"
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    assert all(r.info.status != "RUNNING" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    trained = sorted(t.number for t in trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs)
    logged = sorted(int(r.data.tags["number"]) for r in children if r.data.tags.get("mdmt_nas.kind") == "candidate")
    assert logged == trained, f"MLflow children {logged} vs trained trials {trained}"  # each trained trial logged exactly once
    assert study.user_attrs["mdmt_nas.mlflow_parent_run_id"] == parents[0].info.run_id


def _run_workers(tmp: Path, storage: str, study: str, mlflow: str, experiment: str, space: Path) -> None:
    procs = [start(_worker_args(space, storage, study, tmp / f"worker-{i}", mlflow, experiment), cli_env()) for i in range(WORKERS)]
    results = [finish(p, timeout=600) for p in procs]
    logs = [out[-3000:] for _, out in results]
    for code, out in results:
        assert code == 0, out
    _check_shared_study(storage, study, mlflow, experiment, logs)


def test_four_workers_share_one_sqlite_study_three_times(tmp_path):
    space = write_space(tmp_path)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    mlflow = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for round_ in range(3):
        d = tmp_path / f"round-{round_}"
        d.mkdir()
        _run_workers(d, storage, f"shared-{round_}", mlflow, f"shared-{round_}", space)


# ------------------------------------------------------------------------------ PostgreSQL
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / name).exists():
            return str(d / name)
    return None


@pytest.fixture
def postgres(tmp_path):
    """A throwaway PostgreSQL server on 127.0.0.1 (skipped without the server binaries or psycopg2)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed: apt-get install postgresql")
    pytest.importorskip("psycopg2", reason="psycopg2 not installed: pip install psycopg2-binary")
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="mdmt-pg-"))  # outside pytest's private temp folder, so another user can enter it
    data = base / "pgdata"
    run_as: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        run_as = ["runuser", "-u", "nobody", "--"]
        os.chmod(base, 0o777)
        data.mkdir(mode=0o700)
        shutil.chown(data, "nobody")
    port = _free_port()
    subprocess.run([*run_as, initdb, "-D", str(data), "-U", "mdmt", "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    log = base / "pg.log"
    subprocess.run([*run_as, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
                    f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        import psycopg2

        for _ in range(50):
            try:
                con = psycopg2.connect(host="127.0.0.1", port=port, user="mdmt", dbname="postgres")
                break
            except psycopg2.OperationalError:
                time.sleep(0.2)
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("create database optuna")
            cur.execute("create database mlflow")
        con.close()
        yield f"postgresql+psycopg2://mdmt@127.0.0.1:{port}"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_four_workers_share_one_postgres_study(tmp_path, postgres):
    space = write_space(tmp_path)
    _run_workers(tmp_path, f"{postgres}/optuna", "pg-shared", f"{postgres}/mlflow", "pg-shared", space)
