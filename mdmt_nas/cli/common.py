"""Pieces shared by CLI commands: config loading with overrides, result tables."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from rich.table import Table

from mdmt_nas.cli.console import make_console
from mdmt_nas.config import ExperimentConfig, load_config
from mdmt_nas.errors import UserError
from mdmt_nas.files import shown_path

console = make_console()


def build_config(
    config: Path | None,
    arch: Path | None,
    dataset: str | None,
    sets: list | None,
    tracking_uri: str | None = None,
    seed: int | None = None,
    no_track: bool = False,
    register_model: str | None = None,
) -> ExperimentConfig:
    """The config of a command: the file, --arch, --set items and flags (each error names the one at fault)."""
    overrides: list = list(sets or [])
    if dataset:
        overrides.insert(0, (f"dataset.name={dataset}", f"--dataset {dataset}"))
    if tracking_uri:
        overrides.append((f"tracking.uri={tracking_uri}", f"--tracking-uri {tracking_uri}"))
    if seed is not None:
        overrides.append((f"train.seed={seed}", f"--seed {seed}"))
    if no_track:
        if register_model:
            raise UserError("--register-model needs MLflow tracking; drop --no-track")
        overrides.append(("tracking.enabled=false", "--no-track"))
    if register_model:
        overrides += [
            ("tracking.log_model=true", f"--register-model {register_model}"),
            (f"tracking.register_model={json.dumps(register_model)}", f"--register-model {register_model}"),
        ]
    return load_config(config, overrides, arch_path=arch)


def say_config(cfg: ExperimentConfig) -> None:
    """Which config file the run uses (a shipped example says so)."""
    origin = cfg.origin
    if origin.file:
        from mdmt_nas.files import shipped_dir

        shipped = Path(origin.file).resolve().parent == shipped_dir("mdmt_nas._examples").resolve()
        console.print(
            f"config {shown_path(origin.file)}" + (" (a shipped example)" if shipped else ""),
            highlight=False,
            soft_wrap=True,
        )


def claim_output(path: Path, resume: bool = False, what: str = "output directory"):
    """The command's output directory, created and locked (see mdmt_nas.outdir); a stale lock taken over is noted."""
    from mdmt_nas.outdir import claim

    held = claim(path, resume=resume, what=what)
    if held.note:
        console.print(f"[yellow]note: {held.note}[/yellow]", highlight=False, soft_wrap=True)
    return held


def resume_command(out: Path) -> str:
    """This invocation's command line with `--output OUT --resume` (what to run to continue it)."""
    import shlex

    from mdmt_nas.cli.app import ARGV

    args = [a for a in ARGV if a != "--debug"]
    if not any(a in ("--output", "-o") or a.startswith("--output=") for a in args):
        args += ["--output", shown_path(out)]
    if "--resume" not in args:
        args.append("--resume")
    return "mdmt-nas " + shlex.join(args)


def on_interrupt(note) -> None:
    """Lines to print if the command is interrupted (Ctrl-C, SIGTERM): `note()` -> list of lines."""
    from mdmt_nas.cli.app import INTERRUPT_NOTES

    INTERRUPT_NOTES.append(note)


def default_output(kind: str, name: str) -> Path:
    return Path("runs") / f"{kind}-{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def fmt(v: float, digits: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def metrics_table(valid, test, title: str) -> Table:
    """Per-(domain, task) AUC/logloss table with a mean row."""
    table = Table(title=title)
    for col in ("domain", "task", "rows (test)", "pos. rate", "valid AUC", "test AUC", "test logloss"):
        table.add_column(col, justify="right" if col not in ("domain", "task") else "left")
    vrows = valid.table_rows()
    trows = test.table_rows() if test is not None else [None] * len(vrows)
    for v, t in zip(vrows, trows):
        table.add_row(
            str(v["domain"]),
            str(v["task"]),
            str(t["rows"]) if t else "-",
            fmt(t["positive_rate"], 3) if t else "-",
            fmt(v["auc"]),
            fmt(t["auc"]) if t else "-",
            fmt(t["logloss"]) if t else "-",
        )
    table.add_section()
    table.add_row(
        "mean",
        "",
        "",
        "",
        fmt(valid.mean_auc),
        fmt(test.mean_auc) if test else "-",
        fmt(test.mean_logloss) if test else "-",
        style="bold",
    )
    return table


def print_model(publication) -> None:
    """The MLflow model a train or search run logged (or why none was), one line."""
    if publication is None:
        return
    if publication.logged is not None:
        lm = publication.logged
        reg = f"; registered as models:/{lm.registered_name}/{lm.version}" if lm.registered_name else ""
        console.print(
            f"MLflow model: {lm.model_uri} (raw feature rows in, one probability per task out{reg})",
            highlight=False,
            soft_wrap=True,
        )
    elif publication.error:
        console.print(f"[yellow]no MLflow model logged: {publication.error}[/yellow]", highlight=False, soft_wrap=True)


def say_result(cfg: ExperimentConfig, outcome, out: Path, ranks: int = 1) -> None:
    """The metrics table, speed and outputs of a finished training (`ranks`: its torchrun world size)."""
    r = outcome.result
    console.print(
        metrics_table(
            r.valid,
            r.test,
            f"{cfg.arch.name or cfg.arch.id}: per-(domain, task) metrics (best epoch {r.best_epoch + 1}/{r.epochs_run})",
        )
    )
    speed = (
        f"{r.rows_per_second:,.0f} rows/s"
        if ranks == 1
        else f"~{r.rows_per_second * ranks:,.0f} rows/s on {ranks} ranks"
    )
    console.print(
        f"params {r.num_params:,} | train {r.train_seconds:.1f}s ({speed}) | "
        f"latency {fmt(r.latency_ms_per_1k, 2)} ms/1k rows | mean test AUC {fmt(r.test.mean_auc)}"
    )
    console.print(
        f"outputs: {shown_path(out)}" + (f" | MLflow run {outcome.run_id}" if outcome.run_id else ""),
        highlight=False,
        soft_wrap=True,
    )
    print_model(outcome.model)
