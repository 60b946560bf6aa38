"""A search space: an Architecture template with choice points, its assignments and the architectures they give.

A space file is YAML (see docs/search-spaces.md and search_spaces/*.yaml)::

    name: mmoe
    description: MMoE with searched expert type, expert count and gate
    template:                         # an Architecture, with {choice: NAME} placeholders
      shared: {expert: {choice: expert}, num: {choice: num_experts}}
      gate: {choice: gate}
      $merge: [{choice: adapter}]     # a choice whose value is a mapping merged here
    choices:
      expert:                         # categorical: options are values or component specs
        options:
          - {label: mlp-128, value: {name: mlp, params: {hidden: [128, 64]}}}
          - {name: cross, params: {out_dim: 64}}     # label "cross" (the name)
      num_experts: {type: int, low: 2, high: 8, step: 2, default: 4}
      gate: {options: [softmax, noisy_topk]}
      adapter:
        type: bool                    # a presence flag: when_on is a nested template
        default: false
        when_on: {adapter: {name: bottleneck}, adapter_sites: [towers]}

Choices referenced inside another choice's option (or a flag's `when_on` /
`when_off`) are conditional: they exist only when that option is chosen. The
placeholder of an inactive choice removes its key (the Architecture default
applies) or its list item. An assignment maps choice names to option labels
(categorical), ints or bools; `Space.to_arch(assignment)` gives a plain
`Architecture`. Reading a space file is parse.py; checking its components
against the registry is check.py.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Callable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from mdmt_nas.arch import Architecture
from mdmt_nas.errors import ConfigError, closest
from mdmt_nas.files import config_error
from mdmt_nas.spaces.template import (
    CHOICE_KEY,
    MERGE_KEY,
    OMIT,
    TemplateVisitor,
    is_placeholder,
    merge_list,
    option_sources,
)

__all__ = [
    "CHOICE_KEY",
    "GROUPS",
    "MERGE_KEY",
    "OMIT",
    "TOP_KINDS",
    "ChoicePoint",
    "KnownPoint",
    "Space",
    "auto_labels",
    "is_placeholder",
    "option_sources",
]

LABEL_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")

#: component kind of each Architecture field that holds a component spec
TOP_KINDS = {
    "bottom": "expert",
    "input_adapter": "adapter",
    "adapter": "adapter",
    "gate": "gate",
    "fusion": "fusion",
    "tower": "tower",
    "balancer": "balancer",
}
GROUPS = ("shared", "domain", "task")


# --------------------------------------------------------------------------------- labels
def _short(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "x".join(_short(x) for x in v)
    if isinstance(v, dict):
        return "-".join(f"{k}{_short(x)}" for k, x in sorted(v.items()))
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    return re.sub(r"[^A-Za-z0-9_.\-]", "", str(v)) or "x"


def _base_label(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return _short(v)
    if isinstance(v, dict) and isinstance(v.get("name"), str):
        return _short(v["name"])
    if isinstance(v, dict) and isinstance(v.get("expert"), (str, dict)):
        return _base_label(v["expert"])
    return ""


def auto_labels(options: list[Any]) -> list[str]:
    """Readable, unique, MLflow-safe labels: the component name, plus the params that differ among same-named options."""
    base = [_base_label(o) or f"option{i}" for i, o in enumerate(options)]
    out = list(base)
    for b in set(base):
        idx = [i for i, x in enumerate(base) if x == b]
        if len(idx) < 2:
            continue
        params = [
            options[i].get("params", {})
            if isinstance(options[i], dict) and isinstance(options[i].get("params", {}), dict)
            else {}
            for i in idx
        ]
        keys = sorted({k for p in params for k in p})
        differing = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in params}) > 1]
        for i, p in zip(idx, params):
            suffix = "-".join(f"{k}{_short(p[k])}" for k in differing if k in p)
            out[i] = f"{b}-{suffix}" if suffix else b
    seen: dict[str, int] = {}
    for i, lab in enumerate(out):
        if out.count(lab) > 1:
            seen[lab] = seen.get(lab, 0) + 1
            out[i] = f"{lab}-{seen[lab]}"
    return out


# --------------------------------------------------------------------------------- choices
class ChoicePoint(BaseModel):
    """One decision of a space: categorical (options), int (low..high by step) or bool.

    `parent`/`parent_value`: the choice exists only when choice `parent` has that
    value (an option label for a categorical parent, True/False for a flag).
    Categorical `options` hold the raw option values (templates, possibly with
    nested placeholders); `option_labels` their labels. A bool's `when_on` /
    `when_off` are the values its placeholder takes.
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    type: Literal["categorical", "int", "bool"]
    options: list[Any] | None = None
    low: int | None = None
    high: int | None = None
    step: int = 1
    parent: str | None = None
    parent_value: Any = True
    # extensions
    default: Any = None
    description: str = ""
    option_labels: list[str] | None = None
    when_on: Any = True
    when_off: Any = False

    def labels(self) -> list[str]:
        """Option labels, unique strings: categorical labels, the ints as text, or 'false'/'true'."""
        if self.type == "categorical":
            return list(self.option_labels or auto_labels(self.options or []))
        if self.type == "int":
            return [str(v) for v in self.values()]
        return ["false", "true"]

    def values(self) -> list[Any]:
        """The assignment values of this choice, in alpha order: labels, ints, or [False, True]."""
        if self.type == "categorical":
            return self.labels()
        if self.type == "int":
            assert self.low is not None and self.high is not None
            return list(range(self.low, self.high + 1, self.step))
        return [False, True]

    def __len__(self) -> int:
        return len(self.values())

    def normalize(self, value: Any, space: str = "") -> Any:
        """An assignment value in canonical form (label / int / bool); ConfigError if not an option."""
        where = f"space {space!r}: " if space else ""
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "on", "yes", "1", "false", "off", "no", "0"):
                return value.lower() in ("true", "on", "yes", "1")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ConfigError(f"{where}choice {self.name!r}: expected true or false, got {value!r}")
        if self.type == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                iv = value
            elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
                iv = int(value)
            elif isinstance(value, float) and value.is_integer():
                iv = int(value)
            else:
                raise ConfigError(
                    f"{where}choice {self.name!r}: expected an integer in {self.low}..{self.high} (step {self.step}), got {value!r}"
                )
            if iv not in self.values():
                raise ConfigError(f"{where}choice {self.name!r}: {value!r} is not one of {self.values()}")
            return iv
        labels = self.labels()
        if isinstance(value, str) and value in labels:
            return value
        for lab, opt in zip(labels, self.options or []):  # a raw option value is accepted too
            if value == opt and not isinstance(value, bool):
                return lab
        near = closest(str(value), labels)
        hint = f"did you mean {near[0]!r}?" if near else f"options: {', '.join(labels)}"
        raise ConfigError(f"{where}choice {self.name!r}: unknown option {value!r} ({hint})")

    def index(self, value: Any) -> int:
        return self.values().index(self.normalize(value))

    def value_of(self, value: Any) -> Any:
        """The template value a (normalised) assignment value stands for."""
        if self.type == "categorical":
            return (self.options or [])[self.labels().index(value)]
        if self.type == "bool":
            return self.when_on if value else self.when_off
        return value

    def default_value(self) -> Any:
        if self.default is not None:
            return self.normalize(self.default)
        if self.type == "bool":
            return True
        return self.values()[0]


# --------------------------------------------------------------------------------- space
class KnownPoint(BaseModel):
    """A published architecture that is one point of a space: searches evaluate it first (warm start)
    and mark it on the leaderboard, so "searched vs best known" is measured in the same run."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="its display name, e.g. MMoE")
    #: the shipped example config (examples/<example>.yaml) whose `arch` this point equals (tested)
    example: str | None = None
    #: choice values that differ from the space's defaults (the others keep their default)
    assign: dict[str, Any] = Field(default_factory=dict)
    #: the full, normalised assignment (filled in when the space loads)
    assignment: dict[str, Any] = Field(default_factory=dict)


class Space(BaseModel):
    """A validated search space: an Architecture template plus choice points in dependency order."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    name: str
    description: str = ""
    choices: list[ChoicePoint]
    template: dict[str, Any] = Field(default_factory=dict)
    source: str = ""
    #: published architectures that are points of this space (warm-start candidates)
    known: list[KnownPoint] = Field(default_factory=list)
    _by_name: dict[str, ChoicePoint] = PrivateAttr(default_factory=dict)
    _simplify: Callable[[Architecture], Architecture] | None = PrivateAttr(default=None)

    def model_post_init(self, _ctx: Any) -> None:
        self._by_name = {c.name: c for c in self.choices}

    def simplified_by(self, simplify: Callable[[Architecture], Architecture]) -> Space:
        """A copy whose `to_arch` passes every architecture through `simplify` (model/simplify.py bound to the
        search's data), so that assignments spelling one model give one id everywhere the search looks."""
        out = self.model_copy()
        out._by_name = dict(self._by_name)
        out._simplify = simplify
        return out

    # ------------------------------------------------------------------ lookup
    def choice(self, name: str) -> ChoicePoint:
        try:
            return self._by_name[name]
        except KeyError:
            near = closest(name, self._by_name)
            hint = f"did you mean {near[0]!r}?" if near else f"choices: {', '.join(self._by_name)}"
            raise ConfigError(f"space {self.name!r} has no choice {name!r} ({hint})") from None

    def children(self, parent: str | None) -> list[ChoicePoint]:
        return [c for c in self.choices if c.parent == parent]

    # ------------------------------------------------------------------ assignments
    def active(self, assignment: dict[str, Any], choice: ChoicePoint | str) -> bool:
        """Whether a choice exists under this assignment (its parent chain has the required values)."""
        c = self.choice(choice) if isinstance(choice, str) else choice
        while c.parent is not None:
            p = self._by_name[c.parent]
            if p.name not in assignment:
                return False
            try:
                if p.normalize(assignment[p.name]) != c.parent_value:
                    return False
            except ConfigError:
                return False
            c = p
        return True

    def normalize(self, assignment: dict[str, Any], strict: bool = True) -> dict[str, Any]:
        """Canonical values of the active choices (inactive ones dropped); missing active ones -> ConfigError."""
        unknown = [k for k in assignment if k not in self._by_name]
        if unknown and strict:
            lines = []
            for k in unknown:
                near = closest(k, self._by_name)
                lines.append(f"{k!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
            raise ConfigError(f"space {self.name!r}: unknown choice(s) {', '.join(lines)}")
        out: dict[str, Any] = {}
        for c in self.choices:
            if not self.active(out, c):
                continue
            if c.name not in assignment:
                raise ConfigError(
                    f"space {self.name!r}: the assignment has no value for the active choice {c.name!r} (values: {c.labels()})"
                )
            out[c.name] = c.normalize(assignment[c.name], self.name)
        return out

    def assign(self, pick: Callable[[ChoicePoint], Any]) -> dict[str, Any]:
        """The assignment that takes `pick(choice)` for each choice active under the values picked before it."""
        out: dict[str, Any] = {}
        for c in self.choices:
            if self.active(out, c):
                out[c.name] = pick(c)
        return out

    def default_assignment(self) -> dict[str, Any]:
        return self.assign(lambda c: c.default_value())

    def assignment_from(self, overrides: dict[str, Any], where: str = "") -> dict[str, Any]:
        """The assignment with `overrides` and every other active choice at its default (unknown names -> ConfigError)."""
        where = where or f"space {self.name!r}"
        for k in overrides:
            if k not in self._by_name:
                near = closest(k, self._by_name)
                hint = f"did you mean {near[0]!r}?" if near else f"choices: {', '.join(self._by_name)}"
                raise ConfigError(f"{where}: unknown choice {k!r} ({hint})")
        out = self.assign(lambda c: overrides.get(c.name, c.default_value()))
        ignored = [k for k in overrides if k not in out]
        if ignored:
            raise ConfigError(
                f"{where}: choice(s) {', '.join(map(repr, ignored))} are inactive under the other values; drop them"
            )
        try:
            return self.normalize(out)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def known_points(self) -> list[tuple[KnownPoint, Architecture]]:
        """(known point, its architecture named after it) for every warm-start point of the space."""
        return [(k, self.to_arch(k.assignment).model_copy(update={"name": k.name})) for k in self.known]

    def to_arch(self, assignment: dict[str, Any]) -> Architecture:
        """The Architecture of an assignment (inactive choices ignored; missing active ones are an error)."""
        values = self.normalize(assignment, strict=False)
        data = self._resolve(self.template, values)
        data.setdefault("name", self.name)
        try:
            arch = Architecture.model_validate(data)
        except ValidationError as exc:
            err = config_error(
                exc,
                f"space {self.name!r} ({self.source or 'in memory'}) with {json.dumps(values, default=str)}",
                prefix="arch",
            )
            raise ConfigError(
                str(err)
                + "\n(this combination of choices does not give a valid architecture; fix the space's template or options)"
            ) from None
        return self._simplify(arch) if self._simplify is not None else arch

    def _resolve(self, node: Any, values: dict[str, Any]) -> Any:
        """The template `node` with each placeholder replaced by its choice's value under `values` (OMIT: inactive)."""
        return _Resolver(self, values).visit(node)

    # ------------------------------------------------------------------ size / enumerate / sample
    def _count(self, parent: str | None, value: Any) -> int:
        n = 1
        for c in self.children(parent):
            if parent is not None and c.parent_value != value:
                continue
            n *= sum(self._count(c.name, v) for v in c.values())
        return n

    def size(self) -> int:
        """Number of distinct assignments (= architectures), counting conditional choices properly."""
        return self._count(None, None)

    def enumerate(self, limit: int = 10_000) -> Iterator[tuple[dict[str, Any], Architecture]]:
        """Every (assignment, architecture); raises ConfigError if the space has more than `limit` points."""
        n = self.size()
        if n > limit:
            raise ConfigError(f"space {self.name!r} has {n} architectures, more than limit={limit}; sample it instead")

        def rec(i: int, acc: dict[str, Any]) -> Iterator[dict[str, Any]]:
            if i == len(self.choices):
                yield dict(acc)
                return
            c = self.choices[i]
            if not self.active(acc, c):
                yield from rec(i + 1, acc)
                return
            for v in c.values():
                acc[c.name] = v
                yield from rec(i + 1, acc)
            del acc[c.name]

        for a in rec(0, {}):
            yield a, self.to_arch(a)

    def sample_assignment(self, rng: random.Random) -> dict[str, Any]:
        return self.assign(lambda c: rng.choice(c.values()))

    def sample(self, rng: random.Random) -> tuple[dict[str, Any], Architecture]:
        a = self.sample_assignment(rng)
        return a, self.to_arch(a)

    # ------------------------------------------------------------------ display
    def describe(self, assignment: dict[str, Any] | None = None) -> str:
        """A short text tree of the choices (for logs)."""
        lines = [f"space {self.name}: {self.size()} architectures"]

        def rec(parent: str | None, value: Any, depth: int) -> None:
            for c in self.children(parent):
                if parent is not None and c.parent_value != value:
                    continue
                vals = c.labels()
                lines.append("  " * depth + f"- {c.name} ({c.type}): {', '.join(vals)}")
                for v in c.values():
                    rec(c.name, v, depth + 1)

        rec(None, None, 1)
        return "\n".join(lines)


class _Resolver(TemplateVisitor):
    """The fold of `Space._resolve`: placeholders by their values, `$merge` mappings merged, inactive choices omitted."""

    def __init__(self, space: Space, values: dict[str, Any]):
        super().__init__(space.choices)
        self.space = space
        self.values = values

    def placeholder(self, c: ChoicePoint) -> Any:
        if c.name not in self.values:
            return OMIT
        return self.visit(c.value_of(self.values[c.name]))

    def mapping(self, node: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k == MERGE_KEY:
                for ph in merge_list(v):
                    r = self.visit(ph)
                    if r is OMIT or r is None or r is False or r is True:
                        continue
                    clash = set(r) & set(node) | set(r) & set(out)
                    if clash:
                        raise ConfigError(
                            f"space {self.space.name!r}: {MERGE_KEY} of {ph} sets {sorted(clash)}, "
                            "which the enclosing mapping already has"
                        )
                    out.update(r)
                continue
            r = self.visit(v)
            if r is not OMIT:
                out[k] = r
        return out

    def sequence(self, node: list[Any]) -> list[Any]:
        return [r for r in (self.visit(v) for v in node) if r is not OMIT]

    def leaf(self, node: Any) -> Any:
        return copy.deepcopy(node)
