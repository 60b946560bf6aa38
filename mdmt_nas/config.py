"""Experiment configs: pydantic models, YAML (safe loader), `--set` overrides, readable errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from mdmt_nas.arch import Architecture
from mdmt_nas.errors import ConfigError, closest
from mdmt_nas.files import config_error, load_yaml_or_json, python_tag, shipped_example, yaml_error

__all__ = [
    "DatasetConfig",
    "ExperimentConfig",
    "SearchConfig",
    "TrackingConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "load_yaml_or_json",
]


class DatasetConfig(BaseModel):
    """Which registered dataset to load and its params (validated by the dataset's Params)."""

    model_config = ConfigDict(extra="forbid")
    name: str = "synthetic"
    params: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(BaseModel):
    """Training knobs; defaults suit the synthetic default on 2 CPU cores."""

    model_config = ConfigDict(extra="forbid")
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=2048, ge=1)
    eval_batch_size: int = Field(default=16384, ge=1)
    epochs: int = Field(default=10, ge=1)
    epoch_rows: int | None = Field(
        default=None,
        ge=1,
        description="training rows per epoch (evaluation, early stopping and pruning happen per epoch): the shuffled passes "
        "over the train split are cut into epochs of this many rows; null = one epoch is one pass",
    )
    patience: int = Field(
        default=2, ge=0, description="epochs without valid-AUC improvement before stopping; 0 = never stop early"
    )
    min_delta: float = Field(default=1e-4, ge=0)
    seed: int = 0
    loss_reduction: Literal["row_mean", "domain_task_mean"] = Field(
        default="row_mean",
        description="row_mean: per-task mean BCE over rows; domain_task_mean: sum over domains of per-(domain, task) mean BCE (M3oE)",
    )
    arch_step: Literal["off", "train", "valid"] = Field(
        default="off",
        description="train `arch_*` parameters with a second Adam on a separate batch of this split (M3oE's alternating AutoML step)",
    )
    arch_lr: float = Field(default=1e-3, gt=0)
    arch_step_every: Literal["batch", "epoch"] = Field(
        default="batch", description="structure step after every batch, or once per epoch (the M3oE reference)"
    )
    grad_clip: float | None = Field(default=None, gt=0)
    sparse_embedding: bool = Field(
        default=False,
        description="sparse gradients for the sparse-feature embedding table, updated by SparseAdam (SGD with optimizer sgd): "
        "a step touches only the rows of the batch's ids, not the whole table (for large vocabularies); the table then gets "
        "no weight decay, lazy Adam moments, and the plain summed gradient under gradient-level balancers",
    )
    max_seconds: float | None = Field(
        default=None, gt=0, description="time limit for one training; exceeded -> failed trial"
    )
    max_memory_mb: float | None = Field(
        default=None, gt=0, description="peak RSS limit for one training; exceeded -> failed trial"
    )
    threads: int | None = Field(default=None, ge=1)
    progress: bool = True


class TrackingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default: $MLFLOW_TRACKING_URI or MLflow's own default (sqlite mlflow.db)",
    )
    experiment: str = "mdmt-nas"
    log_model: bool = Field(
        default=True,
        description="log the trained model (train) or the best one (search) as an MLflow "
        "pyfunc model that scores raw feature rows",
    )
    register_model: str | None = Field(
        default=None,
        description="register the logged model in the MLflow Model Registry under this name (a new version each time)",
    )
    plots: Literal["best", "all"] = Field(
        default="best",
        description="AUC heatmap of a search candidate: only when it leads the leaderboard so far, and for retrained/final "
        "models (best; ~0.5 s saved per other candidate), or for every candidate (all)",
    )
    async_logging: bool = Field(
        default=True,
        description="write params, metrics, tags and artifacts from a background thread, in the order they were logged, "
        "so a training does not wait on the store; flushed when a run ends, before anything is read back, and at exit "
        "(a failed write is raised by the next call); false: every call writes before it returns",
    )
    timeout: float = Field(
        default=10.0,
        gt=0,
        description="seconds an MLflow tracking server has to answer: the reachability "
        "check at start and each request (http(s) URIs)",
    )
    retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="retries of a failed request to an MLflow tracking server "
        "(back-off 1, 2, 4 ... s), so a server that went away ends the run in seconds, not minutes",
    )


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of '90s', '30m', '1.5h' (ValueError with the accepted forms otherwise)."""
    t = text.strip().lower()
    try:
        value = float(t[:-1]) if t[-1:] in _UNITS else None
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise ValueError(f"budget {text!r} is neither a number of trials/epochs nor a duration such as 90s, 30m or 2h")
    return value * _UNITS[t[-1]]


class ExecutorConfig(BaseModel):
    """Where a search's candidates train: `local` (this process) or `ray` (Ray actors; docs/scale-out.md)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["local", "ray"] = Field(
        default="local", description="local: candidates train in this process; ray: as Ray actors"
    )
    address: str | None = Field(
        default=None, description="Ray cluster address (ray://host:10001, host:6379, auto); default: a local Ray"
    )
    workers: int = Field(default=2, ge=1, description="candidates training at once (Ray actors)")
    cpus_per_trial: float = Field(
        default=1,
        gt=0,
        description="CPUs Ray reserves for each candidate (torch threads: the integer part, at least 1)",
    )


class SearchConfig(BaseModel):
    """The `search:` section: which searcher explores which space, and how long (CLI flags override it)."""

    model_config = ConfigDict(extra="forbid")
    space: str | None = Field(
        default=None, description="search space name (`mdmt-nas spaces list`) or a space YAML file"
    )
    searcher: str = Field(
        default="darts",
        description="registered searcher: darts, optuna-tpe, optuna-nsga2, optuna-random, optuna-grid, nni-random, nni-evolution",
    )
    budget: int | None = Field(
        default=None,
        ge=1,
        description="trials (multi-trial) or epochs (one-shot); default: the searcher's own. "
        "A duration (90s, 30m, 2h) is a wall-time budget: candidates until that time (search.timeout)",
    )
    timeout: float | None = Field(default=None, gt=0, description="seconds; no new candidate starts after this")
    #: set when `budget` was given as a duration: multi-trial searchers run until `timeout`, not a trial count
    until_timeout: bool = False
    warm_start: bool = Field(
        default=True,
        description="evaluate the space's known architectures (M3oE, MMoE, ...) first and mark them on the leaderboard",
    )
    final_top_k: int = Field(
        default=3,
        ge=1,
        description="after a multi-trial search: the best k architectures (by valid AUC) are trained with final_seeds seeds each",
    )
    final_seeds: int = Field(
        default=1,
        ge=1,
        description="seeds per final architecture (the search's own training counts as the first); the winner has the best mean valid AUC",
    )
    seed: int = 0
    epochs: int | None = Field(
        default=None, ge=1, description="training epochs of each candidate (default: train.epochs)"
    )
    objectives: list[Literal["auc", "params", "latency"]] = Field(
        default_factory=lambda: ["auc"],
        description="auc first; params/latency are minimised (multi-objective searchers)",
    )
    max_failures: int | None = Field(
        default=None, ge=1, description="stop after this many failed candidates in one run (default: the budget)"
    )
    retrain: bool = Field(
        default=True,
        description="train the best architecture again (train.epochs) when the search kept no weights of it",
    )
    storage: str | None = Field(
        default=None,
        description="Optuna storage shared between processes: sqlite:///, postgresql://, journal:///file.log (default sqlite in the output directory)",
    )
    study_name: str | None = None
    params: dict[str, Any] = Field(
        default_factory=dict, description="searcher-specific parameters, validated by the searcher's Params"
    )
    executor: ExecutorConfig = Field(
        default_factory=ExecutorConfig, description="where candidates train (--executor, --workers)"
    )

    @model_validator(mode="before")
    @classmethod
    def _duration_budget(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("budget"), str) and not data["budget"].strip().isdigit():
            seconds = parse_duration(data["budget"])
            data = {
                **data,
                "budget": None,
                "until_timeout": True,
                "timeout": min(seconds, float(data["timeout"])) if data.get("timeout") else seconds,
            }
        return data

    @model_validator(mode="after")
    def _objectives(self) -> SearchConfig:
        if not self.objectives or self.objectives[0] != "auc" or len(set(self.objectives)) != len(self.objectives):
            raise ValueError(
                f"objectives must start with 'auc' and not repeat, e.g. [auc, params]; got {self.objectives}"
            )
        return self


class ExperimentConfig(BaseModel):
    """A whole experiment: dataset, architecture, training and tracking (+ search, see search.config)."""

    model_config = ConfigDict(extra="forbid")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    arch: Architecture | None = None
    train: TrainConfig = Field(default_factory=TrainConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    search: SearchConfig = Field(
        default_factory=SearchConfig, description="searcher settings (see `mdmt-nas search --help`)"
    )
    _origin: Any = PrivateAttr(default=None)

    @property
    def origin(self) -> ConfigOrigin:
        """Where the parts of this config came from (load_config sets it; defaults otherwise)."""
        return self._origin if self._origin is not None else ConfigOrigin()

    @origin.setter
    def origin(self, value: ConfigOrigin) -> None:
        self._origin = value

    @model_validator(mode="before")
    @classmethod
    def _arch_file(cls, v: Any) -> Any:
        # `arch: path/to/arch.json` is resolved by load_config relative to the config file
        return v


# ------------------------------------------------------------------------------- loading
#: an override: "KEY=VALUE", or ("KEY=VALUE", label) where label names it in errors (a CLI flag such as "--epochs 0")
Override = str | tuple[str, str]


@dataclass
class ConfigOrigin:
    """Where each part of a loaded config came from, so a later error blames the right input (the file, --arch, --set)."""

    file: str | None = None  # the config file used
    arch_file: str | None = None  # --arch FILE, or the file an `arch:` path in the config names
    #: key path of each override -> (its label, the depth from which the override created the path)
    overrides: dict[tuple[str, ...], tuple[str, int]] = field(default_factory=dict)

    def blame(self, loc: tuple[Any, ...]) -> str | None:
        """The override behind an error at `loc` (inside what it set, or a mapping it created), else None."""
        keys = tuple(str(p) for p in loc if not isinstance(p, int))
        best: tuple[int, str] | None = None
        for key, (label, created) in self.overrides.items():
            inside = keys[: len(key)] == key
            made = key[: len(keys)] == keys and len(keys) >= created
            if (inside or made) and (best is None or len(key) > best[0]):
                best = (len(key), label)
        return best[1] if best else None

    def source_of(self, loc: tuple[Any, ...]) -> str:
        """What to name for an error at `loc`: the override, the architecture file (for arch.*), or the config file."""
        by_set = self.blame(loc)
        if by_set:
            return by_set
        if self.arch_file and loc and loc[0] == "arch":
            return self.arch_file
        return self.file or "config"


def _parse_value(raw: str, label: str) -> Any:
    if raw == "":
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        if python_tag(getattr(exc, "problem", None) or str(exc)):
            raise yaml_error(exc, label, lines=False) from None
        return raw  # not YAML (e.g. an unbalanced bracket): the text itself


def apply_overrides(
    data: dict[str, Any], overrides: list[Override] | None, source: str = "--set", origin: ConfigOrigin | None = None
) -> dict[str, Any]:
    """Apply `key.sub=value` overrides; values are parsed as YAML scalars/lists (safe). `origin` records each one."""
    for entry in overrides or []:
        item, label = entry if isinstance(entry, tuple) else (entry, f"{source} {entry}")
        if "=" not in item:
            raise ConfigError(f"{label}: expected KEY=VALUE, e.g. --set train.lr=0.01")
        key, raw = item.split("=", 1)
        value = _parse_value(raw, label)
        node = data
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"{label}: empty key segment")
        created = len(parts)
        for depth, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                created = min(created, depth + 1)
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"{label}: {p!r} is not a mapping, cannot set a sub-key")
            node = nxt
        if parts[-1] not in node:
            created = min(created, len(parts))
        node[parts[-1]] = value
        if origin is not None:
            origin.overrides[tuple(parts)] = (label, created)
    return data


def config_file(path: str | Path) -> Path:
    """The file a `--config` value names: an existing path, or -- a bare name only (`m3oe`) -- a shipped example.

    A path that does not exist is an error even when a shipped example has its name: a mistyped path or the wrong
    working directory must not train the example on its synthetic data.
    """
    p = Path(path)
    if p.exists():
        return p
    if p.suffix == "" and len(p.parts) == 1:
        example = shipped_example(p)
        if example is not None:
            return example
        from mdmt_nas.files import shipped_dir

        names = sorted(f.stem for f in shipped_dir("mdmt_nas._examples").glob("*.yaml"))
        near = closest(p.name, names)
        hint = f"did you mean {near[0]!r}?" if near else f"shipped examples: {', '.join(names)}"
        raise ConfigError(f"--config {path}: no such file here and no shipped example of that name ({hint})")
    example = shipped_example(p)
    hint = f"; to use the shipped example of that name, pass --config {p.stem}" if example is not None else ""
    raise ConfigError(f"{path}: file not found (looked in {Path.cwd()}){hint}")


def load_config(
    path: str | Path | None = None, overrides: list[Override] | None = None, arch_path: str | Path | None = None
) -> ExperimentConfig:
    """Load an experiment config (or defaults), apply overrides, resolve an `arch:` file path.

    Errors name the input at fault: the config file, --arch, or the `--set` item (or CLI flag) that set the value.
    The returned config's `origin` (ConfigOrigin) says which file was used, for later checks and messages."""
    data: dict[str, Any] = {}
    origin = ConfigOrigin()
    if path is not None:
        path = config_file(path)
        origin.file = str(path)
        loaded = load_yaml_or_json(path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
        data = loaded
    apply_overrides(data, overrides, origin=origin)
    arch_ref = data.get("arch")
    if isinstance(arch_ref, str):
        base = Path(path).parent if path else Path.cwd()
        candidate = (base / arch_ref) if not Path(arch_ref).is_absolute() else Path(arch_ref)
        data["arch"] = load_yaml_or_json(candidate)
        origin.arch_file = str(candidate)
    if arch_path is not None:
        arch = load_yaml_or_json(arch_path)
        if isinstance(arch, dict) and "arch" in arch and "embedding_dim" not in arch:
            arch = arch["arch"]
        data["arch"] = arch
        origin.arch_file = str(arch_path)
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, origin.file or "config", model=ExperimentConfig, blame=origin.source_of) from None
    cfg.origin = origin
    return cfg
