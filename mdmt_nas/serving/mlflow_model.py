"""Log a trained model to MLflow as a raw-row pyfunc model, and register it.

`log_serving_model` is the one call `train` and the search runner make: it
exports the model to a `torch.export` program, and logs an MLflow model whose
code is `pyfunc_model.py` (a file that needs no mdmt_nas), whose artifacts are
the program and serving.json (schema + encoding), with a signature over the
raw feature columns and an input example of raw rows. With `register_as` the
model is also registered in the MLflow Model Registry under that name
(a new version each time).

    mlflow models serve -m models:/NAME/1 --env-manager local --host 127.0.0.1 --port 5001
    curl -H 'Content-Type: application/json' 127.0.0.1:5001/invocations \
         -d '{"dataframe_records": [{"domain": "domain_0", "f0": 3, "x0": 0.5}]}'
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from mdmt_nas.arch import Architecture
from mdmt_nas.data.schema import Schema

CODE_FILE = Path(__file__).with_name("pyfunc_model.py")
ARTIFACT_NAME = "model"


@dataclass
class LoggedModel:
    model_uri: str
    registered_name: str | None = None
    version: str | None = None


def identity_encoding(schema: Schema) -> dict[str, Any]:
    """The encoding of pre-encoded data (no raw table was seen): sparse columns hold ids, dense columns
    normalised values, the domain column the domain names."""
    return {
        "domain": {"column": schema.domain, "type": "string", "names": None},
        "sparse": [{"column": f.name, "type": "long", "vocab": None} for f in schema.sparse],
        "dense": [{"column": c, "mean": 0.0, "std": 1.0} for c in schema.dense],
        "domains": list(schema.domain_names),
        "tasks": list(schema.tasks),
    }


def requirements() -> list[str]:
    """What the pyfunc needs at run time: torch (the same version: .pt2 programs are versioned), pandas, numpy, mlflow."""
    import mlflow
    import numpy
    import pandas
    import torch

    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"pandas=={pandas.__version__}",
        f"numpy=={numpy.__version__}",
    ]


class _Context:
    def __init__(self, artifacts: dict[str, str]):
        self.artifacts = artifacts


def log_serving_model(
    tracker: Any,
    run_id: str | None,
    model: nn.Module,
    arch: Architecture,
    encoding: dict[str, Any] | None,
    register_as: str | None = None,
) -> LoggedModel | None:
    """Export `model` and log it into MLflow run `run_id` as a raw-row pyfunc (see the module docstring)."""
    if not run_id or not getattr(tracker, "enabled", True):
        return None
    import mlflow
    from mlflow.models import Model, infer_signature

    from mdmt_nas.serving.export import export_loaded
    from mdmt_nas.serving.pyfunc_model import RawScoresModel, input_example

    _ = tracker.client  # sets the tracking URI mlflow's model logging uses
    schema: Schema = model.schema
    encoding = encoding or identity_encoding(schema)
    was_training = model.training
    with tempfile.TemporaryDirectory(prefix="mdmt-nas-model-") as tmp:
        info = export_loaded(model, arch, tmp, encoding, formats=("pt2",))
        artifacts = {"program": str(info.files["pt2"]), "serving": str(info.files["serving"])}
        example = input_example(encoding)
        scorer = RawScoresModel()
        scorer.load_context(_Context(artifacts))
        signature = infer_signature(example, scorer.predict(None, example))
        logged = Model.log(
            artifact_path=None,
            name=ARTIFACT_NAME,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            python_model=str(CODE_FILE),
            artifacts=artifacts,
            signature=signature,
            input_example=example,
            pip_requirements=requirements(),
            metadata={
                "mdmt_nas": {"arch_id": arch.id, "format": json.loads(Path(artifacts["serving"]).read_text())["format"]}
            },
            registered_model_name=register_as,
            flavor_name="pyfunc.ModelFromCode",
        )
    model.train(was_training)
    version = getattr(logged, "registered_model_version", None)
    return LoggedModel(logged.model_uri, register_as, str(version) if version is not None else None)


@dataclass
class Publication:
    """What `publish` did: the logged (and registered) model, or why no model was logged."""

    logged: LoggedModel | None = None
    error: str | None = None
    encoding_file: Path | None = None


def publish(
    tracker: Any,
    run_id: str | None,
    model: nn.Module,
    arch: Architecture,
    splits: Any,
    tracking: Any,
    out_dir: Path | None = None,
) -> Publication:
    """Write encoding.json beside the weights in `out_dir` and log the model into run `run_id`.

    Logging follows `tracking.log_model` and registers under `tracking.register_model` (if set). A model
    that cannot be exported does not fail the training it belongs to: the run gets a tag
    `mdmt_nas.model_error` and `Publication.error` says why; with a registry name it is an error.
    """
    from mdmt_nas.errors import UserError
    from mdmt_nas.serving.export import write_text_atomic

    encoder = getattr(splits, "encoder", None)
    encoding = encoder.serving_spec() if encoder is not None else None
    pub = Publication()
    if out_dir is not None and encoding is not None:
        pub.encoding_file = Path(out_dir) / "encoding.json"
        write_text_atomic(pub.encoding_file, json.dumps(encoding, indent=1) + "\n")
    if not run_id or not getattr(tracker, "enabled", False) or not getattr(tracking, "log_model", True):
        return pub
    register = getattr(tracking, "register_model", None)
    try:
        with _quiet_mlflow():
            pub.logged = log_serving_model(tracker, run_id, model, arch, encoding, register)
    except Exception as exc:  # noqa: BLE001 - the training is done and saved; a model that cannot be logged must not lose it
        reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {' '.join(str(exc).split())[:600]}"
        if register:
            raise UserError(f"cannot register the model as {register!r}: {reason}") from None
        pub.error = reason
        tracker.set_tags(run_id, {"mdmt_nas.model_error": reason[:5000]})  # the run has ended: written before this returns
    return pub


def publish_dir(tracker: Any, run_id: str | None, out_dir: Path, splits: Any, tracking: Any) -> Publication:
    """`publish` for the model a search left in `out_dir` (arch.json, weights.pt, schema.json)."""
    from mdmt_nas.serving.export import load_trained

    out_dir = Path(out_dir)
    if not (out_dir / "weights.pt").exists():
        return Publication(error="no weights were kept for the best architecture (search.retrain is off)")
    model, arch, _ = load_trained(out_dir / "arch.json", out_dir / "weights.pt")
    return publish(tracker, run_id, model, arch, splits, tracking, out_dir)


class _quiet_mlflow:
    """MLflow's INFO lines and artifact progress bars while a model is logged (they mean nothing to a user of train)."""

    def __enter__(self) -> None:
        import logging
        import os
        import warnings

        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")  # hints about type hints and integer columns: the signature is given explicitly

        self._logger = logging.getLogger("mlflow")
        self._level = self._logger.level
        self._logger.setLevel(logging.WARNING)
        self._env = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"

    def __exit__(self, *exc: Any) -> None:
        import os

        self._logger.setLevel(self._level)
        self._warnings.__exit__(*exc)
        if self._env is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = self._env
