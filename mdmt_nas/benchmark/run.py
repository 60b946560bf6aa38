"""Running the benchmark: fixed baselines and searched architectures, several seeds, one report (written by render.py).

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

import datetime as _dt
import json
import math
import os
import platform
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mdmt_nas.benchmark.render import _fmt_seconds, split_description, write_outputs
from mdmt_nas.benchmark.settings import BenchmarkSettings, ModelSpec, example_config
from mdmt_nas.benchmark.stats import BenchmarkState, RunRecord, summarize
from mdmt_nas.config import ExperimentConfig, SearchConfig, TrainConfig
from mdmt_nas.errors import ConfigError, UserError
from mdmt_nas.experiment import load_splits, validate_arch
from mdmt_nas.search.runner import load_search_space, searcher_class
from mdmt_nas.tracking import Tracker, flatten


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


def _dataset_info(settings: BenchmarkSettings, splits: Any) -> dict[str, Any]:
    from mdmt_nas.data.loading import make_dataset

    params = make_dataset(settings.dataset.name, settings.dataset.params).params
    split = getattr(params, "split", None)
    schema = splits.schema
    info = {
        "name": settings.dataset.name, "params": settings.dataset.params,
        "split": split.model_dump(mode="json") if split is not None else None,
        "rows": {"train": len(splits.train), "valid": len(splits.valid), "test": len(splits.test)},
        "domains": list(schema.domain_names), "tasks": list(schema.tasks),
    }
    if getattr(splits, "oracle", None):
        info["bayes"] = bayes_ceiling(splits)
    return info


def bayes_ceiling(splits: Any) -> dict[str, Any]:
    """Mean test/valid AUC (and the test cells) of the Bayes-optimal probabilities the data's generator knows."""
    from mdmt_nas.metrics import compute_metrics

    out: dict[str, Any] = {}
    for part in ("valid", "test"):
        data = getattr(splits, part)
        m = compute_metrics(splits.oracle[part], data.labels, data.domain, splits.schema)
        out[f"{part}_mean_auc"] = m.mean_auc
        if part == "test":
            out["cells"] = _cells(m)
            out["test_mean_logloss"] = m.mean_logloss
    return out


def run_benchmark(settings: BenchmarkSettings, output_dir: str | Path, *, resume: bool = False, log: Log | None = None,
                  console: Any = None) -> BenchmarkState:
    """Run every (model, seed) of `settings`, log them under one MLflow parent run, write the report to `output_dir`."""
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

    parent = state.parent_run_id = _parent_run(tracker, settings, state, log)

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
            rec = _run_one(n, len(jobs), seed, spec, fixed_cfgs, search_base, space, settings, splits, tracker, parent, out, state, console, log)
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


def _parent_run(tracker: Tracker, settings: BenchmarkSettings, state: BenchmarkState, log: Log) -> str | None:
    """The benchmark's MLflow parent run: the earlier parts' one re-opened on --resume, else a new one."""
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
    return parent


def _run_one(n: int, total: int, seed: int, spec: ModelSpec, fixed_cfgs: dict[str, ExperimentConfig], search_base: ExperimentConfig | None,
             space: Any, settings: BenchmarkSettings, splits: Any, tracker: Any, parent: str | None, out: Path, state: BenchmarkState,
             console: Any, log: Log) -> RunRecord:
    """One model at one seed; a failure becomes a failed record (one model failing must not lose the others)."""
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
        log(f"[{n}/{total}] seed {seed} {spec.label}: FAILED: {reason}")
        if os.environ.get("MDMT_NAS_DEBUG") == "1":
            traceback.print_exc()
        rec = RunRecord(spec.key, spec.label, spec.kind, seed, status="failed", reason=reason, wall_seconds=time.monotonic() - t0)
    else:
        log(f"[{n}/{total}] seed {seed} {spec.label}: test AUC {rec.test_mean_auc:.4f}, logloss {rec.test_mean_logloss:.4f}, "
            f"valid AUC {rec.valid_mean_auc:.4f}, {rec.num_params:,} params, {rec.wall_seconds:.0f}s")
    rec.load_1min = _load_1min()
    if parent and rec.run_id:
        tracker.set_tags(rec.run_id, {"benchmark.model": spec.key, "benchmark.seed": seed})
    rec.load_1min = _load_1min()
    if parent and rec.run_id:
        tracker.set_tags(rec.run_id, {"benchmark.model": spec.key, "benchmark.seed": seed})
    return rec


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
    common = {"space": settings.space, "searcher": spec.source, "seed": seed, "warm_start": settings.warm_start, "final_seeds": settings.final_seeds}
    if spec.source == "darts":
        scfg = SearchConfig.model_validate({**common, "budget": settings.darts_epochs, "params": dict(settings.darts_params)})
    else:
        scfg = SearchConfig.model_validate({**common, "budget": settings.tpe_trials, "epochs": settings.candidate_epochs,
                                            "params": dict(settings.tpe_params)})
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
    cand = outcome.best
    fully_trained = cand is not None and cand.state == "finished" and cand.fidelity >= 1.0 and (
        spec.source == "darts" or settings.candidate_epochs is None or settings.candidate_epochs >= train.epochs)
    search_info["verdict"] = summary.get("verdict") or {}
    search_info["warm_start"] = summary.get("warm_start") or []
    search_info["winner_known"] = cand.known if cand is not None else ""
    search_info["winner_train_seconds"] = cand.train_seconds if cand is not None else None
    if fully_trained:
        # the winner was trained with `train` at this seed inside the search (DARTS: its darts-derived run): that is the benchmark run
        rec = _record_from_candidate(spec, seed, cand, splits.schema, time.monotonic() - t0)
    elif spec.source == "darts":
        raise UserError(f"DARTS did not finish retraining its derived architecture {best_arch.id}")
    else:
        # the winner was trained for candidate_epochs only: retrain it like the fixed models, under the search run
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


