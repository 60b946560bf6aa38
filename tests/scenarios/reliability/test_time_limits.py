"""--timeout bounds the whole search: a candidate training for 10^9 epochs is stopped at the deadline (pruned, reason
"search timeout ..."), the results so far are written (leaderboard, best_arch.json, search.json), exit 0, and no
MLflow run is left RUNNING. DARTS' supernet takes at most half of the time, checked at every batch."""

from __future__ import annotations

import csv
import json
import re
import time

import pytest
from rel_helpers import SMALL, cli_inprocess, mlflow_runs, write_space

HUGE = "1000000000"


@pytest.mark.parametrize("searcher, timeout, budget", [("optuna-random", 5, "50"), ("darts", 10, "1000000")])
def test_timeout_stops_the_running_candidate_and_keeps_the_results(tmp_path, searcher, timeout, budget):
    space, out, db = write_space(tmp_path), tmp_path / "out", tmp_path / "mlflow.db"
    t0 = time.monotonic()
    code, text = cli_inprocess(
        "search",
        "--space",
        space,
        "--searcher",
        searcher,
        "--budget",
        budget,
        "--epochs",
        HUGE,
        "--timeout",
        str(timeout),
        "--output",
        out,
        "--tracking-uri",
        f"sqlite:///{db}",
        "--set",
        f"tracking.experiment=t-{searcher}",
        *SMALL,
        cwd=tmp_path,
    )
    elapsed = time.monotonic() - t0
    assert code == 0, text
    assert elapsed < timeout + 60, elapsed  # the deadline, plus the final report and the MLflow model
    assert "stopped early: time limit of search.timeout" in text, text
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    cut = [r for r in rows if r["reason"].startswith("search timeout")]
    assert cut and all(r["state"] == "pruned" for r in cut), rows
    # the 10^9-epoch training was cut (Optuna counts its rungs, train.reports_per_epoch per epoch: 'of 2000000000')
    assert any(
        re.search(r"stopped after \d+ of [12],000,000,000 (epochs|rounds of [\d,]+ rows) \(best: \d+\)", r["reason"])
        for r in cut
    ), [r["reason"] for r in cut]
    assert (out / "best_arch.json").exists() and (out / "weights.pt").exists()
    assert json.loads((out / "search.json").read_text())["status"] == "finished"
    assert not list(out.rglob(".*.tmp")), list(out.rglob(".*.tmp"))
    runs = mlflow_runs(db, f"t-{searcher}")
    assert runs and all(r.info.status != "RUNNING" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    cut_runs = [r for r in runs if r.data.tags.get("reason", "").startswith("search timeout")]
    assert cut_runs and all(r.info.status == "KILLED" and r.data.tags["state"] == "pruned" for r in cut_runs), [
        (r.info.run_name, r.info.status, r.data.tags) for r in runs
    ]
