"""Optuna searchers: resumable studies (budget and SIGKILL), shared storage, NSGA-II Pareto front, pruning, grid."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_runner import MLP_OPTIONS, _one_thread, load_tiny, make_config, mlflow_uri, runs_of, splits, test_plugin, write_space  # noqa: F401  # fmt: skip

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402


def states(storage: str, study_name: str | None = None) -> list[TrialState]:
    names = optuna.get_all_study_names(storage)
    study = optuna.load_study(study_name=study_name or names[0], storage=storage)
    return [t.state for t in study.trials]


def test_resume_by_budget_reaches_the_total_and_keeps_one_parent(tmp_path, mlflow_uri, splits):
    from mdmt_nas.search.runner import run_search

    space = load_tiny(tmp_path)
    out = tmp_path / "out"
    cfg3 = make_config(mlflow_uri, searcher="optuna-random", budget=3, params={"pruner": "none"})
    first = run_search(cfg3, out, space=space, splits=splits)
    storage = f"sqlite:///{out / 'study.db'}"
    assert states(storage).count(TrialState.COMPLETE) == 3

    cfg6 = cfg3.model_copy(update={"search": cfg3.search.model_copy(update={"budget": 6})})
    second = run_search(cfg6, out, space=space, splits=splits, resume=True)
    assert states(storage).count(TrialState.COMPLETE) == 6
    assert second.parent_run_id == first.parent_run_id
    parents, children = runs_of(mlflow_uri, cfg3.tracking.experiment)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    # the leaderboard spans both runs; repeated architectures are not trained twice
    assert len(second.result.candidates) == len(children) == second.summary["finished"]
    assert len({c.arch.id for c in second.result.candidates}) == len(second.result.candidates)
    assert sorted(c.number for c in second.result.candidates)[0] == 0
    assert json.loads((out / "search.json").read_text())["budget"] == 6

    again = run_search(cfg6, out, space=space, splits=splits, resume=True)  # budget reached: nothing new runs
    assert states(storage).count(TrialState.COMPLETE) == 6
    assert len(again.result.candidates) == len(second.result.candidates)


def test_shared_storage_and_study_name_continue_one_study(tmp_path, mlflow_uri, splits):
    from mdmt_nas.search.runner import run_search

    space = load_tiny(tmp_path)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    cfg = make_config(
        mlflow_uri, searcher="optuna-tpe", budget=2, storage=storage, study_name="shared", params={"pruner": "none"}
    )
    a = run_search(cfg, tmp_path / "machine-a", space=space, splits=splits)
    cfg4 = cfg.model_copy(update={"search": cfg.search.model_copy(update={"budget": 4})})
    b = run_search(cfg4, tmp_path / "machine-b", space=space, splits=splits)
    assert states(storage, "shared").count(TrialState.COMPLETE) == 4
    assert a.parent_run_id == b.parent_run_id
    assert not (tmp_path / "machine-b" / "study.db").exists()


def test_study_for_another_space_is_refused(tmp_path, mlflow_uri, splits):
    from mdmt_nas.errors import UserError
    from mdmt_nas.search.runner import run_search

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    cfg = make_config(mlflow_uri, searcher="optuna-random", budget=1, storage=storage, study_name="s")
    run_search(cfg, tmp_path / "a", space=load_tiny(tmp_path), splits=splits)
    (tmp_path / "other").mkdir()
    with pytest.raises(UserError, match="was created for space 'tiny'"):
        run_search(cfg, tmp_path / "b", space=load_tiny(tmp_path / "other", name="other"), splits=splits)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mdmt_nas", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _db_states(db: Path, beating: bool = False) -> list[str]:
    """Trial states in a study DB (beating: only RUNNING trials that recorded a heartbeat count as RUNNING)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            rows = con.execute(
                "select t.state, count(h.trial_id) from trials t left join trial_heartbeats h on h.trial_id = t.trial_id "
                "group by t.trial_id"
            ).fetchall()
    except sqlite3.Error:
        return []
    return [s if not (beating and s == "RUNNING" and n == 0) else "STARTING" for s, n in rows]


def _training_children(uri: str, experiment: str) -> int:
    """Child runs RUNNING in an MLflow SQLite store (read directly: cheap enough to poll)."""
    try:
        with sqlite3.connect(f"file:{uri.removeprefix('sqlite:///')}?mode=ro", uri=True, timeout=1) as con:
            return con.execute(
                "select count(*) from runs r join experiments e on e.experiment_id = r.experiment_id "
                "where e.name = ? and r.status = 'RUNNING' and r.run_uuid in (select run_uuid from tags where key = 'mlflow.parentRunId')",
                (experiment,),
            ).fetchone()[0]
    except sqlite3.Error:
        return 0


def test_sigkilled_search_resumes_to_exactly_the_budget(tmp_path, mlflow_uri):
    """Kill -9 a search while its 4th trial runs; --resume fails the stale trial, retries it and ends with 6 complete."""
    space = write_space(tmp_path)
    out = tmp_path / "out"
    args = [
        "search",
        "--space",
        str(space),
        "--searcher",
        "optuna-random",
        "--budget",
        "6",
        "--epochs",
        "8",
        "--output",
        str(out),
        "--tracking-uri",
        mlflow_uri,
        "--set",
        "dataset.params.n_rows=3000",
        "--set",
        "train.threads=1",
        "--set",
        "train.batch_size=256",
        "--set",
        "train.patience=0",
        "--set",
        "search.params.pruner=none",
        "--set",
        "search.params.heartbeat_interval=1",
        "--set",
        "search.params.grace_period=2",
        "--set",
        "tracking.experiment=sigkill",
    ]
    env = {**os.environ, "COLUMNS": "200", "MDMT_NAS_LOAD_PLUGINS": ""}
    proc = _cli(args, env)
    db = out / "study.db"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            s = _db_states(db, beating=True)
            if (
                s.count("COMPLETE") >= 3 and "RUNNING" in s and _training_children(mlflow_uri, "sigkill")
            ):  # a candidate trains
                break
            if proc.poll() is not None:
                pytest.fail("the search ended before it could be killed:\n" + proc.stdout.read())
            time.sleep(0.05)
        else:
            pytest.fail("no running 4th trial within 300 s")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = _db_states(db)
    assert "RUNNING" in killed and killed.count("COMPLETE") < 6
    time.sleep(3)  # past the grace period: the RUNNING trial is stale

    resumed = _cli([*args, "--resume"], env)
    text, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, text
    final = _db_states(db)
    assert final.count("COMPLETE") == 6
    assert final.count("FAIL") >= 1 and "RUNNING" not in final  # the stale trial, retried as a new trial
    study = optuna.load_study(study_name=optuna.get_all_study_names(f"sqlite:///{db}")[0], storage=f"sqlite:///{db}")
    stale = [t for t in study.trials if t.state == TrialState.FAIL]
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") in {s.number for s in stale}]
    assert retried and all(
        r.params == next(s for s in stale if s.number == r.system_attrs["failed_trial"]).params for r in retried
    )
    parents, children = runs_of(mlflow_uri, "sigkill")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert any(
        c.info.status == "KILLED" and c.data.tags.get("state") == "killed" for c in children
    )  # the candidate the kill interrupted
    assert "best architecture:" in text and "best_arch.json" in text


def test_nsga2_reports_a_pareto_front(tmp_path, mlflow_uri, splits):
    from mdmt_nas.search import report
    from mdmt_nas.search.runner import run_search

    out = tmp_path / "out"
    cfg = make_config(
        mlflow_uri, searcher="optuna-nsga2", budget=6, objectives=["auc", "params"], params={"population_size": 4}
    )
    outcome = run_search(cfg, out, space=load_tiny(tmp_path), splits=splits)
    front = outcome.result.pareto
    assert front
    done = [c for c in outcome.result.candidates if c.state == "finished"]
    for c in front:
        v = report.objective_vector(c, ["auc", "params"])
        assert not any(report.dominates(report.objective_vector(o, ["auc", "params"]), v) for o in done)
    for c in done:
        if all(c.arch.id != f.arch.id for f in front):
            assert any(
                report.dominates(
                    report.objective_vector(f, ["auc", "params"]), report.objective_vector(c, ["auc", "params"])
                )
                for f in front
            )
    assert (out / "pareto.png").exists()
    summary = json.loads((out / "search.json").read_text())
    assert {p["arch_id"] for p in summary["pareto"]} == {c.arch.id for c in front}
    csv_rows = (out / "leaderboard.csv").read_text().splitlines()
    assert sum(",True," in r for r in csv_rows) == len(front)
    study = optuna.load_study(
        study_name=optuna.get_all_study_names(f"sqlite:///{out / 'study.db'}")[0],
        storage=f"sqlite:///{out / 'study.db'}",
    )
    assert len(study.directions) == 2
    from mlflow.tracking import MlflowClient

    parents, _ = runs_of(mlflow_uri, cfg.tracking.experiment)
    assert "pareto.png" in {a.path for a in MlflowClient(mlflow_uri).list_artifacts(parents[0].info.run_id)}


def test_median_pruner_prunes_poor_candidates(tmp_path, mlflow_uri, splits, test_plugin):
    """Grid order: the six working architectures first, then the zero-output ones, which the median pruner stops."""
    from mdmt_nas.search.runner import run_search

    space = load_tiny(tmp_path, {"mlp-16": MLP_OPTIONS["mlp-16"], "zero": {"name": "zero_expert"}})
    cfg = make_config(
        mlflow_uri,
        train={"epochs": 4, "lr": 0.01},
        searcher="optuna-grid",
        budget=9,
        params={"pruner": "median", "n_startup_trials": 2, "reports_per_epoch": 1},
    )
    out = tmp_path / "out"
    outcome = run_search(cfg, out, space=space, splits=splits)
    pruned = [c for c in outcome.result.candidates if c.state == "pruned"]
    zero = [
        c for c in outcome.result.candidates if c.assignment["expert"] == "zero" and not c.assignment["task_experts"]
    ]
    assert (
        len(zero) == 1 and zero[0].state == "pruned"
    )  # only zero-output experts: AUC 0.5 (with task experts it can learn)
    assert outcome.best.assignment["expert"] == "mlp-16"
    assert all(c.reason.startswith("pruned after epoch") for c in pruned)
    assert states(f"sqlite:///{out / 'study.db'}").count(TrialState.PRUNED) == len(pruned)
    _, children = runs_of(mlflow_uri, cfg.tracking.experiment)
    assert sum(r.data.tags["state"] == "pruned" for r in children) == len(pruned)


def test_grid_visits_every_architecture_once(tmp_path, mlflow_uri, splits):
    from mdmt_nas.search.runner import run_search

    space = load_tiny(tmp_path, {"mlp-8": MLP_OPTIONS["mlp-8"]})
    cfg = make_config(mlflow_uri, searcher="optuna-grid", params={"pruner": "none"}, epochs=1)
    outcome = run_search(cfg, tmp_path / "out", space=space, splits=splits)
    assert outcome.summary["budget"] == space.size() == 6
    ids = [c.arch.id for c in outcome.result.candidates]
    assert len(ids) == len(set(ids)) == 6
    assert {a.id for _, a in space.enumerate()} == set(ids)


def test_hyperband_pruner_runs(tmp_path, mlflow_uri, splits):
    from mdmt_nas.search.runner import run_search

    cfg = make_config(mlflow_uri, train={"epochs": 3}, searcher="optuna-tpe", budget=3, params={"pruner": "hyperband"})
    outcome = run_search(cfg, tmp_path / "out", space=load_tiny(tmp_path), splits=splits)
    assert outcome.best is not None


def test_timeout_ends_the_search_early_with_results(tmp_path, mlflow_uri, splits):
    from mdmt_nas.search.runner import run_search

    cfg = make_config(mlflow_uri, searcher="optuna-random", budget=200, timeout=8, epochs=1, params={"pruner": "none"})
    t0 = time.monotonic()
    outcome = run_search(cfg, tmp_path / "out", space=load_tiny(tmp_path), splits=splits)
    assert time.monotonic() - t0 < 120
    n = outcome.summary["searcher_info"]["trials"]
    assert 1 <= n < 200 and outcome.best is not None
    assert json.loads((tmp_path / "out" / "search.json").read_text())["status"] == "finished"
