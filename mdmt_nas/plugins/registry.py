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


class Registry:
    """Per-kind name spaces of components."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}

    def add(self, kind: str, name: str, obj: Any, plugin: str, dist: str, version: str) -> Entry:
        if kind not in self._entries:
            raise ValueError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"plugin {plugin!r} registered a {kind} without a name: {obj!r}")
        old = self._entries[kind].get(name)
        if old is not None and old.obj is not obj:
            raise DuplicateComponentError(
                f"{kind} {name!r} is registered twice: by plugin {old.plugin!r} "
                f"(distribution {old.dist} {old.version}) and by plugin {plugin!r} "
                f"(distribution {dist} {version}). Uninstall one, or skip it with "
                f"MDMT_NAS_DISABLE_PLUGINS={plugin}"
            )
        entry = Entry(kind, name, obj, plugin, dist, version)
        self._entries[kind][name] = entry
        return entry

    def remove_plugin(self, plugin: str) -> None:
        """Drop everything a plugin registered (used when its registration fails half-way)."""
        for table in self._entries.values():
            for name in [n for n, e in table.items() if e.plugin == plugin]:
                del table[name]

    def get(self, kind: str, name: str, where: str | None = None) -> Any:
        return self.entry(kind, name, where).obj

    def entry(self, kind: str, name: str, where: str | None = None) -> Entry:
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
        kinds = [kind] if kind else list(KINDS)
        return [self._entries[k][n] for k in kinds for n in sorted(self._entries[k])]

    def __contains__(self, key: tuple[str, str]) -> bool:
        kind, name = key
        return name in self._entries.get(kind, {})
