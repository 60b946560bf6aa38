"""Plugins: the hooks (hookspecs.py), the host that loads plugins (host.py), the registry it fills (registry.py), and fault attribution (blame.py).

The hooks are declared in `mdmt_nas/plugins/hookspecs.py` (one per kind of the kinds table,
`mdmt_nas/components/table.py`); the registry, with its pattern listing and deprecated names, in
`mdmt_nas/plugins/registry.py`; `list_components(kind, pattern)` lists the process-wide one.
"""

from mdmt_nas.components.table import HOOK_KINDS
from mdmt_nas.plugins import host
from mdmt_nas.plugins.blame import (
    ComponentFailure,
    ComponentRef,
    attribute_error,
    component_map,
    describe_component_error,
    find_culprit,
    first_nonfinite,
    guard_shapes,
)
from mdmt_nas.plugins.hookspecs import GROUP, hookimpl
from mdmt_nas.plugins.host import (
    BUILTIN_PLUGINS,
    PluginFailure,
    PluginHost,
    PluginInfo,
    get_host,
    get_registry,
    list_components,
    reset,
)
from mdmt_nas.plugins.registry import Alias, Entry, Registry

__all__ = [
    "Alias",
    "BUILTIN_PLUGINS",
    "GROUP",
    "HOOK_KINDS",
    "ComponentFailure",
    "ComponentRef",
    "Entry",
    "PluginFailure",
    "PluginHost",
    "PluginInfo",
    "Registry",
    "attribute_error",
    "component_map",
    "describe_component_error",
    "find_culprit",
    "first_nonfinite",
    "get_host",
    "get_registry",
    "guard_shapes",
    "hookimpl",
    "list_components",
    "reset",
]


def __getattr__(name: str):
    if name == "_HOST":  # the process-wide host (tests save and restore it around reset())
        return host._HOST
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
