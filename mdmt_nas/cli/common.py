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

console = make_console()


def build_config(config: Path | None, arch: Path | None, dataset: str | None, sets: list[str] | None,
                 tracking_uri: str | None = None, seed: int | None = None, no_track: bool = False,
                 register_model: str | None = None) -> ExperimentConfig:
    overrides = list(sets or [])
    if dataset:
        overrides.insert(0, f"dataset.name={dataset}")
    if tracking_uri:
        overrides.append(f"tracking.uri={tracking_uri}")
    if seed is not None:
        overrides.append(f"train.seed={seed}")
    if no_track:
        if register_model:
            raise UserError("--register-model needs MLflow tracking; drop --no-track")
        overrides.append("tracking.enabled=false")
    if register_model:
        overrides += ["tracking.log_model=true", f"tracking.register_model={json.dumps(register_model)}"]
    return load_config(config, overrides, arch_path=arch)


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
        table.add_row(str(v["domain"]), str(v["task"]), str(t["rows"]) if t else "-",
                      fmt(t["positive_rate"], 3) if t else "-", fmt(v["auc"]),
                      fmt(t["auc"]) if t else "-", fmt(t["logloss"]) if t else "-")
    table.add_section()
    table.add_row("mean", "", "", "", fmt(valid.mean_auc), fmt(test.mean_auc) if test else "-", fmt(test.mean_logloss) if test else "-", style="bold")
    return table


def ensure_writable_dir(path: Path, resume: bool = False, what: str = "output directory") -> Path:
    """Create an output directory; refuse an existing non-empty one unless resuming."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} exists and is not a directory; choose another --output")
    if path.exists() and any(path.iterdir()) and not resume:
        raise UserError(f"{what} {path} already exists and is not empty; pass --resume to continue it or choose another --output")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"{what} {path} is not writable ({exc.strerror}); choose another --output") from None
    return path


def print_model(publication) -> None:
    """The MLflow model a train or search run logged (or why none was), one line."""
    if publication is None:
        return
    if publication.logged is not None:
        lm = publication.logged
        reg = f"; registered as models:/{lm.registered_name}/{lm.version}" if lm.registered_name else ""
        console.print(f"MLflow model: {lm.model_uri} (raw feature rows in, one probability per task out{reg})", highlight=False, soft_wrap=True)
    elif publication.error:
        console.print(f"[yellow]no MLflow model logged: {publication.error}[/yellow]", highlight=False, soft_wrap=True)
