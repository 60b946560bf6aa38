"""Benchmark settings: which models (fixed examples and searchers), seeds, dataset and budgets one report covers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mdmt_nas.config import DatasetConfig, ExperimentConfig, TrackingConfig, load_config
from mdmt_nas.errors import ConfigError
from mdmt_nas.files import shipped_example


# ------------------------------------------------------------------------------ models
@dataclass(frozen=True)
class ModelSpec:
    key: str
    label: str
    kind: str  # "fixed" or "search"
    source: str  # example config name (fixed) or searcher name (search)


BASELINES: tuple[ModelSpec, ...] = (
    ModelSpec("shared_bottom", "Shared-Bottom", "fixed", "shared_bottom"),
    ModelSpec("mmoe", "MMoE", "fixed", "mmoe"),
    ModelSpec("ple", "PLE", "fixed", "ple"),
    ModelSpec("star", "STAR", "fixed", "star"),
    ModelSpec("m3oe", "M3oE", "fixed", "m3oe"),
    ModelSpec("hamur", "HAMUR", "fixed", "hamur_mlp"),
    ModelSpec("cesaa", "CESAA", "fixed", "cesaa"),
    ModelSpec("dephn", "DEPHN", "fixed", "dephn"),
)
SEARCHES: tuple[ModelSpec, ...] = (
    ModelSpec("darts", "DARTS", "search", "darts"),
    ModelSpec("tpe", "Optuna TPE", "search", "optuna-tpe"),
)
ALL_MODELS: tuple[ModelSpec, ...] = BASELINES + SEARCHES
MODEL_KEYS = tuple(m.key for m in ALL_MODELS)
#: the fixed model the report compares the searched architectures with first (coloured apart in the figure)
REFERENCE = "m3oe"
#: the example whose train section trains the candidates and the searched winners by default: the section every
#: example but M3oE shares (row-mean loss, no weight decay, no structure step), so a searched architecture and the
#: fixed baselines differ only in the architecture. M3oE's own (per-cell loss, weight decay, its arch step) made the
#: known MMoE inside a search 0.004-0.01 valid AUC worse than the fixed MMoE (docs/results/structure-product-eq).
SEARCH_TRAIN = "mmoe"


#: display names of searchers (others are shown by their registered name)
SEARCHER_LABELS = {
    "darts": "DARTS",
    "optuna-tpe": "Optuna TPE",
    "optuna-random": "Optuna random",
    "optuna-nsga2": "Optuna NSGA-II",
    "nni-random": "NNI random",
    "nni-evolution": "NNI evolution",
}


def model_spec(key: str) -> ModelSpec:
    """A fixed baseline or a searcher by key; any registered searcher name works (e.g. nni-evolution)."""
    for m in ALL_MODELS:
        if m.key == key or (m.kind == "search" and m.source == key):
            return m
    from mdmt_nas.plugins import get_registry

    if key in get_registry().names("searcher"):
        return ModelSpec(key, SEARCHER_LABELS.get(key, key), "search", key)
    from mdmt_nas.errors import closest

    near = closest(key, list(MODEL_KEYS) + list(get_registry().names("searcher")))
    raise ConfigError(
        f"--models/--searchers: unknown model {key!r}"
        + (f" (did you mean {near[0]!r}?)" if near else "")
        + f"; fixed baselines: {', '.join(m.key for m in BASELINES)}; searchers: {', '.join(get_registry().names('searcher'))}"
    )


def example_path(name: str) -> Path:
    """The shipped examples/<name>.yaml, else the name (load_config then reports it missing)."""
    return shipped_example(name) or Path(f"{name}.yaml")


def example_config(name: str) -> ExperimentConfig:
    cfg = load_config(example_path(name))
    if cfg.arch is None:
        raise ConfigError(f"example {name!r} has no arch section")
    return cfg


# ------------------------------------------------------------------------------ settings
class BenchmarkSettings(BaseModel):
    """What a benchmark runs; everything the report needs to say how it was made."""

    model_config = ConfigDict(extra="forbid")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="benchmark"))
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    models: list[str] = Field(default_factory=lambda: list(MODEL_KEYS), min_length=1)
    epochs: int | None = Field(
        default=None, ge=1, description="training epochs of every model (default: each example's own)"
    )
    train_overrides: dict[str, Any] = Field(
        default_factory=dict, description="train.* fields applied to every training (e.g. threads, batch_size)"
    )
    space: str = "m3oe"
    search_train: str = Field(
        default=SEARCH_TRAIN, description="example whose train section trains the candidates and the searched winners"
    )
    tpe_trials: int | str = Field(
        default=20, description="budget of each multi-trial search: trials, or a wall time (30m)"
    )
    candidate_epochs: int | None = Field(
        default=None,
        ge=1,
        description="training epochs of each candidate (default: full training; "
        "multi-fidelity pruning stops the poor ones early); fewer epochs means the winner is retrained",
    )
    tpe_params: dict[str, Any] = Field(default_factory=dict, description="searcher params of the multi-trial searches")
    final_seeds: int = Field(default=1, ge=1, description="search.final_seeds of every search")
    warm_start: bool = Field(
        default=True, description="search.warm_start of every search (the space's known architectures first)"
    )
    darts_epochs: int | None = Field(
        default=None, ge=1, description="DARTS supernet epochs (default: the searcher's own)"
    )
    darts_params: dict[str, Any] = Field(default_factory=dict)
    quick: bool = False
    command: str = ""

    def specs(self) -> list[ModelSpec]:
        return [model_spec(k) for k in self.models]

    @property
    def space_label(self) -> str:
        return Path(self.space).stem if self.space.endswith((".yaml", ".yml", ".json")) else self.space


def quick_settings(settings: BenchmarkSettings) -> BenchmarkSettings:
    """--quick: tiny data (synthetic), one epoch, short searches -- for tests and smoke runs."""
    upd: dict[str, Any] = {"quick": True}
    if settings.dataset.name == "synthetic" and "n_rows" not in settings.dataset.params:
        upd["dataset"] = settings.dataset.model_copy(update={"params": {**settings.dataset.params, "n_rows": 3000}})
    upd["train_overrides"] = {"batch_size": 512, "patience": 0, **settings.train_overrides}
    upd["darts_params"] = {
        "warmup_epochs": 0,
        "rows_per_epoch": 2000,
        "eval_rows": 1000,
        "batch_size": 256,
        **settings.darts_params,
    }
    upd["tpe_params"] = {"pruner": "none", **settings.tpe_params}
    upd["candidate_epochs"] = settings.candidate_epochs or 1
    return settings.model_copy(update=upd)
