"""Running a search end to end: searcher, space, data, the parent MLflow run, the searcher's run, the outputs.

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

Failures of single candidates never stop a search: `evaluate` (search/evaluate.py) records them
(state failed, with a reason naming the component and plugin at fault) and
returns. A search stops early only when too many candidates failed
(`search.max_failures`, default the budget) or its time is up; then
`SearchStopped` travels up through the searcher. A search in which no
candidate finished ends with `SearchFailed` (exit status 2) and a summary of
the reasons.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from mdmt_nas.arch import Architecture
from mdmt_nas.config import ExperimentConfig
from mdmt_nas.data.tensors import Splits
from mdmt_nas.errors import MdmtNasError, UserError, check_interrupt, deadline_passed, deferred_signals, search_deadline, suspended_deadline
from mdmt_nas.experiment import load_splits
from mdmt_nas.files import config_error, save_torch, write_json, write_text
from mdmt_nas.model.simplify import simplify
from mdmt_nas.plugins import get_registry
from mdmt_nas.search import report
from mdmt_nas.search.base import Candidate, SearchContext, Searcher, SearchResult, SearchStopped
from mdmt_nas.search.evaluate import BEST_DIR, TIMEOUT_REASON, Evaluator, candidate_train_config
from mdmt_nas.search.executors import run_searcher
from mdmt_nas.search.final import run_final_stage, verdict
from mdmt_nas.search.report import SearchDisplay
from mdmt_nas.spaces import load_space
from mdmt_nas.tracking import Tracker, flatten

__all__ = ["BEST_DIR", "Evaluator", "SearchFailed", "SearchOutcome", "SearchStopped", "candidate_train_config", "run_search"]


class SearchFailed(UserError):
    """No candidate finished: the message summarises why."""


# ------------------------------------------------------------------------------ resolving
def searcher_class(name: str) -> type[Searcher]:
    """The registered searcher `name` (UnknownComponentError with the closest names otherwise)."""
    return get_registry().get("searcher", name, where="--searcher")


def make_searcher(cls: type[Searcher], params: dict[str, Any]) -> Searcher:
    """An instance of `cls` with validated `search.params` (unknown keys are an error)."""
    try:
        p = cls.Params.model_validate(params or {})
    except ValidationError as exc:
        allowed = ", ".join(cls.Params.model_fields) or "none"
        raise config_error(exc, prefix="search.params", unknown=f"unknown parameter of searcher {cls.name!r} (allowed: {allowed})") from None
    return cls(p)


def load_search_space(name_or_path: Any) -> Any:
    """A Space from a registered name or a YAML path (a Space object passes through)."""
    if name_or_path is None:
        raise UserError("no search space given: pass --space NAME (see `mdmt-nas spaces list`) or set search.space")
    if not isinstance(name_or_path, (str, Path)):
        return name_or_path
    return load_space(str(name_or_path))


PARENT_FILE = "parent_run.txt"


def _recorded_parent(output_dir: Path) -> str | None:
    try:
        return (output_dir / PARENT_FILE).read_text().strip() or None
    except OSError:
        return None


# ------------------------------------------------------------------------------ outcome
@dataclass
class SearchOutcome:
    result: SearchResult
    output_dir: Path
    best: Candidate | None
    parent_run_id: str | None
    summary: dict[str, Any] = field(default_factory=dict)
    model: Any = None  # mdmt_nas.serving.mlflow_model.Publication: the best model logged to the parent run

    @property
    def best_arch_path(self) -> Path:
        return self.output_dir / "best_arch.json"


def run_search(config: ExperimentConfig, output_dir: str | Path, *, space: Any = None, splits: Splits | None = None,
               tracker: Tracker | None = None, resume: bool = False, console: Any = None) -> SearchOutcome:
    """Run `config.search` end to end and write its outputs to `output_dir` (see the module docstring)."""
    ctx, searcher, evaluator, display = _prepare(config, Path(output_dir).resolve(), space, splits, tracker, resume, console)
    cls, tracker = type(searcher), ctx.tracker
    parent = ctx.parent_run_id
    t_start = time.monotonic()
    display.start()
    limit = contextlib.ExitStack()
    limit.enter_context(search_deadline(config.search.timeout))  # --timeout bounds all of it, the running candidate included
    try:
        stopped = ""
        try:
            if config.search.timeout:  # a safety net for searchers that ignore ctx.timeout; the clock starts with the search, not the set-up
                evaluator.deadline = time.monotonic() + config.search.timeout + max(10.0, 0.1 * config.search.timeout)
            with deferred_signals():  # SIGINT/SIGTERM raise at the next batch, not inside a database call
                result = run_searcher(searcher, ctx, limit)  # search.executor: this process or Ray actors (search/executors/)
            with suspended_deadline():  # a searcher that returned at the deadline keeps its result; a pending signal still raises
                check_interrupt()
        except SearchStopped as exc:
            stopped = str(exc)
            result = SearchResult(best=None, candidates=list(evaluator.candidates))  # type: ignore[arg-type]
        stopped = stopped or str(result.extra.get("stopped", ""))
        candidates = list(result.candidates)
        known = {(c.number, c.arch.id) for c in candidates}
        candidates += [c for c in evaluator.candidates if (c.number, c.arch.id) not in known]  # e.g. the one that stopped the search
        if not any(_usable(c) for c in candidates):
            summary = _summary(ctx, cls, candidates, None, None, parent, tracker, t_start, stopped, "failed", result.extra)
            _write_reports(ctx, candidates, [], summary, tracker, parent)
            tracker.set_tags(parent, {"state": "failed"})
            raise SearchFailed(_failure_message(cls.name, ctx.space.name, candidates, stopped, ctx.output_dir))
        entries = []
        if len(ctx.objectives) == 1:  # out of time: the ranking with the seeds trained so far
            seeds = 1 if stopped.startswith("time limit") or deadline_passed() else config.search.final_seeds
            try:
                entries, extra_runs = run_final_stage(ctx, candidates, config.search.final_top_k, seeds, searcher.candidate_config(ctx))
            except SearchStopped as exc:  # the time limit came during the final stage: rank the trainings done so far
                stopped = stopped or str(exc)
                entries, extra_runs = run_final_stage(ctx, candidates, config.search.final_top_k, 1, searcher.candidate_config(ctx))
                extra_runs = [c for c in evaluator.candidates if all(c is not d for d in candidates)]
            candidates += extra_runs
        if entries:
            result.best = entries[0].candidate.arch
            result.extra["final"] = [e.record() for e in entries]
            result.extra["verdict"] = verdict(entries, candidates)
        best_arch = result.best or (report.best_candidate(candidates) or _best_cut(candidates)).arch  # type: ignore[union-attr]
        best = _ensure_best_weights(ctx, evaluator, best_arch, candidates)
        if (ctx.output_dir / "weights.pt").exists():  # the winner's weights are weights.pt now: no second copy stays
            shutil.rmtree(ctx.output_dir / BEST_DIR, ignore_errors=True)
        front = report.pareto_front(candidates, ctx.objectives) if len(ctx.objectives) > 1 else []
        result.candidates, result.best = candidates, best_arch
        if front:
            result.pareto = front
        summary = _summary(ctx, cls, candidates, best, front, parent, tracker, t_start, stopped, "finished", result.extra)
        _write_reports(ctx, candidates, front, summary, tracker, parent)
        _log_best(tracker, parent, best)
        tracker.set_tags(parent, {"mlflow.note.content": report.leaderboard_markdown(  # the parent run's description in the UI
            candidates, best, f"{ctx.space.name} / {cls.name}: {summary['finished']} finished of {len(candidates)}")})
        from mdmt_nas.serving.mlflow_model import publish_dir

        published = publish_dir(tracker, parent, ctx.output_dir, ctx.splits, config.tracking)  # encoding.json + the MLflow model
    except (KeyboardInterrupt, SystemExit):
        display.stop()
        _write_partial(ctx, evaluator)
        tracker.end_run(parent, "KILLED")
        raise
    except BaseException as exc:
        display.stop()
        tracker.end_failed(parent, exc)  # the reason (e.g. a full disk) tagged on the parent run
        raise
    finally:
        limit.close()
    display.stop()
    tracker.end_run(parent, "FINISHED")
    return SearchOutcome(result, ctx.output_dir, best, parent, summary, published)


def _prepare(config: ExperimentConfig, output_dir: Path, space: Any, splits: Splits | None, tracker: Tracker | None, resume: bool,
             console: Any) -> tuple[SearchContext, Searcher, Evaluator, SearchDisplay]:
    """Searcher, space, data, evaluator and context of a search, and its MLflow parent run (opened or re-opened)."""
    scfg = config.search
    cls = searcher_class(scfg.searcher)
    objectives = tuple(scfg.objectives)
    if len(objectives) > 1 and not cls.multi_objective:
        raise UserError(f"searcher {cls.name!r} optimises valid AUC only; --objectives {','.join(objectives)} needs a multi-objective searcher such as 'optuna-nsga2'")
    searcher = make_searcher(cls, scfg.params)
    space_obj = load_search_space(space if space is not None else scfg.space)
    if splits is None:
        if console is not None:
            with console.status(f"loading dataset {config.dataset.name!r}..."):
                splits = load_splits(config)
        else:
            splits = load_splits(config)
    space_obj = space_obj.simplified_by(functools.partial(simplify, schema=splits.schema))
    budget = searcher.budget_for(space_obj, scfg.budget)
    if scfg.until_timeout and cls.budget_unit == "trials":
        budget = 1_000_000  # a wall-time budget: candidates until search.timeout
    output_dir.mkdir(parents=True, exist_ok=True)
    tracker = tracker or Tracker(config.tracking)
    display = SearchDisplay(console, budget, cls.budget_unit)
    max_failures = scfg.max_failures or (budget if cls.budget_unit == "trials" else 3)
    evaluator = Evaluator(splits, config, tracker, output_dir, cls.name, space_obj.name, max_failures, None, display)
    ctx = SearchContext(space=space_obj, splits=splits, config=config, budget=budget, timeout=scfg.timeout, seed=scfg.seed,
                        output_dir=output_dir, tracker=tracker, parent_run_id=None, evaluate=evaluator,
                        storage=scfg.storage, study_name=scfg.study_name, resume=resume, objectives=objectives,
                        known=[(k.name, k.assignment, a) for k, a in space_obj.known_points()] if scfg.warm_start else [])
    previous = searcher.existing_parent_run(ctx)
    if previous is None and resume:  # killed before the searcher recorded its parent (first checkpoint, study attribute)
        previous = _recorded_parent(output_dir)
    parent, reopened = tracker.open_parent(previous, f"search-{space_obj.name}-{cls.name}",
                                           {"mdmt_nas.kind": "search", "searcher": cls.name, "space": space_obj.name})
    if parent:
        write_text(output_dir / PARENT_FILE, parent + "\n")
    ctx.parent_run_id = evaluator.parent_run_id = parent
    parent_params: dict[str, Any] = {
        "searcher": cls.name, "space": space_obj.name, "dataset": config.dataset.name, "budget": budget,
        "budget_unit": cls.budget_unit, "seed": scfg.seed, "objectives": ",".join(objectives),
        "candidate_epochs": evaluator.train_config.epochs, "timeout": scfg.timeout,
    }
    parent_params.update(flatten(searcher.params.model_dump(mode="json"), "searcher_params"))
    parent_params.update(flatten(config.dataset.model_dump(mode="json"), "dataset"))
    parent_params.update(flatten(config.train.model_dump(mode="json"), "train"))
    tracker.log_params_again(parent, parent_params, reopened)
    return ctx, searcher, evaluator, display


# ------------------------------------------------------------------------------ outputs
def _ensure_best_weights(ctx: SearchContext, ev: Evaluator, best_arch: Architecture, candidates: list[Candidate]) -> Candidate | None:
    """Write arch.json/weights.pt/schema.json of the best architecture; retrain it if no weights were kept."""
    out = ctx.output_dir
    kept = out / BEST_DIR
    state = None
    for folder in (kept, out):  # best_candidate/ while the search runs; the winner's files of a finished (now resumed) one
        try:
            if state is None and Architecture.load(folder / "arch.json").id == best_arch.id:
                state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
        except (OSError, MdmtNasError, RuntimeError):
            state = None
    if state is None and ev.last_state is not None and ev.last_state[0] == best_arch.id:
        state = ev.last_state[1]
    if ev.state_of(best_arch.id) is not None:
        state = ev.state_of(best_arch.id)  # the winner's best training (the kept best candidate may be another architecture)
    finals = [c for c in candidates if c.arch.id == best_arch.id and c.seed_results]
    best = finals[0] if finals else next((c for c in report.ranked(candidates) if c.arch.id == best_arch.id and _usable(c)), None)
    if state is None and ctx.config.search.retrain and not deadline_passed():
        number = max((c.number for c in candidates), default=-1) + 1
        cand = ev(best_arch, "retrain-best", number=number, train_config=ctx.config.train.model_copy(update={"progress": False}), kind="retrain")
        candidates.append(cand)
        if cand.state == "finished" and ev.last_state is not None:
            state, best = ev.last_state[1], cand
    best_arch.save(out / "best_arch.json")
    if state is not None:
        best_arch.save(out / "arch.json")
        save_torch(state, out / "weights.pt")
        write_text(out / "schema.json", ctx.splits.schema.model_dump_json(indent=2) + "\n")
    return best


def _usable(c: Candidate) -> bool:
    """A result: finished, or stopped by the search's time limit after at least one epoch (its best epoch's metrics)."""
    return c.state == "finished" or (c.reason.startswith(TIMEOUT_REASON) and report._finite(c.valid_mean_auc))


def _best_cut(candidates: list[Candidate]) -> Candidate | None:
    """The best candidate cut by the time limit (when none finished its epochs)."""
    cut = [c for c in candidates if _usable(c)]
    return report.ranked(cut)[0] if cut else None


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
        "searcher_info": {k: v for k, v in extra.items() if k not in ("stopped", "final", "verdict")},
        "warm_start": [name for name, _, _ in ctx.known],
        "final_stage": extra.get("final", []),
        "verdict": extra.get("verdict", {}),
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
    write_json(out / "search.json", summary)
    if parent:
        for name in ("best_arch.json", "leaderboard.csv", "search.json", "auc_vs_trial.png", "pareto.png"):
            if (out / name).exists():
                tracker.log_file(parent, out / name)


def _write_partial(ctx: SearchContext, ev: Evaluator) -> None:
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
