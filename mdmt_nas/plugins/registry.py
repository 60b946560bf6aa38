"""Name -> component class, per kind, filled by plugins through the hooks.

The registry remembers which plugin and distribution registered each name so
that listings and errors can name them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from mdmt_nas.components.table import KINDS as _TABLE
from mdmt_nas.components.table import base_of
from mdmt_nas.errors import DuplicateComponentError, PluginError, UnknownComponentError
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

    def add(self, kind: str, name: str, obj: Any, plugin: str, dist: str, version: str) -> Entry:
        if kind not in self._entries:
            raise ValueError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"plugin {plugin!r} registered a {kind} without a name: {obj!r}")
        old = self._entries[kind].get(name)
        entry = Entry(kind, name, obj, plugin, dist, version)
        if old is not None and old.obj is not obj:
            if old.plugin == plugin:  # one plugin, two objects, one name: a bug of that plugin
                raise DuplicateComponentError(f"{kind} {name!r} is registered twice by plugin {plugin!r} (distribution {dist} "
                                              f"{version}), as {old.obj!r} and {obj!r}; register each under its own name")
            self._conflicts.setdefault((kind, name), [old]).append(entry)
            return entry
        self._entries[kind][name] = entry
        return entry

    def prefer(self, kind: str | None, name: str, plugin: str) -> None:
        """Resolve a conflict: `name` (of `kind`, or of any kind when None) is the one of `plugin` (plugin or distribution name)."""
        self._prefer[(kind, name)] = plugin

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
            f"{PREFER_VAR}={kind}:{name}={other} (or ={first}), or skip one with MDMT_NAS_DISABLE_PLUGINS={other}, or uninstall it")

    def remove_plugin(self, plugin: str) -> None:
        """Drop everything a plugin registered (used when its registration fails half-way)."""
        for table in self._entries.values():
            for name in [n for n, e in table.items() if e.plugin == plugin]:
                del table[name]
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
            raise PluginError(f"plugin {entry.plugin!r} registered {kind} {spec.name!r} as {cls!r}, which is not a subclass of {base.__name__}")
        try:
            params = cls.make_params(spec.params)
        except ValidationError as exc:
            allowed = ", ".join(cls.Params.model_fields) or "none"
            raise config_error(exc, prefix=f"{where}.params", unknown=f"unknown parameter of {kind} {spec.name!r} (allowed: {allowed})") from None
        return cls, params

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str | None = None) -> list[Entry]:
        """One entry per name (a conflicted name: the picked one, else the first registered)."""
        kinds = [kind] if kind else list(KINDS)
        return [self.preferred(k, n) or self._entries[k][n] for k in kinds for n in sorted(self._entries[k])]

    def all_entries(self) -> list[Entry]:
        """Every registered entry, both sides of a conflict included (fault attribution knows every class)."""
        return self.entries() + [e for es in self._conflicts.values() for e in es[1:]]

    def __contains__(self, key: tuple[str, str]) -> bool:
        kind, name = key
        return name in self._entries.get(kind, {})
