"""`mdmt-nas search`: search a space for the best architecture and report the leaderboard."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.markup import escape

from mdmt_nas.cli.app import app, err_console, report_plugin_failures
from mdmt_nas.cli.common import (
    build_config,
    claim_output,
    console,
    on_interrupt,
    print_model,
    resume_command,
    say_config,
)
from mdmt_nas.errors import UserError
from mdmt_nas.files import shown_path

#: what a search leaves that --resume continues from (those that exist are named on interruption)
RESUMABLE = (
    "leaderboard.csv",
    "study.db",
    "darts/checkpoint.pt",
    "nni/state.pkl",
    "best_candidate/weights.pt",
    "parent_run.txt",
)


def _search_overrides(
    space: str | None,
    searcher: str | None,
    budget: str | None,
    timeout: float | None,
    seed: int | None,
    storage: str | None,
    study_name: str | None,
    objectives: str | None,
    pruner: str | None,
    epochs: int | None,
) -> list:
    """The flags as overrides of the `search:` section, each labelled with its flag (errors name `--budget 0`, not a file)."""
    out: list = []
    for key, flag, value in (
        ("space", "--space", space),
        ("searcher", "--searcher", searcher),
        ("budget", "--budget", budget),
        ("timeout", "--timeout", timeout),
        ("seed", "--seed", seed),
        ("storage", "--storage", storage),
        ("study_name", "--study-name", study_name),
        ("epochs", "--epochs", epochs),
        ("params.pruner", "--pruner", pruner),
    ):
        if value is not None:
            out.append((f"search.{key}={value}", f"{flag} {value}"))
    if objectives is not None:
        parts = [p.strip() for p in objectives.split(",") if p.strip()]
        out.append((f"search.objectives=[{', '.join(parts)}]", f"--objectives {objectives}"))
    return out


# long: a typer command is its options list (one annotated parameter per flag, the help text beside it)
@app.command()
def search(
    space: str = typer.Option(
        None, "--space", "-s", help="Search space name (`mdmt-nas spaces list`) or a space YAML file."
    ),
    searcher: str = typer.Option(
        None,
        "--searcher",
        help="darts (default), optuna-tpe, optuna-nsga2, optuna-random, optuna-grid, nni-random, nni-evolution.",
    ),
    dataset: str = typer.Option(None, "--dataset", help="Dataset name (default: the config's, else 'synthetic')."),
    config: Path = typer.Option(
        None, "--config", "-c", help="Experiment config YAML (dataset, train, tracking, search sections)."
    ),
    sets: list[str] = typer.Option(
        None,
        "--set",
        help="Override a config value: --set search.epochs=2, --set search.params.n_startup_trials=3 (repeatable).",
    ),
    budget: str = typer.Option(
        None,
        "--budget",
        help="Trials (multi-trial searchers) or epochs (DARTS), or a wall time (30m, 2h); default: the searcher's own.",
    ),
    timeout: float = typer.Option(None, "--timeout", help="Seconds; no new candidate starts after this."),
    seed: int = typer.Option(
        None, "--seed", help="Seed of the searcher and of every training (search.seed and train.seed)."
    ),
    epochs: int = typer.Option(None, "--epochs", help="Training epochs of each candidate (default: train.epochs)."),
    output: Path = typer.Option(
        None, "--output", "-o", help="Output directory (default runs/search-<space>-<searcher>-<time>)."
    ),
    tracking_uri: str = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)."
    ),
    storage: str = typer.Option(
        None,
        "--storage",
        help="Optuna storage shared by several processes/machines: postgresql://USER@HOST/DB, sqlite:///FILE.db, journal:///FILE.log (default sqlite:///<output>/study.db).",
    ),
    study_name: str = typer.Option(
        None,
        "--study-name",
        help="Optuna study name (default <space>-<searcher>-<dataset>-seed<seed>); same name + storage = same study.",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the search in an existing --output directory (Optuna study, NNI checkpoint)."
    ),
    objectives: str = typer.Option(
        None, "--objectives", help="auc (default), or auc,params / auc,latency / auc,params,latency for optuna-nsga2."
    ),
    pruner: str = typer.Option(
        None,
        "--pruner",
        help="Multi-fidelity pruner of Optuna/NNI searchers: hyperband (default), asha, median or none.",
    ),
    warm_start: bool = typer.Option(
        True, "--warm-start/--no-warm-start", help="Evaluate the space's known architectures (M3oE, MMoE, ...) first."
    ),
    final_seeds: int = typer.Option(
        None, "--final-seeds", help="Seeds per final architecture; the winner has the best mean valid AUC (default 1)."
    ),
    final_top_k: int = typer.Option(None, "--final-top-k", help="Architectures in the final stage (default 3)."),
    no_track: bool = typer.Option(False, "--no-track", help="Do not log to MLflow."),
    register_model: str = typer.Option(
        None, "--register-model", help="Register the best model in the MLflow Model Registry under this name."
    ),
    executor: str = typer.Option(
        None,
        "--executor",
        help="Where candidates train: local (this process, default) or ray (Ray actors; extra: ray).",
    ),
    address: str = typer.Option(
        None,
        "--address",
        help="--executor ray: the Ray cluster to join (ray://HOST:10001, HOST:6379, auto); default: a local Ray.",
    ),
    workers: int = typer.Option(
        None, "--workers", min=1, help="--executor ray: candidates training at once (default 2)."
    ),
    cpus_per_trial: float = typer.Option(
        None, "--cpus-per-trial", help="--executor ray: CPUs per candidate (default 1)."
    ),
) -> None:
    """Search a space: train candidates (one MLflow child run each), print the leaderboard, save best_arch.json."""
    if int(os.environ.get("WORLD_SIZE") or 1) > 1:
        raise UserError(
            "search does not run under torchrun (every rank would run its own search); run it as one process "
            "(workers: docs/scale-out.md) and retrain best_arch.json with: torchrun ... -m mdmt_nas train --arch best_arch.json"
        )
    overrides = list(sets or []) + _search_overrides(
        space, searcher, budget, timeout, seed, storage, study_name, objectives, pruner, epochs
    )
    if not warm_start:
        overrides.append(("search.warm_start=false", "--no-warm-start"))
    overrides += [
        (f"search.{k}={v}", f"--{k.replace('_', '-')} {v}")
        for k, v in (("final_seeds", final_seeds), ("final_top_k", final_top_k))
        if v is not None
    ]
    overrides += [
        (f"search.executor.{k}={v}", f"--{flag} {v}")
        for k, flag, v in (
            ("kind", "executor", executor),
            ("address", "address", address),
            ("workers", "workers", workers),
            ("cpus_per_trial", "cpus-per-trial", cpus_per_trial),
        )
        if v is not None
    ]
    cfg = build_config(
        config, None, dataset, overrides, tracking_uri, seed, no_track, register_model
    )  # no torch yet: fails fast
    scfg = cfg.search
    if scfg.executor.kind != "ray" and any(v is not None for v in (address, workers, cpus_per_trial)):
        raise UserError(
            "--address, --workers and --cpus-per-trial are options of --executor ray; without Ray, several "
            "workers are several `mdmt-nas search --storage URL --study-name NAME` processes (docs/scale-out.md)"
        )
    if scfg.space is None:
        raise UserError("no search space: pass --space NAME (`mdmt-nas spaces list` shows them) or a space YAML file")
    if scfg.storage:
        from mdmt_nas.stores import check_storage_url

        check_storage_url(scfg.storage)  # `sqlte:///x.db`, a file that is not SQLite, a read-only one: one line, now
    from mdmt_nas.preflight import blamed, check_dataset
    from mdmt_nas.search.runner import load_search_space, make_searcher, run_search, searcher_class

    report_plugin_failures()
    cls = searcher_class(scfg.searcher)  # unknown name -> exit 2 with the closest names, before any work
    try:
        searcher_obj = make_searcher(cls, scfg.params)
    except UserError as exc:
        raise blamed(cfg, exc) from None
    space_obj = load_search_space(scfg.space)  # every option of every choice checked against its component
    check_dataset(cfg)
    from mdmt_nas.search.executors import check_executor, storage_notes

    check_executor(cls, cfg)  # --executor ray without Ray, or with a searcher that is not Optuna's
    space_label = Path(scfg.space).stem if scfg.space.endswith((".yaml", ".yml", ".json")) else scfg.space
    out = output or Path("runs") / f"search-{space_label}-{cls.name}-{__import__('time').strftime('%Y%m%d-%H%M%S')}"
    from mdmt_nas.tracking import Tracker

    Tracker(cfg.tracking).check()  # a bad --tracking-uri fails now, before any output is written
    budget = (
        "until " + f"{scfg.timeout:g}s"
        if scfg.until_timeout
        else f"{searcher_obj.budget_for(space_obj, scfg.budget)} {cls.budget_unit}"
    )
    with claim_output(out, resume=resume):
        on_interrupt(lambda: _kept(out))
        say_config(cfg)
        for note in storage_notes(
            cfg, cls, space_obj.name
        ):  # SQLite on a network file system or under many workers: use PostgreSQL
            err_console.print(f"[yellow]warning: {escape(note)}[/yellow]", highlight=False, soft_wrap=True)
        console.print(
            f"search [bold]{space_label}[/bold] with [bold]{cls.name}[/bold] (budget {budget}, seed {scfg.seed}) -> {shown_path(out)}",
            highlight=False,
        )
        outcome = run_search(cfg, out, space=space_obj, resume=resume, console=console)
    _report(outcome, cfg, out)


def _report(outcome, cfg, out: Path) -> None:
    """The leaderboard, the winner and where its files are."""
    from mdmt_nas.search import report

    res = outcome.result
    s = outcome.summary
    info = s.get("searcher_info") or {}
    repeats = info.get("duplicates") or info.get("repeats") or 0
    title = (
        f"{s['space']} / {s['searcher']}: {s['finished']} finished, {s['pruned']} pruned, {s['failed']} failed"
        + (f", {repeats} repeated architecture(s) not retrained" if repeats else "")
        + f" ({s['wall_seconds']:.0f}s)"
    )
    console.print(report.leaderboard_table(res.candidates, title, pareto=res.pareto))
    if res.pareto:
        console.print(report.pareto_table(res.pareto, cfg.search.objectives))
    if s.get("stopped"):
        console.print(f"[yellow]stopped early: {escape(str(s['stopped']))}[/yellow]", highlight=False)
    if info.get("note"):
        console.print(f"[yellow]note: {escape(str(info['note']))}[/yellow]", highlight=False)
    entries = [e for e in (s.get("final_stage") or [])]
    if entries and any(len(e["runs"]) > 1 for e in entries):
        console.print(report.final_records_table(entries))
    if s.get("warm_start") or s.get("verdict"):
        console.print(report.verdict_line(s.get("verdict") or {}), highlight=False)
    best = outcome.best
    if best is not None and best.state != "finished":
        console.print(
            f"[yellow]no candidate finished its epochs within the time limit: the winner is the best so far, "
            f"{escape(best.reason)}[/yellow]",
            highlight=False,
            soft_wrap=True,
        )
    if best is not None:
        console.print(f"winner {best.arch.id} (trial {best.number}): per-(domain, task) AUC", highlight=False)
        console.print(winner_table(best))
    if best is not None and len(best.seed_results) > 1:
        n = len(best.seed_results)
        v = sum(r[1] for r in best.seed_results) / n
        t = sum(r[2] for r in best.seed_results) / n
        console.print(
            f"best {best.arch.id}: mean over {n} seeds valid AUC {v:.4f}, test AUC {t:.4f}, {best.num_params:,} params",
            highlight=False,
        )
    console.print(res.best.summary(), highlight=False)
    tracking = f" | MLflow parent run {outcome.parent_run_id}" if outcome.parent_run_id else ""
    console.print(f"best architecture: {shown_path(outcome.best_arch_path)}{tracking}", highlight=False, soft_wrap=True)
    if (out / "weights.pt").exists():
        console.print(
            f"export it: mdmt-nas export {shown_path(out)}   (writes {shown_path(out / 'export')}/model.pt2, model.onnx)",
            highlight=False,
            soft_wrap=True,
        )
    print_model(outcome.model)


def winner_table(best):
    """The winner's AUC per (domain, task), valid and test, with the means."""
    from rich.table import Table

    from mdmt_nas.cli.common import fmt
    from mdmt_nas.search import report

    table = Table()
    for col in ("domain", "task", "valid AUC", "test AUC"):
        table.add_column(col, justify="left" if col in ("domain", "task") else "right")
    for d, t, v, te in report.winner_cells(best):
        table.add_row(d, t, fmt(v), fmt(te))
    table.add_section()
    table.add_row("mean", "", fmt(best.valid_mean_auc), fmt(best.test_mean_auc), style="bold")
    return table


def _kept(out: Path) -> list[str]:
    """What an interrupted search leaves in its output directory, and the command that continues it."""
    there = [name for name in RESUMABLE if (out / name).exists()]
    kept = f"kept in {shown_path(out)}: {', '.join(there)}" if there else f"nothing was kept in {shown_path(out)} yet"
    return [kept, f"resume with: {resume_command(out)}"]
