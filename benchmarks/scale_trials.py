"""Trials per hour of one small search with 1, 2 and 4 workers: local processes sharing a PostgreSQL study, and the Ray executor.

The search is fixed (the tiny test space, `optuna-random`, `--budget` trials in
the whole study, 1 epoch on a small synthetic sample, 1 thread per candidate),
so what changes between rows is only how candidates are spread over workers.
Each row starts from fresh databases on one throwaway PostgreSQL server
(initdb + pg_ctl on a free loopback port, as the tests do: tests/scale_servers.py)
holding both the Optuna study and the MLflow store. Per row it prints:

- wall: from starting the worker process(es) to the last exit (includes start-up:
  Python imports, Ray's start for the Ray rows);
- span: first trial start to last trial end (Optuna's timestamps), and trials/hour
  over the span;
- trial s: mean duration of a completed trial (Optuna), train s: mean training
  time of its candidate (MLflow `train_seconds`), and their difference, the
  per-trial overhead (evaluation, logging, study and tracking requests);
- busy: sum of trial durations / (workers x span), the share of worker time
  spent inside trials.

On a 2-core machine more than two workers cannot speed training up; the
per-trial overhead and the busy share are the parts that carry over to a
cluster. Needs PostgreSQL's server binaries (Debian: apt-get install postgresql)
and, for the Ray rows, the `ray` extra.

    python benchmarks/scale_trials.py [--trials 24] [--workers 1,2,4] [--executors local,ray]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the throwaway servers and the tiny space of the tests

from helpers import tiny_space_yaml  # noqa: E402
from scale_servers import postgres_server  # noqa: E402


def _args(a: argparse.Namespace, space: Path, storage: str, tracking: str, study: str, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mdmt_nas",
        "search",
        "--space",
        str(space),
        "--searcher",
        "optuna-random",
        "--budget",
        str(a.trials),
        "--epochs",
        "1",
        "--seed",
        "0",
        "--storage",
        storage,
        "--study-name",
        study,
        "--output",
        str(out),
        "--tracking-uri",
        tracking,
        "--no-warm-start",
        "--set",
        f"dataset.params.n_rows={a.rows}",
        "--set",
        "train.threads=1",
        "--set",
        "train.progress=false",
        "--set",
        "train.patience=0",
        "--set",
        "search.params.pruner=none",
        "--set",
        "tracking.log_model=false",
    ]


def _run(cmds: list[list[str]], log: Path) -> float:
    env = {**os.environ, "MDMT_NAS_LOAD_PLUGINS": "", "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    with open(log, "w") as f:
        procs = [subprocess.Popen(c, env=env, stdout=f, stderr=subprocess.STDOUT) for c in cmds]
        codes = [p.wait(timeout=3600) for p in procs]
    wall = time.perf_counter() - t0
    if any(codes):
        raise SystemExit(f"a worker failed (exit {codes}); see {log}:\n{log.read_text()[-3000:]}")
    return wall


def _measure(storage: str, tracking: str, study_name: str, workers: int) -> dict[str, float]:
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    trials = [
        t for t in optuna.load_study(study_name=study_name, storage=storage).trials if t.state == TrialState.COMPLETE
    ]
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    span = (end - start).total_seconds()
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
    client = MlflowClient(tracking)
    runs = client.search_runs([client.get_experiment_by_name("mdmt-nas").experiment_id], max_results=5000)
    train = [
        r.data.metrics["train_seconds"]
        for r in runs
        if r.data.tags.get("mdmt_nas.kind") == "candidate" and "train_seconds" in r.data.metrics
    ]
    trial_s, train_s = statistics.mean(durations), statistics.mean(train) if train else float("nan")
    return {
        "trials": len(trials),
        "span": span,
        "per_hour": 3600 * len(trials) / span,
        "trial_s": trial_s,
        "train_s": train_s,
        "overhead_s": trial_s - train_s,
        "busy": sum(durations) / (workers * span),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=24, help="completed trials in the whole study")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument(
        "--executors",
        default="local,ray",
        help="local (N processes on one PostgreSQL study) and/or ray (--executor ray --workers N)",
    )
    ap.add_argument("--rows", type=int, default=20000, help="synthetic rows per candidate")
    a = ap.parse_args()
    workers = [int(w) for w in a.workers.split(",")]
    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, postgres_server() as pg:
        space = Path(tmp) / "tiny.yaml"
        space.write_text(tiny_space_yaml())
        for executor in a.executors.split(","):
            for n in workers:
                tag = f"{executor}_{n}"
                pg.createdb(f"optuna_{tag}", f"mlflow_{tag}")
                storage, tracking = pg.url(f"optuna_{tag}"), pg.url(f"mlflow_{tag}")
                out = Path(tmp) / tag
                if executor == "local":
                    cmds = [_args(a, space, storage, tracking, tag, out / f"worker-{i}") for i in range(n)]
                else:
                    cmds = [
                        [
                            *_args(a, space, storage, tracking, tag, out),
                            "--executor",
                            "ray",
                            "--workers",
                            str(n),
                            "--cpus-per-trial",
                            "1",
                        ]
                    ]
                wall = _run(cmds, Path(tmp) / f"{tag}.log")
                rows.append((executor, n, wall, _measure(storage, tracking, tag, n)))
                print(f"  {executor} x{n}: {wall:.1f} s wall, load {os.getloadavg()[0]:.2f}", flush=True)
    print(
        f"\n{a.trials} trials of the tiny space (optuna-random, 1 epoch on {a.rows:,} synthetic rows, 1 thread each), "
        f"PostgreSQL study + MLflow store on loopback; load average {' / '.join(f'{x:.2f}' for x in load0)} before, "
        f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())} after; {os.cpu_count()} CPUs\n"
    )
    print(
        f"{'executor':<9}{'workers':>8}{'wall s':>9}{'span s':>9}{'trials':>8}{'trials/h':>10}{'trial s':>9}{'train s':>9}{'overhead s':>12}{'busy':>7}"
    )
    print("-" * 90)
    base = {}
    for executor, n, wall, m in rows:
        base.setdefault(executor, m["per_hour"])
        print(
            f"{executor:<9}{n:>8}{wall:>9.1f}{m['span']:>9.1f}{m['trials']:>8}{m['per_hour']:>10,.0f}{m['trial_s']:>9.2f}{m['train_s']:>9.2f}"
            f"{m['overhead_s']:>12.2f}{100 * m['busy']:>6.0f}%   ({m['per_hour'] / base[executor]:.2f}x of 1 worker)"
        )


if __name__ == "__main__":
    main()
