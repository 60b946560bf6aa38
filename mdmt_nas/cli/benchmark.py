"""`mdmt-nas benchmark`: fixed baselines and searched architectures on one dataset, several seeds, one report."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import typer

from mdmt_nas.cli.app import app, report_plugin_failures
from mdmt_nas.cli.common import build_config, claim_output, console, on_interrupt, resume_command
from mdmt_nas.files import shown_path


def _command(
    dataset: str | None,
    config: Path | None,
    sets: list[str],
    seeds: int | None,
    epochs: int | None,
    budget: str | None,
    candidate_epochs: int | None,
    darts_epochs: int | None,
    space: str | None,
    models: str | None,
    output: Path,
    quick: bool,
    tracking_uri: str | None,
    no_track: bool,
    threads: int | None,
    extra: list[tuple[str, object]] = (),
) -> str:
    """The command line that regenerates this report (options as given, in a fixed order)."""
    parts = ["mdmt-nas", "benchmark"]
    for flag, value in extra:
        if value is True:
            parts.append(flag)
        elif value is not None and value is not False:
            parts += [flag, str(value)]
    for flag, value in (
        ("--dataset", dataset),
        ("--config", config),
        ("--seeds", seeds),
        ("--epochs", epochs),
        ("--search-budget", budget),
        ("--candidate-epochs", candidate_epochs),
        ("--darts-epochs", darts_epochs),
        ("--space", space),
        ("--models", models),
        ("--threads", threads),
        ("--output", output),
        ("--tracking-uri", tracking_uri),
    ):
        if value is not None:
            parts += [flag, str(value)]
    for s in sets:
        parts += ["--set", s]
    if quick:
        parts.append("--quick")
    if no_track:
        parts.append("--no-track")
    return shlex.join(parts)


# long: a typer command is its options list (one annotated parameter per flag, the help text beside it)
@app.command()
def benchmark(
    dataset: str = typer.Option(
        None, "--dataset", help="Dataset name, e.g. ml-100k (default: the config's, else 'synthetic')."
    ),
    config: Path = typer.Option(
        None,
        "--config",
        "-c",
        help="Config YAML whose dataset section (name, params such as split) and "
        "tracking section are used; its train fields given explicitly apply to every model.",
    ),
    sets: list[str] = typer.Option(
        None,
        "--set",
        help="Override a config value: --set dataset.params.split.kind=time, "
        "--set train.batch_size=2048 (applies to every model) (repeatable).",
    ),
    seeds: int = typer.Option(
        None, "--seeds", help="Training seeds 0..N-1 for every model (default 3; 1 with --quick)."
    ),
    epochs: int = typer.Option(
        None,
        "--epochs",
        help="Training epochs of every model and of the searched winners' retraining "
        "(default: each example's own; 1 with --quick).",
    ),
    search_budget: str = typer.Option(
        None,
        "--search-budget",
        help="Budget of each multi-trial search: trials or a wall time such as 20m (default 20; 2 with --quick).",
    ),
    candidate_epochs: int = typer.Option(
        None,
        "--candidate-epochs",
        help="Training epochs of each multi-trial candidate (default: full "
        "training with multi-fidelity pruning; 1 with --quick, then the winner is retrained).",
    ),
    searchers: str = typer.Option(
        None,
        "--searchers",
        help="Comma-separated searchers to run (any registered: darts, optuna-tpe, "
        "nni-evolution, ...); replaces the searches named in --models (default: darts, optuna-tpe).",
    ),
    final_seeds: int = typer.Option(None, "--final-seeds", help="search.final_seeds of every search (default 1)."),
    search_train: str = typer.Option(
        None,
        "--search-train",
        help="Example whose train section trains the candidates and searched winners (default mmoe: the section "
        "every example but m3oe shares, so searched and fixed models differ only in the architecture).",
    ),
    warm_start: bool = typer.Option(
        True, "--warm-start/--no-warm-start", help="Evaluate the space's known architectures first in every search."
    ),
    darts_epochs: int = typer.Option(
        None, "--darts-epochs", help="DARTS supernet epochs (default: the searcher's own; 1 with --quick)."
    ),
    space: str = typer.Option(
        None,
        "--space",
        "-s",
        help="Search space of DARTS and TPE: a name (`mdmt-nas spaces list`) or a YAML file (default m3oe).",
    ),
    models: str = typer.Option(
        None,
        "--models",
        help="Comma-separated subset: shared_bottom, mmoe, ple, star, m3oe, hamur, cesaa, dephn, "
        "darts, tpe (default: all).",
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="Report directory (default runs/benchmark-<dataset>-<time>)."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="A tiny run: 3,000 synthetic rows, 1 seed, 1 epoch, 2 TPE trials, a 1-epoch DARTS."
    ),
    tracking_uri: str = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)."
    ),
    no_track: bool = typer.Option(False, "--no-track", help="Do not log to MLflow."),
    threads: int = typer.Option(None, "--threads", help="torch threads of every training (default: torch's own)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted benchmark in --output: finished (model, seed) runs are kept."
    ),
) -> None:
    """Train the fixed baselines, search the m3oe space with DARTS and Optuna TPE, and write a Markdown + HTML report."""
    sets = list(sets or [])
    cfg = build_config(
        config, None, dataset, sets, tracking_uri, None, no_track
    )  # no torch yet: a config error fails fast
    from mdmt_nas.benchmark import MODEL_KEYS, BenchmarkSettings, quick_settings, run_benchmark
    from mdmt_nas.tracking import Tracker

    report_plugin_failures()
    tracking = (
        cfg.tracking
        if "experiment" in cfg.tracking.model_fields_set
        else cfg.tracking.model_copy(update={"experiment": "benchmark"})
    )
    overrides = {k: getattr(cfg.train, k) for k in cfg.train.model_fields_set}
    if threads is not None:
        overrides["threads"] = threads
    n_seeds = seeds if seeds is not None else (1 if quick else 3)
    if n_seeds < 1:
        from mdmt_nas.errors import UserError

        raise UserError(f"--seeds must be at least 1, got {n_seeds}")
    chosen = [m.strip() for m in models.split(",") if m.strip()] if models else list(MODEL_KEYS)
    if searchers is not None:
        from mdmt_nas.benchmark.settings import model_spec

        chosen = [m for m in chosen if model_spec(m).kind == "fixed"] + [
            s.strip() for s in searchers.split(",") if s.strip()
        ]
    cmd = _command(
        dataset,
        config,
        sets,
        seeds,
        epochs,
        search_budget,
        candidate_epochs,
        darts_epochs,
        space,
        models,
        output,
        quick,
        tracking_uri,
        no_track,
        threads,
        [
            ("--searchers", searchers),
            ("--final-seeds", final_seeds),
            ("--search-train", search_train),
            ("--no-warm-start", not warm_start),
        ],
    )
    settings = BenchmarkSettings(
        dataset=cfg.dataset,
        tracking=tracking,
        seeds=list(range(n_seeds)),
        models=chosen,
        epochs=epochs if epochs is not None else (1 if quick else None),
        train_overrides=overrides,
        tpe_trials=(int(search_budget) if search_budget and search_budget.isdigit() else search_budget)
        or (2 if quick else 20),
        candidate_epochs=candidate_epochs or (1 if quick else None),
        warm_start=warm_start,
        **({"final_seeds": final_seeds} if final_seeds else {}),
        darts_epochs=darts_epochs or (1 if quick else None),
        command=cmd,
        **({"space": space} if space else {}),
        **({"search_train": search_train} if search_train else {}),
        tpe_params=dict(cfg.search.params),  # --set search.params.K=V: params of the multi-trial searchers
    )
    if quick:
        settings = quick_settings(settings)
    if any(
        m.kind == "search" for m in settings.specs()
    ):  # an unknown --models name, space or --search-train -> exit 2 before any output
        from mdmt_nas.benchmark.settings import example_config
        from mdmt_nas.search.runner import load_search_space

        load_search_space(settings.space)
        example_config(settings.search_train)
    Tracker(settings.tracking).check()  # a bad --tracking-uri fails now
    out = output or Path("runs") / f"benchmark-{settings.dataset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with claim_output(out, resume=resume):
        on_interrupt(
            lambda: [
                f"finished (model, seed) runs are kept in {shown_path(out)}",
                f"resume with: {resume_command(out)}",
            ]
        )
        n_runs = len(settings.seeds) * len(settings.models)
        console.print(
            f"benchmark [bold]{settings.dataset.name}[/bold]: {len(settings.models)} models x {len(settings.seeds)} seeds = {n_runs} runs "
            f"-> {shown_path(out)}",
            highlight=False,
        )

        def log(msg: str) -> None:
            console.print(f"{time.strftime('%H:%M:%S')} {msg}", highlight=False, soft_wrap=True)

        state = run_benchmark(settings, out, resume=resume, log=log, console=console)
    _summary(state, settings)


def _summary(state, settings) -> None:
    """One line per model: test AUC over seeds, params, wall time per seed; the MLflow parent run."""
    from mdmt_nas.benchmark import summarize

    for s in summarize(state.records, settings.specs()):
        console.print(
            f"  {s.label:<14} test AUC {s.test_auc.fmt()}  params {s.num_params.mean:,.0f}  wall/seed {s.wall_seconds.mean:.0f}s"
            if s.test_auc.n
            else f"  {s.label:<14} failed",
            highlight=False,
        )
    if state.parent_run_id:
        console.print(
            f"MLflow parent run {state.parent_run_id} ({state.tracking_uri})", highlight=False, soft_wrap=True
        )
