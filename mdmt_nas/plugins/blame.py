"""Fault attribution: which registered component (and plugin) broke a running model, by exception or by shape.

`describe_component_error(exc, model)` names the component (and its plugin and
distribution) behind an exception; `attribute_error` wraps it as a
`ComponentFailure`; `guard_shapes(model)` blames a wrong output shape on the
component that produced it (the shape each kind promises is in the kinds table).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mdmt_nas.components.table import shape_rule
from mdmt_nas.errors import PluginError
from mdmt_nas.errors import raised_at as _where
from mdmt_nas.plugins.registry import Registry


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    from mdmt_nas.plugins.host import get_registry  # the loaded plugins (host imports this module)

    return get_registry()


@dataclass(frozen=True)
class ComponentRef:
    """A component instance inside a model, with the plugin that registered its class."""

    kind: str
    name: str
    plugin: str
    dist: str
    version: str
    path: str = ""  # module path inside the model, e.g. "levels.0.groups.shared.banks.0"

    def __str__(self) -> str:
        where = f" at model.{self.path}" if self.path else ""
        return f"{self.kind} {self.name!r} from plugin {self.plugin!r} (distribution {self.dist} {self.version}){where}"


class ComponentFailure(PluginError):
    """A component raised or broke its shape contract while a model ran; names the plugin."""

    def __init__(self, component: ComponentRef, problem: str):
        self.component, self.problem = component, problem
        super().__init__(
            f"{component} {problem}. Check it with `mdmt-nas plugins check {component.plugin}`, "
            f"or skip the plugin with MDMT_NAS_DISABLE_PLUGINS={component.plugin}"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across worker processes
        return (type(self), (self.component, self.problem))


def _class_refs(registry: Registry) -> dict[type, ComponentRef]:
    return {
        e.obj: ComponentRef(e.kind, e.name, e.plugin, e.dist, e.version)
        for e in registry.all_entries()
        if isinstance(e.obj, type)
    }


def component_map(model: Any, registry: Registry | None = None) -> dict[int, ComponentRef]:
    """id(module) -> ComponentRef for every registered component (and expert bank) inside `model`."""
    by_class = _class_refs(_registry(registry))
    found: dict[int, ComponentRef] = {}
    for path, module in model.named_modules():
        ref = by_class.get(type(module))
        if ref is not None:
            found[id(module)] = ComponentRef(ref.kind, ref.name, ref.plugin, ref.dist, ref.version, path)
        banks, names = getattr(module, "banks", None), getattr(module, "names", None)
        if banks is not None and isinstance(names, list):  # model.GroupRunner: bank i runs expert names[i]
            for i, (bank, ename) in enumerate(zip(banks, names)):
                if id(bank) in found:
                    continue
                reg = _registry(registry)
                if ("expert", ename) in reg:
                    e = reg.entry("expert", ename)
                    found[id(bank)] = ComponentRef(
                        "expert", ename, e.plugin, e.dist, e.version, f"{path}.banks.{i}" if path else f"banks.{i}"
                    )
    return found


def find_culprit(exc: BaseException, model: Any = None, registry: Registry | None = None) -> ComponentRef | None:
    """The innermost registered component on the traceback of `exc` (None if no component was involved).

    Looks at `self` (forward, __init__) and `cls` (classmethods such as `bank`) of
    each frame, innermost first; `model` maps expert banks to their expert names.
    """
    if isinstance(exc, ComponentFailure):
        return exc.component
    reg = _registry(registry)
    by_id = component_map(model, reg) if model is not None else {}
    by_class = _class_refs(reg)
    frames = [f for f, _ in traceback.walk_tb(exc.__traceback__)]
    for frame in reversed(frames):
        loc = frame.f_locals
        obj = loc.get("self")
        if obj is not None and id(obj) in by_id:
            return by_id[id(obj)]
        for cand in (type(obj) if obj is not None else None, loc.get("cls")):
            if isinstance(cand, type) and cand in by_class:
                return by_class[cand]
    return None


def describe_component_error(exc: BaseException, model: Any = None, registry: Registry | None = None) -> str:
    """One line for a failed trial: names the component and plugin at fault when there is one.

    >>> describe_component_error(exc, model)
    "expert 'bad' from plugin 'badplug' (distribution mdmt-nas-bad 0.1) at model.bottom raised
     RuntimeError: ... (at bad.py:12). Check it with `mdmt-nas plugins check badplug`, ..."
    """
    if isinstance(exc, ComponentFailure):
        return str(exc)
    ref = find_culprit(exc, model, registry)
    text = f"{type(exc).__name__}: {exc}"
    if ref is None:
        return text
    return str(ComponentFailure(ref, f"raised {text}{_where(exc)}"))


def attribute_error(exc: BaseException, model: Any = None, registry: Registry | None = None) -> BaseException:
    """`exc` wrapped as a ComponentFailure naming the culprit (chained), or `exc` itself if none."""
    if isinstance(exc, ComponentFailure):
        return exc
    ref = find_culprit(exc, model, registry)
    if ref is None:
        return exc
    wrapped = ComponentFailure(ref, f"raised {type(exc).__name__}: {exc}{_where(exc)}")
    wrapped.__cause__ = exc
    return wrapped


@contextmanager
def guard_shapes(model: Any, registry: Registry | None = None) -> Iterator[None]:
    """Check every component's output shape while the block runs; a violation raises ComponentFailure.

    Costs one Python hook per component call; use it around a trial's training
    so a wrong shape is blamed on the component that produced it, not on the
    component downstream that trips over it.
    """
    refs = component_map(model, registry)
    modules = {id(m): m for m in model.modules()}
    handles = []

    def make_hook(ref: ComponentRef, rule: Any) -> Any:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            want = rule(args, kwargs)
            if want is None:
                return
            got = tuple(out.shape) if hasattr(out, "shape") else None
            if got != want:
                shown = list(got) if got is not None else f"a {type(out).__name__}"
                raise ComponentFailure(ref, f"returned shape {shown}, expected {list(want)}")

        return hook

    for mid, ref in refs.items():
        module = modules[mid]
        handles.append(module.register_forward_hook(make_hook(ref, shape_rule(module)), with_kwargs=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def first_nonfinite(model: Any, run: Any, registry: Registry | None = None) -> tuple[str, ComponentRef | None] | None:
    """Run `run()` (a forward of `model`) with a hook on every module: the path of the first module whose output had a
    NaN/inf, and the registered component it is (or is inside), or None if every output was finite.

    Hooks fire as modules return, innermost first, so the first non-finite output is where the values went bad.
    """
    import torch

    refs = component_map(model, registry)
    paths = {id(m): p for p, m in model.named_modules()}
    by_path = {ref.path: ref for ref in refs.values()}
    found: list[str] = []

    def hook(module: Any, args: Any, out: Any) -> None:
        if found:
            return
        tensors = (
            [out]
            if isinstance(out, torch.Tensor)
            else [t for t in (out if isinstance(out, (tuple, list)) else ()) if isinstance(t, torch.Tensor)]
        )
        if any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in tensors):
            found.append(paths.get(id(module), ""))

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    if not found:
        return None
    path = found[0]
    probe = path
    while True:  # the component itself, or the nearest one it is part of
        if probe in by_path:
            return path, by_path[probe]
        if "." not in probe:
            return path, None
        probe = probe.rsplit(".", 1)[0]
