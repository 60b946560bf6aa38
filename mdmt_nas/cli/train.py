"""`mdmt-nas train`: train one architecture and report per-(domain, task) metrics."""

from __future__ import annotations

from pathlib import Path

import typer

from mdmt_nas.cli.app import app, report_plugin_failures
from mdmt_nas.cli.common import build_config, console, default_output, ensure_writable_dir, fmt, metrics_table, print_model


@app.command()
def train(
    config: Path = typer.Option(None, "--config", "-c", help="Experiment config YAML (dataset, arch, train, tracking)."),
    arch: Path = typer.Option(None, "--arch", help="Architecture JSON/YAML (e.g. a search's best_arch.json); overrides the config's arch."),
    dataset: str = typer.Option(None, "--dataset", help="Dataset name (default: the config's, else 'synthetic')."),
    sets: list[str] = typer.Option(None, "--set", help="Override a config value: --set train.lr=0.01 (repeatable)."),
    output: Path = typer.Option(None, "--output", "-o", help="Directory for arch.json, weights.pt, metrics.json (default runs/train-...)."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)."),
    seed: int = typer.Option(None, "--seed", help="Random seed (overrides train.seed)."),
    no_track: bool = typer.Option(False, "--no-track", help="Do not log to MLflow."),
    register_model: str = typer.Option(None, "--register-model", help="Register the trained model in the MLflow Model Registry under this name."),
) -> None:
    """Train one architecture and print its per-(domain, task) AUC table."""
    from mdmt_nas.experiment import load_splits, run_training

    report_plugin_failures()
    cfg = build_config(config, arch, dataset, sets, tracking_uri, seed, no_track, register_model)
    if cfg.arch is None:
        from mdmt_nas.errors import UserError

        raise UserError("no architecture: pass --config FILE with an `arch:` section or --arch FILE.json (see examples/)")
    from mdmt_nas.tracking import Tracker

    Tracker(cfg.tracking).check()  # a bad --tracking-uri fails now, before any output is written
    out = ensure_writable_dir(output or default_output("train", cfg.arch.name or cfg.arch.id))
    with console.status(f"loading dataset {cfg.dataset.name!r}..."):
        splits = load_splits(cfg)
    console.print(cfg.arch.summary(), highlight=False)
    console.print(f"dataset {cfg.dataset.name}: {len(splits.train):,} train / {len(splits.valid):,} valid / {len(splits.test):,} test rows, "
                  f"{splits.schema.num_domains} domains x {splits.schema.num_tasks} tasks")
    outcome = run_training(cfg, splits, out)
    r = outcome.result
    console.print(metrics_table(r.valid, r.test, f"{cfg.arch.name or cfg.arch.id}: per-(domain, task) metrics (best epoch {r.best_epoch + 1}/{r.epochs_run})"))
    console.print(f"params {r.num_params:,} | train {r.train_seconds:.1f}s ({r.rows_per_second:,.0f} rows/s) | "
                  f"latency {fmt(r.latency_ms_per_1k, 2)} ms/1k rows | mean test AUC {fmt(r.test.mean_auc)}")
    console.print(f"outputs: {out}" + (f" | MLflow run {outcome.run_id}" if outcome.run_id else ""))
    print_model(outcome.model)
