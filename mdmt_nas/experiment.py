"""One training of one architecture, end to end: config -> data -> model -> metrics -> MLflow.

The CLI's `train` and the benchmark/search code call this; it owns no state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from mdmt_nas.arch import Architecture
from mdmt_nas.config import ExperimentConfig
from mdmt_nas.data.tensors import Splits
from mdmt_nas.errors import ConfigError
from mdmt_nas.tracking import Tracker, log_training
from mdmt_nas.train import TrainResult, train_architecture


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


def run_training(config: ExperimentConfig, splits: Splits | None = None, output_dir: Path | None = None,
                 tracker: Tracker | None = None, parent_run_id: str | None = None, run_name: str | None = None) -> TrainOutcome:
    """Train `config.arch` on `config.dataset`, log to MLflow, and save outputs to `output_dir`."""
    if config.arch is None:
        raise ConfigError("config: arch: no architecture given; add an `arch:` section or pass --arch FILE.json")
    splits = splits if splits is not None else load_splits(config)
    arch = config.arch
    validate_arch(arch, splits)
    tracker = tracker or Tracker(config.tracking)
    name = run_name or f"train-{arch.name or arch.id}"
    with tracker.run(name, parent_run_id, tags={"mdmt_nas.kind": "train", "arch_id": arch.id}) as run_id:
        def per_epoch(epoch: int, record: dict[str, float]) -> None:
            tracker.log_metrics(run_id, {k: v for k, v in record.items() if k != "epoch"}, step=epoch)

        result = train_architecture(arch, splits, config.train, callbacks=[per_epoch])
        log_training(tracker, run_id, result, config)
    if output_dir is not None:
        save_outputs(output_dir, result, config)
    from mdmt_nas.serving.mlflow_model import publish

    published = publish(tracker, run_id, result.model, arch, splits, config.tracking, output_dir)
    return TrainOutcome(result, run_id, output_dir, published)


def save_outputs(out: Path, result: TrainResult, config: ExperimentConfig) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result.arch.save(out / "arch.json")
    torch.save(result.model.state_dict(), out / "weights.pt")
    (out / "config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2) + "\n")
    (out / "schema.json").write_text(result.model.schema.model_dump_json(indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps({"summary": result.summary(), "valid": result.valid.to_dict(),
                                                  "test": result.test.to_dict() if result.test else None,
                                                  "history": result.history}, indent=2, default=float) + "\n")
