"""Several `mdmt-nas search` processes sharing one Optuna study (--storage URL --study-name S):
no lost or duplicated trials, one MLflow parent run, nothing left RUNNING.

SQLite (Optuna RDBStorage with a 60 s busy timeout; MLflow's SQLite store) is the local choice, see
docs/reliability.md; the PostgreSQL variant starts a throwaway server (skipped without one outside CI, failed in CI).
"""

from __future__ import annotations

from pathlib import Path

from rel_helpers import SMALL, cli_env, finish, start, write_space

WORKERS = 4
BUDGET = 4


def _worker_args(space: Path, storage: str, study: str, out: Path, mlflow: str, experiment: str) -> list[str]:
    return [
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
        "3",
        "--storage",
        storage,
        "--study-name",
        study,
        "--output",
        out,
        "--tracking-uri",
        mlflow,
        *SMALL,
        "--set",
        f"tracking.experiment={experiment}",
        "--set",
        "search.params.pruner=none",
    ]


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
    assert BUDGET <= done <= BUDGET + WORKERS - 1, (
        states,
        logs,
    )  # workers finish the trial they hold when the budget is reached
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
    assert logged == trained, (
        f"MLflow children {logged} vs trained trials {trained}"
    )  # each trained trial logged exactly once
    assert study.user_attrs["mdmt_nas.mlflow_parent_run_id"] == parents[0].info.run_id


def _run_workers(tmp: Path, storage: str, study: str, mlflow: str, experiment: str, space: Path) -> None:
    procs = [
        start(_worker_args(space, storage, study, tmp / f"worker-{i}", mlflow, experiment), cli_env())
        for i in range(WORKERS)
    ]
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
def test_four_workers_share_one_postgres_study(tmp_path, postgres):
    """A throwaway server (tests/scale_servers.py; .ci/run installs PostgreSQL, so in CI this never skips)."""
    postgres.createdb("optuna", "mlflow")
    space = write_space(tmp_path)
    _run_workers(tmp_path, postgres.url("optuna"), "pg-shared", postgres.url("mlflow"), "pg-shared", space)
