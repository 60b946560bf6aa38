"""One training of one architecture, end to end: config -> data -> model -> metrics -> MLflow.

The CLI's `train` and the benchmark/search code call this; it owns no state.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from mdmt_nas.arch import Architecture
from mdmt_nas.config import ExperimentConfig
from mdmt_nas.data.tensors import Splits
from mdmt_nas.errors import ConfigError, UserError
from mdmt_nas.files import save_torch, write_json, write_text
from mdmt_nas.tracking import Tracker, flatten
from mdmt_nas.train import Trainer, TrainResult, train_architecture
from mdmt_nas.training_log import log_training, training_params


def load_splits(config: ExperimentConfig) -> Splits:
    """Load the configured dataset through the registry (params validated by the dataset)."""
    from mdmt_nas.data.loading import load_dataset

    return load_dataset(config.dataset.name, config.dataset.params)


def validate_arch(arch: Architecture, splits: Splits) -> None:
    """Build once on the schema to surface unknown names and bad params before any training."""
    from mdmt_nas.model import build_balancer, build_model

    build_model(arch, splits.schema)
    build_balancer(arch, splits.schema)


@dataclass
class TrainOutcome:
    result: TrainResult
    run_id: str | None
    output_dir: Path | None
    model: Any = None  # mdmt_nas.serving.mlflow_model.Publication: the MLflow model logged for this run


#: where an output directory records its MLflow run (so --resume re-opens it, even before the first checkpoint)
RUN_FILE = "mlflow_run.txt"
#: settings that may differ when a training is resumed (they do not change what is trained)
RESUMABLE_DIFFERENCES = ("train.progress", "train.threads", "tracking.")


def start_outputs(out: Path, config: ExperimentConfig) -> None:
    """What `train` writes before it loads any data: the architecture and the config it runs."""
    assert config.arch is not None
    config.arch.save(out / "arch.json")
    write_json(out / "config.json", config.model_dump(mode="json"))


def check_resume(out: Path, config: ExperimentConfig) -> None:
    """`train --resume` into `out`: there is a training to continue, run with the same config (else UserError)."""
    import json

    from mdmt_nas.checkpoint import CHECKPOINT
    from mdmt_nas.files import shown_path

    where = shown_path(out)
    if not (out / "config.json").is_file():
        raise UserError(f"--resume: {where} holds no training to continue (no config.json); run without --resume")
    if (out / "metrics.json").is_file() and not (out / CHECKPOINT).exists():
        raise UserError(
            f"--resume: the training in {where} has finished (metrics.json); nothing to continue. "
            "Choose another --output for a new training"
        )
    saved = flatten(json.loads((out / "config.json").read_text()))
    now = flatten(config.model_dump(mode="json"))
    diff = sorted(
        k for k in set(saved) | set(now) if saved.get(k) != now.get(k) and not k.startswith(RESUMABLE_DIFFERENCES)
    )
    if diff:
        shown = "; ".join(f"{k}: {saved.get(k, '(unset)')} then, {now.get(k, '(unset)')} now" for k in diff[:6])
        raise UserError(
            f"--resume: {where} was started with another config ({shown}); resume with the options it was started with "
            "(config.json there), or choose another --output"
        )


def run_training(
    config: ExperimentConfig,
    splits: Splits | None = None,
    output_dir: Path | None = None,
    tracker: Tracker | None = None,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    resume: bool = False,
    progress: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Train `config.arch` on `config.dataset`, log to MLflow, and save outputs to `output_dir`.

    With an output directory the training is resumable: schema.json at start, after every epoch checkpoint.pt and
    (when it is the best so far) weights.pt, written atomically; `resume` continues from checkpoint.pt under the same
    MLflow run. `progress` (a dict) is kept up to date with what is on disk (for the CLI's interruption message).
    Under torchrun (a process group is up, distributed.py) it trains data-parallel and writes nothing before the training
    has finished on every rank: no checkpoints, no early schema.json/mlflow_run.txt (no --resume then).
    """
    from mdmt_nas import distributed

    if config.arch is None:
        raise ConfigError("config: arch: no architecture given; add an `arch:` section or pass --arch FILE.json")
    splits = splits if splits is not None else load_splits(config)
    arch = config.arch
    validate_arch(arch, splits)
    tracker = tracker or Tracker(config.tracking)
    name = run_name or f"train-{arch.name or arch.id}"
    world = distributed.active()
    state, previous = _resume_state(output_dir, arch, splits) if resume and output_dir is not None else (None, None)
    if output_dir is not None and world is None:
        write_text(output_dir / "schema.json", splits.schema.model_dump_json(indent=2) + "\n")
    run_id = (
        previous
        if previous and tracker.reopen(previous)
        else tracker.start_run(name, parent_run_id, tags={"mdmt_nas.kind": "train", "arch_id": arch.id})
    )
    try:
        if output_dir is not None and run_id and world is None:
            write_text(output_dir / RUN_FILE, run_id + "\n")
        tracker.log_params_again(run_id, training_params(arch, config), reopened=run_id == previous)

        def per_epoch(epoch: int, record: dict[str, float]) -> None:
            tracker.log_metrics(run_id, {k: v for k, v in record.items() if k != "epoch"}, step=epoch)

        checkpoint, trainer = None, partial(distributed.DistributedTrainer, world=world) if world else None
        if output_dir is not None and world is None:
            from mdmt_nas.checkpoint import EpochCheckpoint

            checkpoint = EpochCheckpoint(output_dir, state, on_save=lambda tr: _note_progress(progress, tr, output_dir))
            if state is not None and progress is not None:
                progress.update(
                    epoch=state["loop"]["epoch"],
                    best_epoch=state["loop"]["best_epoch"],
                    best_auc=state["loop"]["best_auc"],
                )
        result = train_architecture(
            arch, splits, config.train, callbacks=[per_epoch], checkpoint=checkpoint, trainer=trainer or Trainer
        )
        log_training(tracker, run_id, result, config, params=False)
        if output_dir is not None:
            save_outputs(output_dir, result, config)
            if checkpoint is not None:
                checkpoint.path.unlink(missing_ok=True)  # finished: metrics.json and weights.pt are the result
            if progress is not None:
                progress["finished"] = True
    except BaseException as exc:
        tracker.end_failed(run_id, exc)  # KILLED on Ctrl-C, FAILED with the reason (e.g. a full disk) otherwise
        raise
    tracker.end_run(run_id, "FINISHED")
    from mdmt_nas.serving.mlflow_model import publish

    published = publish(tracker, run_id, result.model, arch, splits, config.tracking, output_dir)
    return TrainOutcome(result, run_id, output_dir, published)


def _resume_state(out: Path, arch: Architecture, splits: Splits) -> tuple[dict[str, Any] | None, str | None]:
    """The checkpoint to continue from (None: start over, e.g. interrupted in the first epoch) and the MLflow run to re-open."""
    from mdmt_nas.checkpoint import CHECKPOINT, load
    from mdmt_nas.files import shown_path

    saved_schema = out / "schema.json"
    if saved_schema.is_file() and saved_schema.read_text().strip() != splits.schema.model_dump_json(indent=2).strip():
        raise UserError(
            f"--resume: the data differs from the one {shown_path(out)} was trained on (its schema.json: columns, "
            "vocabularies, domains or tasks); resume on the same data, or choose another --output"
        )
    try:
        previous = (out / RUN_FILE).read_text().strip() or None
    except OSError:
        previous = None
    state = load(out / CHECKPOINT, arch.id) if (out / CHECKPOINT).exists() else None
    return state, previous


def _note_progress(progress: dict[str, Any] | None, trainer: Any, out: Path) -> None:
    if progress is not None:
        loop = trainer.loop
        progress.update(
            epoch=loop.epoch, epochs=trainer.cfg.epochs, best_epoch=loop.best_epoch, best_auc=loop.best_auc, out=out
        )


def save_outputs(out: Path, result: TrainResult, config: ExperimentConfig) -> None:
    result.arch.save(out / "arch.json")
    save_torch(result.model.state_dict(), out / "weights.pt")
    write_json(out / "config.json", config.model_dump(mode="json"))
    write_text(out / "schema.json", result.model.schema.model_dump_json(indent=2) + "\n")
    write_json(
        out / "metrics.json",
        {
            "summary": result.summary(),
            "valid": result.valid.to_dict(),
            "test": result.test.to_dict() if result.test else None,
            "history": result.history,
        },
        default=float,
    )
