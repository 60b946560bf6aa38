"""`mdmt-nas train`: train one architecture and report per-(domain, task) metrics.

The order is fail-fast: the config (file, --set, flags) is read and validated
first, without torch; then the architecture and dataset params against the
registry (plugins load here); then the tracking store; then the output directory
is locked and arch.json/config.json written; only then is data loaded. Every
epoch is checkpointed (checkpoint.pt, and weights.pt when best), so Ctrl-C keeps
the best weights so far and `--resume` continues.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from mdmt_nas.cli.app import app, report_plugin_failures
from mdmt_nas.cli.common import (
    build_config,
    claim_output,
    console,
    default_output,
    fmt,
    on_interrupt,
    resume_command,
    say_config,
    say_result,
)
from mdmt_nas.errors import UserError
from mdmt_nas.files import shown_path


# long: a typer command is its options list (one annotated parameter per flag, the help text beside it)
@app.command()
def train(
    config: Path = typer.Option(
        None,
        "--config",
        "-c",
        help="Experiment config YAML (dataset, arch, train, tracking), or the name of a shipped example (m3oe, mmoe, ...).",
    ),
    arch: Path = typer.Option(
        None, "--arch", help="Architecture JSON/YAML (e.g. a search's best_arch.json); overrides the config's arch."
    ),
    dataset: str = typer.Option(None, "--dataset", help="Dataset name (default: the config's, else 'synthetic')."),
    sets: list[str] = typer.Option(None, "--set", help="Override a config value: --set train.lr=0.01 (repeatable)."),
    output: Path = typer.Option(
        None, "--output", "-o", help="Directory for arch.json, weights.pt, metrics.json (default runs/train-...)."
    ),
    tracking_uri: str = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)."
    ),
    seed: int = typer.Option(None, "--seed", help="Random seed (overrides train.seed)."),
    no_track: bool = typer.Option(False, "--no-track", help="Do not log to MLflow."),
    register_model: str = typer.Option(
        None, "--register-model", help="Register the trained model in the MLflow Model Registry under this name."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the interrupted training in --output from its last checkpoint (same options)."
    ),
) -> None:
    """Train one architecture and print its per-(domain, task) AUC table (under torchrun: data-parallel, docs/scale-out.md)."""
    cfg = build_config(config, arch, dataset, sets, tracking_uri, seed, no_track, register_model)
    if cfg.arch is None:
        raise UserError(
            "no architecture: pass --config FILE with an `arch:` section or --arch FILE.json (see examples/)"
        )
    if int(os.environ.get("WORLD_SIZE") or 1) > 1:  # under torchrun (checked without importing torch)
        from mdmt_nas.cli.train_ranks import train_ranks

        return train_ranks(cfg, output, resume)
    if resume and output is None:
        raise UserError("--resume needs --output DIR: the directory of the training to continue")
    from mdmt_nas.preflight import check_experiment

    report_plugin_failures()
    check_experiment(cfg)  # names and params of the architecture and the dataset, before any data is read
    from mdmt_nas.tracking import Tracker

    Tracker(cfg.tracking).check()  # a bad --tracking-uri fails now, before any output is written
    out = output or default_output("train", cfg.arch.name or cfg.arch.id)
    from mdmt_nas.experiment import check_resume, load_splits, run_training, start_outputs

    with claim_output(out, resume=resume):
        if resume:
            check_resume(out, cfg)
        else:
            start_outputs(out, cfg)
        progress: dict = {"out": out, "epochs": cfg.train.epochs}
        on_interrupt(lambda: _kept(out, progress))
        say_config(cfg)
        with console.status(f"loading dataset {cfg.dataset.name!r}..."):
            splits = load_splits(cfg)
        console.print(cfg.arch.summary(), highlight=False)
        console.print(
            f"dataset {cfg.dataset.name}: {len(splits.train):,} train / {len(splits.valid):,} valid / {len(splits.test):,} test rows, "
            f"{splits.schema.num_domains} domains x {splits.schema.num_tasks} tasks"
        )
        if resume:
            _say_resume(out)
        outcome = run_training(cfg, splits, out, resume=resume, progress=progress)
    say_result(cfg, outcome, out)


def _say_resume(out: Path) -> None:
    from mdmt_nas.checkpoint import CHECKPOINT

    if (out / CHECKPOINT).exists():
        console.print(f"resuming from {shown_path(out / CHECKPOINT)}", highlight=False, soft_wrap=True)
    else:
        console.print(
            f"no checkpoint in {shown_path(out)} (interrupted in its first epoch): training from the start",
            highlight=False,
        )


def _kept(out: Path, progress: dict) -> list[str]:
    """What an interrupted `train` leaves in its output directory, and the command that continues it."""
    if progress.get("finished"):
        return [f"the training had finished: {shown_path(out)}"]
    done = progress.get("epoch") or 0
    if not done:
        kept = f"kept {shown_path(out)}/arch.json and config.json; no epoch had finished, so no weights"
    else:
        auc = progress.get("best_auc")
        kept = (
            f"kept {shown_path(out / 'weights.pt')} (the best epoch so far: {progress.get('best_epoch', -1) + 1}, valid AUC "
            f"{fmt(auc)}) and {shown_path(out / 'checkpoint.pt')} (after epoch {done} of {progress.get('epochs', '?')})"
        )
    return [kept, f"resume with: {resume_command(out)}"]
