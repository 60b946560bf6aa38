"""Files: those a user hands in (YAML/JSON, pydantic errors, shipped files) and those mdmt-nas writes (atomically).

Every config, architecture and space file is read by `load_yaml_or_json` (safe
loaders only, errors naming the file and line); every pydantic validation error
a user can cause is rendered by `config_error` as `source: path.to.field:
problem (hint)` lines; the example configs and search spaces that ship inside
the package (`mdmt_nas._examples`, `mdmt_nas._spaces`, see pyproject) are found
by `shipped_dir` (in a source checkout: the top-level folders).

Every file mdmt-nas writes (weights, checkpoints, architectures, leaderboards,
reports, plots, exports) goes through `atomic_file` / `atomic_path` and their
shorthands (`write_text`, `write_json`, `save_torch`, `save_figure`): the bytes
go to a temporary file beside the target, are flushed to disk, and the file is
renamed into place, so a reader never sees a half-written file. When the write
fails (a full disk, a read-only file system) the temporary file is removed, the
target keeps its old content, and a `StorageError` says what failed where
(`no space left on device while writing runs/x/weights.pt`).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import tempfile
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import yaml
from pydantic import BaseModel, ValidationError

from mdmt_nas.errors import ConfigError, MdmtNasError, StorageError, closest

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
        raise yaml_error(exc, str(path)) from None


def yaml_error(exc: yaml.YAMLError, source: str, lines: bool = True) -> ConfigError:
    """A YAML parse error as `source:line:col: problem`; a `!!python/...` tag is named as what it is."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark and lines else source
    problem = getattr(exc, "problem", None) or str(exc)
    tag = python_tag(problem)
    if tag:
        return ConfigError(
            f"{where}: the Python tag {tag} is not allowed: configs, spaces and architectures are plain YAML "
            "(mappings, lists, strings, numbers), never Python objects; write the value itself"
        )
    return ConfigError(f"{where}: invalid YAML: {problem}")


def python_tag(problem: str) -> str | None:
    """The `!!python/...` tag a safe loader refused ("could not determine a constructor for the tag ..."), else None."""
    marker = "tag:yaml.org,2002:python/"
    if marker not in problem:
        return None
    rest = problem[problem.index(marker) + len("tag:yaml.org,2002:") :]
    return "!!" + rest.split("'")[0].split()[0]


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


def config_error(
    exc: ValidationError,
    source: str = "",
    prefix: str = "",
    model: type[BaseModel] | None = None,
    unknown: str | None = None,
    blame: Callable[[tuple[Any, ...]], str] | None = None,
) -> ConfigError:
    """The one renderer of pydantic errors a user causes: `source: path.to.field: problem (hint)` lines.

    source: the file (or what stands for it); prefix: the path of the validated mapping inside it;
    model: the validated model, for unknown-key hints; unknown: the message for an unknown key
    when the allowed keys are named in it (component and searcher params), then without hints; blame: the source of
    each error by its location (config.ConfigOrigin.source_of: a `--set` item rather than the file it overrides).
    """
    lines = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        path = ".".join(str(p) for p in ((prefix,) if prefix else ()) + loc) or "(top level)"
        if unknown is not None:
            msg, hint = (unknown if err.get("type") == "extra_forbidden" else err.get("msg", "invalid")), ""
        else:
            msg, hint = _hinted(err, loc, model)
        src = blame(tuple(prefix.split(".") if prefix else ()) + loc) if blame is not None else source
        lines.append(f"{src}: {path}: {msg}{hint}" if src else f"{path}: {msg}{hint}")
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


# ------------------------------------------------------------------------------ writing files
def shown_path(path: str | Path) -> str:
    """How a path is printed: relative to the working directory when it is below it, else absolute (one rule for every message)."""
    p = Path(os.path.abspath(path))
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


#: the advice for the usual reasons a write fails
_WRITE_HINTS = {
    errno.ENOSPC: "free some space or choose another --output",
    errno.EDQUOT: "free some space or choose another --output",
    errno.EROFS: "choose an --output on a writable file system",
    errno.EACCES: "choose an --output you may write to",
    errno.EPERM: "choose an --output you may write to",
}


def storage_error(exc: OSError, path: str | Path, doing: str = "writing") -> StorageError:
    """`no space left on device while writing runs/x/weights.pt; free some space or choose another --output`."""
    what = (exc.strerror or os.strerror(exc.errno or 0) or type(exc).__name__).lower() if exc.errno else str(exc)
    hint = _WRITE_HINTS.get(exc.errno or 0, "check the disk and the permissions of the output directory")
    return StorageError(f"{what} while {doing} {shown_path(path)}; {hint}", path=Path(path), errno_=exc.errno)


def _disk_full(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` that replaces it when the block succeeds (for writers that want a path).

    On failure the temporary file is removed and `path` keeps its old content; an OSError (or a library's own error
    while the disk is full, such as torch's `unexpected pos`) becomes a StorageError naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise storage_error(exc, path) from None
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a result file gets the usual permissions
        os.replace(tmp, path)
    except OSError as exc:
        raise storage_error(exc, path) from None
    except Exception as exc:
        if not isinstance(exc, MdmtNasError) and _disk_full(
            path.parent
        ):  # e.g. torch's "[enforce fail at inline_container.cc] unexpected pos": a short write
            raise storage_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path) from exc
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", **open_kw: Any) -> Iterator[IO[Any]]:
    """An open temporary file beside `path`, flushed to disk and renamed over `path` when the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kw) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def write_text(path: str | Path, text: str) -> Path:
    with atomic_file(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | Path, data: Any, indent: int | None = 2, default: Callable[[Any], Any] | None = str) -> Path:
    return write_text(path, json.dumps(data, indent=indent, default=default) + "\n")


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_file(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def save_torch(obj: Any, path: str | Path) -> Path:
    """`torch.save` atomically: serialised in memory first, so a full disk is a plain OSError, not torch's `unexpected pos`."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_bytes(path, buf.getbuffer())


def save_figure(fig: Any, path: str | Path, **kw: Any) -> Path:
    """A matplotlib figure written atomically (the format from the file's suffix)."""
    path = Path(path)
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format=path.suffix.lstrip(".") or "png", **kw)
    return path
