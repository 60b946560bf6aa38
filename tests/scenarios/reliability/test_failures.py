"""Failure isolation: a candidate that goes NaN, raises, runs too long or takes too much memory is a failed
candidate with its reason in MLflow, and the search goes on; a search where every candidate fails stops with
a summary (exit 2) instead of looping."""

from __future__ import annotations

import time
import types
import uuid

import pytest
import torch

from mdmt_nas.components import Expert
from rel_helpers import cli_inprocess, write_space


class _Fixed(Expert):
    @classmethod
    def output_dim(cls, params, in_dim):
        return 8

    def __init__(self, params, in_dim, *a, **k):
        super().__init__(params, in_dim, *a, **k)
        self.lin = torch.nn.Linear(in_dim, 8)


class NanExpert(_Fixed):
    name = "rel_nan"

    def forward(self, x, ctx):
        return self.lin(x) * float("nan")


class RaisingExpert(_Fixed):
    name = "rel_raise"

    def forward(self, x, ctx):
        raise ValueError("rel_raise: broken on purpose")


class SlowExpert(_Fixed):
    name = "rel_slow"

    def forward(self, x, ctx):
        time.sleep(1.0)
        return self.lin(x)


class HogExpert(_Fixed):
    """Holds ~600 MB once it runs."""

    name = "rel_hog"

    def forward(self, x, ctx):
        if not hasattr(self, "hog"):
            self.hog = torch.ones(150 * 2**20)  # 600 MB, touched
        return self.lin(x)


@pytest.fixture
def misbehaving_plugin():
    """Built-ins plus an in-process plugin 'misbehave' with the four experts above."""
    from mdmt_nas import plugins

    mod = types.ModuleType("misbehave_plugin")

    @plugins.hookimpl
    def register_experts(register):
        for cls in (NanExpert, RaisingExpert, SlowExpert, HogExpert):
            register(cls)

    mod.register_experts = register_experts
    saved = plugins._HOST
    plugins.reset(plugins.PluginHost().load(use_entry_points=False, extra=[("misbehave", mod)]))
    yield
    plugins.reset(saved)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(uri: str, experiment: str, **train):
    from mdmt_nas.config import ExperimentConfig

    return ExperimentConfig.model_validate(
        {
            "dataset": {"name": "synthetic", "params": {"n_rows": 3000}},
            "train": {"epochs": 1, "batch_size": 256, "threads": 1, "patience": 0, "progress": False, **train},
            "tracking": {"uri": uri, "experiment": experiment},
            "search": {"searcher": "optuna-grid", "params": {"pruner": "none"}},
        }
    )


def test_each_kind_of_failure_is_a_failed_candidate_and_the_search_goes_on(tmp_path, misbehaving_plugin):
    from mdmt_nas.search.runner import run_search
    from mdmt_nas.spaces import load_space
    from mdmt_nas.train import _rss_mb
    from rel_helpers import mlflow_runs

    options = {
        "mlp": "{name: mlp, params: {hidden: [8]}}",
        "nan": "{name: rel_nan}",
        "raise": "{name: rel_raise}",
        "slow": "{name: rel_slow}",
        "hog": "{name: rel_hog}",
    }
    space_path = write_space(tmp_path, options)
    text = space_path.read_text().replace(
        "num_experts: {type: int, low: 1, high: 3}", "num_experts: {type: int, low: 1, high: 1}"
    )
    space_path.write_text(text)
    space = load_space(str(space_path))
    db = tmp_path / "mlflow.db"
    exp = f"failures-{uuid.uuid4().hex[:6]}"
    from mdmt_nas.data.loading import load_dataset
    from mdmt_nas.tracking import Tracker

    cfg = _config(f"sqlite:///{db}", exp)
    splits = load_dataset("synthetic", {"n_rows": 3000})
    Tracker(cfg.tracking).check()  # MLflow and the data are in memory before the baseline is taken
    cfg = _config(f"sqlite:///{db}", exp, max_seconds=4.0, max_memory_mb=_rss_mb() + 300)
    outcome = run_search(cfg, tmp_path / "out", space=space, splits=splits)

    by_option = {c.assignment["expert"]: c for c in outcome.result.candidates}
    assert set(by_option) == set(options)
    assert by_option["mlp"].state == "finished" and outcome.best.assignment["expert"] == "mlp"
    expected = {
        "nan": "loss became nan",
        "raise": "expert 'rel_raise' from plugin 'misbehave'",
        "slow": "time limit exceeded",
        "hog": "memory limit exceeded",
    }
    for opt, needle in expected.items():
        assert by_option[opt].state == "failed" and needle in by_option[opt].reason, (opt, by_option[opt].reason)
    runs = mlflow_runs(db, exp)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    failed = {r.data.params["assignment.expert"]: r for r in children if r.data.tags.get("state") == "failed"}
    assert set(failed) == set(expected)
    for opt, needle in expected.items():
        assert failed[opt].info.status == "FAILED" and needle in failed[opt].data.tags["reason"]
    assert "rel_raise: broken on purpose" in failed["raise"].data.tags["reason"]
    assert all(r.info.status != "RUNNING" for r in runs)


def test_search_where_every_candidate_fails_stops_with_a_summary(tmp_path, misbehaving_plugin):
    """Exit 2 with the reasons, no endless proposals of the one broken architecture; the failed state is in MLflow."""
    from rel_helpers import mlflow_runs

    space = write_space(tmp_path, {"raise": "{name: rel_raise}", "nan": "{name: rel_nan}"})
    db = tmp_path / "mlflow.db"
    t0 = time.monotonic()
    code, text = cli_inprocess(
        "search",
        "--space",
        space,
        "--searcher",
        "optuna-random",
        "--budget",
        "8",
        "--epochs",
        "1",
        "--output",
        tmp_path / "out",
        "--tracking-uri",
        f"sqlite:///{db}",
        "--set",
        "tracking.experiment=allfail",
        "--set",
        "dataset.params.n_rows=3000",
        "--set",
        "train.batch_size=512",
        "--set",
        "train.threads=1",
        "--set",
        "search.params.pruner=none",
        cwd=tmp_path,
    )
    assert code == 2, text
    assert "no candidate finished" in text and "rel_raise: broken on purpose" in text and "loss became nan" in text
    assert "fix the cause" in text and "Traceback" not in text
    assert time.monotonic() - t0 < 240
    assert "8 candidates failed (search.max_failures=8)" in text  # repeats of failed architectures count
    runs = mlflow_runs(db, "allfail")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FAILED" and parents[0].data.tags["state"] == "failed"
    assert 1 <= len(children) <= 6 and all(
        r.info.status == "FAILED" for r in children
    )  # 6 architectures, none trained twice
    import json

    summary = json.loads((tmp_path / "out" / "search.json").read_text())
    assert summary["status"] == "failed" and summary["finished"] == 0


NAN_ARCH = """\
name: nan-expert
embedding_dim: 4
shared: {experts: [{name: mlp, params: {hidden: [8]}}, {name: rel_nan}]}
tower: {name: mlp_tower, params: {hidden: [8]}}
"""


def test_a_nan_loss_names_the_tasks_and_the_first_module_with_its_plugin(tmp_path, misbehaving_plugin):
    """A plugin's expert returns NaN: `train` exits 2 naming both tasks, the expert, its plugin and its path in the
    model, and the fix (plugins check); no weights.pt; the MLflow run ends FAILED with that reason."""
    from rel_helpers import SMALL, mlflow_runs

    arch, db, out = tmp_path / "arch.yaml", tmp_path / "mlflow.db", tmp_path / "out"
    arch.write_text(NAN_ARCH)
    code, text = cli_inprocess(
        "train",
        "--arch",
        arch,
        *SMALL,
        "--set",
        "train.epochs=2",
        "--tracking-uri",
        f"sqlite:///{db}",
        "--set",
        "tracking.experiment=nan",
        "--output",
        out,
        cwd=tmp_path,
    )
    assert code == 2, text
    line = " ".join(text.split())
    assert "training failed: loss became nan at step 0" in line, text
    assert "non-finite loss of tasks 'task_0', 'task_1'" in line, text
    assert (
        "the first non-finite output is expert 'rel_nan' from plugin 'misbehave'" in line
        and "at model.levels.0.groups.shared." in line
    ), text
    assert "mdmt-nas plugins check misbehave" in line and "Traceback" not in text, text
    assert not (out / "weights.pt").exists()
    (run,) = mlflow_runs(db, "nan")
    assert run.info.status == "FAILED" and "expert 'rel_nan' from plugin 'misbehave'" in run.data.tags["reason"], (
        run.data.tags
    )


def test_a_learning_rate_that_blows_up_names_the_tasks_and_the_first_module(tmp_path):
    """lr=1e30 on a built-in architecture: the tasks and the first module whose output went non-finite (a built-in
    component, so the fix is the learning rate, not a plugin check)."""
    from rel_helpers import SMALL

    code, text = cli_inprocess(
        "train",
        "--config",
        "shared_bottom",
        *SMALL,
        "--set",
        "train.epochs=2",
        "--set",
        "train.lr=1e30",
        "--no-track",
        "--output",
        tmp_path / "out",
        cwd=tmp_path,
    )
    assert code == 2, text
    line = " ".join(text.split())
    assert "training failed: loss became" in line and "non-finite loss of task" in line, text
    assert "the first non-finite output is" in line and "(distribution mdmt-nas" in line and " at model." in line, text
    assert "lower the learning rate (train.lr)" in line and "plugins check" not in line, text
    assert not (tmp_path / "out" / "weights.pt").exists()
