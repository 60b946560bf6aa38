"""Multi-fidelity evaluation: candidates report valid AUC at rungs, a pruner stops the poor ones early.

A candidate's training is cut into `reports_per_epoch` epochs per pass over the
training rows (`train.epoch_rows`), so the first rung is a fraction of the rows
and later rungs add epochs: successive halving / Hyperband over training rows
and epochs, continuing each survivor's training instead of restarting it. The
pruners are Optuna's (median, Hyperband, successive halving); searchers that are
not Optuna (NNI) get the same pruners through `StandalonePruner`, an in-memory
Optuna study of the candidates' learning curves.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from mdmt_nas.config import TrainConfig

PrunerKind = Literal["hyperband", "asha", "median", "none"]


def rung_config(cfg: TrainConfig, n_train: int, per_epoch: int) -> TrainConfig:
    """`cfg` with `per_epoch` reports per pass over the train split: the same rows in all, epochs (and patience) scaled."""
    if per_epoch <= 1 or cfg.epoch_rows is not None:
        return cfg
    return cfg.model_copy(
        update={
            "epoch_rows": math.ceil(n_train / per_epoch),
            "epochs": cfg.epochs * per_epoch,
            "patience": cfg.patience * per_epoch,
        }
    )


def make_pruner(kind: PrunerKind, max_resource: int, startup: int = 3, warmup: int = 0) -> Any:
    """An Optuna pruner over `max_resource` reports (rungs): hyperband (default), asha (one successive-halving
    bracket), median, or none. Hyperband and ASHA start at one report and keep the best third at each rung."""
    import optuna

    if kind == "none":
        return optuna.pruners.NopPruner()
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_resource, 2), reduction_factor=3)
    if kind == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)


class StandalonePruner:
    """Optuna's pruning rules for a searcher that is not Optuna: one in-memory trial per candidate.

    ``handle = pruner.start()``; ``pruner.should_prune(handle, value, step)`` after each report;
    ``pruner.finish(handle, value)`` (value None: pruned or failed).
    """

    def __init__(self, kind: PrunerKind, max_resource: int, seed: int = 0, startup: int = 3):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(
            direction="maximize",
            pruner=make_pruner(kind, max_resource, startup),
            sampler=optuna.samplers.RandomSampler(seed=seed),
        )

    def start(self) -> Any:
        return self.study.ask()

    def should_prune(self, trial: Any, value: float, step: int) -> bool:
        if not math.isfinite(value):
            return False
        trial.report(value, step)
        return bool(trial.should_prune())

    def finish(self, trial: Any, value: float | None) -> None:
        import optuna

        if value is None or not math.isfinite(value):
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial, value)
