"""What makes a search pay off: warm-start known architectures, multi-fidelity pruning, the final stage,
DARTS' top-k derivation, margins and determinism, wall-time budgets."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import tiny_space_yaml
from test_runner import MLP_OPTIONS, load_tiny, make_config, mlflow_uri, runs_of, splits  # noqa: F401

KNOWN_SPACE = tiny_space_yaml(
    "known_tiny",
    "tiny space with known points",
    {"mlp-8": [8], "mlp-16": [16, 8], "mlp-4": [4]},
    high=3,
    default=("mlp-8", 1),
    known="""\
known:
  - name: Ref-A
  - name: Ref-B
    assign: {expert: mlp-16, num_experts: 2}
""",
)


@pytest.fixture()
def known_space(tmp_path):
    from mdmt_nas.spaces import load_space

    path = tmp_path / "known_tiny.yaml"
    path.write_text(textwrap.dedent(KNOWN_SPACE))
    return load_space(path)


# ------------------------------------------------------------------------------ known points
@pytest.mark.parametrize("space_name", ["m3oe", "mmoe", "ple", "cesaa", "hamur", "dephn"])
def test_known_points_are_the_shipped_examples(space_name):
    from mdmt_nas.config import load_config
    from mdmt_nas.spaces import load_space

    space = load_space(space_name)
    assert space.known, f"space {space_name} declares no known architectures"
    for point, arch in space.known_points():
        assert arch.name == point.name
        if point.example:
            assert arch.id == load_config(point.example).arch.id, (
                f"{space_name}: {point.name} differs from examples/{point.example}.yaml"
            )
    # the seed systems' spaces have their paper's configuration as the default point
    first = space.known[0]
    assert space.to_arch(space.default_assignment()).id == space.to_arch(first.assignment).id


def test_known_point_errors_name_the_entry(tmp_path):
    from mdmt_nas.errors import ConfigError
    from mdmt_nas.spaces import load_space

    bad = textwrap.dedent(KNOWN_SPACE).replace("assign: {expert: mlp-16, num_experts: 2}", "assign: {expertt: mlp-16}")
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    with pytest.raises(
        ConfigError, match=r"known\.1 \(Ref-B\)\.assign: unknown choice 'expertt' \(did you mean 'expert'\?\)"
    ):
        load_space(path)
    path.write_text(textwrap.dedent(KNOWN_SPACE).replace("num_experts: 2}", "num_experts: 9}"))
    with pytest.raises(ConfigError, match=r"Ref-B"):
        load_space(path)


@pytest.mark.parametrize("searcher", ["optuna-tpe", "optuna-random", "nni-random"])
def test_warm_start_points_are_evaluated_first_and_logged_as_children(
    tmp_path, mlflow_uri, splits, known_space, searcher
):
    if searcher.startswith("nni"):
        pytest.importorskip("nni")
    from mdmt_nas.search.runner import run_search

    cfg = make_config(mlflow_uri, searcher=searcher, budget=4, params={"pruner": "none"})
    out = run_search(cfg, tmp_path / "out", space=known_space, splits=splits)
    first_two = sorted(out.result.candidates, key=lambda c: c.number)[:2]
    assert [c.known for c in first_two] == ["Ref-A", "Ref-B"]
    assert [c.arch.id for c in first_two] == [a.id for _, a in known_space.known_points()]
    _, children = runs_of(mlflow_uri, cfg.tracking.experiment)
    tagged = sorted(r.data.tags.get("mdmt_nas.known", "") for r in children if r.data.tags.get("mdmt_nas.known"))
    assert tagged == ["Ref-A", "Ref-B"]
    rows = (tmp_path / "out" / "leaderboard.csv").read_text().splitlines()
    assert rows[0].split(",")[3] == "known" and sum(",Ref-" in r for r in rows) == 2
    summary = json.loads((tmp_path / "out" / "search.json").read_text())
    assert summary["warm_start"] == ["Ref-A", "Ref-B"]
    assert summary["verdict"]["best_known"] in ("Ref-A", "Ref-B")


def test_no_warm_start_opts_out(tmp_path, mlflow_uri, splits, known_space):
    from mdmt_nas.search.runner import run_search

    cfg = make_config(mlflow_uri, searcher="optuna-random", budget=2, warm_start=False, params={"pruner": "none"})
    out = run_search(cfg, tmp_path / "out", space=known_space, splits=splits)
    assert not any(c.known for c in out.result.candidates)
    assert out.summary["warm_start"] == []


def test_darts_screens_known_and_top_k_and_retrains_the_best(tmp_path, mlflow_uri, splits, known_space):
    from mdmt_nas.search.runner import run_search

    cfg = make_config(
        mlflow_uri,
        searcher="darts",
        budget=2,
        params={"rows_per_epoch": 1024, "batch_size": 256, "warmup_epochs": 0, "top_k": 2, "eval_rows": 256},
    )
    out = run_search(cfg, tmp_path / "out", space=known_space, splits=splits)
    info = out.summary["searcher_info"]
    screened = info["screened"]
    assert {s["known"] for s in screened} >= {"Ref-A", "Ref-B"}
    assert len({s["arch_id"] for s in screened}) == len(screened)
    best_screen = max((s for s in screened if s["state"] == "finished"), key=lambda s: s["valid_mean_auc"])
    assert out.best.arch.id == best_screen["arch_id"]  # the best screened architecture is the one retrained
    assert set(info["margins"]) and all(0 <= m["margin"] <= 1 for m in info["margins"].values())
    assert len(info["alpha_history"]) == 2
    _, children = runs_of(mlflow_uri, cfg.tracking.experiment)
    kinds = sorted(r.data.tags["mdmt_nas.kind"] for r in children)
    assert kinds.count("screen") == len(screened) and kinds.count("retrain") == 1 and kinds.count("supernet") == 1
    # the verdict compares where the known ones were trained alike (the screening), whichever architecture won
    v = out.summary["verdict"]
    best_known = max(
        (s for s in screened if s["known"] and s["state"] == "finished"), key=lambda s: s["valid_mean_auc"]
    )
    assert v["winner_is_known"] == bool(best_screen["known"])
    if not best_screen["known"]:  # no known one was trained fully: compared at the screening budget
        assert v["best_known"] == best_known["known"] and v["fidelity"] < 1
        assert v["valid_margin"] == pytest.approx(best_screen["valid_mean_auc"] - best_known["valid_mean_auc"])
        assert v["beat_known"] == (v["valid_margin"] > 0)


# ------------------------------------------------------------------------------ DARTS derivation
def test_top_k_derivation_returns_k_distinct_valid_architectures():
    from mdmt_nas.search.darts.alphas import AlphaController
    from mdmt_nas.search.darts.relax import relax
    from mdmt_nas.search.darts.topk import top_k_derived
    from mdmt_nas.spaces import load_space

    space = load_space("m3oe")
    r = relax(space)
    ctl = AlphaController(r.relaxed)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for a in ctl.alphas.values():
            a.copy_(torch.randn(a.shape, generator=gen))
    out = top_k_derived(space, r, ctl, 5)
    assert len(out) == 5 and len({a.id for _, a, _ in out}) == 5
    logps = [lp for _, _, lp in out]
    assert logps == sorted(logps, reverse=True)  # most probable first
    for assignment, arch, _ in out:
        assert space.to_arch(assignment).id == arch.id and arch.groups()
    # the first is the argmax; the second differs from it in exactly the choice with the smallest log-odds margin
    argmax = {c: space.choice(c).values()[int(a.argmax())] for c, a in ctl.alphas.items() if c in out[0][0]}
    assert all(out[0][0][c] == v for c, v in argmax.items())


def test_darts_same_seed_and_threads_give_the_same_architecture(tmp_path):
    """Two DARTS runs at 2 threads in fresh processes: the same alphas and the same derived architecture."""
    script = textwrap.dedent("""
        import json, sys, torch
        from mdmt_nas.config import ExperimentConfig
        from mdmt_nas.search.runner import run_search
        cfg = ExperimentConfig.model_validate({
            "dataset": {"name": "synthetic", "params": {"n_rows": 4000}},
            "train": {"epochs": 1, "batch_size": 512, "threads": 2, "progress": False},
            "tracking": {"enabled": False},
            "search": {"searcher": "darts", "budget": 2, "warm_start": False,
                        "params": {"rows_per_epoch": 2048, "batch_size": 256, "warmup_epochs": 0, "top_k": 1, "eval_rows": 512}}})
        out = run_search(cfg, sys.argv[1], space="m3oe")
        print(json.dumps({"arch": out.best.arch.id, "alphas": out.summary["searcher_info"]["alphas"]}))
    """)
    results = []
    for i in range(2):
        p = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / f"run{i}")], capture_output=True, text=True, timeout=900
        )
        assert p.returncode == 0, p.stderr[-3000:]
        results.append(json.loads(p.stdout.strip().splitlines()[-1]))
    assert results[0] == results[1]


# ------------------------------------------------------------------------------ multi-fidelity
def test_hyperband_prunes_a_clearly_bad_candidate_before_its_full_budget(tmp_path, mlflow_uri, splits):
    """A useless expert (constant output) among good ones: pruned at an early rung, never trained fully."""
    from mdmt_nas.search.runner import run_search

    options = {**MLP_OPTIONS, "const": {"name": "mlp", "params": {"hidden": [8], "dropout": 0.99}}}
    space = load_tiny(tmp_path, options)
    cfg = make_config(
        mlflow_uri,
        searcher="optuna-random",
        budget=12,
        train={"epochs": 3},
        params={"pruner": "hyperband", "reports_per_epoch": 2},
    )
    out = run_search(cfg, tmp_path / "out", space=space, splits=splits)
    pruned = [c for c in out.result.candidates if c.state == "pruned"]
    assert pruned, "nothing was pruned"
    assert all(c.fidelity < 1.0 for c in pruned)
    full = [c for c in out.result.candidates if c.state == "finished"]
    assert all(c.fidelity == 1.0 for c in full)
    # the pruned ones are the worse ones: their best rung result is below the finished candidates' median
    med = sorted(c.valid_mean_auc for c in full)[len(full) // 2]
    assert sum(c.valid_mean_auc < med for c in pruned) >= len(pruned) / 2


def test_rung_config_keeps_the_rows_and_cuts_epochs():
    from mdmt_nas.config import TrainConfig
    from mdmt_nas.search.fidelity import rung_config

    cfg = rung_config(TrainConfig(epochs=3, patience=2), 1001, 4)
    assert cfg.epoch_rows == 251 and cfg.epochs == 12 and cfg.patience == 8
    assert rung_config(TrainConfig(epochs=3), 1001, 1).epoch_rows is None


def test_epoch_rows_cuts_passes_into_epochs(splits):
    from mdmt_nas.arch import Architecture
    from mdmt_nas.config import TrainConfig
    from mdmt_nas.spaces import load_space  # noqa: F401
    from mdmt_nas.train import train_architecture

    arch = Architecture.model_validate(
        {
            "embedding_dim": 4,
            "shared": {"expert": {"name": "mlp", "params": {"hidden": [8]}}, "num": 1},
            "tower": {"name": "mlp_tower", "params": {"hidden": [8]}},
        }
    )
    n = len(splits.train)
    r = train_architecture(
        arch, splits, TrainConfig(epochs=3, epoch_rows=n // 2, batch_size=256, patience=0, progress=False, threads=1)
    )
    assert r.epochs_run == 3 and len(r.history) == 3
    rows_per_epoch = r.rows_per_second * r.train_seconds / 3
    assert n // 2 <= rows_per_epoch < n // 2 + 256


def test_tpe_says_when_the_budget_ends_inside_its_startup(tmp_path, mlflow_uri, splits, known_space):
    from mdmt_nas.search.runner import run_search

    cfg = make_config(mlflow_uri, searcher="optuna-tpe", budget=3, params={"pruner": "none", "n_startup_trials": 5})
    out = run_search(cfg, tmp_path / "out", space=known_space, splits=splits)
    assert "start-up phase (3 of 5" in out.summary["searcher_info"]["note"]


# ------------------------------------------------------------------------------ final stage
def test_final_stage_trains_seeds_and_picks_by_mean_valid_auc(tmp_path, mlflow_uri, splits, known_space):
    from mdmt_nas.search.runner import run_search

    cfg = make_config(
        mlflow_uri, searcher="optuna-random", budget=4, final_seeds=2, final_top_k=2, params={"pruner": "none"}
    )
    out = run_search(cfg, tmp_path / "out", space=known_space, splits=splits)
    final = out.summary["final_stage"]
    assert 2 <= len(final) <= 3  # top 2, plus the best known one if it is not among them
    assert all(len(e["runs"]) == 2 and [r["seed"] for r in e["runs"]] == [0, 1] for e in final)
    means = [e["valid_mean_auc"] for e in final]
    assert means == sorted(means, reverse=True)
    from mdmt_nas.arch import Architecture

    assert out.best.arch.id == final[0]["arch_id"]
    assert Architecture.load(tmp_path / "out" / "best_arch.json").id == final[0]["arch_id"]
    _, children = runs_of(mlflow_uri, cfg.tracking.experiment)
    assert sum(r.data.tags["mdmt_nas.kind"] == "final" for r in children) == len(final)
    for e in final:
        assert math.isclose(e["valid_mean_auc"], sum(r["valid_mean_auc"] for r in e["runs"]) / 2)


def test_duration_budget_runs_until_the_time():
    from mdmt_nas.config import SearchConfig

    s = SearchConfig.model_validate({"budget": "30m"})
    assert s.budget is None and s.until_timeout and s.timeout == 1800
    assert SearchConfig.model_validate({"budget": "2h", "timeout": 60}).timeout == 60
    assert SearchConfig.model_validate({"budget": "12"}).budget == 12
    with pytest.raises(Exception, match="neither a number of trials/epochs nor a duration"):
        SearchConfig.model_validate({"budget": "soon"})
