"""The searcher contract shared by one-shot (DARTS) and multi-trial (Optuna, NNI) searchers.

A searcher gets a `SearchContext` (space, data, budget, an evaluation function
that trains one candidate and logs it as an MLflow child run, output directory)
and returns a `SearchResult` (best architecture, leaderboard). It never talks
to MLflow or the data layer directly: the context does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from mdmt_nas.arch import Architecture

if TYPE_CHECKING:  # pragma: no cover
    from mdmt_nas.config import ExperimentConfig
    from mdmt_nas.data.tensors import Splits
    from mdmt_nas.spaces import Space
    from mdmt_nas.tracking import Tracker


@dataclass
class Candidate:
    """One evaluated architecture: state is finished, pruned or failed."""

    number: int
    arch: Architecture
    state: str
    valid_mean_auc: float = float("nan")
    test_mean_auc: float = float("nan")
    num_params: int = 0
    latency_ms_per_1k: float = float("nan")
    train_seconds: float = 0.0
    reason: str = ""
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    assignment: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            "number": self.number, "arch_id": self.arch.id, "state": self.state,
            "valid_mean_auc": self.valid_mean_auc, "test_mean_auc": self.test_mean_auc,
            "num_params": self.num_params, "latency_ms_per_1k": self.latency_ms_per_1k,
            "train_seconds": self.train_seconds, "reason": self.reason, "run_id": self.run_id or "",
        }


@dataclass
class SearchResult:
    best: Architecture
    candidates: list[Candidate]
    pareto: list[Candidate] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


#: evaluate(arch, label, epoch_callback=None, assignment=None) -> Candidate
Evaluate = Callable[..., Candidate]


@dataclass
class SearchContext:
    space: "Space"
    splits: "Splits"
    config: "ExperimentConfig"
    budget: int | None
    timeout: float | None
    seed: int
    output_dir: Path
    tracker: "Tracker"
    parent_run_id: str | None
    evaluate: Evaluate
    storage: str | None = None
    study_name: str | None = None
    resume: bool = False
    objectives: tuple[str, ...] = ("valid_auc",)


class SearcherParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Searcher:
    """Base class of registered searchers: set `name`, `Params`, implement `run`."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = SearcherParams
    #: what `--budget` counts for this searcher
    budget_unit: ClassVar[str] = "trials"
    default_budget: ClassVar[int] = 10

    def __init__(self, params: BaseModel | None = None):
        self.params = params if params is not None else self.Params()

    def run(self, ctx: SearchContext) -> SearchResult:  # pragma: no cover - interface
        raise NotImplementedError
