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
from mdmt_nas.errors import ConfigError, closest


def dataset_class(name: str) -> type[Dataset]:
    """The registered dataset class `name` (UnknownComponentError with suggestions otherwise)."""
    from mdmt_nas.plugins import get_registry

    return get_registry().get("dataset", name, where="dataset.name")


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (nested) model at `loc`, for unknown-key hints."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        ann = fields[part].annotation
        current = next(
            (a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
    return list(getattr(current, "model_fields", {}) or {})


def validation_error(exc: ValidationError, model: type[BaseModel], prefix: str = "dataset.params") -> ConfigError:
    """A pydantic error as `ConfigError` lines ``<prefix>.<field>: <problem>``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p != "__root__")
        where = f"{prefix}.{loc}" if loc else prefix
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            fields = _fields_at(model, tuple(err["loc"][:-1]))
            near = closest(str(err["loc"][-1]), fields)
            msg = "unknown parameter" + (
                f" (did you mean {near[0]!r}?)" if near else f" (valid: {', '.join(fields)})" if fields else ""
            )
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
