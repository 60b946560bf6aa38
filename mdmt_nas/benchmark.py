"""The benchmark report (issue 8): fixed baselines and searched architectures, several seeds, one report.

    run_benchmark(settings, output_dir)
      load the dataset once (one split for every model and seed)
      open one MLflow parent run "benchmark-<dataset>"
      for each seed:
        for each fixed baseline (examples/<name>.yaml: its `arch` and `train`
          sections, the dataset replaced): train and test it    -> a child run
        for each searcher (DARTS, Optuna TPE) on the `m3oe` space:
          run the search (its own run nests under the parent, candidates under it),
          retrain its best architecture with the M3oE example's `train` section
          and test it                                           -> under the search run
        write the report (it grows seed by seed; an interrupted run keeps what it did)
      report.md, report.html, auc_bar.png, pareto.png, results.json, runs.csv, summary.csv

Searched architectures are trained exactly like fixed M3oE (same train section,
same epochs, same seeds), so the comparison isolates the architecture. DARTS
retrains its derived architecture itself (its `darts-derived` run); the TPE
winner was trained for `candidate_epochs` only, so it is retrained here.

The findings paragraph is generated from the numbers (`findings`): a difference
counts as real only when it exceeds the sum of the two models' standard
deviations over seeds; otherwise it is reported as a tie within noise.
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import json
import math
import os
import platform
import re
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mdmt_nas.config import DatasetConfig, ExperimentConfig, SearchConfig, TrackingConfig, TrainConfig, load_config
from mdmt_nas.errors import ConfigError, UserError
from mdmt_nas.files import shipped_example

RESULTS_VERSION = 1


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
#: the fixed model the searched architectures are measured against (its train section trains them)
REFERENCE = "m3oe"


def model_spec(key: str) -> ModelSpec:
    for m in ALL_MODELS:
        if m.key == key:
            return m
    from mdmt_nas.errors import closest

    near = closest(key, list(MODEL_KEYS))
    raise ConfigError(f"--models: unknown model {key!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                      + f"; known: {', '.join(MODEL_KEYS)}")


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
    epochs: int | None = Field(default=None, ge=1, description="training epochs of every model (default: each example's own)")
    train_overrides: dict[str, Any] = Field(default_factory=dict, description="train.* fields applied to every training (e.g. threads, batch_size)")
    space: str = "m3oe"
    search_train: str = Field(default=REFERENCE, description="example whose train section trains the candidates and the searched winners")
    tpe_trials: int = Field(default=8, ge=1)
    candidate_epochs: int = Field(default=2, ge=1, description="training epochs of each TPE candidate")
    tpe_params: dict[str, Any] = Field(default_factory=lambda: {"n_warmup_steps": 1})
    darts_epochs: int | None = Field(default=None, ge=1, description="DARTS supernet epochs (default: the searcher's own)")
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
    upd["darts_params"] = {"warmup_epochs": 0, "rows_per_epoch": 2000, "eval_rows": 1000, "batch_size": 256, **settings.darts_params}
    upd["tpe_params"] = {"pruner": "none", **settings.tpe_params}
    return settings.model_copy(update=upd)


# ------------------------------------------------------------------------------ records
@dataclass
class RunRecord:
    """One model trained (and tested) with one seed."""

    model: str
    label: str
    kind: str
    seed: int
    status: str = "finished"  # or "failed"
    reason: str = ""
    valid_mean_auc: float = float("nan")
    test_mean_auc: float = float("nan")
    test_mean_logloss: float = float("nan")
    cells: list[dict[str, Any]] = field(default_factory=list)  # domain, task, auc, logloss (test split)
    num_params: int = 0
    train_seconds: float = float("nan")
    wall_seconds: float = float("nan")
    epochs_run: int = 0
    best_epoch: int = -1
    arch_id: str = ""
    run_id: str | None = None
    load_1min: float = float("nan")  # the machine's 1-min load average when the run ended (a shared machine)
    search: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunRecord":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("valid_mean_auc", "test_mean_auc", "test_mean_logloss", "train_seconds", "wall_seconds", "load_1min"):
            if known.get(k) is None:
                known[k] = float("nan")
        return cls(**known)


@dataclass
class Stat:
    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Stat":
        vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if not vals:
            return cls(float("nan"), float("nan"), 0)
        m = sum(vals) / len(vals)
        sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        return cls(m, sd, len(vals))

    def fmt(self, digits: int = 4) -> str:
        if self.n == 0:
            return "n/a"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}" if self.n > 1 else f"{self.mean:.{digits}f}"


@dataclass
class ModelSummary:
    model: str
    label: str
    kind: str
    seeds: list[int]
    failed_seeds: list[int]
    test_auc: Stat
    test_logloss: Stat
    valid_auc: Stat
    cells_auc: dict[tuple[str, str], Stat]
    cells_logloss: dict[tuple[str, str], Stat]
    num_params: Stat
    wall_seconds: Stat
    train_seconds: Stat

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cells_auc"] = [{"domain": k[0], "task": k[1], **asdict(v)} for k, v in self.cells_auc.items()]
        d["cells_logloss"] = [{"domain": k[0], "task": k[1], **asdict(v)} for k, v in self.cells_logloss.items()]
        return d


def summarize(records: Sequence[RunRecord], order: Sequence[ModelSpec] | None = None) -> list[ModelSummary]:
    """Mean ± std over seeds per model (finished runs only), in `order` (default: first appearance)."""
    keys: list[str] = [m.key for m in order] if order else list(dict.fromkeys(r.model for r in records))
    out = []
    for key in keys:
        rs = [r for r in records if r.model == key]
        if not rs:
            continue
        ok = [r for r in rs if r.status == "finished"]
        cells = list(dict.fromkeys((c["domain"], c["task"]) for r in ok for c in r.cells))

        def cell(r: RunRecord, k: tuple[str, str], what: str) -> float:
            return next((float(c[what]) for c in r.cells if (c["domain"], c["task"]) == k), float("nan"))

        out.append(ModelSummary(
            model=key, label=rs[0].label, kind=rs[0].kind, seeds=[r.seed for r in ok], failed_seeds=[r.seed for r in rs if r.status != "finished"],
            test_auc=Stat.of([r.test_mean_auc for r in ok]), test_logloss=Stat.of([r.test_mean_logloss for r in ok]),
            valid_auc=Stat.of([r.valid_mean_auc for r in ok]),
            cells_auc={k: Stat.of([cell(r, k, "auc") for r in ok]) for k in cells},
            cells_logloss={k: Stat.of([cell(r, k, "logloss") for r in ok]) for k in cells},
            num_params=Stat.of([r.num_params for r in ok]), wall_seconds=Stat.of([r.wall_seconds for r in ok]),
            train_seconds=Stat.of([r.train_seconds for r in ok]),
        ))
    return out


# ------------------------------------------------------------------------------ findings
def compare(a: Stat, b: Stat) -> str:
    """'better', 'worse' or 'tie': a difference counts only beyond the sum of both stds over seeds."""
    diff = a.mean - b.mean
    noise = a.std + b.std
    if diff > noise:
        return "better"
    if diff < -noise:
        return "worse"
    return "tie"


def _vs(s: ModelSummary, other: ModelSummary, what: str) -> tuple[str, str]:
    """(verdict, phrase) of `s` against `other` on mean test AUC."""
    v = compare(s.test_auc, other.test_auc)
    diff = s.test_auc.mean - other.test_auc.mean
    noise = s.test_auc.std + other.test_auc.std
    ref = f"{what} {other.label} ({other.test_auc.fmt()})"
    if min(s.test_auc.n, other.test_auc.n) < 2:
        word = {"better": "above", "worse": "below", "tie": "level with"}[v]
        return v, f"{word} {ref}" + (f" by {diff:+.4f}" if v != "tie" else "") + " (one seed: no spread to judge noise)"
    if v == "better":
        return v, f"better than {ref} by {diff:+.4f}, more than the summed std {noise:.4f}"
    if v == "worse":
        return v, f"worse than {ref} by {diff:+.4f}, more than the summed std {noise:.4f}"
    return v, f"a tie with {ref}: the difference {diff:+.4f} is within the summed std {noise:.4f}"


def findings(summaries: Sequence[ModelSummary], reference: str = REFERENCE) -> list[str]:
    """Sentences read off the numbers: the best model, and each searched architecture against fixed M3oE and the best baseline."""
    done = [s for s in summaries if s.test_auc.n > 0]
    if not done:
        return ["No model finished, so there are no findings."]
    out = []
    if all(s.test_auc.n < 2 for s in done):
        out.append("Only one seed per model was run, so the spread over seeds is unknown and no difference below is established beyond noise.")
    top = max(done, key=lambda s: s.test_auc.mean)
    fixed = [s for s in done if s.kind == "fixed"]
    searched = [s for s in done if s.kind == "search"]
    ref = next((s for s in fixed if s.model == reference), None)
    best = max(fixed, key=lambda s: s.test_auc.mean) if fixed else None
    out.append(f"The highest mean test AUC is {top.label}'s ({top.test_auc.fmt()})"
               + (f"; the best fixed baseline is {best.label} ({best.test_auc.fmt()})." if best is not None and best is not top else "."))
    if not searched:
        out.append("No searched architecture finished, so the search is not compared.")
        return out
    if best is None:
        out.append("No fixed baseline finished, so the searched architectures are not compared.")
        return out
    vs_best: list[str] = []
    vs_ref: list[str] = []
    for s in searched:
        parts = []
        if ref is not None:
            v, text = _vs(s, ref, "fixed")
            parts.append(text)
            vs_ref.append(v)
        if ref is None or best.model != ref.model:
            v, text = _vs(s, best, "the best baseline")
            parts.append(text)
        vs_best.append(v)
        params = f" with {s.num_params.mean:,.0f} parameters" if s.num_params.n else ""
        if ref is not None and ref.num_params.n and params:
            params += f" (M3oE: {ref.num_params.mean:,.0f})"
        out.append(f"The {s.label} architecture reaches {s.test_auc.fmt()}{params}; it is " + ", and ".join(parts) + ".")
    n = len(searched)
    noun = "the searched architecture" if n == 1 else "the searched architectures"
    wins = vs_best.count("better")
    if wins == n:
        out.append(f"Verdict: {noun} {'beats' if n == 1 else 'all beat'} the best fixed baseline ({best.label}).")
    elif wins:
        names = [s.label for s, v in zip(searched, vs_best) if v == "better"]
        out.append(f"Verdict: only {', '.join(names)} beats the best fixed baseline ({best.label}).")
    else:
        out.append(f"Verdict: {noun} {'does' if n == 1 else 'do'} not beat the best fixed baseline ({best.label})"
                   + (", none beyond seed noise." if any(v == "tie" for v in vs_best) else "."))
    if ref is not None and best.model != ref.model:
        wins = [s.label for s, v in zip(searched, vs_ref) if v == "better"]
        losses = [s.label for s, v in zip(searched, vs_ref) if v == "worse"]
        if len(wins) == n:
            out.append(f"Against fixed {ref.label}, {noun} {'is' if n == 1 else 'are all'} better.")
        elif not wins:
            out.append(f"Against fixed {ref.label}, {noun} {'is' if n == 1 else 'are'} not better"
                       + (" (a tie within noise)." if not losses and n == 1 else " (ties within noise)." if not losses else "."))
        else:
            out.append(f"Against fixed {ref.label}, {', '.join(wins)} {'is' if len(wins) == 1 else 'are'} better, the other{'s' if n - len(wins) > 1 else ''} not.")
    return out


# ------------------------------------------------------------------------------ machine
def _load_1min() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return float("nan")


def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu": cpu or "unknown", "logical_cpus": os.cpu_count(), "usable_cpus": usable, "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "load_average_1min_at_start": _load_1min()}


# ------------------------------------------------------------------------------ the run
Log = Callable[[str], None]


def _train_config(base: TrainConfig, settings: BenchmarkSettings, seed: int) -> TrainConfig:
    upd: dict[str, Any] = {"seed": seed}
    if settings.epochs is not None:
        upd["epochs"] = settings.epochs
    upd.update(settings.train_overrides)
    try:
        return TrainConfig.model_validate({**base.model_dump(), **upd})
    except Exception as exc:  # pydantic ValidationError
        raise ConfigError(f"train overrides {settings.train_overrides}: {exc}") from None


def _cells(test: Any) -> list[dict[str, Any]]:
    return [{"domain": r["domain"], "task": r["task"], "auc": r["auc"], "logloss": r["logloss"], "rows": r["rows"]} for r in test.table_rows()]


def _record_from_result(spec: ModelSpec, seed: int, result: Any, run_id: str | None, wall: float) -> RunRecord:
    return RunRecord(
        model=spec.key, label=spec.label, kind=spec.kind, seed=seed, valid_mean_auc=result.valid.mean_auc,
        test_mean_auc=result.test.mean_auc, test_mean_logloss=result.test.mean_logloss, cells=_cells(result.test),
        num_params=int(result.num_params), train_seconds=float(result.train_seconds), wall_seconds=wall, epochs_run=result.epochs_run,
        best_epoch=result.best_epoch, arch_id=result.arch.id, run_id=run_id,
    )


def _record_from_candidate(spec: ModelSpec, seed: int, cand: Any, schema: Any, wall: float) -> RunRecord:
    """A record from a search runner Candidate (DARTS's own retraining): metrics are flat `test_auc/<d>/<t>` keys."""
    from mdmt_nas.metrics import _safe

    m = cand.metrics
    cells = []
    for d in schema.domain_names:
        for t in schema.tasks:
            cells.append({"domain": d, "task": t, "auc": m.get(f"test_auc/{_safe(d)}/{_safe(t)}", float("nan")),
                          "logloss": m.get(f"test_logloss/{_safe(d)}/{_safe(t)}", float("nan"))})
    return RunRecord(
        model=spec.key, label=spec.label, kind=spec.kind, seed=seed, valid_mean_auc=cand.valid_mean_auc, test_mean_auc=cand.test_mean_auc,
        test_mean_logloss=float(m.get("test_mean_logloss", float("nan"))), cells=cells, num_params=int(cand.num_params),
        train_seconds=float(cand.train_seconds), wall_seconds=wall, epochs_run=int(m.get("epochs_run", 0)), best_epoch=int(m.get("best_epoch", -1)),
        arch_id=cand.arch.id, run_id=cand.run_id,
    )


@dataclass
class BenchmarkState:
    settings: BenchmarkSettings
    output_dir: Path
    dataset_info: dict[str, Any]
    machine: dict[str, Any]
    started: str
    parent_run_id: str | None = None
    tracking_uri: str | None = None
    records: list[RunRecord] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    elapsed_before: float = 0.0
    previous_commands: list[str] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)  # one per process: started, command, load, runs already done
    unreachable_parents: list[str] = field(default_factory=list)  # parents of earlier parts that a --resume could not re-open
    t0: float = field(default_factory=time.monotonic)
    finished: bool = False

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t0

    def done(self, key: str, seed: int) -> bool:
        return any(r.model == key and r.seed == seed for r in self.records)


def _dataset_info(settings: BenchmarkSettings, splits: Any) -> dict[str, Any]:
    from mdmt_nas.data.loading import make_dataset

    params = make_dataset(settings.dataset.name, settings.dataset.params).params
    split = getattr(params, "split", None)
    schema = splits.schema
    return {
        "name": settings.dataset.name, "params": settings.dataset.params,
        "split": split.model_dump(mode="json") if split is not None else None,
        "rows": {"train": len(splits.train), "valid": len(splits.valid), "test": len(splits.test)},
        "domains": list(schema.domain_names), "tasks": list(schema.tasks),
    }


def split_description(info: dict[str, Any]) -> str:
    s = info.get("split")
    rows = info["rows"]
    counts = f"{rows['train']:,} / {rows['valid']:,} / {rows['test']:,} train / valid / test rows"
    if not s:
        return f"the dataset's own split, {counts}"
    fr = "/".join(f"{round(f * 100):g}" for f in s.get("fractions", ()))
    kind = s.get("kind", "?")
    extra = f" with split seed {s.get('seed')}" if kind in ("random", "hash") else (f" on column {s['column']}" if s.get("column") else "")
    return f"{kind} {fr} split{extra}, {counts}"


def run_benchmark(settings: BenchmarkSettings, output_dir: str | Path, *, resume: bool = False, log: Log | None = None,
                  console: Any = None) -> BenchmarkState:
    """Run every (model, seed) of `settings`, log them under one MLflow parent run, write the report to `output_dir`."""
    from mdmt_nas.experiment import load_splits, validate_arch
    from mdmt_nas.search.runner import load_search_space, searcher_class
    from mdmt_nas.tracking import Tracker, flatten

    log = log or (lambda msg: print(msg, flush=True))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = settings.specs()
    if settings.train_overrides.get("threads"):
        import torch

        torch.set_num_threads(int(settings.train_overrides["threads"]))

    # everything that can be wrong is checked before the first training
    fixed_cfgs = {s.key: example_config(s.source) for s in specs if s.kind == "fixed"}
    search_specs = [s for s in specs if s.kind == "search"]
    search_base = example_config(settings.search_train) if search_specs else None
    space = load_search_space(settings.space) if search_specs else None
    for s in search_specs:
        searcher_class(s.source)
    tracker = Tracker(settings.tracking)
    tracker.check()
    t_load = time.monotonic()
    log(f"loading dataset {settings.dataset.name!r} ...")
    splits = load_splits(ExperimentConfig(dataset=settings.dataset))
    for key, cfg in fixed_cfgs.items():
        validate_arch(cfg.arch, splits)  # type: ignore[arg-type]
    info = _dataset_info(settings, splits)
    log(f"dataset {info['name']}: {split_description(info)}, {len(info['domains'])} domains x {len(info['tasks'])} tasks "
        f"({time.monotonic() - t_load:.1f}s)")

    state = BenchmarkState(settings, out, info, machine_info(), _dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    if resume:
        _load_previous(state, out)
    state.tracking_uri = tracker.tracking_uri if tracker.enabled else None

    # ---- the MLflow parent run (re-opened on --resume)
    parent = state.parent_run_id if tracker.enabled else None
    if parent and not tracker.reopen(parent):  # deleted, or another store
        log(f"the earlier parts' MLflow parent run {parent} is not in {tracker.tracking_uri}: this part logs under a new parent run "
            "(the report names both)")
        state.unreachable_parents.append(parent)
        parent = None
    if parent is None and tracker.enabled:
        parent = tracker.start_run(f"benchmark-{settings.dataset.name}", None, {"mdmt_nas.kind": "benchmark", "dataset": settings.dataset.name})
        params = {"dataset": settings.dataset.name, "seeds": ",".join(map(str, settings.seeds)), "models": ",".join(settings.models),
                  "epochs": settings.epochs, "space": settings.space, "search_train": settings.search_train, "tpe_trials": settings.tpe_trials,
                  "candidate_epochs": settings.candidate_epochs, "darts_epochs": settings.darts_epochs, "quick": settings.quick,
                  "command": settings.command}
        params.update(flatten(settings.dataset.params, "dataset.params"))
        params.update(flatten(settings.train_overrides, "train_overrides"))
        params.update(flatten(settings.tpe_params, "tpe_params"))
        params.update(flatten(settings.darts_params, "darts_params"))
        tracker.log_params(parent, params)
    state.parent_run_id = parent

    jobs = [(seed, s) for seed in settings.seeds for s in specs]
    todo = [(seed, s) for seed, s in jobs if not state.done(s.key, seed)]
    if len(todo) < len(jobs):
        log(f"resuming: {len(jobs) - len(todo)} of {len(jobs)} runs already done")
    if todo or not state.segments:  # a --resume with nothing left to run only rewrites the report
        state.segments.append({"started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "command": settings.command,
                               "load_1min": state.machine["load_average_1min_at_start"], "torch_threads": state.machine["torch_threads"],
                               "runs_done_before": len(state.records), "parent_run_id": parent})
    status = "FINISHED"
    try:
        for i, (seed, spec) in enumerate(todo, 1):
            n = len(jobs) - len(todo) + i
            log(f"[{n}/{len(jobs)}] seed {seed} {spec.label}: start ({_fmt_seconds(state.elapsed)} elapsed{_eta(state, todo[i - 1:])})")
            t0 = time.monotonic()
            try:
                if spec.kind == "fixed":
                    rec = _run_fixed(spec, fixed_cfgs[spec.key], settings, seed, splits, tracker, parent)
                else:
                    rec = _run_search(spec, search_base, space, settings, seed, splits, tracker, parent, out, state, console)  # type: ignore[arg-type]
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - one model failing must not lose the others
                reason = f"{type(exc).__name__}: {exc}".replace("\n", "; ")[:2000]
                log(f"[{n}/{len(jobs)}] seed {seed} {spec.label}: FAILED: {reason}")
                if os.environ.get("MDMT_NAS_DEBUG") == "1":
                    traceback.print_exc()
                rec = RunRecord(spec.key, spec.label, spec.kind, seed, status="failed", reason=reason, wall_seconds=time.monotonic() - t0)
            else:
                log(f"[{n}/{len(jobs)}] seed {seed} {spec.label}: test AUC {rec.test_mean_auc:.4f}, logloss {rec.test_mean_logloss:.4f}, "
                    f"valid AUC {rec.valid_mean_auc:.4f}, {rec.num_params:,} params, {rec.wall_seconds:.0f}s")
            rec.load_1min = _load_1min()
            if parent and rec.run_id:
                tracker.set_tags(rec.run_id, {"benchmark.model": spec.key, "benchmark.seed": seed})
            state.records.append(rec)
            try:
                write_outputs(state, final=False)
            except Exception as exc:  # noqa: BLE001 - a report problem must not end a long run; results.json is written first
                log(f"warning: could not write the interim report: {type(exc).__name__}: {exc}")
        state.finished = True
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        paths = write_outputs(state, final=state.finished)
        if parent:
            try:
                summaries = summarize(state.records, specs)
                tracker.log_metrics(parent, {f"{s.model}.test_mean_auc": s.test_auc.mean for s in summaries}
                                    | {f"{s.model}.test_mean_auc_std": s.test_auc.std for s in summaries if s.test_auc.n > 1}
                                    | {"wall_seconds": state.elapsed})
                for p in paths:
                    tracker.log_file(parent, p)
                tracker.set_tags(parent, {"state": "finished" if state.finished else "partial"})
            finally:
                tracker.end_run(parent, status)
    log(f"benchmark done in {_fmt_seconds(state.elapsed)}: {out / 'report.md'}, {out / 'report.html'}")
    return state


def _run_fixed(spec: ModelSpec, base: ExperimentConfig, settings: BenchmarkSettings, seed: int, splits: Any, tracker: Any, parent: str | None) -> RunRecord:
    from mdmt_nas.experiment import run_training

    cfg = base.model_copy(update={"dataset": settings.dataset, "tracking": settings.tracking, "train": _train_config(base.train, settings, seed)})
    t0 = time.monotonic()
    outcome = run_training(cfg, splits, None, tracker=tracker, parent_run_id=parent, run_name=f"{spec.label} seed{seed}")
    return _record_from_result(spec, seed, outcome.result, outcome.run_id, time.monotonic() - t0)


def _run_search(spec: ModelSpec, base: ExperimentConfig, space: Any, settings: BenchmarkSettings, seed: int, splits: Any, tracker: Any,
                parent: str | None, out: Path, state: BenchmarkState, console: Any) -> RunRecord:
    from mdmt_nas.experiment import run_training
    from mdmt_nas.search.runner import run_search

    train = _train_config(base.train, settings, seed)
    if spec.source == "darts":
        scfg = SearchConfig(space=settings.space, searcher="darts", budget=settings.darts_epochs, seed=seed, params=dict(settings.darts_params))
    else:
        scfg = SearchConfig(space=settings.space, searcher=spec.source, budget=settings.tpe_trials, seed=seed, epochs=settings.candidate_epochs,
                            params=dict(settings.tpe_params))
    cfg = ExperimentConfig(dataset=settings.dataset, arch=None, train=train, tracking=settings.tracking, search=scfg)
    sdir = out / "searches" / f"{spec.key}-seed{seed}"
    if sdir.exists():  # a search interrupted before: start it over
        shutil.rmtree(sdir)
    t0 = time.monotonic()
    outcome = run_search(cfg, sdir, space=space, splits=splits, tracker=tracker, console=console)
    search_wall = time.monotonic() - t0
    srun = outcome.parent_run_id
    if parent and srun:
        tracker.set_tags(srun, {"mlflow.parentRunId": parent, "benchmark.model": spec.key, "benchmark.seed": seed})
    best_arch = outcome.result.best
    # the searched candidates, for the Pareto plot
    chosen_number = outcome.best.number if outcome.best is not None else None
    for c in outcome.result.candidates:
        state.candidates.append({"model": spec.key, "label": spec.label, "seed": seed, "number": c.number, "state": c.state,
                                 "valid_mean_auc": c.valid_mean_auc, "test_mean_auc": c.test_mean_auc, "num_params": c.num_params,
                                 "arch_id": c.arch.id, "train_seconds": c.train_seconds, "chosen": c.number == chosen_number,
                                 "kind": "retrain" if c.number == chosen_number and spec.source == "darts" else "candidate"})
    summary = outcome.summary
    search_info = {"run_id": srun, "dir": str(sdir.relative_to(out)), "best_arch_id": best_arch.id, "search_seconds": round(search_wall, 1),
                   "candidates": summary.get("candidates"), "finished": summary.get("finished"), "pruned": summary.get("pruned"),
                   "failed": summary.get("failed"), "best_valid_auc_in_search": outcome.best.valid_mean_auc if outcome.best else None,
                   "assignment": outcome.best.assignment if outcome.best else None, "arch_summary": best_arch.summary()}
    if spec.source == "darts":
        # DARTS retrained its derived architecture from scratch with `train` (its darts-derived run): that is the benchmark run
        cand = outcome.best
        if cand is None or cand.state != "finished":
            raise UserError(f"DARTS did not finish retraining its derived architecture {best_arch.id}")
        rec = _record_from_candidate(spec, seed, cand, splits.schema, time.monotonic() - t0)
    else:
        # the TPE winner was trained for candidate_epochs only: retrain it like the fixed models, under the search run
        tcfg = ExperimentConfig(dataset=settings.dataset, arch=best_arch, train=train, tracking=settings.tracking)
        t1 = time.monotonic()
        res = run_training(tcfg, splits, None, tracker=tracker, parent_run_id=srun or parent, run_name=f"{spec.label} best, retrained seed{seed}")
        search_info["retrain_seconds"] = round(time.monotonic() - t1, 1)
        rec = _record_from_result(spec, seed, res.result, res.run_id, time.monotonic() - t0)
    rec.search = search_info
    (sdir / "best_arch.json").exists() or best_arch.save(sdir / "best_arch.json")
    return rec


def _load_previous(state: BenchmarkState, out: Path) -> None:
    path = out / "results.json"
    if not path.exists():
        return
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the previous results ({exc}); remove it or choose another --output") from None
    if data.get("dataset", {}).get("name") != state.settings.dataset.name:
        raise UserError(f"{path} is a benchmark of dataset {data.get('dataset', {}).get('name')!r}, not {state.settings.dataset.name!r}; "
                        "choose another --output")
    state.records = [RunRecord.from_dict(r) for r in data.get("runs", []) if r.get("status") == "finished"]
    done = {(r.model, r.seed) for r in state.records}
    state.candidates = [c for c in data.get("candidates", []) if (c["model"], c["seed"]) in done]
    state.parent_run_id = (data.get("mlflow") or {}).get("parent_run_id")
    state.unreachable_parents = list((data.get("mlflow") or {}).get("unreachable_parent_run_ids", []))
    state.elapsed_before = float(data.get("wall_seconds") or 0.0)
    state.started = data.get("started", state.started)
    state.segments = list(data.get("segments", []))
    state.previous_commands = [c for c in [*data.get("previous_commands", []), data.get("command", "")] if c and c != state.settings.command]


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _eta(state: BenchmarkState, remaining: Sequence[tuple[int, ModelSpec]]) -> str:
    """Remaining time from the wall times so far: the same model's runs, else the mean of all."""
    done = [r for r in state.records if r.status == "finished" and not math.isnan(r.wall_seconds)]
    if not done:
        return ""
    overall = sum(r.wall_seconds for r in done) / len(done)
    total = 0.0
    for _, spec in remaining:
        own = [r.wall_seconds for r in done if r.model == spec.key]
        total += sum(own) / len(own) if own else overall
    return f", about {_fmt_seconds(total)} to go"


# ------------------------------------------------------------------------------ outputs
def write_outputs(state: BenchmarkState, final: bool) -> list[Path]:
    """results.json, runs.csv, summary.csv, the two plots, report.md and report.html; returns their paths."""
    out = state.output_dir
    specs = state.settings.specs()
    order = {sp.key: i for i, sp in enumerate(specs)}
    state.records.sort(key=lambda r: (r.seed, order.get(r.model, len(order))))  # resumed runs back in their place
    summaries = summarize(state.records, specs)
    text = findings(summaries)
    results = {
        "version": RESULTS_VERSION, "complete": final, "started": state.started,
        "written": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "wall_seconds": round(state.elapsed, 1),
        "command": state.settings.command, "previous_commands": state.previous_commands, "segments": state.segments,
        "settings": state.settings.model_dump(mode="json"), "dataset": state.dataset_info,
        "machine": state.machine, "mlflow": {"tracking_uri": state.tracking_uri, "experiment": state.settings.tracking.experiment,
                                             "parent_run_id": state.parent_run_id, "unreachable_parent_run_ids": state.unreachable_parents},
        "runs": [asdict(r) for r in state.records], "summary": [s.to_dict() for s in summaries], "candidates": state.candidates,
        "findings": text,
    }
    paths = [_write(out / "results.json", json.dumps(_jsonable(results), indent=2) + "\n")]
    paths.append(_write_runs_csv(out / "runs.csv", state.records))
    paths.append(_write_summary_csv(out / "summary.csv", summaries))
    figs = []
    if any(s.test_auc.n for s in summaries):
        figs.append(_save(plot_auc_bars(summaries, state.dataset_info["name"], state.settings.space_label), out / "auc_bar.png"))
    pareto = pareto_points(state.candidates)
    if pareto["points"]:
        figs.append(_save(plot_pareto(pareto, state.settings), out / "pareto.png"))
    doc = build_report(state, summaries, text, pareto, final, {p.name for p in figs})
    paths.append(_write(out / "report.md", render_markdown(doc)))
    paths.append(_write(out / "report.html", render_html(doc, f"Benchmark: {state.dataset_info['name']}")))
    return paths + figs


def _jsonable(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _num(v: Any, digits: int = 6) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _write_runs_csv(path: Path, records: Sequence[RunRecord]) -> Path:
    cells = list(dict.fromkeys((c["domain"], c["task"]) for r in records for c in r.cells))
    cols = ["model", "label", "kind", "seed", "status", "test_mean_auc", "test_mean_logloss", "valid_mean_auc", "num_params",
            "train_seconds", "wall_seconds", "epochs_run", "best_epoch", "arch_id", "run_id", "reason"]
    cols += [f"test_auc/{d}/{t}" for d, t in cells] + [f"test_logloss/{d}/{t}" for d, t in cells]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in records:
            by = {(c["domain"], c["task"]): c for c in r.cells}
            row = [r.model, r.label, r.kind, r.seed, r.status, _num(r.test_mean_auc), _num(r.test_mean_logloss), _num(r.valid_mean_auc),
                   r.num_params, _num(r.train_seconds, 2), _num(r.wall_seconds, 2), r.epochs_run, r.best_epoch, r.arch_id, r.run_id or "", r.reason]
            row += [_num(by.get(k, {}).get("auc")) for k in cells] + [_num(by.get(k, {}).get("logloss")) for k in cells]
            w.writerow(row)
    return path


def _write_summary_csv(path: Path, summaries: Sequence[ModelSummary]) -> Path:
    cells = list(dict.fromkeys(k for s in summaries for k in s.cells_auc))
    cols = ["model", "label", "kind", "seeds", "test_mean_auc", "test_mean_auc_std", "test_mean_logloss", "test_mean_logloss_std",
            "valid_mean_auc", "valid_mean_auc_std", "num_params", "wall_seconds", "train_seconds"]
    cols += [f"test_auc/{d}/{t}{x}" for d, t in cells for x in ("", "_std")] + [f"test_logloss/{d}/{t}{x}" for d, t in cells for x in ("", "_std")]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for s in summaries:
            row = [s.model, s.label, s.kind, " ".join(map(str, s.seeds)), _num(s.test_auc.mean), _num(s.test_auc.std),
                   _num(s.test_logloss.mean), _num(s.test_logloss.std), _num(s.valid_auc.mean), _num(s.valid_auc.std),
                   _num(s.num_params.mean, 0), _num(s.wall_seconds.mean, 1), _num(s.train_seconds.mean, 1)]
            row += [_num(getattr(s.cells_auc.get(k), a, float("nan"))) for k in cells for a in ("mean", "std")]
            row += [_num(getattr(s.cells_logloss.get(k), a, float("nan"))) for k in cells for a in ("mean", "std")]
            w.writerow(row)
    return path


# ------------------------------------------------------------------------------ plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _plt()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_auc_bars(summaries: Sequence[ModelSummary], dataset: str, space: str = "m3oe"):
    """Mean test AUC ± std per model; fixed baselines and searched architectures in two colours."""
    plt = _plt()
    done = [s for s in summaries if s.test_auc.n]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(done) + 2), 4.2))
    xs = range(len(done))
    means = [s.test_auc.mean for s in done]
    stds = [s.test_auc.std for s in done]
    colours = ["tab:orange" if s.kind == "search" else ("tab:green" if s.model == REFERENCE else "tab:blue") for s in done]
    ax.bar(xs, means, yerr=stds, capsize=4, color=colours, edgecolor="black", linewidth=0.5)
    lo = min(m - s for m, s in zip(means, stds))
    hi = max(m + s for m, s in zip(means, stds))
    pad = max(0.005, (hi - lo) * 0.25)
    ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + 2.5 * pad))
    for x, m, s in zip(xs, means, stds):
        ax.text(x, m + s + pad * 0.08, f"{m:.4f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(xs), [s.label for s in done], rotation=30, ha="right")
    n = max(s.test_auc.n for s in done)
    ax.set_ylabel("mean test AUC over (domain, task)")
    ax.set_title(f"{dataset}: mean test AUC" + (f" ± std over {n} seeds" if n > 1 else " (1 seed)") + " (axis does not start at 0)", fontsize=10)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="tab:blue", label="fixed baseline"), Patch(color="tab:green", label="fixed M3oE"),
                       Patch(color="tab:orange", label=f"searched ({space} space)")], fontsize="small", loc="upper center", ncol=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def pareto_points(candidates: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Finished search candidates (valid AUC, params) and the Pareto front of the multi-trial ones (max AUC, min params)."""
    pts = [c for c in candidates if c.get("state") == "finished" and c.get("valid_mean_auc") is not None
           and not math.isnan(float(c["valid_mean_auc"])) and c.get("num_params")]
    trials = [c for c in pts if c.get("kind") == "candidate"]
    front = []
    for c in trials:
        dominated = any(o is not c and o["valid_mean_auc"] >= c["valid_mean_auc"] and o["num_params"] <= c["num_params"]
                        and (o["valid_mean_auc"] > c["valid_mean_auc"] or o["num_params"] < c["num_params"]) for o in trials)
        if not dominated:
            front.append(c)
    front.sort(key=lambda c: c["num_params"])
    return {"points": pts, "front": front}


def plot_pareto(pareto: dict[str, Any], settings: BenchmarkSettings):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    pts = pareto["points"]
    seeds = sorted({c["seed"] for c in pts})
    cmap = plt.get_cmap("tab10")
    for i, seed in enumerate(seeds):
        trial = [c for c in pts if c["seed"] == seed and c["kind"] == "candidate"]
        if trial:
            ax.scatter([c["num_params"] for c in trial], [c["valid_mean_auc"] for c in trial], color=cmap(i), alpha=0.7, s=28,
                       label=f"TPE candidates, seed {seed}")
        chosen = [c for c in trial if c.get("chosen")]
        if chosen:
            ax.scatter([c["num_params"] for c in chosen], [c["valid_mean_auc"] for c in chosen], color=cmap(i), marker="*", s=180,
                       edgecolor="black", linewidth=0.6, zorder=3)
        derived = [c for c in pts if c["seed"] == seed and c["kind"] == "retrain"]
        if derived:
            ax.scatter([c["num_params"] for c in derived], [c["valid_mean_auc"] for c in derived], color=cmap(i), marker="D", s=50,
                       edgecolor="black", linewidth=0.6, label=f"DARTS derived (full training), seed {seed}")
    front = pareto["front"]
    if front:
        ax.step([c["num_params"] for c in front], [c["valid_mean_auc"] for c in front], where="post", color="black", linewidth=1,
                label="Pareto front of the TPE candidates (all seeds)")
    if pts and min(c["num_params"] for c in pts) > 0:
        ax.set_xscale("log")
    ax.margins(x=0.08, y=0.1)
    ax.set_xlabel("parameters")
    ax.set_ylabel("valid mean AUC")
    ax.set_title(f"{settings.space_label} space: searched candidates (star = chosen; TPE candidates trained {settings.candidate_epochs} epoch(s))",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", loc="best")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ the report document
Block = tuple  # ("h1"|"h2"|"p"|"ul"|"code"|"img"|"table", ...)


def _darts_default_epochs() -> str:
    try:
        from mdmt_nas.search.darts import DartsParams

        return f"{DartsParams().epochs} (default)"
    except Exception:  # noqa: BLE001 - only a label
        return "the default number of"


def _load_text(state: BenchmarkState) -> str:
    """The machine's load while the benchmark ran: wall times on a shared machine depend on it."""
    start = state.segments[0]["load_1min"] if state.segments else state.machine.get("load_average_1min_at_start")
    loads = sorted(r.load_1min for r in state.records if not math.isnan(r.load_1min))
    text = f"1-min load average {start} at the start"
    if loads:
        text += f", {loads[0]:g}–{loads[-1]:g} (median {loads[len(loads) // 2]:g}) after the runs"
    return text + " (a shared machine: wall times include other users' load)"


def _table_fmt(v: float, digits: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def build_report(state: BenchmarkState, summaries: Sequence[ModelSummary], text: Sequence[str], pareto: dict[str, Any], final: bool,
                 figures: set[str]) -> list[Block]:
    s = state.settings
    info = state.dataset_info
    m = state.machine
    n_seeds = len(s.seeds)
    doc: list[Block] = [("h1", f"Benchmark: {info['name']}" + (" (quick run)" if s.quick else ""))]
    expected = len(s.seeds) * len(s.models)
    if not final:
        doc.append(("p", f"**Partial report**: {len(state.records)} of {expected} runs done when this was written "
                         f"({state.elapsed / 60:.0f} min in). Tables cover the finished runs only."))
    split = split_description(info)
    doc.append(("p", f"Every number below comes from the **test split** of {info['name']} — {split} — the same split for every model "
                     f"and seed; domains {', '.join(info['domains'])}; tasks {', '.join(info['tasks'])}. Mean ± sample std (ddof 1) "
                     f"over training seeds {', '.join(map(str, s.seeds))}."))
    doc.append(("h2", "How it was made"))
    doc.append(("code", s.command or "(run from Python: run_benchmark)"))
    if len(state.segments) > 1:
        doc.append(("p", f"Run in {len(state.segments)} parts, continued with `--resume`: " + "; ".join(
            f"from {seg['started']} ({seg['runs_done_before']} runs done, load {seg['load_1min']}, {seg['torch_threads']} thread(s))"
            for seg in state.segments) + "."))
    if state.previous_commands:
        doc.append(("p", "Resumed (`--resume`): earlier runs of this report came from " + "; ".join(f"`{c}`" for c in state.previous_commands) + "."))
    tr = [f"{k}={v}" for k, v in s.train_overrides.items()]
    search_train = f"the `{s.search_train}` example's train section"
    items = [
        f"Date: {state.started[:10]} (started {state.started}); wall time {_fmt_seconds(state.elapsed)} in total.",
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs, torch {m['torch']} with "
        f"{m['torch_threads']} thread(s), Python {m['python']}, {m['platform']}; {_load_text(state)}.",
        "Fixed baselines: the `arch` and `train` sections of examples/<name>.yaml (" + ", ".join(
            f"{sp.label} = {sp.source}" for sp in s.specs() if sp.kind == "fixed") + "), the dataset replaced"
        + (f"; epochs set to {s.epochs} for every model" if s.epochs else "; each example's own epochs and early stopping")
        + (f"; train overrides {', '.join(tr)}" if tr else "") + ".",
        f"Searched: the `{s.space_label}` space. DARTS: supernet for {s.darts_epochs or _darts_default_epochs()} epochs, the derived "
        f"architecture retrained from scratch. Optuna TPE: {s.tpe_trials} trials, each candidate trained {s.candidate_epochs} "
        f"epoch(s) (params {json.dumps(s.tpe_params)}), the best by valid AUC retrained from scratch. Candidates and retraining use "
        f"{search_train}, so a searched winner is trained exactly like fixed M3oE. One search per seed (search seed = training seed).",
        f"MLflow: experiment `{s.tracking.experiment}`" + (f" at `{state.tracking_uri}`, parent run `{state.parent_run_id}` (one child "
        "run per training; each search is a child with its candidates nested under it)" if state.parent_run_id else " (tracking off)") + "."
        + (f" Runs of earlier parts were logged under parent run(s) {', '.join(f'`{p}`' for p in state.unreachable_parents)}, which "
           "the `--resume` could not re-open in this tracking store (deleted, or another machine's store)." if state.unreachable_parents else ""),
    ]
    doc.append(("ul", items))
    doc.append(("h2", "Findings"))
    doc.append(("p", " ".join(text)))
    doc.append(("p", "Rule: a difference in mean test AUC counts only when it exceeds the sum of the two models' standard deviations "
                     "over seeds; otherwise it is reported as a tie within seed noise."))

    # ---- summary
    doc.append(("h2", "Summary"))
    rows = []
    for sm in summaries:
        fails = f" ({len(sm.failed_seeds)} failed)" if sm.failed_seeds else ""
        rows.append([sm.label, "searched" if sm.kind == "search" else "fixed", f"{sm.test_auc.n}{fails}", sm.test_auc.fmt(), sm.test_logloss.fmt(),
                     sm.valid_auc.fmt(), f"{sm.num_params.mean:,.0f}" if sm.num_params.n else "n/a",
                     f"{sm.wall_seconds.mean:.0f}" if sm.wall_seconds.n else "n/a", f"{sm.train_seconds.mean:.0f}" if sm.train_seconds.n else "n/a"])
    doc.append(("table", ["model", "kind", "seeds", "test mean AUC", "test mean logloss", "valid mean AUC", "params", "wall s / seed",
                          "train s / seed"], rows,
                f"Test split: {split}. Wall time per seed: the whole training incl. evaluation and logging; for a searched model the "
                "search plus the retraining of its winner. Train time: the retraining's epochs only."))
    if "auc_bar.png" in figures:
        doc.append(("img", "auc_bar.png", "mean test AUC ± std per model"))

    # ---- per cell
    cells = list(dict.fromkeys(k for sm in summaries for k in sm.cells_auc))
    if cells:
        head = ["model"] + [f"{d} / {t}" for d, t in cells] + ["mean"]
        for title, attr, mean_attr in (("Test AUC per (domain, task)", "cells_auc", "test_auc"), ("Test logloss per (domain, task)", "cells_logloss", "test_logloss")):
            doc.append(("h2", title))
            rows = [[sm.label] + [getattr(sm, attr).get(k, Stat(float("nan"), float("nan"), 0)).fmt() for k in cells] + [getattr(sm, mean_attr).fmt()]
                    for sm in summaries if sm.test_auc.n]
            doc.append(("table", head, rows, f"Test split: {split}; mean ± std over seeds{'' if n_seeds > 1 else ' (one seed: no std)'}."))

    # ---- searches
    searched = [r for r in state.records if r.kind == "search" and r.search]
    if searched:
        doc.append(("h2", "Searches"))
        rows = []
        for r in searched:
            si = r.search or {}
            rows.append([r.label, str(r.seed), f"`{si.get('best_arch_id', '')}`", f"{si.get('finished')}/{si.get('pruned')}/{si.get('failed')}",
                         _table_fmt(si.get("best_valid_auc_in_search")) if si.get("best_valid_auc_in_search") is not None else "n/a",
                         _table_fmt(r.valid_mean_auc), _table_fmt(r.test_mean_auc), f"{r.num_params:,}", f"{si.get('search_seconds', 0):.0f}",
                         f"{si.get('dir', '')}/"])
        doc.append(("table", ["search", "seed", "chosen architecture", "finished/pruned/failed", "valid AUC in search", "valid AUC retrained",
                              "test AUC retrained", "params", "search s", "outputs"], rows,
                    "Valid AUC in search: TPE — the winner's candidate training; DARTS — its derived architecture's retraining (the DARTS "
                    "search itself scores a supernet). Outputs: best_arch.json, leaderboard.csv, search.json per search."))
        for r in searched:
            si = r.search or {}
            if si.get("arch_summary"):
                doc.append(("p", f"{r.label}, seed {r.seed} — chosen architecture:"))
                doc.append(("code", si["arch_summary"]))
    if "pareto.png" in figures:
        doc.append(("h2", "Search candidates: valid AUC against parameters"))
        doc.append(("p", f"Every finished candidate of the searches (valid split). TPE candidates were trained {s.candidate_epochs} "
                         "epoch(s) each, so their AUCs are below fully trained models'; the DARTS points are derived architectures "
                         "after full retraining. The line is the Pareto front (higher AUC, fewer parameters) of the TPE candidates."))
        doc.append(("img", "pareto.png", "valid AUC vs parameters of the searched candidates"))
        front = pareto["front"]
        if front:
            doc.append(("table", ["search", "seed", "trial", "architecture", "valid AUC", "params"],
                        [[c["label"], str(c["seed"]), str(c["number"]), f"`{c['arch_id']}`", _table_fmt(c["valid_mean_auc"]), f"{c['num_params']:,}"]
                         for c in front], "Pareto front of the TPE candidates (valid split)."))

    failed = [r for r in state.records if r.status != "finished"]
    if failed:
        doc.append(("h2", "Failed runs"))
        doc.append(("ul", [f"{r.label}, seed {r.seed}: {r.reason}" for r in failed]))
    doc.append(("h2", "Files"))
    doc.append(("ul", ["`results.json`: settings, machine, every run (per-cell test metrics), summaries, candidates, findings.",
                       "`runs.csv`: one row per (model, seed); `summary.csv`: one row per model (mean and std).",
                       "`auc_bar.png`, `pareto.png`: the figures above; `report.html`: this report as HTML."]))
    return doc


# ------------------------------------------------------------------------------ renderers
def render_markdown(doc: Sequence[Block]) -> str:
    out: list[str] = []
    for b in doc:
        kind = b[0]
        if kind == "h1":
            out.append(f"# {b[1]}")
        elif kind == "h2":
            out.append(f"## {b[1]}")
        elif kind == "p":
            out.append(b[1])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in b[1]))
        elif kind == "code":
            out.append(f"```\n{b[1]}\n```")
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]})")
        elif kind == "table":
            head, rows, caption = b[1], b[2], b[3]
            lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if _numeric(rows, i) else "---" for i in range(len(head))) + "|"]
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
            if caption:
                lines.append("")
                lines.append(f"*{caption}*")
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _numeric(rows: Sequence[Sequence[Any]], col: int) -> bool:
    """A column of numbers (right-aligned): every cell starts with a digit, a sign or is n/a."""
    cells = [str(r[col]) for r in rows if col < len(r)]
    return bool(cells) and all(re.match(r"^([-+]?[0-9]|n/a)", c) for c in cells)


def _inline_html(text: str) -> str:
    t = html.escape(str(text))
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
    return t


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:1em 0;font-size:.88em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}caption{caption-side:bottom;font-style:italic;text-align:left;padding:.4em 0;color:#555}
pre{background:#f6f6f6;padding:.7em;overflow-x:auto}code{background:#f3f3f3;padding:0 .2em}img{max-width:100%}"""


def render_html(doc: Sequence[Block], title: str) -> str:
    out = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    for b in doc:
        kind = b[0]
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{_inline_html(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline_html(b[1])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b[1]) + "</ul>")
        elif kind == "code":
            out.append(f"<pre><code>{html.escape(b[1])}</code></pre>")
        elif kind == "img":
            out.append(f"<p><img src=\"{html.escape(b[1])}\" alt=\"{html.escape(b[2])}\"></p>")
        elif kind == "table":
            head, rows, caption = b[1], b[2], b[3]
            t = ["<table>"]
            if caption:
                t.append(f"<caption>{_inline_html(caption)}</caption>")
            align = [' style="text-align:right"' if _numeric(rows, i) else ' style="text-align:left"' for i in range(len(head))]
            t.append("<thead><tr>" + "".join(f"<th{a}>{_inline_html(h)}</th>" for h, a in zip(head, align)) + "</tr></thead><tbody>")
            t += ["<tr>" + "".join(f"<td{a}>{_inline_html(c)}</td>" for c, a in zip(row, align)) + "</tr>" for row in rows]
            t.append("</tbody></table>")
            out.append("".join(t))
    out.append("</body></html>")
    return "\n".join(out) + "\n"
