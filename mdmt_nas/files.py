"""Files a user hands in: YAML/JSON loading, the one pydantic -> ConfigError renderer, and the files mdmt-nas ships.

Every config, architecture and space file is read by `load_yaml_or_json` (safe
loaders only, errors naming the file and line); every pydantic validation error
a user can cause is rendered by `config_error` as `source: path.to.field:
problem (hint)` lines; the example configs and search spaces that ship inside
the package (`mdmt_nas._examples`, `mdmt_nas._spaces`, see pyproject) are found
by `shipped_dir` (in a source checkout: the top-level folders).
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mdmt_nas.errors import ConfigError, closest

#: shipped data package -> its folder in the source tree
SHIPPED = {"mdmt_nas._examples": "examples", "mdmt_nas._spaces": "search_spaces"}


def load_yaml_or_json(path: str | Path) -> Any:
    """Parse a YAML or JSON file with safe loaders only; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML or JSON file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None


# ------------------------------------------------------------------------------ pydantic errors
def _first_model(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        m = _first_model(arg)
        if m is not None:
            return m
    return None


def _model_fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names of the fields allowed at a location (for unknown-key hints)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _first_model(fields[part].annotation)
    return list(getattr(current, "model_fields", {}) or {})


def _hinted(err: dict[str, Any], loc: tuple[Any, ...], model: type[BaseModel] | None) -> tuple[str, str]:
    """(message, hint) of one error of a config file: closest or allowed keys, a missing key, the value given."""
    msg = err.get("msg", "invalid")
    if err.get("type") == "extra_forbidden":
        allowed = _model_fields_at(model, loc[:-1]) if model else []
        near = closest(str(loc[-1]), allowed) if allowed else []
        if near:
            return "unknown key", f" (did you mean {near[0]!r}?)"
        return "unknown key", f" (allowed: {', '.join(allowed)})" if allowed else ""
    if err.get("type") == "missing":
        return msg, " (add this key)"
    if "input" in err and err.get("type") not in ("model_type",):
        shown = repr(err["input"])
        if len(shown) < 60:
            return msg, f" (got {shown})"
    return msg, ""


def config_error(exc: ValidationError, source: str = "", prefix: str = "", model: type[BaseModel] | None = None,
                 unknown: str | None = None) -> ConfigError:
    """The one renderer of pydantic errors a user causes: `source: path.to.field: problem (hint)` lines.

    source: the file (or what stands for it); prefix: the path of the validated mapping inside it;
    model: the validated model, for unknown-key hints; unknown: the message for an unknown key
    when the allowed keys are named in it (component and searcher params), then without hints.
    """
    lines = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        path = ".".join(str(p) for p in ((prefix,) if prefix else ()) + loc) or "(top level)"
        if unknown is not None:
            msg, hint = (unknown if err.get("type") == "extra_forbidden" else err.get("msg", "invalid")), ""
        else:
            msg, hint = _hinted(err, loc, model)
        lines.append(f"{source}: {path}: {msg}{hint}" if source else f"{path}: {msg}{hint}")
    return ConfigError("\n".join(lines))


# ------------------------------------------------------------------------------ shipped files
def shipped_dir(package: str) -> Path:
    """The folder of a shipped data package (`mdmt_nas._examples`, `mdmt_nas._spaces`), installed or in the source tree."""
    try:
        from importlib.resources import files

        path = Path(str(files(package)))
        if path.is_dir():
            return path
    except (ModuleNotFoundError, TypeError):  # not installed as a package
        pass
    return Path(__file__).resolve().parent.parent / SHIPPED[package]


def shipped_example(name: str | Path) -> Path | None:
    """The shipped example config `name` (`m3oe`, `examples/m3oe.yaml`), None if there is none."""
    path = shipped_dir("mdmt_nas._examples") / (Path(name).stem + ".yaml")
    return path if path.is_file() else None
