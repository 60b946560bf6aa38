"""Plugins: the hooks (hookspecs.py), the host that loads plugins (host.py), the registry it fills (registry.py), and fault attribution (blame.py)."""

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
from mdmt_nas.plugins.host import BUILTIN_PLUGINS, PluginFailure, PluginHost, PluginInfo, get_host, get_registry, reset
from mdmt_nas.plugins.registry import Entry, Registry

__all__ = [
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
    "reset",
]


def __getattr__(name: str):
    if name == "_HOST":  # the process-wide host (tests save and restore it around reset())
        return host._HOST
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
