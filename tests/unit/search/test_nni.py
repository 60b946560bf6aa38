"""NNI searchers: random and regularized evolution on NNI 3.0's sequential engine, no process left behind."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from test_runner import _one_thread, load_tiny, make_config, mlflow_uri, runs_of, splits, test_plugin  # noqa: F401


def _nni_importable() -> str:
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import nni.nas.strategy  # noqa: F401
    except ImportError as exc:
        return f"nni is not importable ({exc}); install the extra: pip install 'mdmt-nas[nni]'"
    return ""


needs_nni = pytest.mark.skipif(bool(_nni_importable()), reason=_nni_importable() or "nni importable")


def _children_processes() -> list:
    psutil = pytest.importorskip("psutil")
    return [
        p for p in psutil.Process().children(recursive=True) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    ]


@needs_nni
@pytest.mark.parametrize("searcher", ["nni-random", "nni-evolution"])
def test_nni_strategy_runs_three_trials(tmp_path, mlflow_uri, splits, searcher):
    from mdmt_nas.search.runner import run_search

    before = _children_processes()
    handlers = list(logging.getLogger("nni").handlers)
    out = tmp_path / "out"
    cfg = make_config(mlflow_uri, searcher=searcher, budget=3, params={"pruner": "none"})
    outcome = run_search(cfg, out, space=load_tiny(tmp_path), splits=splits)

    cands = outcome.result.candidates
    assert len(cands) == 3 and all(c.state == "finished" for c in cands)
    assert len({c.arch.id for c in cands}) == 3
    parents, children = runs_of(mlflow_uri, cfg.tracking.experiment)
    assert len(parents) == 1 and len(children) == 3
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    # NNI's files stay in the output directory; nothing keeps running afterwards
    assert (out / "nni" / "nni.log").exists() and (out / "nni" / "state.pkl").exists()
    assert len((out / "nni" / "candidates.jsonl").read_text().splitlines()) == 3
    assert _children_processes() == before
    assert logging.getLogger("nni").handlers == handlers
    summary = json.loads((out / "search.json").read_text())
    assert summary["searcher"] == searcher and summary["finished"] == 3
    assert (out / "weights.pt").exists() and (out / "best_arch.json").exists()


@needs_nni
def test_nni_evolution_mutates_after_the_initial_population(tmp_path, mlflow_uri, splits):
    from mdmt_nas.search.runner import run_search

    out = tmp_path / "out"
    cfg = make_config(
        mlflow_uri, searcher="nni-evolution", budget=5, epochs=1, params={"population_size": 2, "sample_size": 1}
    )
    run_search(cfg, out, space=load_tiny(tmp_path), splits=splits)
    log = (out / "nni" / "nni.log").read_text()
    assert (
        "Random:" in log and "Mutated:" in log
    )  # NNI's own RegularizedEvolution: 2 random individuals, then mutations


@needs_nni
def test_nni_resume_continues_to_the_budget(tmp_path, mlflow_uri, splits):
    from mdmt_nas.search.runner import run_search

    out = tmp_path / "out"
    space = load_tiny(tmp_path)
    cfg = make_config(mlflow_uri, searcher="nni-random", budget=2, epochs=1)
    first = run_search(cfg, out, space=space, splits=splits)
    cfg4 = cfg.model_copy(update={"search": cfg.search.model_copy(update={"budget": 4})})
    second = run_search(cfg4, out, space=space, splits=splits, resume=True)
    assert len(second.result.candidates) == 4
    assert len({c.arch.id for c in second.result.candidates}) == 4
    assert second.parent_run_id == first.parent_run_id


@needs_nni
def test_interrupted_nni_search_leaves_nothing_running(tmp_path, mlflow_uri, splits, monkeypatch):
    from mdmt_nas.search import evaluate, runner

    calls = {"n": 0}
    real = evaluate.Evaluator.__call__

    def interrupt_second(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(evaluate.Evaluator, "__call__", interrupt_second)
    before = _children_processes()
    handlers = list(logging.getLogger("nni").handlers)
    cfg = make_config(mlflow_uri, searcher="nni-random", budget=3, epochs=1)
    with pytest.raises(KeyboardInterrupt):
        runner.run_search(cfg, tmp_path / "out", space=load_tiny(tmp_path), splits=splits)
    assert _children_processes() == before
    assert logging.getLogger("nni").handlers == handlers
    parents, _ = runs_of(mlflow_uri, cfg.tracking.experiment)
    assert parents[0].info.status == "KILLED"


def test_without_the_extra_the_error_says_how_to_install(tmp_path, mlflow_uri, splits, monkeypatch):
    from mdmt_nas.errors import UserError
    from mdmt_nas.search.runner import run_search

    monkeypatch.setitem(sys.modules, "nni", None)  # import nni -> ImportError
    cfg = make_config(mlflow_uri, searcher="nni-random", budget=1)
    with pytest.raises(UserError, match=r"searcher 'nni-random' needs the nni extra: pip install 'mdmt-nas\[nni\]'"):
        run_search(cfg, tmp_path / "out", space=load_tiny(tmp_path), splits=splits)
