"""optuna-tpe's search.params.multivariate models the choices jointly (multivariate, grouped TPE): the params reach
the sampler, and on the conditional m3oe space every joint suggestion is a valid point of it, without warnings."""

from __future__ import annotations

import warnings

import optuna

from mdmt_nas.search.base import SearchContext
from mdmt_nas.search.optuna import OptunaTPE, TPEParams, suggest_assignment
from mdmt_nas.spaces import load_space


def _sampler(params: TPEParams, seed: int = 0) -> optuna.samplers.TPESampler:
    ctx = SearchContext.__new__(SearchContext)  # make_sampler reads only seed and budget
    ctx.seed, ctx.budget = seed, 60
    return OptunaTPE(params).make_sampler(ctx)


def test_the_params_reach_the_sampler():
    on, off = _sampler(TPEParams(multivariate=True)), _sampler(TPEParams())
    assert on._multivariate and on._group
    assert not off._multivariate and not off._group
    assert not _sampler(TPEParams(multivariate=True, group=False))._group


def test_every_suggestion_on_the_conditional_space_is_a_point_of_it():
    space = load_space("m3oe")
    study = optuna.create_study(direction="maximize", sampler=_sampler(TPEParams(multivariate=True, n_startup_trials=5)))
    seen = []

    def objective(trial):
        a = suggest_assignment(trial, space)
        assert space.normalize(a) == a  # strict: only active choices, each value allowed
        space.to_arch(a)
        seen.append(a)
        return float(a.get("shared_expert") == "product") + float(a["task_module"])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no experimental-feature or fallback warnings reach the user
        study.optimize(objective, n_trials=25)
    assert len(seen) == 25
