"""The search runner: MLflow parent/child runs, failed and pruned candidates, outputs, summaries.

The helpers here (tiny space, config, test plugin with broken experts, MLflow
queries) are imported by the other search test modules.
"""

from __future__ import annotations

import json
import math
import textwrap
import types
import uuid
from pathlib import Path

import pytest
import torch

from mdmt_nas.components import Expert

# ------------------------------------------------------------------------------ helpers
TINY_SPACE = """
name: {name}
description: tiny test space (12 architectures, one conditional choice)
template:
  embedding_dim: 4
  shared: {{expert: {{choice: expert}}, num: {{choice: num_experts}}}}
  $merge: [{{choice: task_experts}}]
  tower: {{name: mlp_tower, params: {{hidden: [8]}}}}
choices:
  expert:
    options:
{options}
  num_experts: {{type: int, low: 1, high: 2}}
  task_experts:
    type: bool
    default: false
    when_on: {{task: {{expert: {{name: mlp, params: {{hidden: [8]}}}}, num: {{choice: task_num}}}}, gate_scope: [shared, task]}}
  task_num: {{type: int, low: 1, high: 2}}
"""
MLP_OPTIONS = {
    "mlp-8": {"name": "mlp", "params": {"hidden": [8]}},
    "mlp-16": {"name": "mlp", "params": {"hidden": [16, 8]}},
}


def write_space(directory: Path, options: dict[str, dict] | None = None, name: str = "tiny") -> Path:
    """A space YAML: expert options (label -> component spec), num_experts 1..2, optional task experts 1..2."""
    options = options if options is not None else MLP_OPTIONS
    lines = "\n".join(f"      - {{label: {lab}, value: {json.dumps(spec)}}}" for lab, spec in options.items())
    path = directory / f"{name}.yaml"
    path.write_text(textwrap.dedent(TINY_SPACE.format(name=name, options=lines)))
    return path


def load_tiny(directory: Path, options: dict[str, dict] | None = None, name: str = "tiny"):
    from mdmt_nas.spaces import load_space

    return load_space(write_space(directory, options, name))


def make_config(uri: str, experiment: str | None = None, train: dict | None = None, **search):
    from mdmt_nas.config import ExperimentConfig

    return ExperimentConfig.model_validate(
        {
            "dataset": {"name": "synthetic", "params": {"n_rows": 3000}},
            "train": {"epochs": 2, "batch_size": 512, "threads": 1, "patience": 0, "progress": False, **(train or {})},
            # log_model off: logging a model costs seconds per search; tests/unit/search/test_serving.py covers it
            "tracking": {"uri": uri, "experiment": experiment or f"test-{uuid.uuid4().hex[:8]}", "log_model": False},
            "search": search,
        }
    )


def runs_of(uri: str, experiment: str) -> tuple[list, list]:
    """(parent runs, child runs) of an MLflow experiment."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


class BoomExpert(Expert):
    """Always raises: a broken third-party component."""

    name = "boom"

    @classmethod
    def output_dim(cls, params, in_dim):
        return 8

    def forward(self, x, ctx):
        raise RuntimeError("boom: this expert always fails")


class NanExpert(Expert):
    """Outputs NaN: the loss becomes NaN."""

    name = "nan_expert"

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.w = torch.nn.Parameter(torch.zeros(1))

    @classmethod
    def output_dim(cls, params, in_dim):
        return 8

    def forward(self, x, ctx):
        return x[:, :1].expand(-1, 8) * self.w + float("nan")


class ZeroExpert(Expert):
    """Outputs zeros: a useless but valid expert (AUC 0.5)."""

    name = "zero_expert"

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.w = torch.nn.Parameter(torch.zeros(1))

    @classmethod
    def output_dim(cls, params, in_dim):
        return 8

    def forward(self, x, ctx):
        return x.new_zeros(x.shape[0], 8) * self.w


@pytest.fixture
def test_plugin():
    """The built-ins plus an in-process plugin 'searchtest' with the experts boom, nan_expert and zero_expert."""
    from mdmt_nas import plugins

    mod = types.ModuleType("searchtest_plugin")

    @plugins.hookimpl
    def register_experts(register):
        register(BoomExpert)
        register(NanExpert)
        register(ZeroExpert)

    mod.register_experts = register_experts
    saved = plugins._HOST
    host = plugins.PluginHost().load(use_entry_points=False, extra=[("searchtest", mod)])
    plugins.reset(host)
    yield host
    plugins.reset(saved)


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory) -> str:
    """One MLflow SQLite store per test session (creating one costs seconds); tests use their own experiments."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="session")
def splits():
    from mdmt_nas.data.loading import load_dataset

    return load_dataset("synthetic", {"n_rows": 3000})


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------ tests
def test_search_logs_one_parent_with_children_per_candidate(tmp_path, mlflow_uri, splits):
    from mdmt_nas.search.runner import run_search

    cfg = make_config(mlflow_uri, searcher="optuna-random", budget=3, params={"pruner": "none"})
    out = tmp_path / "out"
    outcome = run_search(cfg, out, space=load_tiny(tmp_path), splits=splits)

    parents, children = runs_of(mlflow_uri, cfg.tracking.experiment)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.info.run_id == outcome.parent_run_id
    for key in ("searcher", "space", "dataset", "budget", "seed"):
        assert key in parent.data.params
    assert parent.data.params["searcher"] == "optuna-random" and parent.data.params["budget"] == "3"
    assert parent.data.tags["best_arch_id"] == outcome.result.best.id
    assert "best_valid_mean_auc" in parent.data.metrics

    trained = [c for c in outcome.result.candidates]
    assert len(children) == len(trained) >= 2  # repeated architectures are not trained again
    schema = splits.schema
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["state"] == "finished" and run.info.status == "FINISHED"
        assert "arch.shared.experts.0.name" in run.data.params  # flattened architecture with component names
        assert any(k.startswith("assignment.") for k in run.data.params)
        m = run.data.metrics
        for split in ("valid", "test"):
            assert f"{split}_mean_auc" in m
            for d in schema.domain_names:
                for t in schema.tasks:
                    assert f"{split}_auc/{d}/{t}" in m and f"{split}_logloss/{d}/{t}" in m
        assert m["num_params"] > 0 and m["latency_ms_per_1k"] > 0

    from mlflow.tracking import MlflowClient

    history = MlflowClient(mlflow_uri).get_metric_history(children[0].info.run_id, "valid_mean_auc")
    assert sorted(h.step for h in history if h.step < 2) == [0, 1]  # per-epoch valid AUC (+ the final value)

    for name in (
        "best_arch.json",
        "leaderboard.csv",
        "search.json",
        "auc_vs_trial.png",
        "study.db",
        "arch.json",
        "weights.pt",
        "schema.json",
    ):
        assert (out / name).exists(), name
    summary = json.loads((out / "search.json").read_text())
    assert summary["status"] == "finished" and summary["best"]["arch_id"] == outcome.result.best.id
    assert summary["mlflow"]["parent_run_id"] == parent.info.run_id
    artifacts = {a.path for a in MlflowClient(mlflow_uri).list_artifacts(parent.info.run_id)}
    assert {"best_arch.json", "leaderboard.csv", "search.json", "auc_vs_trial.png"} <= artifacts
    # the weights belong to the best architecture
    from mdmt_nas.arch import Architecture

    assert (
        Architecture.load(out / "arch.json").id
        == Architecture.load(out / "best_arch.json").id
        == outcome.result.best.id
    )


def test_failed_candidate_is_recorded_and_the_search_goes_on(tmp_path, mlflow_uri, splits, test_plugin):
    from mdmt_nas.search.runner import run_search

    space = load_tiny(tmp_path, {"mlp-8": MLP_OPTIONS["mlp-8"], "boom": {"name": "boom"}})
    cfg = make_config(mlflow_uri, searcher="optuna-grid", params={"pruner": "none"})
    out = tmp_path / "out"
    outcome = run_search(cfg, out, space=space, splits=splits)

    states = [c.state for c in outcome.result.candidates]
    assert len(states) == space.size() == 12
    assert states.count("failed") == 6 and states.count("finished") == 6
    failed = [c for c in outcome.result.candidates if c.state == "failed"]
    for c in failed:
        assert c.assignment["expert"] == "boom"
        assert "expert 'boom' from plugin 'searchtest'" in c.reason and "always fails" in c.reason
    _, children = runs_of(mlflow_uri, cfg.tracking.experiment)
    bad = [r for r in children if r.data.tags["state"] == "failed"]
    assert len(bad) == 6
    assert all(r.info.status == "FAILED" and "boom" in r.data.tags["reason"] for r in bad)
    assert outcome.best is not None and outcome.best.assignment["expert"] == "mlp-8"
    rows = (out / "leaderboard.csv").read_text().splitlines()
    assert len(rows) == 13 and sum(",failed," in r for r in rows) == 6


def test_nan_loss_is_a_failed_candidate(tmp_path, mlflow_uri, splits, test_plugin):
    from mdmt_nas.search.base import Candidate
    from mdmt_nas.search.evaluate import Evaluator as CandidateEvaluator
    from mdmt_nas.search.report import SearchDisplay
    from mdmt_nas.tracking import Tracker

    space = load_tiny(tmp_path, {"nan": {"name": "nan_expert"}})
    cfg = make_config(mlflow_uri)
    ev = CandidateEvaluator(
        splits,
        cfg,
        Tracker(cfg.tracking),
        tmp_path,
        "test",
        "tiny",
        max_failures=5,
        deadline=None,
        display=SearchDisplay(None, 1, "trials"),
    )
    a = space.default_assignment()
    cand = ev(space.to_arch(a), "nan-0", assignment=a)
    assert isinstance(cand, Candidate) and cand.state == "failed"
    assert "loss became nan" in cand.reason
    _, children = runs_of(mlflow_uri, cfg.tracking.experiment)
    assert children == [] or all(r.info.status == "FAILED" for r in children)


def test_pruned_candidate_is_recorded_and_reraised(tmp_path, mlflow_uri, splits):
    from mdmt_nas.errors import TrialPruned
    from mdmt_nas.search.evaluate import Evaluator as CandidateEvaluator
    from mdmt_nas.tracking import Tracker

    space = load_tiny(tmp_path)
    cfg = make_config(mlflow_uri, train={"epochs": 3})
    tracker = Tracker(cfg.tracking)
    parent = tracker.start_run("parent")
    ev = CandidateEvaluator(splits, cfg, tracker, tmp_path, "test", "tiny", max_failures=5, deadline=None)
    ev.parent_run_id = parent

    def prune_after_first(epoch, record):
        raise TrialPruned("pruned by the test")

    a = space.default_assignment()
    with pytest.raises(TrialPruned):
        ev(space.to_arch(a), "trial-0", epoch_callback=prune_after_first, assignment=a)
    assert ev.candidates[-1].state == "pruned" and math.isfinite(ev.candidates[-1].valid_mean_auc)
    _, children = runs_of(mlflow_uri, cfg.tracking.experiment)
    assert len(children) == 1 and children[0].data.tags["state"] == "pruned" and children[0].info.status == "KILLED"


def test_every_candidate_failing_stops_with_a_summary(tmp_path, mlflow_uri, splits, test_plugin):
    from mdmt_nas.errors import UserError
    from mdmt_nas.search.runner import SearchFailed, run_search

    space = load_tiny(tmp_path, {"boom": {"name": "boom"}})
    cfg = make_config(mlflow_uri, searcher="optuna-random", budget=3)
    out = tmp_path / "out"
    with pytest.raises(SearchFailed) as info:
        run_search(cfg, out, space=space, splits=splits)
    assert isinstance(info.value, UserError)
    msg = str(info.value)
    # a repeat of a failed architecture is not trained again but counts toward max_failures
    assert "no candidate finished" in msg and "x expert 'boom' from plugin 'searchtest'" in msg
    assert "max_failures=3" in msg
    summary = json.loads((out / "search.json").read_text())
    assert summary["status"] == "failed" and 1 <= summary["failed"] <= 3 and summary["finished"] == 0
    parents, children = runs_of(mlflow_uri, cfg.tracking.experiment)
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    assert 1 <= len(children) <= 3 and all(r.info.status == "FAILED" for r in children)


def test_bad_searcher_params_and_unknown_searcher(tmp_path, mlflow_uri, splits):
    from mdmt_nas.errors import ConfigError, UnknownComponentError
    from mdmt_nas.search.runner import run_search

    space = load_tiny(tmp_path)
    with pytest.raises(ConfigError, match=r"search.params.prunr: unknown parameter of searcher 'optuna-tpe'"):
        run_search(
            make_config(mlflow_uri, searcher="optuna-tpe", params={"prunr": "median"}),
            tmp_path / "a",
            space=space,
            splits=splits,
        )
    with pytest.raises(UnknownComponentError, match="optuna-tpe"):
        run_search(make_config(mlflow_uri, searcher="optuna-tpee"), tmp_path / "b", space=space, splits=splits)
    with pytest.raises(Exception, match="multi-objective searcher"):
        run_search(
            make_config(mlflow_uri, searcher="optuna-tpe", objectives=["auc", "params"]),
            tmp_path / "c",
            space=space,
            splits=splits,
        )


def test_real_spaces_load_and_convert(tmp_path):
    """The shipped spaces work with the define-by-run suggestion (every active choice once, in order)."""
    import optuna

    from mdmt_nas.search.optuna import suggest_assignment
    from mdmt_nas.spaces import load_space

    for name in ("m3oe", "mmoe", "ple"):
        space = load_space(name)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(5):
            trial = study.ask()
            a = suggest_assignment(trial, space)
            assert space.normalize(a) == a
            space.to_arch(a)
            study.tell(trial, 0.5)


@pytest.mark.parametrize("plots", ["best", "all"])
def test_heatmaps_only_for_leading_candidates_unless_all(tmp_path, mlflow_uri, splits, plots):
    """tracking.plots: best draws the AUC heatmap for a candidate that leads so far and for retrains only;
    every candidate still gets its arch.json, config.json and metrics.csv (one upload)."""
    from mlflow.tracking import MlflowClient

    from mdmt_nas.search.evaluate import Evaluator as CandidateEvaluator
    from mdmt_nas.tracking import Tracker

    space = load_tiny(tmp_path)
    cfg = make_config(mlflow_uri)
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"plots": plots})})
    tracker = Tracker(cfg.tracking)
    ev = CandidateEvaluator(splits, cfg, tracker, None, "test", "tiny", max_failures=5, deadline=None)
    ev.parent_run_id = tracker.start_run("parent")
    a = space.default_assignment()
    archs = [space.to_arch({**a, "expert": e, "num_experts": n}) for e in ("mlp-8", "mlp-16") for n in (1, 2)]
    archs.append(archs[0])  # the same training again: the same AUC, so it does not lead
    cands = [ev(arch, f"c{i}", assignment=a, number=i) for i, arch in enumerate(archs)]
    cands.append(ev(archs[0], "retrain", number=len(archs), kind="retrain"))
    client = MlflowClient(mlflow_uri)
    best = -math.inf
    for i, c in enumerate(cands):
        assert c.state == "finished"
        files = {f.path for f in client.list_artifacts(c.run_id)}
        assert {"arch.json", "config.json", "metrics.csv"} <= files
        leads = c.valid_mean_auc > best
        best = max(best, c.valid_mean_auc) if i < len(archs) else best
        want = plots == "all" or leads or i == len(archs)
        assert ("auc_heatmap.png" in files) == want, (i, c.valid_mean_auc, files)
    assert cands[len(archs) - 1].valid_mean_auc == cands[0].valid_mean_auc
    tags = client.get_run(cands[0].run_id).data.tags
    assert tags["state"] == "finished"  # tags are written in one batch
