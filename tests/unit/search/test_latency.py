"""A trained model's inference latency: timed on the evaluation's own passes (the faster of the final weights' valid
pass and the test pass), with no pass of its own; with the latency objective, which the search minimises, the median
of 3 timed passes of its own. The run's `latency_repeats` metric says how many passes the figure comes from."""

from __future__ import annotations

import dataclasses
import math

import pytest
from mlflow.tracking import MlflowClient
from test_runner import _one_thread, load_tiny, make_config, mlflow_uri, splits  # noqa: F401


def _evaluator(tmp_path, mlflow_uri, splits, **search):
    from mdmt_nas.search.evaluate import Evaluator
    from mdmt_nas.tracking import Tracker

    cfg = make_config(mlflow_uri, train={"epochs": 2}, **search)
    tracker = Tracker(cfg.tracking)
    ev = Evaluator(splits, cfg, tracker, None, "test", "tiny")
    ev.parent_run_id = tracker.start_run("parent")
    return ev


def _logged(mlflow_uri, cand) -> dict[str, float]:
    return MlflowClient(mlflow_uri).get_run(cand.run_id).data.metrics


@pytest.fixture
def passes(monkeypatch):
    """Every evaluation pass's timing as `predict` records it, and a guard that no dedicated latency pass runs."""
    import mdmt_nas.search.evaluate as evaluate_mod
    import mdmt_nas.train as train_mod

    seen: list[list[float]] = []
    real = train_mod.predict

    def recording(model, data, batch_size, pass_latency=None):
        out = real(model, data, batch_size, pass_latency)
        seen.append(list(pass_latency or []))
        return out

    def no_pass(*a, **k):
        raise AssertionError("a latency pass of its own ran")

    monkeypatch.setattr(train_mod, "predict", recording)
    monkeypatch.setattr(train_mod, "measure_latency", no_pass)
    monkeypatch.setattr(evaluate_mod, "measure_latency", no_pass)
    return seen


def test_latency_is_the_faster_of_the_final_valid_and_test_passes(tmp_path, mlflow_uri, splits, passes):
    ev = _evaluator(tmp_path, mlflow_uri, splits)
    space = load_tiny(tmp_path)
    arch = space.to_arch(space.default_assignment())
    for kind in ("candidate", "retrain"):
        passes.clear()
        cand = ev(arch, f"c-{kind}", kind=kind)
        # after the test pass, a figure per pass so far: 2 epochs' valid passes, the best epoch's again if it was the
        # first (its weights loaded back), then the test pass
        timings = passes[-1]
        assert len(timings) in (3, 4) and all(t > 0 for t in timings)
        assert cand.state == "finished" and cand.latency_ms_per_1k == pytest.approx(min(timings[-2:]))
        logged = _logged(mlflow_uri, cand)
        assert logged["latency_repeats"] == 2 and logged["latency_ms_per_1k"] == pytest.approx(cand.latency_ms_per_1k)


def test_with_the_latency_objective_it_takes_three_passes_of_its_own(tmp_path, mlflow_uri, splits, monkeypatch):
    import mdmt_nas.search.evaluate as evaluate_mod

    calls = []
    real = evaluate_mod.measure_latency
    monkeypatch.setattr(evaluate_mod, "measure_latency", lambda *a, **k: calls.append(k) or real(*a, **k))
    ev = _evaluator(tmp_path, mlflow_uri, splits, objectives=["auc", "latency"])
    space = load_tiny(tmp_path)
    cand = ev(space.to_arch(space.default_assignment()), "c0", number=0)
    assert [k["repeats"] for k in calls] == [3]
    assert _logged(mlflow_uri, cand)["latency_repeats"] == 3 and math.isfinite(cand.latency_ms_per_1k)
    assert cand.latency_ms_per_1k > 0


def test_a_model_with_an_empty_test_split_is_timed_on_its_valid_pass(splits, passes):
    from mdmt_nas.arch import Architecture
    from mdmt_nas.config import TrainConfig
    from mdmt_nas.train import train_architecture

    empty_test = dataclasses.replace(splits, test=splits.test.index(slice(0, 0)))
    arch = Architecture.model_validate({"shared": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 1}})
    result = train_architecture(arch, empty_test, TrainConfig(epochs=1, batch_size=512, progress=False, threads=1))
    assert result.latency_repeats == 1 and result.latency_ms_per_1k == pytest.approx(passes[-1][-1])
