"""Assignments that spell one model (a choice that is inert where it sits) are one candidate: trained once,
one MLflow run, one id on the leaderboard."""

from __future__ import annotations

import textwrap

from mdmt_nas.spaces import load_space
from test_runner import _one_thread, make_config, mlflow_uri, runs_of, splits  # noqa: F401

#: common experts only: the level-2 fusion has one part, so sum, gated and weighted are one function
SPACE = """
name: spellings
description: 2 models written 6 ways
template:
  embedding_dim: 4
  shared: {expert: {name: mlp, params: {hidden: [8]}}, num: {choice: num_experts}}
  fusion: {choice: fusion}
  tower: {name: mlp_tower, params: {hidden: [8]}}
choices:
  num_experts: {type: int, low: 1, high: 2}
  fusion:
    options: [sum, gated, weighted]
"""


def test_a_grid_over_spellings_trains_each_model_once(tmp_path, mlflow_uri, splits):
    from mdmt_nas.search.runner import run_search

    path = tmp_path / "spellings.yaml"
    path.write_text(textwrap.dedent(SPACE))
    space = load_space(path)
    assert space.size() == 6 and len({a.id for _, a in space.enumerate()}) == 6  # as written: six ids
    cfg = make_config(mlflow_uri, searcher="optuna-grid", params={"pruner": "none"})
    outcome = run_search(cfg, tmp_path / "out", space=space, splits=splits)

    trained = outcome.result.candidates
    _, children = runs_of(mlflow_uri, cfg.tracking.experiment)
    assert len(trained) == len(children) == 2
    assert len({c.arch.id for c in trained}) == 2
    assert all(c.arch.fusion.name == "sum" for c in trained)  # the simplest spelling is the one kept
