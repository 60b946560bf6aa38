"""The searcher contract shared by one-shot (DARTS) and multi-trial (Optuna, NNI) searchers.

A searcher gets a `SearchContext` (space, data, budget, an evaluator that trains
one candidate and logs it as an MLflow child run, output directory, tracker) and
returns a `SearchResult` (best architecture, leaderboard). It never opens data
or a tracking store itself: the context does. The `Searcher` base class
declares every optional hook with its default, so the runner calls them plainly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from mdmt_nas.arch import Architecture
from mdmt_nas.errors import SearchStopped  # noqa: F401 - it lives in errors (check_interrupt raises it); importable from here

if TYPE_CHECKING:  # pragma: no cover
    from mdmt_nas.config import ExperimentConfig
    from mdmt_nas.data.tensors import Splits
    from mdmt_nas.search.evaluate import Evaluator
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
    #: the name of the published architecture this candidate is (a warm-start point), else ""
    known: str = ""
    #: share of the full training budget it got (1 = fully trained; lower for a pruned or screened candidate)
    fidelity: float = 1.0
    #: final stage: (seed, valid mean AUC, test mean AUC) of each training of this architecture
    seed_results: list[tuple[int, float, float]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "arch_id": self.arch.id,
            "known": self.known,
            "state": self.state,
            "valid_mean_auc": self.valid_mean_auc,
            "test_mean_auc": self.test_mean_auc,
            "num_params": self.num_params,
            "latency_ms_per_1k": self.latency_ms_per_1k,
            "train_seconds": self.train_seconds,
            "reason": self.reason,
            "run_id": self.run_id or "",
        }

    def to_record(self, label: str) -> str:
        """This candidate as JSON (an Optuna trial attribute, an NNI checkpoint line); `from_record` reads it back."""
        return _candidate_record(self, label)

    @staticmethod
    def from_record(text: str) -> Candidate:
        return _candidate_from_record(text)


@dataclass
class SearchResult:
    best: Architecture
    candidates: list[Candidate]
    pareto: list[Candidate] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _candidate_record(c: Candidate, label: str) -> str:
    data = c.row()
    data.update(
        arch=c.arch.canonical(),
        arch_name=c.arch.name,
        assignment=c.assignment,
        label=label,
        fidelity=c.fidelity,
        metrics={k: v for k, v in c.metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)},
    )
    return json.dumps(data, default=str)


def _candidate_from_record(text: str) -> Candidate:
    d = json.loads(text)
    arch = Architecture.model_validate({**d["arch"], "name": d.get("arch_name", "")})

    def f(key: str) -> float:
        v = d.get(key)
        return float("nan") if v is None or v == "" else float(v)

    return Candidate(
        number=int(d["number"]),
        arch=arch,
        state=d["state"],
        valid_mean_auc=f("valid_mean_auc"),
        test_mean_auc=f("test_mean_auc"),
        num_params=int(d.get("num_params") or 0),
        latency_ms_per_1k=f("latency_ms_per_1k"),
        train_seconds=f("train_seconds"),
        reason=d.get("reason", ""),
        run_id=d.get("run_id") or None,
        metrics=d.get("metrics", {}),
        assignment=d.get("assignment", {}),
        known=d.get("known", "") or "",
        fidelity=float(d.get("fidelity", 1.0)),
    )


@dataclass
class SearchContext:
    space: Space
    splits: Splits
    config: ExperimentConfig
    budget: int | None
    timeout: float | None
    seed: int
    output_dir: Path
    tracker: Tracker
    parent_run_id: str | None
    #: evaluate(arch, label, epoch_callback=None, assignment=None, number=None, train_config=None, kind='candidate') -> Candidate
    evaluate: Evaluator
    storage: str | None = None
    study_name: str | None = None
    resume: bool = False
    objectives: tuple[str, ...] = ("valid_auc",)
    #: warm-start points: (name, assignment, architecture) of the space's known architectures (empty: opted out)
    known: list[tuple[str, dict[str, Any], Architecture]] = field(default_factory=list)


class SearcherParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Searcher:
    """Base class of registered searchers: set `name`, `Params`, implement `run`; the other hooks are optional."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = SearcherParams
    #: what `--budget` counts for this searcher
    budget_unit: ClassVar[str] = "trials"
    default_budget: ClassVar[int] = 10
    #: optimises more than valid AUC (`--objectives auc,params`)
    multi_objective: ClassVar[bool] = False

    def __init__(self, params: BaseModel | None = None):
        self.params = params if params is not None else self.Params()

    def run(self, ctx: SearchContext) -> SearchResult:  # pragma: no cover - interface
        raise NotImplementedError

    def budget_for(self, space: Space, budget: int | None) -> int:
        """The budget of a search of `space` given `--budget` (None: not given)."""
        return budget or self.default_budget

    def existing_parent_run(self, ctx: SearchContext) -> str | None:
        """The MLflow parent run of the earlier run of this search (resume, shared study), to log under again."""
        return None

    def candidate_config(self, ctx: SearchContext) -> Any:
        """The training config this searcher trains its full candidates with (the final stage trains more seeds with it)."""
        return ctx.evaluate.train_config
