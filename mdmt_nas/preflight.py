"""Checks of a command's inputs before any data is touched: the architecture against the registry, the dataset's params.

`mdmt-nas train` on a 10M-row file used to load the whole dataset (minutes, GBs)
before it reported a misspelt expert name -- and without the file it was in.
`check_experiment(config)` runs right after the config is read: every component
of the architecture is looked up and its params validated (the same
`Registry.resolve` the model builder uses, without a schema), the dataset's
name and params are validated, and every error line names the input it came
from -- the config file, the `--arch` file or the `--set` item -- in the form
`file: path: problem (hint)`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from mdmt_nas.arch import Architecture, ComponentSpec
from mdmt_nas.config import ExperimentConfig
from mdmt_nas.errors import ConfigError, UserError

_INDEX = re.compile(r"\[(\d+)\]")


def components(arch: Architecture) -> Iterator[tuple[str, ComponentSpec, str]]:
    """(kind, spec, where) of every component an architecture names, `where` as in the model builder's errors."""
    for attr, kind in (("input_adapter", "adapter"), ("adapter", "adapter"), ("bottom", "expert")):
        spec = getattr(arch, attr)
        if spec is not None:
            yield kind, spec, f"arch.{attr}"
    groups = arch.groups()
    for g, group in groups.items():
        for i, spec in enumerate(group.experts):
            yield "expert", spec, f"arch.{g}.experts[{i}]"
        yield "fusion", group.fusion, f"arch.{g}.fusion"
    if groups:
        yield "gate", arch.gate, "arch.gate"
    yield "fusion", arch.fusion, "arch.fusion"
    yield "tower", arch.tower, "arch.tower"
    yield "balancer", arch.balancer, "arch.balancer"


def _loc(path: str) -> tuple[Any, ...]:
    """'arch.shared.experts[0].params.hidden' -> ('arch', 'shared', 'experts', 0, 'params', 'hidden')."""
    out: list[Any] = []
    for part in _INDEX.sub(r".\1", path).split("."):
        if part:
            out.append(int(part) if part.isdigit() else part)
    return tuple(out)


def blamed(config: ExperimentConfig, exc: UserError) -> UserError:
    """`exc` with each `path: problem` line prefixed by the input that set `path` (file, --arch, --set item)."""
    origin = config.origin
    lines = []
    for line in str(exc).splitlines():
        head = line.split(":", 1)[0].strip()
        if head.startswith(("arch", "dataset", "search", "train", "tracking")) and " " not in head:
            lines.append(f"{origin.source_of(_loc(head))}: {line}")
        else:
            lines.append(line)
    out = type(exc).__new__(type(exc))
    out.__dict__.update(exc.__dict__)
    Exception.__init__(out, "\n".join(lines))
    return out


def check_arch(config: ExperimentConfig, registry: Any = None) -> None:
    """Every component of `config.arch` is registered and its params validate (ConfigError naming the file and path)."""
    arch = config.arch
    if arch is None:
        return
    if registry is None:
        from mdmt_nas.plugins import get_registry

        registry = get_registry()
    for kind, spec, where in components(arch):
        try:
            cls, _ = registry.resolve(kind, spec, where)
        except UserError as exc:
            raise blamed(config, exc) from None
        site = getattr(cls, "site", None)
        if where == "arch.input_adapter" and site not in (None, "fields"):
            raise blamed(
                config,
                ConfigError(
                    f"arch.input_adapter: adapter {spec.name!r} works on hidden vectors (site {site!r}); "
                    "use it in `adapter` with adapter_sites, or pick a fields adapter"
                ),
            )
        if where == "arch.adapter" and site not in (None, "hidden"):
            raise blamed(
                config,
                ConfigError(
                    f"arch.adapter: adapter {spec.name!r} works on per-field embeddings (site 'fields'); "
                    "use it as input_adapter"
                ),
            )


def check_dataset(config: ExperimentConfig) -> None:
    """The dataset is registered and its params validate, before it is loaded."""
    from mdmt_nas.data.loading import make_dataset

    try:
        make_dataset(config.dataset.name, config.dataset.params)
    except UserError as exc:
        raise blamed(config, exc) from None


def check_experiment(config: ExperimentConfig) -> None:
    """All of the above: what `train` and `search` run right after reading the config (loads the plugins)."""
    check_dataset(config)
    check_arch(config)
