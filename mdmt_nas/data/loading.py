"""Datasets by name: registry look-up, parameter validation, loading.

The one entry point the trainer, searchers and CLI use. Parameter errors
come back as `ConfigError`s whose lines read ``dataset.params.<field>:
<problem>``, so a user can find the offending key in their config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from mdmt_nas.data.base import Dataset
from mdmt_nas.data.tensors import Splits
from mdmt_nas.errors import ConfigError


def dataset_class(name: str) -> type[Dataset]:
    """The registered dataset class `name` (UnknownComponentError with suggestions otherwise)."""
    from mdmt_nas.plugins import get_registry

    return get_registry().get("dataset", name, where="dataset.name")


def validation_error(exc: ValidationError, model: type[BaseModel], prefix: str = "dataset.params") -> ConfigError:
    """A pydantic error as `ConfigError` lines ``<prefix>.<field>: <problem>``."""
    fields = list(getattr(model, "model_fields", {}))
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p != "__root__")
        where = f"{prefix}.{loc}" if loc else prefix
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown parameter" + (f" (valid: {', '.join(fields)})" if len(err["loc"]) == 1 and fields else "")
        elif err["type"] == "missing":
            msg = "required parameter is missing"
        else:
            given = err.get("input")
            if not isinstance(given, (dict, list)) and given is not None:
                msg += f" (got {given!r})"
        lines.append(f"{where}: {msg}")
    return ConfigError("\n".join(lines))


def make_dataset(name: str, params: Mapping[str, Any] | BaseModel | None = None) -> Dataset:
    """An instance of dataset `name` with validated parameters (not loaded yet)."""
    cls = dataset_class(name)
    if isinstance(params, BaseModel):
        return cls(params)
    try:
        validated = cls.Params(**dict(params or {}))
    except ValidationError as exc:
        raise validation_error(exc, cls.Params) from None
    return cls(validated)


def load_dataset(name: str, params: Mapping[str, Any] | BaseModel | None = None) -> Splits:
    """Load dataset `name` with `params` (a dict as written in a config) into train/valid/test splits."""
    return make_dataset(name, params).load()
