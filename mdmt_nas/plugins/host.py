"""The plugin host: one pluggy manager loading the built-in modules and the entry points of group `mdmt_nas`.

Loading never lets one broken plugin take the tool down: a plugin that fails
to import, raises while registering, registers a taken name or implements an
unknown hook is recorded as a `PluginFailure` naming it, everything it
registered is dropped, and the healthy plugins stay usable.

Which plugin's component broke a running model is found in blame.py.

Environment switches:
  MDMT_NAS_DISABLE_PLUGINS=a,b   skip these plugins (entry-point, distribution or built-in names)
  MDMT_NAS_LOAD_PLUGINS=a,b      allow-list: load only these third-party plugins (entry-point or
                                 distribution names; empty string: none); built-ins always load
  MDMT_NAS_PREFER=kind:name=p,.. a name several plugins register (unusable until resolved) is plugin p's;
                                 `name=p` applies to every kind
  MDMT_NAS_TRACE_HOOKS=1         print every hook call and registration to stderr

A name in these switches that matches no installed plugin is a warning with the closest names (a typo must
not leave a plugin silently enabled).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from mdmt_nas import __version__
from mdmt_nas.components.table import HOOK_KINDS, base_of
from mdmt_nas.errors import DuplicateComponentError, closest
from mdmt_nas.errors import raised_at as _where
from mdmt_nas.plugins import hookspecs
from mdmt_nas.plugins.hookspecs import GROUP, hookimpl
from mdmt_nas.plugins.registry import PREFER_VAR, Patterns, Registry

__all__ = [
    "BUILTIN_PLUGINS",
    "GROUP",
    "PluginFailure",
    "PluginHost",
    "PluginInfo",
    "get_host",
    "get_registry",
    "hookimpl",
    "list_components",
    "reset",
]

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
    "mdmt_nas.builtin.interactions",
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
        verb = {
            "import": "Error importing",
            "register": "Error registering",
            "hook": "Invalid hook in",
            "conflict": "Name conflict in",
        }[self.stage]
        hint = (
            ""
            if "MDMT_NAS_DISABLE_PLUGINS=" in self.message
            else f"\n  (skip it with MDMT_NAS_DISABLE_PLUGINS={self.plugin})"
        )
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
        #: misconfigurations that do not stop anything (an unknown name in a switch), one line each
        self.warnings: list[str] = []
        self.trace = os.environ.get("MDMT_NAS_TRACE_HOOKS", "") not in ("", "0", "false")
        if self.trace:
            self.pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
            self.pm.enable_tracing()

    # -- loading -------------------------------------------------------------------
    def load(self, use_entry_points: bool = True, extra: list[tuple[str, Any]] | None = None) -> PluginHost:
        disabled = _env_list("MDMT_NAS_DISABLE_PLUGINS") or set()
        allowed = _env_list("MDMT_NAS_LOAD_PLUGINS")
        installed = {m.rsplit(".", 1)[-1] for m in BUILTIN_PLUGINS} | set(BUILTIN_PLUGINS)
        if use_entry_points:
            installed |= {
                n for ep in entry_points(group=GROUP) for n in (ep.name, ep.dist.name if ep.dist else ep.name)
            }
        self._check_names("MDMT_NAS_DISABLE_PLUGINS", disabled, installed)
        self._check_names("MDMT_NAS_LOAD_PLUGINS", allowed or set(), installed)
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
        self._resolve_conflicts()
        return self

    def _check_names(self, var: str, names: set[str], installed: set[str]) -> None:
        short = sorted(n for n in installed if "." not in n)
        for n in sorted(names - installed):
            near = closest(n, short)
            hint = f"did you mean {', '.join(repr(x) for x in near)}?" if near else f"installed: {', '.join(short)}"
            self.warnings.append(
                f"{var} names {n!r}, which is no installed plugin ({hint}); `mdmt-nas plugins` lists them"
            )

    def _resolve_conflicts(self) -> None:
        """Apply MDMT_NAS_PREFER; a name several plugins registered and nobody picked is a failure naming all of them."""
        for item in sorted(_env_list(PREFER_VAR) or set()):
            key, _, plugin = item.partition("=")
            kind, _, name = key.rpartition(":")
            if not plugin or not name or (kind and kind not in self.registry._entries):
                self.warnings.append(
                    f"{PREFER_VAR}: {item!r} is not KIND:NAME=PLUGIN (or NAME=PLUGIN), e.g. expert:mlp=basic"
                )
                continue
            self.registry.prefer(kind or None, name, plugin)
            kinds = [kind] if kind else list(self.registry._entries)
            contenders = [e for k in kinds for e in self.registry.conflicts().get((k, name), [])]
            if not contenders:
                self.warnings.append(
                    f"{PREFER_VAR}: no two plugins register {key!r}; nothing to pick (remove {item!r})"
                )
            elif not any(plugin in (e.plugin, e.dist) for e in contenders):
                near = closest(plugin, [e.plugin for e in contenders])
                self.warnings.append(
                    f"{PREFER_VAR}: {plugin!r} does not register {key!r}; its plugins are "
                    f"{', '.join(repr(e.plugin) for e in contenders)}"
                    + (f" (did you mean {near[0]!r}?)" if near else "")
                )
        for (kind, name), contenders in self.registry.conflicts().items():
            if self.registry.preferred(kind, name) is None:
                last = contenders[-1]
                self._fail(last.plugin, last.dist, "conflict", str(self.registry.conflict_error(kind, name)))

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

            def register(
                obj: Any, name_: str | None = None, *, _kind: str = kind, deprecated_names: Any = (), **kw: Any
            ) -> None:
                cname = kw.pop("name", name_) or _component_name(obj, _kind)
                if kw:
                    raise TypeError(f"register() got unexpected keyword argument(s) {', '.join(kw)}")
                if isinstance(deprecated_names, str):  # one old name, not its letters
                    deprecated_names = (deprecated_names,)
                _check_kind(obj, _kind, cname)
                self.registry.add(_kind, cname, obj, name, dist, version)
                for old in deprecated_names:
                    self.registry.add_alias(_kind, old, cname, name, dist, version)
                info.components.append((_kind, cname))
                if self.trace:
                    olds = f" (deprecated names: {', '.join(map(repr, deprecated_names))})" if deprecated_names else ""
                    print(f"[mdmt-nas] {name}.{hook_name} registered {_kind} {cname!r}{olds}", file=sys.stderr)

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
            print(
                f"[mdmt-nas] loaded plugin {name!r} ({dist} {version}): {len(info.components)} component(s)",
                file=sys.stderr,
            )

    def _drop(self, name: str) -> None:
        self.registry.remove_plugin(name)
        self.pm.unregister(name=name)

    def _unknown_hooks(self, plugin: Any) -> list[str]:
        marker = f"{GROUP}_impl"
        return [attr for attr in dir(plugin) if hasattr(getattr(plugin, attr, None), marker) and attr not in HOOK_KINDS]

    def _hook_problems(self, plugin: Any) -> str:
        """Misspelt hooks (pluggy's check_pending, at load time) and hooks missing @hookimpl."""
        unknown = self._unknown_hooks(plugin)
        if unknown:
            hints = []
            for h in unknown:
                near = closest(h, HOOK_KINDS)
                hints.append(f"{h!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
            return f"implements unknown hook(s) {', '.join(hints)}; hooks: {', '.join(HOOK_KINDS)}"
        unmarked = [
            h
            for h in HOOK_KINDS
            if callable(getattr(plugin, h, None)) and not hasattr(getattr(plugin, h), f"{GROUP}_impl")
        ]
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


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _HOST
    if _HOST is None:
        _HOST = PluginHost().load()
    return _HOST


def get_registry() -> Registry:
    return get_host().registry


def list_components(
    kind: str | None = None, pattern: Patterns = None, *, deprecated: bool = False, registry: Registry | None = None
) -> list[str]:
    """Sorted names of the registered components of `kind` (None: every kind) matching a shell-style pattern.

    `list_components("gate", "*topk*")` -> `["noisy_topk", ...]`; a list of patterns matches any of them;
    matching ignores case; `deprecated=True` adds deprecated names. The timm-style front of `Registry.names`,
    on the process-wide registry unless `registry` is given.
    """
    return (registry or get_registry()).names(kind, pattern, deprecated=deprecated)


def reset(host: PluginHost | None = None) -> None:
    """Forget the loaded plugins (tests, or after installing a plugin in-process)."""
    global _HOST
    _HOST = host
