"""The hooks a plugin implements to add components to mdmt-nas.

Each hook receives a `register` callback, so one function can register any
number of components (the pattern of simonw/llm). Built-in components use the
very same hooks (see `mdmt_nas/builtin/`). A plugin module looks like::

    from mdmt_nas import hookimpl       # or: from mdmt_nas.plugins import hookimpl

    @hookimpl
    def register_experts(register):
        register(MyExpert)          # name taken from MyExpert.name

`register(obj, name=None)` adds `obj` under `name` (default: `obj.name`).
Every hook is documented in docs/hooks.md; a test keeps the two in step.
"""

from __future__ import annotations

import pluggy

#: entry-point group and pluggy project name
GROUP = "mdmt_nas"
hookspec = pluggy.HookspecMarker(GROUP)
#: the decorator of a plugin's hook implementations (also `from mdmt_nas import hookimpl`)
hookimpl = pluggy.HookimplMarker(GROUP)


@hookspec
def register_experts(register):
    """Register expert classes: map a representation [B, in_dim] to [B, out_dim] (see components.Expert)."""


@hookspec
def register_gates(register):
    """Register gate classes: per-row mixture weights [B, T, N] over N candidate experts (see components.Gate)."""


@hookspec
def register_fusions(register):
    """Register fusion classes: level 1 fuses a group's members, level 2 fuses module parts (see components.Fusion)."""


@hookspec
def register_adapters(register):
    """Register adapter classes: shape-preserving modules that wrap a hidden representation (see components.Adapter)."""


@hookspec
def register_towers(register):
    """Register tower classes: per-head [B, T, H] representations to logits [B, T] (see components.Tower)."""


@hookspec
def register_balancers(register):
    """Register balancer classes: turn per-task losses (and gradients) into the update (see components.Balancer)."""


@hookspec
def register_searchers(register):
    """Register searcher classes: propose architectures from a space and return the best (see search.base.Searcher)."""


@hookspec
def register_datasets(register):
    """Register dataset classes: load an MDMT dataset into train/valid/test splits (see data.base.Dataset)."""


@hookspec
def register_search_spaces(register):
    """Register search spaces: a path to a space YAML file or a Space object (see spaces.Space)."""
