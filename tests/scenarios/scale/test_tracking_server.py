"""`mdmt-nas server` for many machines: a real MLflow tracking server on a free loopback port with a PostgreSQL
backend, and 3 `mdmt-nas search` workers sharing one PostgreSQL study that log to it over HTTP."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from rel_helpers import SMALL, cli_env, cli_inprocess, finish, start, write_space  # noqa: E402
from scale_servers import mlflow_server  # noqa: E402

WORKERS = 3
BUDGET = 5


def test_three_workers_log_over_http_into_one_parent_with_a_postgres_study(tmp_path, postgres):
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    postgres.createdb("optuna", "mlflow")
    space = write_space(tmp_path)
    artifacts = tmp_path / "artifacts"
    storage, study_name, exp = postgres.url("optuna"), "pg-http", "pg-http"
    with mlflow_server(postgres.plain("mlflow"), artifacts, tmp_path / "server.log") as uri:
        args = [
            "search",
            "--space",
            space,
            "--searcher",
            "optuna-random",
            "--budget",
            str(BUDGET),
            "--epochs",
            "1",
            "--seed",
            "5",
            "--storage",
            storage,
            "--study-name",
            study_name,
            "--tracking-uri",
            uri,
            *SMALL,
            "--set",
            f"tracking.experiment={exp}",
            "--set",
            "search.params.pruner=none",
            "--set",
            "tracking.log_model=false",
        ]
        procs = [start([*args, "--output", tmp_path / f"worker-{i}"], cli_env()) for i in range(WORKERS)]
        results = [finish(p, timeout=900) for p in procs]
        for code, out in results:
            assert code == 0, out[-4000:]

        study = optuna.load_study(study_name=study_name, storage=storage)
        states = [t.state for t in study.trials]
        counted = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
        # each worker stops once the study holds the budget; the trials others hold at that moment finish too
        assert BUDGET <= counted <= BUDGET + WORKERS - 1, states
        assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(exp)
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        assert len(parents) == 1, [(r.info.run_name, r.data.tags.get("mdmt_nas.kind")) for r in parents]
        parent = parents[0]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert len(children) == len(runs) - 1, "a run outside the study's parent"
        assert all(r.info.status != "RUNNING" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
        trained = sorted(
            t.number for t in study.trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs
        )
        logged = sorted(int(r.data.tags["number"]) for r in children if r.data.tags.get("mdmt_nas.kind") == "candidate")
        assert logged == trained, f"each trained trial is one child run: MLflow {logged} vs study {trained}"
        assert study.user_attrs["mdmt_nas.mlflow_parent_run_id"] == parent.info.run_id
        workers = {
            r.data.tags["mdmt_nas.worker"].split(":")[1]
            for r in children
            if r.data.tags.get("mdmt_nas.kind") == "candidate"
        }
        assert len(workers) >= 2, f"the trials were trained by {len(workers)} process(es), expected several"

        # the artifacts live on the server, not in the workers' folders: reachable through its HTTP API
        names = {f.path for f in client.list_artifacts(parent.info.run_id)}
        assert {"leaderboard.csv", "best_arch.json", "auc_vs_trial.png"} <= names, names
        best = json.loads(
            Path(client.download_artifacts(parent.info.run_id, "best_arch.json", str(tmp_path / "dl"))).read_text()
        )
        assert best["embedding_dim"] == 4
        assert parent.info.artifact_uri.startswith("mlflow-artifacts:"), parent.info.artifact_uri
        with urllib.request.urlopen(
            f"{uri}/api/2.0/mlflow-artifacts/artifacts/{experiment.experiment_id}/{parent.info.run_id}"
            "/artifacts/leaderboard.csv",
            timeout=10,
        ) as r:
            head = r.read().decode().splitlines()[0]
        assert "valid_mean_auc" in head, head
        assert any(p.name == "leaderboard.csv" for p in artifacts.rglob("*")), (
            "the server's --artifacts directory holds them"
        )


def test_server_dry_run_binds_loopback_and_prints_the_tracking_uri(tmp_path):
    code, out = cli_inprocess(
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path}/m.db",
        "--artifacts",
        str(tmp_path / "a"),
        "--port",
        "5123",
        "--dry-run",
    )
    assert code == 0, out
    assert (
        "--host 127.0.0.1" in out and "--serve-artifacts" in out and f"--artifacts-destination {tmp_path / 'a'}" in out
    )
    assert "--tracking-uri http://127.0.0.1:5123" in out


def test_server_refuses_an_unreachable_backend_with_the_fix(tmp_path):
    from scale_servers import free_port

    code, out = cli_inprocess(
        "server",
        "--backend-store-uri",
        f"postgresql://nobody@127.0.0.1:{free_port()}/mlflow",
        "--artifacts",
        str(tmp_path / "a"),
    )
    assert code == 2, out
    assert "cannot connect to the backend store" in out and "createdb" in out
