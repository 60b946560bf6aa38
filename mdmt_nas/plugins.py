"""The plugin manager: built-in modules and entry points of group `mdmt_nas`.

Loading never lets one broken plugin take the tool down: a plugin that fails
to import, raises while registering, registers a taken name or implements an
unknown hook is recorded as a `PluginFailure` naming it, everything it
registered is dropped, and the healthy plugins stay usable.

At run time, `describe_component_error(exc, model)` names the component (and its
plugin and distribution) behind an exception, and `guard_shapes(model)` blames a
wrong output shape on the component that produced it (end of this module).

Environment switches:
  MDMT_NAS_DISABLE_PLUGINS=a,b   skip these plugins (entry-point, distribution or built-in names)
  MDMT_NAS_LOAD_PLUGINS=a,b      allow-list: load only these third-party plugins (entry-point or
                                 distribution names; empty string: none); built-ins always load
  MDMT_NAS_TRACE_HOOKS=1         print every hook call and registration to stderr
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from mdmt_nas import __version__, hookspecs
from mdmt_nas.components.table import HOOK_KINDS, base_of, shape_rule
from mdmt_nas.errors import DuplicateComponentError, PluginError, closest
from mdmt_nas.registry import Registry

GROUP = "mdmt_nas"
hookimpl = pluggy.HookimplMarker(GROUP)

#: Built-in plugin modules; each registers through the same hooks as a third party.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "mdmt_nas.builtin.basic",
    "mdmt_nas.builtin.baselines",
    "mdmt_nas.builtin.m3oe",
    "mdmt_nas.builtin.datasets",
    "mdmt_nas.builtin.spaces",
    "mdmt_nas.builtin.searchers",
    "mdmt_nas.builtin.cesaa",
    "mdmt_nas.builtin.hamur",
    "mdmt_nas.builtin.dephn",
    "mdmt_nas.builtin.pmtrec",
    "mdmt_nas.builtin.balancers",
)


@dataclass
class PluginInfo:
    name: str
    dist: str
    version: str
    module: str
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    components: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.dist,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "hooks": self.hooks,
            "components": [{"kind": k, "name": n} for k, n in self.components],
        }


@dataclass
class PluginFailure:
    plugin: str
    dist: str
    stage: str  # import | register | hook
    message: str
    detail: str = ""

    def __str__(self) -> str:
        verb = {"import": "Error importing", "register": "Error registering", "hook": "Invalid hook in"}[self.stage]
        hint = "" if "MDMT_NAS_DISABLE_PLUGINS=" in self.message else f"\n  (skip it with MDMT_NAS_DISABLE_PLUGINS={self.plugin})"
        return f'{verb} plugin "{self.plugin}" (distribution {self.dist}): {self.message}{hint}'

    def as_dict(self) -> dict[str, str]:
        return {"plugin": self.plugin, "distribution": self.dist, "stage": self.stage, "message": self.message}


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


class PluginHost:
    """One pluggy manager plus the registry it filled and the failures it met."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: list[PluginInfo] = []
        self.failures: list[PluginFailure] = []
        self.trace = os.environ.get("MDMT_NAS_TRACE_HOOKS", "") not in ("", "0", "false")
        if self.trace:
            self.pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
            self.pm.enable_tracing()

    # -- loading -------------------------------------------------------------------
    def load(self, use_entry_points: bool = True, extra: list[tuple[str, Any]] | None = None) -> "PluginHost":
        disabled = _env_list("MDMT_NAS_DISABLE_PLUGINS") or set()
        allowed = _env_list("MDMT_NAS_LOAD_PLUGINS")
        for modname in BUILTIN_PLUGINS:
            short = modname.rsplit(".", 1)[-1]
            if short in disabled or modname in disabled:
                continue
            try:
                module = importlib.import_module(modname)
            except ModuleNotFoundError as exc:
                if exc.name == modname:  # built-in family not shipped in this build
                    continue
                self._fail(short, "mdmt-nas", "import", exc)
                continue
            except Exception as exc:  # a broken built-in must not hide the rest
                self._fail(short, "mdmt-nas", "import", exc)
                continue
            self._add(short, module, "mdmt-nas", __version__, builtin=True)
        if use_entry_points:
            for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
                dist = ep.dist.name if ep.dist else "?"
                names = {ep.name, dist}  # the switches accept the plugin or the distribution name
                if names & disabled or (allowed is not None and not names & allowed):
                    continue
                version = ep.dist.version if ep.dist else "?"
                try:
                    plugin = ep.load()
                except BaseException as exc:  # SystemExit/KeyboardInterrupt-like misbehaviour too
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    self._fail(ep.name, dist, "import", exc)
                    continue
                self._add(ep.name, plugin, dist, version, builtin=False)
        for name, plugin in extra or []:
            self._add(name, plugin, "(in-process)", "-", builtin=False)
        return self

    def _fail(self, plugin: str, dist: str, stage: str, exc: BaseException | str) -> None:
        if isinstance(exc, BaseException):
            msg = f"{type(exc).__name__}: {exc}"
            detail = "".join(traceback.format_exception(exc))
        else:
            msg, detail = exc, ""
        self.failures.append(PluginFailure(plugin, dist, stage, msg, detail))

    def _add(self, name: str, plugin: Any, dist: str, version: str, builtin: bool) -> None:
        try:
            self.pm.register(plugin, name=name)
        except ValueError as exc:  # already registered under another name
            self._fail(name, dist, "register", exc)
            return
        except pluggy.PluginValidationError as exc:
            self._fail(name, dist, "hook", exc)
            return
        problem = self._hook_problems(plugin)
        if problem:
            self.pm.unregister(name=name)
            self._fail(name, dist, "hook", problem)
            return
        info = PluginInfo(name, dist, version, getattr(plugin, "__name__", type(plugin).__name__), builtin)
        for hook_name, kind in HOOK_KINDS.items():
            impl = getattr(plugin, hook_name, None)
            if impl is None or not hasattr(impl, f"{GROUP}_impl"):
                continue
            info.hooks.append(hook_name)

            def register(obj: Any, name_: str | None = None, *, _kind: str = kind, **kw: Any) -> None:
                cname = kw.pop("name", name_) or _component_name(obj, _kind)
                if kw:
                    raise TypeError(f"register() got unexpected keyword argument(s) {', '.join(kw)}")
                _check_kind(obj, _kind, cname)
                self.registry.add(_kind, cname, obj, name, dist, version)
                info.components.append((_kind, cname))
                if self.trace:
                    print(f"[mdmt-nas] {name}.{hook_name} registered {_kind} {cname!r}", file=sys.stderr)

            if self.trace:
                print(f"[mdmt-nas] calling {name}.{hook_name}(register) from {info.module}", file=sys.stderr)
            try:
                impl(register=register)
            except DuplicateComponentError as exc:
                self._fail(name, dist, "register", exc)
                self._drop(name)
                return
            except Exception as exc:
                self._fail(name, dist, "register", f"{hook_name} raised {type(exc).__name__}: {exc}{_where(exc)}")
                self.failures[-1].detail = traceback.format_exc()
                self._drop(name)
                return
        self.plugins.append(info)
        if self.trace:
            print(f"[mdmt-nas] loaded plugin {name!r} ({dist} {version}): {len(info.components)} component(s)", file=sys.stderr)

    def _drop(self, name: str) -> None:
        self.registry.remove_plugin(name)
        self.pm.unregister(name=name)

    def _unknown_hooks(self, plugin: Any) -> list[str]:
        marker = f"{GROUP}_impl"
        return [
            attr
            for attr in dir(plugin)
            if hasattr(getattr(plugin, attr, None), marker) and attr not in HOOK_KINDS
        ]

    def _hook_problems(self, plugin: Any) -> str:
        """Misspelt hooks (pluggy's check_pending, at load time) and hooks missing @hookimpl."""
        unknown = self._unknown_hooks(plugin)
        if unknown:
            hints = []
            for h in unknown:
                near = closest(h, HOOK_KINDS)
                hints.append(f"{h!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
            return f"implements unknown hook(s) {', '.join(hints)}; hooks: {', '.join(HOOK_KINDS)}"
        unmarked = [h for h in HOOK_KINDS if callable(getattr(plugin, h, None)) and not hasattr(getattr(plugin, h), f"{GROUP}_impl")]
        if unmarked:
            return (
                f"function(s) {', '.join(repr(h) for h in unmarked)} are not marked as hooks; "
                "decorate them with @hookimpl (from mdmt_nas.plugins import hookimpl)"
            )
        return ""

def _component_name(obj: Any, kind: str) -> str:
    if kind == "space" and isinstance(obj, (str, Path)):
        return Path(obj).stem
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{kind} {obj!r} has no `name`; set a class attribute or pass register(obj, name=...)")
    return name


def _check_kind(obj: Any, kind: str, name: str) -> None:
    """Neural components must subclass their kind's interface (caught at load time, not mid-search)."""
    base = base_of(kind)
    if base is None:
        return
    if not (isinstance(obj, type) and issubclass(obj, base)):
        what = obj.__name__ if isinstance(obj, type) else repr(obj)
        raise TypeError(f"{kind} {name!r} is {what}, which is not a subclass of mdmt_nas.components.{base.__name__}")


def _where(exc: BaseException) -> str:
    """' (at file:line)' of the innermost frame of an exception, to point at the plugin's code."""
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f" (at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})"


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _HOST
    if _HOST is None:
        _HOST = PluginHost().load()
    return _HOST


def get_registry() -> Registry:
    return get_host().registry


def reset(host: PluginHost | None = None) -> None:
    """Forget the loaded plugins (tests, or after installing a plugin in-process)."""
    global _HOST
    _HOST = host


# -- fault attribution: which plugin's component broke a model? -----------------------------
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
    return {e.obj: ComponentRef(e.kind, e.name, e.plugin, e.dist, e.version) for e in registry.entries() if isinstance(e.obj, type)}


def component_map(model: Any, registry: Registry | None = None) -> dict[int, ComponentRef]:
    """id(module) -> ComponentRef for every registered component (and expert bank) inside `model`."""
    by_class = _class_refs(registry if registry is not None else get_registry())
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
                reg = registry if registry is not None else get_registry()
                if ("expert", ename) in reg:
                    e = reg.entry("expert", ename)
                    found[id(bank)] = ComponentRef("expert", ename, e.plugin, e.dist, e.version, f"{path}.banks.{i}" if path else f"banks.{i}")
    return found


def find_culprit(exc: BaseException, model: Any = None, registry: Registry | None = None) -> ComponentRef | None:
    """The innermost registered component on the traceback of `exc` (None if no component was involved).

    Looks at `self` (forward, __init__) and `cls` (classmethods such as `bank`) of
    each frame, innermost first; `model` maps expert banks to their expert names.
    """
    if isinstance(exc, ComponentFailure):
        return exc.component
    reg = registry if registry is not None else get_registry()
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
