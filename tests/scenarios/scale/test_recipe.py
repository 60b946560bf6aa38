"""docs/scale-out.md's N-machines recipe, run as written on loopback: its `createdb` and `mdmt-nas server` lines
against a throwaway PostgreSQL, then two copies of its worker line (DBHOST/TRACKHOST -> 127.0.0.1, tiny data)."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from rel_helpers import SMALL, cli_env, finish, start  # noqa: E402
from scale_servers import free_port, pg_bin  # noqa: E402

DOC = Path(__file__).resolve().parents[3] / "docs" / "scale-out.md"


def recipe_lines() -> list[str]:
    """The commands of the ```bash recipe block (comments dropped)."""
    text = DOC.read_text()
    block = text.split("```bash recipe\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _loopback(line: str, pg_port: int, track_port: int, artifacts: Path) -> str:
    return (
        line.replace("DBHOST:5432", f"127.0.0.1:{pg_port}")
        .replace("TRACKHOST:5000", f"127.0.0.1:{track_port}")
        .replace("--host 0.0.0.0", "--host 127.0.0.1")
        .replace("--port 5000", f"--port {track_port}")
        .replace("/srv/mlflow-artifacts", str(artifacts))
    )


def test_the_n_machines_recipe_runs_as_written_on_loopback(tmp_path, postgres):
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    createdb, server, worker = recipe_lines()
    assert (
        createdb.startswith("createdb")
        and server.startswith("mdmt-nas server")
        and worker.startswith("mdmt-nas search")
    )
    track_port = free_port()
    server, worker = (_loopback(x, postgres.port, track_port, tmp_path / "artifacts") for x in (server, worker))
    bindir = str(Path(pg_bin("createdb") or "createdb").parent)
    env = {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres.port),
        "PGUSER": "mdmt",
        "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")]),
    }
    done = subprocess.run(["bash", "-c", createdb], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdmt_nas", *shlex.split(server)[1:]],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**cli_env(), "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])},
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{track_port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.5)
        # what the recipe says it prints: `mdmt-nas server` prints it once its own health check passes, which may be
        # a moment after ours did
        while f"--tracking-uri {uri}" not in (tmp_path / "server.log").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.2)

        small = [
            *SMALL,
            "--budget",
            "3",
            "--epochs",
            "1",
            "--set",
            "search.params.pruner=none",
            "--set",
            "tracking.log_model=false",
        ]
        args = shlex.split(worker)[1:]
        procs = [start([*args, *small, "--output", tmp_path / f"worker-{i}"], cli_env()) for i in (1, 2)]
        for code, out in [finish(p, timeout=900) for p in procs]:
            assert code == 0, out[-4000:]
        client = MlflowClient(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        assert len(parents) == 1, [r.info.run_name for r in parents]
        assert all(r.info.status != "RUNNING" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
        assert "leaderboard.csv" in {f.path for f in client.list_artifacts(parents[0].info.run_id)}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()

    study = optuna.load_study(study_name="mmoe-tpe", storage=postgres.url("optuna"))
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials) >= 3
