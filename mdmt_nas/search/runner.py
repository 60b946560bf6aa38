"""Running a search: the SearchContext, the candidate `evaluate` function, MLflow runs, outputs.

`run_search(config, output_dir)` resolves the searcher and the space, loads the
data, opens one MLflow parent run (or re-opens the one a resumed study
recorded), hands the searcher a `SearchContext` whose `evaluate` trains one
candidate as a child run, and writes the outputs:

    best_arch.json          the searched architecture (rebuilds the model alone)
    arch.json, weights.pt,  the best candidate's trained model, as `mdmt-nas train`
    schema.json             writes them (so `mdmt-nas export` works on this directory)
    leaderboard.csv         every candidate, ranked
    search.json             summary: settings, counts, best, MLflow ids, files
    auc_vs_trial.png        valid AUC per trial with the running best
    pareto.png              (multi-objective) the Pareto front
    study.db                (Optuna, default storage) the resumable study

Failures of single candidates never stop a search: `evaluate` records them
(state failed, with a reason naming the component and plugin at fault) and
returns. A search stops early only when too many candidates failed
(`search.max_failures`, default the budget) or its time is up; then
`SearchStopped` travels up through the searcher. A search in which no
candidate finished ends with `SearchFailed` (exit status 2) and a summary of
the reasons.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from mdmt_nas.arch import Architecture
from mdmt_nas.config import ExperimentConfig, TrainConfig
from mdmt_nas.data.tensors import Splits
from mdmt_nas.errors import ConfigError, MdmtNasError, TrialFailed, UserError, check_interrupt, deferred_signals
from mdmt_nas.search import report
from mdmt_nas.search.base import Candidate, SearchContext, SearchResult, Searcher
from mdmt_nas.tracking import Tracker, flatten, log_training

BEST_DIR = "best_candidate"


class SearchStopped(MdmtNasError):
    """The search as a whole must stop (too many failed candidates, time is up); searchers let it through."""


class SearchFailed(UserError):
    """No candidate finished: the message summarises why."""


# ------------------------------------------------------------------------------ resolving
def searcher_class(name: str) -> type[Searcher]:
    """The registered searcher `name` (UnknownComponentError with the closest names otherwise)."""
    from mdmt_nas.plugins import get_registry

    return get_registry().get("searcher", name, where="--searcher")


def make_searcher(cls: type[Searcher], params: dict[str, Any]) -> Searcher:
    """An instance of `cls` with validated `search.params` (unknown keys are an error)."""
    try:
        p = cls.Params.model_validate(params or {})
    except ValidationError as exc:
        lines = []
        allowed = list(cls.Params.model_fields)
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()))
            msg = err.get("msg", "invalid")
            if err.get("type") == "extra_forbidden":
                msg = f"unknown parameter of searcher {cls.name!r} (allowed: {', '.join(allowed) or 'none'})"
            lines.append(f"search.params.{loc}: {msg}")
        raise ConfigError("\n".join(lines)) from None
    return cls(p)


def load_search_space(name_or_path: Any) -> Any:
    """A Space from a registered name or a YAML path (a Space object passes through)."""
    if name_or_path is None:
        raise UserError("no search space given: pass --space NAME (see `mdmt-nas spaces list`) or set search.space")
    if not isinstance(name_or_path, (str, Path)):
        return name_or_path
    from mdmt_nas.spaces import load_space

    return load_space(str(name_or_path))


def candidate_train_config(config: ExperimentConfig) -> TrainConfig:
    """The training config of one candidate: train.* with search.epochs, without a progress bar of its own."""
    update: dict[str, Any] = {"progress": False}
    if config.search.epochs is not None:
        update["epochs"] = config.search.epochs
    return config.train.model_copy(update=update)


def _is_pruned(exc: BaseException) -> bool:
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(exc, optuna.TrialPruned)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))


# ------------------------------------------------------------------------------ display
class SearchDisplay:
    """Live progress on a terminal (candidates and epochs); one line per candidate elsewhere; nothing if quiet."""

    def __init__(self, console: Any | None, total: int | None, unit: str):
        self.console = console
        self.live = console is not None and console.is_terminal
        self.total = total if unit == "trials" else None
        self.progress = None
        self.done = 0
        self.best: float = -math.inf

    def start(self) -> None:
        if not self.live:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=self.console, transient=True)
        self.progress.start()
        self.t_all = self.progress.add_task("candidates", total=self.total, info="")
        self.t_ep = self.progress.add_task("  epochs", total=1, info="")

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def candidate_start(self, label: str, arch: Architecture, epochs: int) -> None:
        if self.progress is not None:
            self.progress.reset(self.t_ep, total=epochs, description=f"  {label} ({arch.id})", info="")

    def epoch(self, record: dict[str, float]) -> None:
        if self.progress is not None:
            self.progress.update(self.t_ep, advance=1, info=f"valid AUC {record.get('valid_mean_auc', float('nan')):.4f}")

    def candidate_end(self, c: Candidate) -> None:
        if self.console is None:
            return
        if c.state == "finished" and _finite(c.valid_mean_auc):
            self.best = max(self.best, c.valid_mean_auc)
        self.done += 1
        auc = f"{c.valid_mean_auc:.4f}" if _finite(c.valid_mean_auc) else "n/a"
        colour = {"finished": "green", "pruned": "yellow", "failed": "red"}.get(c.state, "white")
        line = (f"[{colour}]{c.state:8}[/{colour}] #{c.number:<4} {c.arch.id}  valid AUC {auc}  "
                f"params {c.num_params:,}  {c.train_seconds:.1f}s" + (f"  ({c.reason})" if c.reason else ""))
        self.console.print(line, highlight=False, soft_wrap=True)
        if self.progress is not None:
            best = f"best {self.best:.4f}" if self.best > -math.inf else ""
            self.progress.update(self.t_all, advance=1, info=best)


# ------------------------------------------------------------------------------ evaluate
class CandidateEvaluator:
    """The `evaluate` of a SearchContext: train one architecture as an MLflow child run, return a Candidate.

    Calling convention (see search.base): ``evaluate(arch, label, epoch_callback=None,
    assignment=None)``; extra keywords ``number`` (the searcher's trial number) and
    ``train_config`` (a different TrainConfig, e.g. for retraining the winner).
    """

    def __init__(self, splits: Splits, config: ExperimentConfig, tracker: Tracker, output_dir: Path,
                 searcher: str, space: str, max_failures: int, deadline: float | None, display: SearchDisplay | None = None):
        self.splits, self.config, self.tracker = splits, config, tracker
        self.train_config = candidate_train_config(config)
        self.output_dir = output_dir
        self.searcher, self.space = searcher, space
        self.max_failures = max_failures
        self.deadline = deadline
        self.display = display
        self.parent_run_id: str | None = None
        self.candidates: list[Candidate] = []
        self.failures = 0
        self._next = 0
        self.last_state: tuple[str, dict[str, torch.Tensor]] | None = None  # (arch id, weights) of the latest finished candidate
        self.best_valid = self._best_on_disk()

    # -------------------------------------------------------------- best weights on disk
    def _best_on_disk(self) -> float:
        meta = self.output_dir / BEST_DIR / "candidate.json"
        try:
            return float(json.loads(meta.read_text())["valid_mean_auc"])
        except (OSError, ValueError, KeyError, TypeError):
            return -math.inf

    def _keep_if_best(self, cand: Candidate, model: torch.nn.Module) -> None:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.last_state = (cand.arch.id, state)
        if not cand.valid_mean_auc > self.best_valid:
            return
        self.best_valid = cand.valid_mean_auc
        d = self.output_dir / BEST_DIR
        d.mkdir(parents=True, exist_ok=True)
        torch.save(state, d / "weights.pt")
        cand.arch.save(d / "arch.json")
        (d / "schema.json").write_text(self.splits.schema.model_dump_json(indent=2) + "\n")
        (d / "candidate.json").write_text(json.dumps(cand.row(), indent=2, default=str) + "\n")

    # -------------------------------------------------------------- the call
    def __call__(self, arch: Architecture, label: str, epoch_callback: Any = None, assignment: dict[str, Any] | None = None,
                 number: int | None = None, train_config: TrainConfig | None = None, kind: str = "candidate") -> Candidate:
        check_interrupt()
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise SearchStopped(f"time limit of search.timeout={self.config.search.timeout:g}s reached")
        if number is None:
            number = self._next
        self._next = max(self._next, number + 1)
        cfg = train_config or self.train_config
        cand = Candidate(number=number, arch=arch, state="failed", assignment=dict(assignment or {}))
        tags = {"mdmt_nas.kind": kind, "arch_id": arch.id, "searcher": self.searcher, "space": self.space,
                "number": str(number), "state": "running", WORKER_TAG: worker_id()}
        run_id = self.tracker.start_run(label, self.parent_run_id, tags)
        cand.run_id = run_id
        params = {"arch_id": arch.id, "label": label, "number": number}
        params.update(flatten(arch.canonical(), "arch"))
        params.update(flatten(cand.assignment, "assignment"))
        self.tracker.log_params(run_id, params)
        if self.display:
            self.display.candidate_start(label, arch, cfg.epochs)

        history: list[dict[str, float]] = []

        def per_epoch(epoch: int, record: dict[str, float]) -> None:
            history.append(dict(record))
            self.tracker.log_metrics(run_id, {k: v for k, v in record.items() if k != "epoch"}, step=epoch)
            if self.display:
                self.display.epoch(record)
            if epoch_callback is not None:
                epoch_callback(epoch, record)

        model = None
        t0 = time.perf_counter()
        try:
            from mdmt_nas.model import build_balancer, build_model
            from mdmt_nas.plugins import guard_shapes
            from mdmt_nas.train import Trainer, set_seed

            set_seed(cfg.seed)
            model = build_model(arch, self.splits.schema)
            balancer = build_balancer(arch, self.splits.schema)
            with guard_shapes(model):
                result = Trainer(model, balancer, self.splits, cfg, [per_epoch], label).fit()
        except (KeyboardInterrupt, SystemExit):
            self.tracker.set_tags(run_id, {"state": "killed", "reason": "interrupted"})
            self.tracker.end_run(run_id, "KILLED")
            raise
        except BaseException as exc:  # noqa: BLE001 - a candidate's failure must not end the search
            cand.train_seconds = time.perf_counter() - t0
            cand.valid_mean_auc = history[-1]["valid_mean_auc"] if history else float("nan")
            if model is not None:
                cand.num_params = int(sum(p.numel() for p in model.parameters()))
            if _is_pruned(exc):
                cand.state = "pruned"
                cand.reason = f"pruned after epoch {len(history)}"
                self._finish(cand, run_id, "KILLED", label)
                raise
            cand.reason = self._reason(exc, model)
            self.tracker.log_text(run_id, "".join(traceback.format_exception(exc)), "error.txt")
            self._fail(cand, run_id, label)
            return cand
        cand.train_seconds = result.train_seconds
        cand.valid_mean_auc = result.valid.mean_auc
        cand.test_mean_auc = result.test.mean_auc if result.test is not None else float("nan")
        cand.num_params = result.num_params
        cand.latency_ms_per_1k = result.latency_ms_per_1k
        cand.metrics = {**result.valid.flat("valid"), **(result.test.flat("test") if result.test is not None else {}),
                        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run}
        if not _finite(cand.valid_mean_auc):
            cand.reason = "valid mean AUC is undefined (NaN): every (domain, task) cell of the valid split has a single class or the model output NaN"
            self._fail(cand, run_id, label)
            return cand
        cand.state = "finished"
        # the epochs were logged live by per_epoch; log_training adds params, final metrics and artifacts
        log_training(self.tracker, run_id, replace(result, history=[]), self.config.model_copy(update={"train": cfg}))
        self._keep_if_best(cand, model)
        self._finish(cand, run_id, "FINISHED", label)
        return cand

    @staticmethod
    def _reason(exc: BaseException, model: Any) -> str:
        if isinstance(exc, TrialFailed):
            return exc.reason
        if isinstance(exc, UserError):
            return str(exc).replace("\n", "; ")
        try:
            from mdmt_nas.plugins import describe_component_error

            return describe_component_error(exc, model)
        except Exception:  # noqa: BLE001 - attribution is best effort
            return f"{type(exc).__name__}: {exc}"

    def _fail(self, cand: Candidate, run_id: str | None, label: str) -> None:
        cand.state = "failed"
        self._finish(cand, run_id, "FAILED", label)
        self.note_failure()

    def note_failure(self) -> None:
        """Count a failed proposal (also a repeat of an architecture that failed before, which is not trained
        again): `search.max_failures` of them stop the search instead of letting a sampler loop on broken points."""
        self.failures += 1
        if self.failures >= self.max_failures:
            raise SearchStopped(f"{self.failures} candidates failed (search.max_failures={self.max_failures})")

    def _finish(self, cand: Candidate, run_id: str | None, status: str, label: str) -> None:
        tags = {"state": cand.state}
        if cand.reason:
            tags["reason"] = cand.reason[:5000]
        self.tracker.set_tags(run_id, tags)
        if cand.state != "finished":
            self.tracker.log_metrics(run_id, {"num_params": cand.num_params, "train_seconds": cand.train_seconds})
        self.tracker.end_run(run_id, status)
        self.candidates.append(cand)
        if self.display:
            self.display.candidate_end(cand)


# ------------------------------------------------------------------------------ parent run
def _open_parent(tracker: Tracker, previous: str | None, name: str, tags: dict[str, str]) -> tuple[str | None, bool]:
    """Re-open `previous` (a resumed study's parent run) if it still exists, else start a new parent run."""
    if not tracker.enabled:
        return None, False
    if previous:
        try:
            tracker.client.get_run(previous)
        except Exception:  # noqa: BLE001 - deleted, or another tracking server
            previous = None
        if previous:
            tracker.client.update_run(previous, status="RUNNING")
            _kill_stale_children(tracker, previous)
            return previous, True
    return tracker.start_run(name, None, tags), False


def _kill_stale_children(tracker: Tracker, parent: str) -> None:
    """Child runs still RUNNING under a re-opened parent whose process died (SIGKILL, crash): mark them KILLED.

    Runs of a live worker on this machine (several workers share one study) and of workers on other machines
    (whose processes cannot be checked from here) are left alone.
    """
    runs = tracker.client.search_runs([tracker.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}' and attributes.status = 'RUNNING'")
    for r in runs:
        if worker_alive(r.data.tags.get(WORKER_TAG, "")) is not False:
            continue
        tracker.set_tags(r.info.run_id, {"state": "killed", "reason": "the search process ended while this candidate trained (killed or crashed)"})
        tracker.end_run(r.info.run_id, "KILLED")


WORKER_TAG = "mdmt_nas.worker"
PARENT_FILE = "parent_run.txt"


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def worker_id() -> str:
    """host:pid:start-time of this process (the start time tells a reused pid apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def worker_alive(tag: str) -> bool | None:
    """Whether the process a worker tag names still runs: None when unknown (another machine)."""
    parts = tag.rsplit(":", 2)
    if len(parts) != 3:
        return False  # untagged: written by a process that predates worker tags, or a broken one
    host, pid, start = parts
    if host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        pass
    return start == "?" or _start_time(int(pid)) == start


def _recorded_parent(output_dir: Path) -> str | None:
    try:
        return (output_dir / PARENT_FILE).read_text().strip() or None
    except OSError:
        return None


def _log_parent_params(tracker: Tracker, run_id: str | None, params: dict[str, Any], reopened: bool) -> None:
    if not run_id:
        return
    if not reopened:
        tracker.log_params(run_id, params)
        return
    existing = tracker.client.get_run(run_id).data.params
    tracker.log_params(run_id, {k: v for k, v in params.items() if k[:250] not in existing})
    changed = {f"resumed.{k}": v for k, v in params.items() if k[:250] in existing and existing[k[:250]] != str(v)[:6000]}
    tracker.set_tags(run_id, changed)


# ------------------------------------------------------------------------------ outcome
@dataclass
class SearchOutcome:
    result: SearchResult
    output_dir: Path
    best: Candidate | None
    parent_run_id: str | None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def best_arch_path(self) -> Path:
        return self.output_dir / "best_arch.json"


def run_search(config: ExperimentConfig, output_dir: str | Path, *, space: Any = None, splits: Splits | None = None,
               tracker: Tracker | None = None, resume: bool = False, console: Any = None) -> SearchOutcome:
    """Run `config.search` end to end and write its outputs to `output_dir` (see the module docstring)."""
    scfg = config.search
    output_dir = Path(output_dir).resolve()
    cls = searcher_class(scfg.searcher)
    objectives = tuple(scfg.objectives)
    if len(objectives) > 1 and not getattr(cls, "multi_objective", False):
        raise UserError(f"searcher {cls.name!r} optimises valid AUC only; --objectives {','.join(objectives)} needs a multi-objective searcher such as 'optuna-nsga2'")
    searcher = make_searcher(cls, scfg.params)
    space_obj = load_search_space(space if space is not None else scfg.space)
    if splits is None:
        from mdmt_nas.experiment import load_splits

        if console is not None:
            with console.status(f"loading dataset {config.dataset.name!r}..."):
                splits = load_splits(config)
        else:
            splits = load_splits(config)
    budget = searcher.budget_for(space_obj, scfg.budget) if hasattr(searcher, "budget_for") else (scfg.budget or cls.default_budget)
    output_dir.mkdir(parents=True, exist_ok=True)
    tracker = tracker or Tracker(config.tracking)
    t_start = time.monotonic()
    display = SearchDisplay(console, budget, cls.budget_unit)
    max_failures = scfg.max_failures or (budget if cls.budget_unit == "trials" else 3)
    evaluator = CandidateEvaluator(splits, config, tracker, output_dir, cls.name, space_obj.name, max_failures, None, display)
    ctx = SearchContext(space=space_obj, splits=splits, config=config, budget=budget, timeout=scfg.timeout, seed=scfg.seed,
                        output_dir=output_dir, tracker=tracker, parent_run_id=None, evaluate=evaluator,
                        storage=scfg.storage, study_name=scfg.study_name, resume=resume, objectives=objectives)

    previous = searcher.existing_parent_run(ctx) if hasattr(searcher, "existing_parent_run") else None
    if previous is None and resume:  # killed before the searcher recorded its parent (first checkpoint, study attribute)
        previous = _recorded_parent(output_dir)
    parent, reopened = _open_parent(tracker, previous, f"search-{space_obj.name}-{cls.name}",
                                    {"mdmt_nas.kind": "search", "searcher": cls.name, "space": space_obj.name})
    if parent:
        (output_dir / PARENT_FILE).write_text(parent + "\n")
    ctx.parent_run_id = evaluator.parent_run_id = parent
    parent_params: dict[str, Any] = {
        "searcher": cls.name, "space": space_obj.name, "dataset": config.dataset.name, "budget": budget,
        "budget_unit": cls.budget_unit, "seed": scfg.seed, "objectives": ",".join(objectives),
        "candidate_epochs": evaluator.train_config.epochs, "timeout": scfg.timeout,
    }
    parent_params.update(flatten(searcher.params.model_dump(mode="json"), "searcher_params"))
    parent_params.update(flatten(config.dataset.model_dump(mode="json"), "dataset"))
    parent_params.update(flatten(config.train.model_dump(mode="json"), "train"))
    _log_parent_params(tracker, parent, parent_params, reopened)

    stopped = ""
    display.start()
    try:
        try:
            if scfg.timeout:  # a safety net for searchers that ignore ctx.timeout; the clock starts with the search, not the set-up
                evaluator.deadline = time.monotonic() + scfg.timeout + max(10.0, 0.1 * scfg.timeout)
            with deferred_signals():  # SIGINT/SIGTERM raise at the next batch, not inside a database call
                result = searcher.run(ctx)
            check_interrupt()
        except SearchStopped as exc:
            stopped = str(exc)
            result = SearchResult(best=None, candidates=list(evaluator.candidates))  # type: ignore[arg-type]
        stopped = stopped or str(result.extra.get("stopped", ""))
        candidates = list(result.candidates)
        known = {(c.number, c.arch.id) for c in candidates}
        candidates += [c for c in evaluator.candidates if (c.number, c.arch.id) not in known]  # e.g. the one that stopped the search
        if not any(c.state == "finished" for c in candidates):
            summary = _summary(ctx, cls, candidates, None, None, parent, tracker, t_start, stopped, "failed", result.extra)
            _write_reports(ctx, candidates, [], summary, tracker, parent)
            tracker.set_tags(parent, {"state": "failed"})
            raise SearchFailed(_failure_message(cls.name, space_obj.name, candidates, stopped, output_dir))
        best_arch = result.best or report.best_candidate(candidates).arch  # type: ignore[union-attr]
        best = _ensure_best_weights(ctx, evaluator, best_arch, candidates)
        front = report.pareto_front(candidates, objectives) if len(objectives) > 1 else []
        result.candidates, result.best = candidates, best_arch
        if front:
            result.pareto = front
        summary = _summary(ctx, cls, candidates, best, front, parent, tracker, t_start, stopped, "finished", result.extra)
        _write_reports(ctx, candidates, front, summary, tracker, parent)
        _log_best(tracker, parent, best)
    except (KeyboardInterrupt, SystemExit):
        display.stop()
        _write_partial(ctx, evaluator)
        tracker.end_run(parent, "KILLED")
        raise
    except BaseException:
        display.stop()
        tracker.end_run(parent, "FAILED")
        raise
    display.stop()
    tracker.end_run(parent, "FINISHED")
    return SearchOutcome(result, output_dir, best, parent, summary)


# ------------------------------------------------------------------------------ outputs
def _ensure_best_weights(ctx: SearchContext, ev: CandidateEvaluator, best_arch: Architecture, candidates: list[Candidate]) -> Candidate | None:
    """Write arch.json/weights.pt/schema.json of the best architecture; retrain it if no weights were kept."""
    out = ctx.output_dir
    kept = out / BEST_DIR
    state = None
    try:
        if Architecture.load(kept / "arch.json").id == best_arch.id:
            state = torch.load(kept / "weights.pt", map_location="cpu", weights_only=True)
    except (OSError, MdmtNasError, RuntimeError):
        state = None
    if state is None and ev.last_state is not None and ev.last_state[0] == best_arch.id:
        state = ev.last_state[1]
    best = next((c for c in report.ranked(candidates) if c.arch.id == best_arch.id and c.state == "finished"), None)
    if state is None and ctx.config.search.retrain:
        number = max((c.number for c in candidates), default=-1) + 1
        cand = ev(best_arch, "retrain-best", number=number, train_config=ctx.config.train.model_copy(update={"progress": False}), kind="retrain")
        candidates.append(cand)
        if cand.state == "finished" and ev.last_state is not None:
            state, best = ev.last_state[1], cand
    best_arch.save(out / "best_arch.json")
    if state is not None:
        best_arch.save(out / "arch.json")
        torch.save(state, out / "weights.pt")
        (out / "schema.json").write_text(ctx.splits.schema.model_dump_json(indent=2) + "\n")
    return best


def _summary(ctx: SearchContext, cls: type[Searcher], candidates: list[Candidate], best: Candidate | None, front: list[Candidate] | None,
             parent: str | None, tracker: Tracker, t_start: float, stopped: str, status: str, extra: dict[str, Any]) -> dict[str, Any]:
    counts = {s: sum(c.state == s for c in candidates) for s in ("finished", "pruned", "failed")}
    files = sorted(p.name for p in ctx.output_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    return {
        "status": status,
        "searcher": cls.name, "space": ctx.space.name, "dataset": ctx.config.dataset.name,
        "budget": ctx.budget, "budget_unit": cls.budget_unit, "seed": ctx.seed, "objectives": list(ctx.objectives),
        "timeout": ctx.timeout, "candidate_epochs": candidate_train_config(ctx.config).epochs,
        "candidates": len(candidates), **counts,
        "stopped": stopped or None,
        "failure_reasons": report.failure_summary(candidates),
        "best": None if best is None else {**best.row(), "assignment": best.assignment, "arch": best.arch.canonical()},
        "pareto": [c.row() for c in front or []],
        "mlflow": {"tracking_uri": tracker.tracking_uri if tracker.enabled else None, "experiment": ctx.config.tracking.experiment,
                   "parent_run_id": parent},
        "searcher_info": {k: v for k, v in extra.items() if k != "stopped"},
        "wall_seconds": round(time.monotonic() - t_start, 3),
        "files": files,
    }


def _write_reports(ctx: SearchContext, candidates: list[Candidate], front: list[Candidate], summary: dict[str, Any],
                   tracker: Tracker, parent: str | None) -> None:
    out = ctx.output_dir
    report.write_leaderboard_csv(out / "leaderboard.csv", candidates, front)
    if candidates:
        report.save_figure(report.plot_auc_vs_trial(candidates, f"{ctx.space.name} / {summary['searcher']}: valid mean AUC per trial"), out / "auc_vs_trial.png")
    if front:
        report.save_figure(report.plot_pareto(candidates, front, ctx.objectives), out / "pareto.png")
    summary["files"] = sorted({*summary["files"], "leaderboard.csv", "search.json", *(["auc_vs_trial.png"] if candidates else []),
                               *(["pareto.png"] if front else [])})
    (out / "search.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if parent:
        for name in ("best_arch.json", "leaderboard.csv", "search.json", "auc_vs_trial.png", "pareto.png"):
            if (out / name).exists():
                tracker.log_file(parent, out / name)


def _write_partial(ctx: SearchContext, ev: CandidateEvaluator) -> None:
    """On interruption: what ran so far, so the leaderboard is not lost."""
    try:
        if ev.candidates:
            report.write_leaderboard_csv(ctx.output_dir / "leaderboard.csv", ev.candidates)
    except Exception:  # noqa: BLE001 - never mask the interruption
        pass


def _log_best(tracker: Tracker, parent: str | None, best: Candidate | None) -> None:
    if not parent or best is None:
        return
    tracker.set_tags(parent, {"best_arch_id": best.arch.id, "best_run_id": best.run_id or "", "state": "finished"})
    tracker.log_metrics(parent, {"best_valid_mean_auc": best.valid_mean_auc, "best_test_mean_auc": best.test_mean_auc,
                                 "best_num_params": best.num_params, "best_latency_ms_per_1k": best.latency_ms_per_1k})


def _failure_message(searcher: str, space: str, candidates: list[Candidate], stopped: str, out: Path) -> str:
    n = len(candidates)
    head = f"search {space}/{searcher}: no candidate finished ({n} evaluated"
    head += f", {sum(c.state == 'pruned' for c in candidates)} pruned" if any(c.state == "pruned" for c in candidates) else ""
    head += ")" + (f"; stopped because {stopped}" if stopped else "")
    lines = [head]
    reasons = report.failure_summary(candidates)
    if reasons:
        lines.append("reasons:")
        lines += [f"  {r}" for r in reasons]
    lines.append(f"leaderboard and summary: {out / 'leaderboard.csv'}, {out / 'search.json'}")
    if stopped.startswith("time limit") and not reasons:
        lines.append("the time limit ended the search before a candidate finished; raise --timeout (search.timeout)")
    else:
        lines.append("fix the cause (or disable the plugin at fault), then run the search again")
    return "\n".join(lines)
