"""Name -> component class, per kind, filled by plugins through the hooks.

The registry remembers which plugin and distribution registered each name so
that listings and errors can name them. Listings take shell-style patterns
(`names("gate", "*topk*")`, like timm's `list_models`), and a renamed component
keeps its old name as a deprecated alias: looking the old name up gives the new
component with a `DeprecatedNameWarning` (a DeprecationWarning) naming both, so
architecture files written with the old name still build.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel, ValidationError

from mdmt_nas.components.table import KINDS as _TABLE
from mdmt_nas.components.table import base_of
from mdmt_nas.errors import DeprecatedNameWarning, DuplicateComponentError, PluginError, UnknownComponentError, closest
from mdmt_nas.files import config_error

#: Component kinds, in the order listings show them (the kinds table's order).
KINDS: tuple[str, ...] = tuple(_TABLE)


@dataclass(frozen=True)
class Entry:
    """One registered component and where it came from."""

    kind: str
    name: str
    obj: Any
    plugin: str
    dist: str
    version: str

    def as_dict(self) -> dict[str, str]:
        doc = (getattr(self.obj, "__doc__", None) or "").strip().splitlines()
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "distribution": self.dist,
            "version": self.version,
            "summary": doc[0] if doc else "",
        }


@dataclass(frozen=True)
class Alias:
    """A deprecated name `old` of component `new` (of one kind), declared by the plugin that renamed it."""

    kind: str
    old: str
    new: str
    plugin: str
    dist: str
    version: str

    def message(self) -> str:
        return (
            f"{self.kind} {self.old!r} is a deprecated name of {self.kind} {self.new!r} (plugin {self.plugin!r}); "
            f"write {self.new!r} instead"
        )


Patterns = str | Iterable[str] | None


def matches(name: str, patterns: Patterns) -> bool:
    """Whether `name` matches a shell-style pattern (`*`, `?`, `[..]`; case-insensitive), or any of several; None matches all."""
    if patterns is None:
        return True
    if isinstance(patterns, str):
        patterns = [patterns]
    return any(fnmatchcase(name.lower(), p.lower()) for p in patterns)


PREFER_VAR = "MDMT_NAS_PREFER"


class Registry:
    """Per-kind name spaces of components.

    A name two plugins register is a conflict: it stays unusable (DuplicateComponentError naming both distributions)
    until the user picks one (`prefer`, from MDMT_NAS_PREFER=kind:name=plugin) or removes one; the plugins' other
    components work as usual.
    """

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
        self._conflicts: dict[tuple[str, str], list[Entry]] = {}
        self._prefer: dict[tuple[str | None, str], str] = {}
        self._aliases: dict[tuple[str, str], list[Alias]] = {}

    def _check_kind(self, kind: str | None) -> None:
        if kind is not None and kind not in self._entries:
            near = closest(kind, KINDS)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise ValueError(f"unknown component kind {kind!r} ({hint}kinds: {', '.join(KINDS)})")

    def add(self, kind: str, name: str, obj: Any, plugin: str, dist: str, version: str) -> Entry:
        self._check_kind(kind)
        if not isinstance(name, str) or not name:
            raise ValueError(f"plugin {plugin!r} registered a {kind} without a name: {obj!r}")
        old = self._entries[kind].get(name)
        entry = Entry(kind, name, obj, plugin, dist, version)
        if old is not None and old.obj is not obj:
            if old.plugin == plugin:  # one plugin, two objects, one name: a bug of that plugin
                raise DuplicateComponentError(
                    f"{kind} {name!r} is registered twice by plugin {plugin!r} (distribution {dist} "
                    f"{version}), as {old.obj!r} and {obj!r}; register each under its own name"
                )
            self._conflicts.setdefault((kind, name), [old]).append(entry)
            return entry
        self._entries[kind][name] = entry
        return entry

    def prefer(self, kind: str | None, name: str, plugin: str) -> None:
        """Resolve a conflict: `name` (of `kind`, or of any kind when None) is the one of `plugin` (plugin or distribution name)."""
        self._prefer[(kind, name)] = plugin

    def add_alias(self, kind: str, old: str, new: str, plugin: str, dist: str, version: str) -> Alias:
        """Declare `old` a deprecated name of `new` (a rename): looking up `old` gives `new` with a DeprecatedNameWarning.

        A name that is registered for real wins over an alias of another plugin; one plugin registering a name
        and also aliasing it, or aliasing a name to itself, is a bug of that plugin (ValueError).
        """
        self._check_kind(kind)
        if not isinstance(old, str) or not old:
            raise ValueError(
                f"plugin {plugin!r} declared a deprecated name {old!r} of {kind} {new!r}; it must be a non-empty string"
            )
        if old == new:
            raise ValueError(f"plugin {plugin!r} declared {kind} {new!r} a deprecated name of itself")
        own = self._entries[kind].get(old)
        if own is not None and own.plugin == plugin:
            raise ValueError(
                f"plugin {plugin!r} registers {kind} {old!r} and also declares it a deprecated name of {new!r}; "
                "drop one of the two"
            )
        alias = Alias(kind, old, new, plugin, dist, version)
        known = self._aliases.setdefault((kind, old), [])
        if not any(a.new == new and a.plugin == plugin for a in known):
            known.append(alias)
        return alias

    def aliases(self, kind: str | None = None, pattern: Patterns = None) -> list[Alias]:
        """The deprecated names (of `kind`, matching `pattern`), sorted by kind then old name; shadowed ones left out."""
        self._check_kind(kind)
        return [
            a
            for (k, old), group in sorted(self._aliases.items(), key=lambda kv: (KINDS.index(kv[0][0]), kv[0][1]))
            if (kind is None or k == kind) and matches(old, pattern) and not self._is_registered(k, old)
            for a in group
        ]

    def _is_registered(self, kind: str, name: str) -> bool:
        return name in self._entries[kind] or (kind, name) in self._conflicts

    def _alias(self, kind: str, name: str, where: str | None) -> Alias | None:
        """The alias a lookup of `name` follows (None: not an alias); two plugins aliasing it differently is a conflict."""
        if self._is_registered(kind, name):
            return None
        group = self._aliases.get((kind, name), [])
        targets = {a.new for a in group}
        if len(targets) > 1:
            who = " and ".join(f"plugin {a.plugin!r} to {a.new!r}" for a in group)
            loc = f"{where}: " if where else ""
            raise DuplicateComponentError(
                f"{loc}{kind} {name!r} is a deprecated name of two components ({who}); "
                f"write the new name you mean ({' or '.join(repr(t) for t in sorted(targets))})"
            )
        return group[0] if group else None

    def canonical(self, kind: str, name: str, where: str | None = None) -> str:
        """The registered name a lookup of `name` lands on: `name` itself, or the new name of a deprecated one (warned)."""
        self._check_kind(kind)
        alias = self._alias(kind, name, where)
        if alias is None:
            return name
        warnings.warn(alias.message(), DeprecatedNameWarning, stacklevel=3)
        return alias.new

    def conflicts(self) -> dict[tuple[str, str], list[Entry]]:
        """(kind, name) -> every entry registered under it, for names registered by more than one plugin."""
        return dict(self._conflicts)

    def preferred(self, kind: str, name: str) -> Entry | None:
        """The entry the user picked for a conflicted name (None: not picked, or the pick is not a contender)."""
        pick = self._prefer.get((kind, name)) or self._prefer.get((None, name))
        contenders = self._conflicts.get((kind, name), [])
        return next((e for e in contenders if pick in (e.plugin, e.dist)), None) if pick else None

    def conflict_error(self, kind: str, name: str, where: str | None = None) -> DuplicateComponentError:
        contenders = self._conflicts[(kind, name)]
        who = " and ".join(f"plugin {e.plugin!r} (distribution {e.dist} {e.version})" for e in contenders)
        first, other = contenders[0].plugin, contenders[-1].plugin
        loc = f"{where}: " if where else ""
        return DuplicateComponentError(
            f"{loc}{kind} {name!r} is registered by {len(contenders)} plugins: {who}; it cannot be used until you pick one: "
            f"{PREFER_VAR}={kind}:{name}={other} (or ={first}), or skip one with MDMT_NAS_DISABLE_PLUGINS={other}, or uninstall it"
        )

    def remove_plugin(self, plugin: str) -> None:
        """Drop everything a plugin registered (used when its registration fails half-way)."""
        for table in self._entries.values():
            for name in [n for n, e in table.items() if e.plugin == plugin]:
                del table[name]
        for key in list(self._aliases):
            self._aliases[key] = [a for a in self._aliases[key] if a.plugin != plugin]
            if not self._aliases[key]:
                del self._aliases[key]
        for key in list(self._conflicts):
            rest = [e for e in self._conflicts[key] if e.plugin != plugin]
            if len(rest) > 1:
                self._conflicts[key] = rest
            else:
                del self._conflicts[key]
                if rest:
                    self._entries[key[0]][key[1]] = rest[0]
                else:
                    self._entries[key[0]].pop(key[1], None)

    def get(self, kind: str, name: str, where: str | None = None) -> Any:
        return self.entry(kind, name, where).obj

    def entry(self, kind: str, name: str, where: str | None = None) -> Entry:
        name = self.canonical(kind, name, where)
        if (kind, name) in self._conflicts:
            chosen = self.preferred(kind, name)
            if chosen is None:
                raise self.conflict_error(kind, name, where)
            return chosen
        try:
            return self._entries[kind][name]
        except KeyError:
            raise UnknownComponentError(kind, name, self._entries[kind], where) from None

    def resolve(self, kind: str, spec: Any, where: str) -> tuple[type, BaseModel]:
        """The class of a component spec (`.name`, `.params`) and its validated params; errors name `where` in the arch."""
        entry = self.entry(kind, spec.name, where=f"{where}.name")
        cls = entry.obj
        base = base_of(kind)
        if base is not None and not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(
                f"plugin {entry.plugin!r} registered {kind} {spec.name!r} as {cls!r}, which is not a subclass of {base.__name__}"
            )
        try:
            params = cls.make_params(spec.params)
        except ValidationError as exc:
            allowed = ", ".join(cls.Params.model_fields) or "none"
            raise config_error(
                exc, prefix=f"{where}.params", unknown=f"unknown parameter of {kind} {spec.name!r} (allowed: {allowed})"
            ) from None
        return cls, params

    def names(self, kind: str | None = None, pattern: Patterns = None, *, deprecated: bool = False) -> list[str]:
        """Sorted registered names of `kind` (None: of every kind) matching `pattern` (e.g. "*topk*", or a list of
        patterns); `deprecated=True` adds the deprecated names."""
        self._check_kind(kind)
        kinds = [kind] if kind else list(KINDS)
        found = {n for k in kinds for n in self._entries[k] if matches(n, pattern)}
        if deprecated:
            found |= {a.old for a in self.aliases(kind, pattern)}
        return sorted(found)

    def entries(self, kind: str | None = None, pattern: Patterns = None) -> list[Entry]:
        """One entry per name (a conflicted name: the picked one, else the first registered), names matching `pattern`."""
        self._check_kind(kind)
        kinds = [kind] if kind else list(KINDS)
        return [
            self.preferred(k, n) or self._entries[k][n]
            for k in kinds
            for n in sorted(self._entries[k])
            if matches(n, pattern)
        ]

    def all_entries(self) -> list[Entry]:
        """Every registered entry, both sides of a conflict included (fault attribution knows every class)."""
        return self.entries() + [e for es in self._conflicts.values() for e in es[1:]]

    def __contains__(self, key: tuple[str, str]) -> bool:
        """(kind, name) is registered, or a deprecated name of a registered component (no warning: nothing is used yet)."""
        kind, name = key
        if kind not in self._entries:
            return False
        if name in self._entries[kind]:
            return True
        return any(a.new in self._entries[kind] for a in self._aliases.get((kind, name), []))
