"""A candidate's inference latency: the median of 3 timed passes for the best few, a retrain and with the latency
objective; one pass for the others (the run's `latency_repeats` metric says which)."""

from __future__ import annotations

import math

from mlflow.tracking import MlflowClient
from test_runner import _one_thread, load_tiny, make_config, mlflow_uri, splits  # noqa: F401


def _evaluator(tmp_path, mlflow_uri, splits, **search):
    from mdmt_nas.search.evaluate import Evaluator
    from mdmt_nas.tracking import Tracker

    cfg = make_config(mlflow_uri, train={"epochs": 1}, **search)
    tracker = Tracker(cfg.tracking)
    ev = Evaluator(splits, cfg, tracker, None, "test", "tiny")
    ev.parent_run_id = tracker.start_run("parent")
    return ev


def _repeats(mlflow_uri, cand) -> float:
    return MlflowClient(mlflow_uri).get_run(cand.run_id).data.metrics["latency_repeats"]


def test_the_best_few_get_three_timed_passes_the_others_one(tmp_path, mlflow_uri, splits):
    ev = _evaluator(tmp_path, mlflow_uri, splits)
    space = load_tiny(tmp_path)
    arch = space.to_arch(space.default_assignment())
    first = ev(arch, "c0", number=0)
    assert _repeats(mlflow_uri, first) == 3  # fewer than keep_top kept: among the best few
    # the best few are better than anything to come: the next candidate is timed once
    ev.top_states = {f"a{i}": (2.0, {}) for i in range(ev.keep_top)}
    other = ev(arch, "c1", number=1)
    assert _repeats(mlflow_uri, other) == 1
    retrain = ev(arch, "retrain", number=2, kind="retrain")
    assert _repeats(mlflow_uri, retrain) == 3
    for c in (first, other, retrain):
        assert c.state == "finished" and math.isfinite(c.latency_ms_per_1k) and c.latency_ms_per_1k > 0


def test_with_the_latency_objective_every_candidate_gets_three(tmp_path, mlflow_uri, splits):
    ev = _evaluator(tmp_path, mlflow_uri, splits, objectives=["auc", "latency"])
    space = load_tiny(tmp_path)
    ev.top_states = {f"a{i}": (2.0, {}) for i in range(ev.keep_top)}
    cand = ev(space.to_arch(space.default_assignment()), "c0", number=0)
    assert _repeats(mlflow_uri, cand) == 3
