"""`--executor ray`: an Optuna search whose candidates train on Ray actors (a local Ray, 2 CPUs).

Each candidate is logged once under one parent, the budget is exact, rungs are reported to the shared study,
an interrupted driver resumes, and a worker that raises or dies fails only its own candidate.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from rel_helpers import SMALL, cli_env, cli_inprocess, finish, kill, start, trial_states, wait_for, write_space  # noqa: E402
from scale_servers import need  # noqa: E402

try:
    import ray
except ImportError:  # pragma: no cover - the ray extra is installed in CI (scripts/test.sh)
    ray = None


@pytest.fixture(scope="module")
def local_ray():
    need(ray is not None, "Ray not installed: pip install 'mdmt-nas[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


def _config(uri: str, exp: str, workers: int = 2, **search):
    from mdmt_nas.config import ExperimentConfig

    return ExperimentConfig.model_validate(
        {
            "dataset": {"name": "synthetic", "params": {"n_rows": 3000}},
            "train": {"epochs": 2, "batch_size": 256, "threads": 1, "patience": 0, "progress": False},
            "tracking": {"uri": uri, "experiment": exp, "log_model": False},
            "search": {
                "searcher": "optuna-random",
                "budget": 5,
                "seed": 4,
                "executor": {"kind": "ray", "workers": workers},
                "params": {"pruner": "asha", "reports_per_epoch": 2},
                **search,
            },
        }
    )


def _runs(uri: str, exp: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    e = client.get_experiment_by_name(exp)
    return client.search_runs([e.experiment_id], max_results=1000)


def _layout(uri: str, exp: str):
    runs = _runs(uri, exp)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == len(runs) - 1
    assert all(r.info.status != "RUNNING" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    return parents[0], children


def _counted(study):
    from optuna.trial import TrialState

    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def test_candidates_train_on_ray_actors_each_logged_once_with_rungs_and_the_final_stage(tmp_path, local_ray):
    import optuna
    from optuna.trial import TrialState

    from mdmt_nas.search.runner import run_search
    from mdmt_nas.spaces import load_space

    uri, exp = f"sqlite:///{tmp_path / 'mlflow.db'}", "ray-layout"
    cfg = _config(uri, exp, final_top_k=2, final_seeds=2)
    outcome = run_search(cfg, tmp_path / "out", space=load_space(str(write_space(tmp_path))))
    summary = json.loads((tmp_path / "out" / "search.json").read_text())
    study = optuna.load_study(
        study_name=summary["searcher_info"]["study_name"], storage=summary["searcher_info"]["storage"]
    )
    assert len(_counted(study)) == 5, [t.state for t in study.trials]  # the driver sends no more than the budget needs
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    parent, children = _layout(uri, exp)
    assert outcome.parent_run_id == parent.info.run_id == study.user_attrs["mdmt_nas.mlflow_parent_run_id"]
    trained = sorted(
        t.number for t in study.trials if "duplicate_of" not in t.user_attrs and t.state != TrialState.FAIL
    )
    cands = [r for r in children if r.data.tags["mdmt_nas.kind"] == "candidate"]
    assert sorted(int(r.data.tags["number"]) for r in cands) == trained  # each trial once
    # trained by the actors, not by this process, and by more than one of them
    pids = {r.data.tags["mdmt_nas.worker"].split(":")[1] for r in children}
    assert str(os.getpid()) not in pids and len(pids) >= 2, pids
    # the workers reported every rung to the study (the pruner's input), and ASHA's decisions stand in the study
    for t in study.trials:
        if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs:
            assert sorted(t.intermediate_values) == [0, 1, 2, 3], t.intermediate_values
    # the final stage ran on the actors too: two finalists, one more seed each, and the winner's weights came back
    finals = [r for r in children if r.data.tags["mdmt_nas.kind"] == "final"]
    assert len(finals) == 2 and all(r.data.tags["mdmt_nas.worker"].split(":")[1] != str(os.getpid()) for r in finals)
    assert len(summary["final_stage"]) == 2 and all(len(e["runs"]) == 2 for e in summary["final_stage"])
    assert not [r for r in children if r.data.tags["mdmt_nas.kind"] == "retrain"], (
        "the winner's weights were not brought back"
    )
    assert (tmp_path / "out" / "weights.pt").exists() and (tmp_path / "out" / "best_arch.json").exists()
    assert summary["best"]["arch_id"] == outcome.best.arch.id


def test_known_architectures_go_first_on_ray(tmp_path, local_ray):
    import optuna

    from mdmt_nas.search.runner import run_search
    from mdmt_nas.spaces import load_space

    space = load_space("mmoe")
    known = [k.name for k, _ in space.known_points()]
    assert known, "the mmoe space has known architectures"
    uri, exp = f"sqlite:///{tmp_path / 'mlflow.db'}", "ray-known"
    cfg = _config(uri, exp, budget=len(known) + 1)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 1})})
    run_search(cfg, tmp_path / "out", space=space)
    summary = json.loads((tmp_path / "out" / "search.json").read_text())
    study = optuna.load_study(
        study_name=summary["searcher_info"]["study_name"], storage=summary["searcher_info"]["storage"]
    )
    first = [t.user_attrs.get("mdmt_nas.known", "") for t in sorted(study.trials, key=lambda t: t.number)[: len(known)]]
    assert first == known
    assert summary["warm_start"] == known


# ------------------------------------------------------------------------------ the CLI driver
def _cli_args(space: Path, out: Path, uri: str, exp: str, budget: int, extra: list[str] = ()) -> list[str]:
    return [
        "search",
        "--space",
        space,
        "--searcher",
        "optuna-random",
        "--budget",
        str(budget),
        "--epochs",
        "2",
        "--seed",
        "1",
        "--executor",
        "ray",
        "--workers",
        "2",
        "--output",
        out,
        "--tracking-uri",
        uri,
        *SMALL,
        "--set",
        f"tracking.experiment={exp}",
        "--set",
        "search.params.pruner=none",
        "--set",
        "tracking.log_model=false",
        "--set",
        "search.params.heartbeat_interval=1",
        "--set",
        "search.params.grace_period=3",
        *extra,
    ]


def test_an_interrupted_driver_resumes_to_exactly_the_budget(tmp_path):
    need(ray is not None, "Ray not installed: pip install 'mdmt-nas[ray]'")
    import optuna
    from optuna.trial import TrialState

    space = write_space(tmp_path)
    out, uri, exp, budget = tmp_path / "out", f"sqlite:///{tmp_path / 'mlflow.db'}", "ray-resume", 6
    # a bigger dataset: candidates take long enough for the interruption to land mid-training
    big = ["--set", "dataset.params.n_rows=20000"]
    proc = start(_cli_args(space, out, uri, exp, budget, big), cli_env())
    wait_for(
        lambda: trial_states(out / "study.db").count("COMPLETE") >= 1 and "RUNNING" in trial_states(out / "study.db"),
        proc,
        timeout=600,
        what="a finished trial while others train",
    )
    assert kill(proc, signal.SIGINT) == 130
    states = trial_states(out / "study.db")
    assert "RUNNING" not in states, states  # in-flight trials ended FAIL at once
    assert all(r.info.status != "RUNNING" for r in _runs(uri, exp))

    code, text = finish(start([*_cli_args(space, out, uri, exp, budget, big), "--resume"], cli_env()), timeout=900)
    assert code == 0, text[-4000:]
    study = optuna.load_study(study_name="tiny-optuna-random-synthetic-seed1", storage=f"sqlite:///{out / 'study.db'}")
    assert len(_counted(study)) == budget, [t.state for t in study.trials]
    parent, children = _layout(uri, exp)
    done = sorted(
        t.number for t in study.trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs
    )
    finished = sorted(
        int(r.data.tags["number"])
        for r in children
        if r.data.tags["mdmt_nas.kind"] == "candidate" and r.info.status == "FINISHED"
    )
    assert finished == done  # every trained trial logged once, under the one parent the resumed driver re-opened
    killed = [r for r in children if r.info.status == "KILLED"]
    failed_trials = {t.number for t in study.trials if t.state == TrialState.FAIL}
    assert killed and {int(r.data.tags["number"]) for r in killed} <= failed_trials


FAULTS = textwrap.dedent('''
    """Test plugin: experts that raise, or kill the process training them."""
    import os

    import torch

    from mdmt_nas.components import Expert
    from mdmt_nas.plugins import hookimpl


    class _Fixed(Expert):
        @classmethod
        def output_dim(cls, params, dims):
            return 8

        def __init__(self, params, dims):
            super().__init__(params, dims)
            self.lin = torch.nn.Linear(dims.in_dim, 8)


    class Raising(_Fixed):
        name = "fault_raise"

        def forward(self, x, ctx):
            raise ValueError("fault_raise: broken on purpose")


    class Dying(_Fixed):
        name = "fault_die"

        def forward(self, x, ctx):
            os._exit(3)


    @hookimpl
    def register_experts(register):
        register(Raising)
        register(Dying)
''')


def _install_plugin(site: Path) -> None:
    """A real installed plugin (a module and its dist-info on PYTHONPATH), so Ray's worker processes load it too."""
    site.mkdir()
    (site / "mdmt_scale_faults.py").write_text(FAULTS)
    info = site / "mdmt_scale_faults-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mdmt-scale-faults\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mdmt_nas]\nfaults = mdmt_scale_faults\n")


def test_a_worker_that_raises_or_dies_fails_only_its_candidate(tmp_path):
    need(ray is not None, "Ray not installed: pip install 'mdmt-nas[ray]'")
    import optuna
    from optuna.trial import TrialState

    _install_plugin(tmp_path / "site")
    options = {
        "mlp": "{name: mlp, params: {hidden: [8]}}",
        "raise": "{name: fault_raise}",
        "die": "{name: fault_die}",
        "mlp-16": "{name: mlp, params: {hidden: [16]}}",
    }
    space = write_space(tmp_path, options)
    space.write_text(
        space.read_text().replace(
            "num_experts: {type: int, low: 1, high: 3}", "num_experts: {type: int, low: 1, high: 1}"
        )
    )
    out, uri, exp = tmp_path / "out", f"sqlite:///{tmp_path / 'mlflow.db'}", "ray-faults"
    env = cli_env(
        MDMT_NAS_LOAD_PLUGINS="faults",
        PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]),
    )
    args = _cli_args(space, out, uri, exp, 4)
    args[args.index("optuna-random")] = "optuna-grid"
    code, text = finish(start(args, env), timeout=900)
    assert code == 0, text[-4000:]
    study = optuna.load_study(study_name="tiny-optuna-grid-synthetic-seed1", storage=f"sqlite:///{out / 'study.db'}")
    by_expert = {t.params["expert"]: t for t in study.trials}
    assert set(by_expert) == set(options)
    assert by_expert["mlp"].state == by_expert["mlp-16"].state == TrialState.COMPLETE
    assert by_expert["raise"].state == by_expert["die"].state == TrialState.FAIL
    parent, children = _layout(uri, exp)
    runs = {r.data.tags["number"]: r for r in children}
    raised, died = runs[str(by_expert["raise"].number)], runs[str(by_expert["die"].number)]
    assert raised.info.status == died.info.status == "FAILED"
    assert "fault_raise" in raised.data.tags["reason"] and "broken on purpose" in raised.data.tags["reason"]
    assert "Ray worker training it died" in died.data.tags["reason"], died.data.tags["reason"]
    rows = (out / "leaderboard.csv").read_text()
    assert rows.count(",finished,") == 2 and rows.count(",failed,") == 2, rows


def test_ray_executor_refuses_darts_and_says_how_to_install_ray(tmp_path, monkeypatch):
    space = write_space(tmp_path)
    code, text = cli_inprocess(
        "search",
        "--space",
        space,
        "--searcher",
        "darts",
        "--executor",
        "ray",
        "--no-track",
        "--output",
        tmp_path / "o1",
    )
    assert code == 2 and "--executor ray runs the trials of an Optuna searcher" in text, text
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    code, text = cli_inprocess(
        "search",
        "--space",
        space,
        "--searcher",
        "optuna-tpe",
        "--executor",
        "ray",
        "--no-track",
        "--output",
        tmp_path / "o2",
    )
    assert code == 2 and "pip install 'mdmt-nas[ray]'" in text, text
    assert not (tmp_path / "o2").exists(), "refused before any output"


def test_ray_executor_refuses_a_cluster_with_files_for_study_or_tracking_and_stray_flags(tmp_path):
    need(ray is not None, "Ray not installed: pip install 'mdmt-nas[ray]'")
    space = write_space(tmp_path)
    base = ["search", "--space", space, "--searcher", "optuna-tpe", "--executor", "ray", "--address", "10.0.0.9:6379"]
    code, text = cli_inprocess(*base, "--no-track", "--output", tmp_path / "o1")
    assert code == 2 and "cannot open the Optuna study the default sqlite:///<output>/study.db" in text, text
    assert "--storage postgresql://" in text and "leave out --address" in text
    code, text = cli_inprocess(
        *base,
        "--storage",
        "postgresql://u@db.example/studies",
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--output",
        tmp_path / "o2",
    )
    assert code == 2 and "cannot log into sqlite:///" in text and "mdmt-nas server" in text, text
    code, text = cli_inprocess(
        "search",
        "--space",
        space,
        "--searcher",
        "optuna-tpe",
        "--workers",
        "4",
        "--no-track",
        "--output",
        tmp_path / "o3",
    )
    assert code == 2 and "options of --executor ray" in text, text
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3")), "refused before any output"


def test_the_time_limit_stops_candidates_on_the_actors_keeping_their_best_epoch(tmp_path, local_ray):
    """--timeout reaches the actors: the trainings in flight stop at their next batch (pruned, 'search timeout',
    their best epoch kept), no new candidate starts, nothing is left RUNNING."""
    import time

    import optuna
    from optuna.trial import TrialState

    from mdmt_nas.search.runner import run_search
    from mdmt_nas.spaces import load_space

    uri, exp = f"sqlite:///{tmp_path / 'mlflow.db'}", "ray-timeout"
    # candidates that cannot finish before the deadline (a tiny model trains 30 epochs in ~6 s, so with a short
    # budget the ones in flight could all end first and none be cut), and a deadline past the actors' start-up
    # on a loaded machine
    timeout = 20
    cfg = _config(uri, exp, budget=50, timeout=timeout, params={"pruner": "none", "reports_per_epoch": 1})
    cfg = cfg.model_copy(
        update={
            "dataset": cfg.dataset.model_copy(update={"params": {"n_rows": 20000}}),
            "train": cfg.train.model_copy(update={"epochs": 1_000_000}),
        }
    )
    t0 = time.monotonic()
    outcome = run_search(cfg, tmp_path / "out", space=load_space(str(write_space(tmp_path))))
    wall = time.monotonic() - t0
    summary = json.loads((tmp_path / "out" / "search.json").read_text())
    assert summary["stopped"].startswith("time limit"), summary["stopped"]
    assert wall < timeout + 60, wall  # the deadline + a batch and the best epoch's scoring + the final stage
    cut = [c for c in outcome.result.candidates if c.reason.startswith("search timeout")]
    assert cut, [(c.state, c.reason) for c in outcome.result.candidates]
    assert all(c.state == "pruned" for c in cut)
    study = optuna.load_study(
        study_name=summary["searcher_info"]["study_name"], storage=summary["searcher_info"]["storage"]
    )
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len(_counted(study)) < 50
    _layout(uri, exp)  # one parent, nothing RUNNING
    assert outcome.best is not None and (tmp_path / "out" / "best_arch.json").exists()
