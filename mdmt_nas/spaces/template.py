"""The walk over a space template: placeholders, mappings (with `$merge`), lists and leaves, for every fold over it.

A template is an Architecture mapping in which `{choice: NAME}` placeholders stand
for a choice's value; a mapping's `$merge: [{choice: NAME}, ...]` merges the
mapping a choice gives into it. `TemplateVisitor.visit` dispatches a node to one
hook per node type; each fold over a template is a subclass: `Space.to_arch`
resolves an assignment, check.py lists the placeholders of a component's params,
DARTS' relaxation expands every branch with its condition and finds the choices
it keeps fixed. `top_fields` walks the Architecture fields of a template through
its `$merge` options, the walk check.py and the relaxation share.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from mdmt_nas.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from mdmt_nas.spaces.space import ChoicePoint

CHOICE_KEY = "choice"
MERGE_KEY = "$merge"


class _Omit:
    """Marker: an inactive choice's placeholder removes its key / list item."""

    def __repr__(self) -> str:  # pragma: no cover
        return "<omit>"


OMIT = _Omit()


def is_placeholder(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and CHOICE_KEY in node and isinstance(node[CHOICE_KEY], str)


def option_sources(c: ChoicePoint, where: str) -> list[tuple[Any, Any, str]]:
    """(parent_value, template value, file path) of each option that can hold nested placeholders."""
    if c.type == "categorical":
        return [(lab, v, f"{where}.options[{i}]") for i, (lab, v) in enumerate(zip(c.labels(), c.options or []))]
    if c.type == "bool":
        return [(True, c.when_on, f"{where}.when_on"), (False, c.when_off, f"{where}.when_off")]
    return []


def merge_list(value: Any) -> list[Any]:
    """The placeholders of a `$merge` value: a list of them, or one."""
    return value if isinstance(value, list) else [value]


class TemplateVisitor:
    """One node of a template to the hook of its type; the default hooks fold a template into a list.

    `visit(node, *args)` calls `placeholder(choice, *args)`, `mapping(node, *args)`,
    `sequence(node, *args)` or `leaf(node, *args)`; `args` carry what a fold threads
    through (an assignment, a condition). The defaults concatenate what the children
    give (a leaf and a placeholder give nothing), so a collector overrides only
    `placeholder`.
    """

    def __init__(self, choices: Iterable[ChoicePoint]):
        self.by_name: dict[str, ChoicePoint] = {c.name: c for c in choices}

    def visit(self, node: Any, *args: Any) -> Any:
        if is_placeholder(node):
            return self.placeholder(self.by_name[node[CHOICE_KEY]], *args)
        if isinstance(node, dict):
            return self.mapping(node, *args)
        if isinstance(node, list):
            return self.sequence(node, *args)
        return self.leaf(node, *args)

    def placeholder(self, choice: ChoicePoint, *args: Any) -> Any:
        return []

    def mapping(self, node: dict[str, Any], *args: Any) -> Any:
        return [x for v in node.values() for x in self.visit(v, *args)]

    def sequence(self, node: list[Any], *args: Any) -> Any:
        return [x for v in node for x in self.visit(v, *args)]

    def leaf(self, node: Any, *args: Any) -> Any:
        return []


class Placeholders(TemplateVisitor):
    """The choice names of the placeholders in a node, in template order (repeats kept).

    `follow=True`: also those in the options of each choice met (its categorical
    options, a flag's `when_on` / `when_off`), depth first, each choice once;
    choices in `seen` are neither listed nor followed.
    """

    def __init__(self, choices: Iterable[ChoicePoint], follow: bool = False, seen: Iterable[str] = ()):
        super().__init__(choices)
        self.follow = follow
        self.seen = set(seen)

    def placeholder(self, choice: ChoicePoint, *args: Any) -> list[str]:
        if not self.follow:
            return [choice.name]
        if choice.name in self.seen:
            return []
        self.seen.add(choice.name)
        return [choice.name] + [n for _pv, val, _w in option_sources(choice, "") for n in self.visit(val)]


def merge_options(
    visitor: TemplateVisitor, value: Any, where: str, src: str = "", strict: bool = True
) -> Iterator[tuple[dict[str, Any], str]]:
    """(mapping, its path) of each option of each placeholder of a `$merge` value that merges a mapping.

    Options that merge nothing (null, a flag's true/false) are skipped; anything else in
    a `$merge` is a ConfigError naming `src` and the path (`strict=False`: skipped too,
    for walks over spaces already checked).
    """
    loc = f"{src}: " if src else ""
    for ph in merge_list(value):
        if not is_placeholder(ph):
            raise ConfigError(f"{loc}{where}.{MERGE_KEY}: expected {{choice: NAME}} placeholders, got {ph!r}")
        c = visitor.by_name[ph[CHOICE_KEY]]
        for _pv, val, w in option_sources(c, f"choices.{c.name}"):
            if isinstance(val, dict):
                yield val, w
            elif strict and val is not None and not isinstance(val, bool):
                raise ConfigError(f"{loc}{w}: a {MERGE_KEY} choice's value must be a mapping (or null), got {val!r}")


def top_fields(
    visitor: TemplateVisitor, template: dict[str, Any], where: str = "", src: str = "", strict: bool = True
) -> Iterator[tuple[str, Any, str]]:
    """(Architecture field, its template value, its path) of a template and of every mapping its `$merge` options merge."""
    for k, v in template.items():
        if k == MERGE_KEY:
            for val, w in merge_options(visitor, v, where or "template", src, strict):
                yield from top_fields(visitor, val, w, src, strict)
        else:
            yield k, v, f"{where}.{k}" if where else k
