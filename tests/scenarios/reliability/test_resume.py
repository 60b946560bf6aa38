"""Resume after any interruption: `mdmt-nas search` is killed (SIGKILL at several points, SIGINT and SIGTERM
once each) and run again with --resume until it finishes.

Optuna: exactly the requested number of COMPLETE trials, none left RUNNING (heartbeat + fail_stale_trials,
the stale trial retried), one MLflow parent run, no MLflow run left RUNNING.
DARTS: the same final architecture as an uninterrupted run with the same seed (CPU), checkpoints that load
with torch.load(weights_only=True), no MLflow run left RUNNING.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import torch

from rel_helpers import SMALL, cli_env, finish, kill, run_statuses, start, trial_states, wait_for, write_space


def _no_run_left_running(db: Path) -> None:
    statuses = run_statuses(db)
    assert statuses and all(s != "RUNNING" for s, _ in statuses), statuses
    parents = {p for _, p in statuses if p}
    assert len([s for s, p in statuses if not p]) == 1 and len(parents) == 1, f"parents: {statuses}"


#: 8 expert options x 1..3 experts = 24 architectures: few repeated proposals (a repeat trains nothing)
WIDE = {
    f"mlp-{'-'.join(map(str, h))}": f"{{name: mlp, params: {{hidden: {list(h)}}}}}"
    for h in ((4,), (6,), (8,), (12,), (16,), (8, 8), (16, 8), (4, 4))
}


def test_optuna_search_survives_sigkill_sigint_and_sigterm(tmp_path):
    space = write_space(tmp_path, WIDE)
    out, mlflow = tmp_path / "out", tmp_path / "mlflow.db"
    budget = 6
    args = [
        "search",
        "--space",
        space,
        "--searcher",
        "optuna-random",
        "--budget",
        str(budget),
        "--epochs",
        "8",
        "--output",
        out,
        "--tracking-uri",
        f"sqlite:///{mlflow}",
        *SMALL,
        "--set",
        "train.batch_size=128",  # ~1 s per candidate: time to hit it "--set", "tracking.experiment=resume", "--set", "search.params.pruner=none",
        "--set",
        "search.params.heartbeat_interval=1",
        "--set",
        "search.params.grace_period=2",
    ]
    db = out / "study.db"
    log = tmp_path / "log.txt"

    def running_after(n_complete: int):
        """A candidate of *this* process trains (its trial and child run are RUNNING; not the stale trial a
        SIGKILLed process left) after n trials completed."""
        n_before = len(trial_states(db))
        runs_before = len(run_statuses(mlflow))

        def cond() -> bool:
            s = trial_states(db)
            if s.count("COMPLETE") < n_complete or "RUNNING" not in s[n_before:]:
                return False
            return (
                any(st == "RUNNING" and p for st, p in run_statuses(mlflow)) and len(run_statuses(mlflow)) > runs_before
            )

        return cond

    # (signal, moment, exit status): startup (parent run opened, no trial yet), then mid-trial at growing progress
    steps = [
        (signal.SIGKILL, lambda: lambda: (out / "parent_run.txt").exists(), -9, "startup"),
        (signal.SIGKILL, lambda: running_after(1), -9, "a trial (1 complete)"),
        (signal.SIGINT, lambda: running_after(0), 130, "the first trial of the resumed search"),
        (signal.SIGTERM, lambda: running_after(0), 143, "the first trial of the resumed search"),
    ]
    for i, (sig, moment, status, what) in enumerate(steps):
        cond = moment()  # taken before the process starts: counts the trials already there
        proc = start([*args, *(["--resume"] if i else [])], cli_env(), log=log)
        wait_for(cond, proc, timeout=300, what=what)
        assert kill(proc, sig) == status, log.read_text()[-3000:]
        states = trial_states(db)
        assert states.count("COMPLETE") < budget, states
        if sig != signal.SIGKILL:  # a graceful stop ends the runs KILLED at once, and the trial FAIL (unless the signal
            # came between Optuna creating the trial and running it: then the next start fails it, see docs/reliability.md)
            assert all(s != "RUNNING" for s, _ in run_statuses(mlflow)), run_statuses(mlflow)
            assert states.count("RUNNING") <= 1, states
    time.sleep(2.5)  # past the grace period of the SIGKILLed trial's heartbeat
    code, text = finish(start([*args, "--resume"], cli_env()))
    assert code == 0, log.read_text()[-2000:] + text

    import optuna
    from optuna.trial import TrialState

    storage = f"sqlite:///{db}"
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == budget, (
        states
    )  # the budget counts both
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    fails = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(fails) >= 3  # the SIGKILLed trial (stale) and the interrupted ones
    retried = [t for t in study.trials if "failed_trial" in t.system_attrs]
    assert retried, "the stale trial of the SIGKILLed process was not retried"
    _no_run_left_running(mlflow)
    statuses = run_statuses(mlflow)
    assert sum(s == "KILLED" for s, p in statuses if p) >= 3  # SIGKILLed (marked on resume), SIGINT, SIGTERM
    summary = json.loads((out / "search.json").read_text())
    assert summary["status"] == "finished" and summary["parent_run_id" if "parent_run_id" in summary else "mlflow"]


DARTS_ARGS = [
    "--searcher",
    "darts",
    "--budget",
    "3",
    "--seed",
    "7",
    *SMALL,
    "--set",
    "search.params.rows_per_epoch=1200",
    "--set",
    "search.params.batch_size=128",
    "--set",
    "search.params.eval_rows=300",
    "--set",
    "search.params.warmup_epochs=1",
    "--set",
    "search.params.retrain_epochs=1",
    "--set",
    "tracking.experiment=darts",
]


def test_darts_search_resumes_to_the_same_architecture(tmp_path):
    space = write_space(tmp_path)
    mlflow = tmp_path / "mlflow.db"
    base = ["search", "--space", space, *DARTS_ARGS, "--tracking-uri", f"sqlite:///{mlflow}"]
    ref = start([*base, "--output", tmp_path / "reference", "--set", "tracking.experiment=darts-reference"], cli_env())
    out = tmp_path / "out"
    args = [*base, "--output", out]
    ck = out / "darts" / "checkpoint.pt"
    log = tmp_path / "log.txt"

    def epoch_done(n: int):
        def cond() -> bool:
            try:
                return int(torch.load(ck, map_location="cpu", weights_only=True)["epoch"]) >= n
            except Exception:  # noqa: BLE001 - not written yet, or being replaced
                return False

        return cond

    steps = [
        (signal.SIGKILL, lambda: (out / "parent_run.txt").exists(), -9, "startup (before the first checkpoint)"),
        (signal.SIGKILL, epoch_done(1), -9, "epoch 2"),
        (signal.SIGTERM, epoch_done(2), 143, "epoch 3"),
    ]
    for i, (sig, moment, status, what) in enumerate(steps):
        proc = start([*args, *(["--resume"] if i else [])], cli_env(), log=log)
        wait_for(moment, proc, timeout=400, what=what, poll=0.02)
        assert kill(proc, sig) == status, log.read_text()[-3000:]
        if ck.exists():  # written atomically: always a whole checkpoint that loads without unpickling code
            state = torch.load(ck, map_location="cpu", weights_only=True)
            assert {"model", "alphas", "epoch", "rng"} <= set(state)
            assert not list(ck.parent.glob("*.tmp*")) or sig == signal.SIGKILL
    code, text = finish(start([*args, "--resume"], cli_env()))
    assert code == 0, log.read_text()[-2000:] + text
    ref_code, ref_text = finish(ref)
    assert ref_code == 0, ref_text

    resumed = json.loads((out / "best_arch.json").read_text())
    reference = json.loads((tmp_path / "reference" / "best_arch.json").read_text())
    assert resumed == reference
    statuses = run_statuses(mlflow)
    assert statuses and all(s != "RUNNING" for s, _ in statuses), statuses
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{mlflow}")
    runs = client.search_runs([client.get_experiment_by_name("darts").experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the resumed search logs under the same parent
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in runs if r not in parents)
