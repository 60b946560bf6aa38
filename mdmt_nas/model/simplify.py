"""Drop inert fusion choices, so that two architectures computing one function have one id.

A search space can spell the same model several ways: a softmax gate over a single part, the mean of a
single member, a learned weight on a part that is never weighted. Left alone, each spelling is another
architecture id, so the search trains the same model again and its top-k holds copies. `simplify` asks
each fusion (its `same_as` hook, see components/kinds.py) whether it equals a simpler one where it sits,
and substitutes that one.
"""

from __future__ import annotations

from mdmt_nas.arch import Architecture, ComponentSpec
from mdmt_nas.data.schema import Schema
from mdmt_nas.model.build import fusion_members, resolve
from mdmt_nas.plugins.registry import Registry


def simplify(arch: Architecture, schema: Schema, registry: Registry | None = None) -> Architecture:
    """`arch` with every fusion that equals a simpler one over its members replaced by it (name kept)."""
    if registry is None:
        from mdmt_nas.plugins import get_registry

        registry = get_registry()
    members = fusion_members(arch, schema.num_domains, schema.num_tasks)
    update: dict[str, object] = {}
    for site, spec in _fusions(arch, members):
        cls, params = resolve(registry, "fusion", spec, f"arch.{site}.fusion" if site != "fusion" else "arch.fusion")
        simpler = cls.same_as(params, members[site])
        if simpler is None or simpler == spec.name:
            continue
        new = ComponentSpec(name=simpler)
        if site == "fusion":
            update["fusion"] = new
        else:
            update[site] = getattr(arch, site).model_copy(update={"fusion": new})
    return arch.model_copy(update=update) if update else arch


def _fusions(arch: Architecture, members: dict[str, object]) -> list[tuple[str, ComponentSpec]]:
    groups = arch.groups()
    return [(g, groups[g].fusion) for g in ("domain", "task") if g in members] + [("fusion", arch.fusion)]
