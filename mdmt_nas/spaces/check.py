"""Checking a space against the registry: every component it can name is registered and every params it can take validate.

Params with choices inside (`hidden: [{choice: width}]`) are checked for every
value of every choice in them (each int of a range, each label), the other
choices at their defaults: a misspelt key beside a choice or a range outside a
component's bounds fails when the space loads, naming the file, the path and
the value -- not candidate after candidate during the search.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mdmt_nas.arch import ComponentSpec
from mdmt_nas.errors import ConfigError, UnknownComponentError
from mdmt_nas.spaces.space import CHOICE_KEY, GROUPS, MERGE_KEY, TOP_KINDS, Space, is_placeholder, option_sources
from mdmt_nas.spaces.template import Placeholders, TemplateVisitor, merge_options, top_fields

if TYPE_CHECKING:  # pragma: no cover
    from mdmt_nas.plugins.registry import Registry


def check_components(space: Space, registry: Registry | None = None) -> None:
    """Every component named anywhere in the space is registered and its fixed params validate.

    Errors name the space file, the path inside it and the closest registered names.
    """
    if registry is None:
        from mdmt_nas.plugins import get_registry

        registry = get_registry()
    _ComponentCheck(space, registry).top_at(space.template, "template")


class _ComponentCheck(TemplateVisitor):
    """A walk over a space's template and every option of its choices, checking each component it meets.

    The walk follows the Architecture's fields (a component, an expert group, a list
    of experts), so it calls the visitor's hooks itself; a placeholder stands for each
    of its options.
    """

    def __init__(self, space: Space, registry: Registry):
        super().__init__(space.choices)
        self.space = space
        self.registry = registry
        self.src = space.source or f"space {space.name!r}"
        self.checked: set[tuple[str, str]] = set()

    def options(self, node: Any) -> list[tuple[Any, Any, str]]:
        return self.placeholder(self.by_name[node[CHOICE_KEY]])

    def placeholder(self, c: Any, *args: Any) -> list[tuple[Any, Any, str]]:
        return option_sources(c, f"choices.{c.name}")

    def spec_at(self, node: Any, kind: str, where: str) -> None:
        src, registry = self.src, self.registry
        if is_placeholder(node):
            for _pv, val, w in self.options(node):
                self.spec_at(val, kind, w)
            return
        if node is None:
            return
        if isinstance(node, str):
            node = {"name": node}
        if not isinstance(node, dict) or "name" not in node:
            raise ConfigError(
                f"{src}: {where}: expected a {kind} (a name or {{name: ..., params: {{...}}}}), got {node!r}"
            )
        name = node["name"]
        if is_placeholder(name):
            raise ConfigError(
                f"{src}: {where}.name: a component name cannot be a choice; make the whole component the choice"
            )
        if (kind, name) not in registry:
            raise UnknownComponentError(kind, name, registry.names(kind), where=f"{src}: {where}.name")
        key = (where, json.dumps(node, sort_keys=True, default=str))
        if key in self.checked:
            return
        self.checked.add(key)
        params = node.get("params", {})
        if not _placeholders(self, params):
            self.resolve(kind, node, where)
            return
        for name, value, label in self._variants(params):  # every value of every choice inside the params
            try:
                concrete = self.space._resolve(params, value)
            except ConfigError as exc:
                raise ConfigError(f"{src}: {where}.params (when choice {name!r} is {label}): {exc}") from None
            key = (where, json.dumps(concrete, sort_keys=True, default=str))
            if key in self.checked:
                continue
            self.checked.add(key)
            self.resolve(kind, {**node, "params": concrete}, where, f" (when choice {name!r} is {label})")

    def resolve(self, kind: str, node: dict, where: str, when: str = "") -> None:
        """Validate one concrete component spec; errors read `file: path.params.key: problem (when choice 'x' is v)`."""
        try:
            self.registry.resolve(kind, ComponentSpec.model_validate(node), where)
        except ValidationError as exc:
            raise ConfigError(f"{self.src}: {where}: {exc.errors()[0].get('msg')}{when}") from None
        except ConfigError as exc:
            raise ConfigError("\n".join(f"{self.src}: {line}{when}" for line in str(exc).splitlines())) from None

    def _variants(self, params: Any) -> list[tuple[str, dict[str, Any], str]]:
        """(choice, assignment values, label) for each value of each choice reachable from `params`, the others at defaults."""
        defaults = {c.name: c.default_value() for c in self.space.choices}
        names: list[str] = []
        todo = [params]
        while todo:  # the placeholders in params, and those inside their options (transitively)
            node = todo.pop()
            for ref in _placeholders(self, node):
                if ref not in names:
                    names.append(ref)
                    todo += [val for _pv, val, _w in option_sources(self.by_name[ref], "")]
        out = []
        for name in names:
            c = self.by_name[name]
            for value, label in zip(c.values(), c.labels()):
                out.append((name, {**defaults, name: value}, label))
        return out

    def group_at(self, node: Any, where: str) -> None:
        if is_placeholder(node):
            for _pv, val, w in self.options(node):
                self.group_at(val, w)
            return
        if node is None or isinstance(node, bool):
            return
        if not isinstance(node, dict):
            raise ConfigError(f"{self.src}: {where}: expected an expert group mapping, got {node!r}")
        for k, v in node.items():
            if k == MERGE_KEY:
                self.merge_at(v, where, self.group_at)
            elif k == "expert":
                self.spec_at(v, "expert", f"{where}.expert")
            elif k == "experts":
                self.items_at(v, "expert", f"{where}.experts")
            elif k == "fusion":
                self.spec_at(v, "fusion", f"{where}.fusion")

    def items_at(self, node: Any, kind: str, where: str) -> None:
        if is_placeholder(node):
            for _pv, val, w in self.options(node):
                self.items_at(val, kind, w)
            return
        if isinstance(node, list):
            for i, v in enumerate(node):
                self.spec_at(v, kind, f"{where}[{i}]")

    def merge_at(self, v: Any, where: str, fn: Any) -> None:
        for val, w in merge_options(self, v, where, self.src):
            fn(val, w)

    def top_at(self, node: dict, where: str) -> None:
        for k, v, w in top_fields(self, node, where, self.src):
            if k in TOP_KINDS:
                self.spec_at(v, TOP_KINDS[k], w)
            elif k in GROUPS:
                self.group_at(v, w)


def _placeholders(visitor: TemplateVisitor, node: Any) -> list[str]:
    return Placeholders(visitor.by_name.values()).visit(node)
