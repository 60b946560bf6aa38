"""Declarative search spaces: an Architecture template with choice points.

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
`Architecture`.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from mdmt_nas.arch import Architecture, ComponentSpec
from mdmt_nas.errors import ConfigError, UnknownComponentError, closest
from mdmt_nas.files import config_error, load_yaml_or_json

if TYPE_CHECKING:  # pragma: no cover
    from mdmt_nas.plugins.registry import Registry

CHOICE_KEY = "choice"
MERGE_KEY = "$merge"
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
GROUP_KINDS = {"expert": "expert", "fusion": "fusion"}


class _Omit:
    """Marker: an inactive choice's placeholder removes its key / list item."""

    def __repr__(self) -> str:  # pragma: no cover
        return "<omit>"


OMIT = _Omit()


def is_placeholder(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and CHOICE_KEY in node and isinstance(node[CHOICE_KEY], str)


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
        params = [options[i].get("params", {}) if isinstance(options[i], dict) and isinstance(options[i].get("params", {}), dict) else {} for i in idx]
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
                raise ConfigError(f"{where}choice {self.name!r}: expected an integer in {self.low}..{self.high} (step {self.step}), got {value!r}")
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


# --------------------------------------------------------------------------------- raw file
class _ChoiceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["categorical", "int", "bool"] | None = None
    options: list[Any] | None = None
    low: int | None = None
    high: int | None = None
    step: int = 1
    default: Any = None
    description: str = ""
    parent: str | None = None
    parent_value: Any = None
    when_on: Any = Field(default=OMIT)
    when_off: Any = Field(default=OMIT)


class _SpaceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    description: str = ""
    template: dict[str, Any]
    choices: dict[str, _ChoiceFile]


# --------------------------------------------------------------------------------- space
class Space(BaseModel):
    """A validated search space: an Architecture template plus choice points in dependency order."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    name: str
    description: str = ""
    choices: list[ChoicePoint]
    template: dict[str, Any] = Field(default_factory=dict)
    source: str = ""
    _by_name: dict[str, ChoicePoint] = PrivateAttr(default_factory=dict)

    def model_post_init(self, _ctx: Any) -> None:
        self._by_name = {c.name: c for c in self.choices}

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
                raise ConfigError(f"space {self.name!r}: the assignment has no value for the active choice {c.name!r} (values: {c.labels()})")
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

    def to_arch(self, assignment: dict[str, Any]) -> Architecture:
        """The Architecture of an assignment (inactive choices ignored; missing active ones are an error)."""
        values = self.normalize(assignment, strict=False)
        data = self._resolve(self.template, values)
        data.setdefault("name", self.name)
        try:
            return Architecture.model_validate(data)
        except ValidationError as exc:
            err = config_error(exc, f"space {self.name!r} ({self.source or 'in memory'}) with {json.dumps(values, default=str)}", prefix="arch")
            raise ConfigError(str(err) + "\n(this combination of choices does not give a valid architecture; fix the space's template or options)") from None

    def _resolve(self, node: Any, values: dict[str, Any]) -> Any:
        if is_placeholder(node):
            c = self._by_name[node[CHOICE_KEY]]
            if c.name not in values:
                return OMIT
            return self._resolve(c.value_of(values[c.name]), values)
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for k, v in node.items():
                if k == MERGE_KEY:
                    for ph in v if isinstance(v, list) else [v]:
                        r = self._resolve(ph, values)
                        if r is OMIT or r is None or r is False or r is True:
                            continue
                        clash = set(r) & set(node) | set(r) & set(out)
                        if clash:
                            raise ConfigError(f"space {self.name!r}: {MERGE_KEY} of {ph} sets {sorted(clash)}, which the enclosing mapping already has")
                        out.update(r)
                    continue
                r = self._resolve(v, values)
                if r is not OMIT:
                    out[k] = r
            return out
        if isinstance(node, list):
            return [r for r in (self._resolve(v, values) for v in node) if r is not OMIT]
        return copy.deepcopy(node)

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


# --------------------------------------------------------------------------------- parsing
def _check_label(label: Any, where: str) -> str:
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise ConfigError(f"{where}: label {label!r} must be a non-empty string of letters, digits, '_', '-' or '.'")
    return label


def _make_choice(name: str, raw: _ChoiceFile, where: str) -> ChoicePoint:
    kind = raw.type
    if kind is None:
        if raw.options is not None:
            kind = "categorical"
        elif raw.low is not None or raw.high is not None:
            kind = "int"
        elif raw.when_on is not OMIT or raw.when_off is not OMIT:
            kind = "bool"
        else:
            raise ConfigError(f"{where}: cannot tell the choice's type; give `options` (categorical), `low`/`high` (int) or `type: bool`")
    if not LABEL_RE.match(name):
        raise ConfigError(f"{where}: choice names may contain letters, digits, '_', '-' or '.'")
    data: dict[str, Any] = {"name": name, "type": kind, "description": raw.description, "default": raw.default}
    extra = {k for k in ("options",) if getattr(raw, k) is not None and kind != "categorical"}
    extra |= {k for k in ("low", "high") if getattr(raw, k) is not None and kind != "int"}
    extra |= {k for k in ("when_on", "when_off") if getattr(raw, k) is not OMIT and kind != "bool"}
    if extra:
        raise ConfigError(f"{where}: {', '.join(sorted(extra))} do not apply to a {kind} choice")
    if kind == "categorical":
        if not raw.options:
            raise ConfigError(f"{where}.options: a categorical choice needs at least one option")
        values, labels, explicit = [], [], []
        for i, opt in enumerate(raw.options):
            if isinstance(opt, dict) and set(opt) == {"label", "value"}:
                values.append(opt["value"])
                explicit.append(_check_label(opt["label"], f"{where}.options[{i}].label"))
            else:
                values.append(opt)
                explicit.append(None)
        seen_vals: dict[str, int] = {}
        for i, v in enumerate(values):
            key = json.dumps(v, sort_keys=True, default=str)
            if key in seen_vals:
                raise ConfigError(f"{where}.options[{i}]: duplicate labels/options: the same value as options[{seen_vals[key]}]")
            seen_vals[key] = i
        auto = auto_labels(values)
        labels = [e if e is not None else a for e, a in zip(explicit, auto)]
        dup = sorted({lab for lab in labels if labels.count(lab) > 1})
        if dup:
            raise ConfigError(f"{where}.options: duplicate labels {dup}; give the options explicit labels ({{label: ..., value: ...}})")
        data.update(options=values, option_labels=labels)
    elif kind == "int":
        if raw.low is None or raw.high is None:
            raise ConfigError(f"{where}: an int choice needs `low` and `high`")
        if raw.step < 1:
            raise ConfigError(f"{where}.step: must be >= 1, got {raw.step}")
        if raw.low > raw.high:
            raise ConfigError(f"{where}: empty range, low={raw.low} > high={raw.high}")
        data.update(low=raw.low, high=raw.high, step=raw.step)
    else:
        on = True if raw.when_on is OMIT else raw.when_on
        off = (None if raw.when_on is not OMIT else False) if raw.when_off is OMIT else raw.when_off
        data.update(when_on=on, when_off=off)
    cp = ChoicePoint(**data)
    if raw.default is not None:
        try:
            cp.normalize(raw.default)
        except ConfigError as exc:
            raise ConfigError(f"{where}.default: {exc}") from None
    return cp


def _option_sources(c: ChoicePoint, where: str) -> list[tuple[Any, Any, str]]:
    """(parent_value, template value, file path) of each option that can hold nested placeholders."""
    if c.type == "categorical":
        return [(lab, v, f"{where}.options[{i}]") for i, (lab, v) in enumerate(zip(c.labels(), c.options or []))]
    if c.type == "bool":
        return [(True, c.when_on, f"{where}.when_on"), (False, c.when_off, f"{where}.when_off")]
    return []


def _find_refs(node: Any, ctx: tuple[str, Any] | None, where: str, out: list[tuple[str, tuple[str, Any] | None, str]]) -> None:
    if is_placeholder(node):
        out.append((node[CHOICE_KEY], ctx, where))
        return
    if isinstance(node, dict):
        if CHOICE_KEY in node and len(node) > 1 and isinstance(node[CHOICE_KEY], str):
            raise ConfigError(f"{where}: a placeholder is written {{choice: NAME}} with no other keys, got {sorted(node)}")
        for k, v in node.items():
            _find_refs(v, ctx, f"{where}.{k}", out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _find_refs(v, ctx, f"{where}[{i}]", out)


def parse_space(data: Any, source: str = "", default_name: str | None = None) -> Space:
    """Validate a space mapping (as read from YAML); errors name `source` and the path inside it."""
    src = source or "space"
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: expected a mapping with `name`, `template` and `choices`, got {type(data).__name__}")
    try:
        raw = _SpaceFile.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, src, model=_SpaceFile) from None
    name = raw.name or default_name
    if not name:
        raise ConfigError(f"{src}: name: the space needs a name")
    if not raw.choices:
        raise ConfigError(f"{src}: choices: the space has no choices; add at least one (a space with one point is an architecture file)")
    choices = {n: _make_choice(n, c, f"{src}: choices.{n}") for n, c in raw.choices.items()}

    # where each choice is referenced, and from which parent option
    refs: list[tuple[str, tuple[str, Any] | None, str]] = []
    _find_refs(raw.template, None, "template", refs)
    for c in choices.values():
        for pv, val, where in _option_sources(c, f"choices.{c.name}"):
            _find_refs(val, (c.name, pv), where, refs)
    seen_ctx: dict[str, tuple[tuple[str, Any] | None, str]] = {}
    for cname, ctx, where in refs:
        if cname not in choices:
            near = closest(cname, choices)
            hint = f"did you mean {near[0]!r}?" if near else f"choices: {', '.join(choices)}"
            raise ConfigError(f"{src}: {where}: unknown choice {cname!r} ({hint})")
        if cname in seen_ctx and seen_ctx[cname][0] != ctx:
            other_ctx, other_where = seen_ctx[cname]
            raise ConfigError(
                f"{src}: {where}: choice {cname!r} is used under {_ctx_text(ctx)} here but under {_ctx_text(other_ctx)} at {other_where}; "
                "a choice has one parent: use two choices"
            )
        seen_ctx.setdefault(cname, (ctx, where))
    unused = [n for n in choices if n not in seen_ctx]
    if unused:
        raise ConfigError(f"{src}: choices.{unused[0]}: choice {unused[0]!r} is never used; place {{choice: {unused[0]}}} in the template or in an option")

    # parents: implied by placement, or explicit (for choices placed in the template itself)
    for n, c in choices.items():
        implied = seen_ctx[n][0]
        rawc = raw.choices[n]
        where = f"{src}: choices.{n}"
        if rawc.parent is not None:
            if rawc.parent not in choices:
                near = closest(rawc.parent, choices)
                hint = f"did you mean {near[0]!r}?" if near else f"choices: {', '.join(choices)}"
                raise ConfigError(f"{where}.parent: unknown choice {rawc.parent!r} ({hint})")
            parent = choices[rawc.parent]
            pv = True if rawc.parent_value is None and parent.type == "bool" else rawc.parent_value
            if pv is None:
                raise ConfigError(f"{where}.parent_value: give the value of {rawc.parent!r} under which this choice exists ({parent.labels()})")
            try:
                pv = parent.normalize(pv)
            except ConfigError as exc:
                raise ConfigError(f"{where}.parent_value: {exc}") from None
            if implied is not None and implied != (rawc.parent, pv):
                raise ConfigError(f"{where}.parent: contradicts its placement under {_ctx_text(implied)} ({seen_ctx[n][1]})")
            c.parent, c.parent_value = rawc.parent, pv
        elif rawc.parent_value is not None:
            raise ConfigError(f"{where}.parent_value: set without `parent`")
        elif implied is not None:
            c.parent, c.parent_value = implied
        else:
            c.parent, c.parent_value = None, True
    # order: parents first (stable), no cycles
    ordered: list[ChoicePoint] = []
    state: dict[str, int] = {}

    def visit(n: str, chain: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            raise ConfigError(f"{src}: choices: cycle of conditional choices {' -> '.join(chain + [n])}")
        state[n] = 1
        p = choices[n].parent
        if p is not None:
            visit(p, chain + [n])
        state[n] = 2
        ordered.append(choices[n])

    for n in choices:
        visit(n, [])
    space = Space(name=name, description=raw.description.strip(), choices=ordered, template=raw.template, source=source)
    return space


def _ctx_text(ctx: tuple[str, Any] | None) -> str:
    return "the template (unconditional)" if ctx is None else f"{ctx[0]}={ctx[1]!r}"


# --------------------------------------------------------------------------------- component checks
def check_components(space: Space, registry: "Registry | None" = None) -> None:
    """Every component named anywhere in the space is registered and its fixed params validate.

    Errors name the space file, the path inside it and the closest registered names.
    """
    if registry is None:
        from mdmt_nas.plugins import get_registry

        registry = get_registry()
    src = space.source or f"space {space.name!r}"
    by_name = {c.name: c for c in space.choices}
    checked: set[tuple[str, str]] = set()

    def spec_at(node: Any, kind: str, where: str) -> None:
        if is_placeholder(node):
            c = by_name[node[CHOICE_KEY]]
            for _pv, val, w in _option_sources(c, f"choices.{c.name}"):
                spec_at(val, kind, w)
            return
        if node is None:
            return
        if isinstance(node, str):
            node = {"name": node}
        if not isinstance(node, dict) or "name" not in node:
            raise ConfigError(f"{src}: {where}: expected a {kind} (a name or {{name: ..., params: {{...}}}}), got {node!r}")
        name = node["name"]
        if is_placeholder(name):
            raise ConfigError(f"{src}: {where}.name: a component name cannot be a choice; make the whole component the choice")
        if (kind, name) not in registry:
            raise UnknownComponentError(kind, name, registry.names(kind), where=f"{src}: {where}.name")
        key = (where, json.dumps(node, sort_keys=True, default=str))
        if key in checked:
            return
        checked.add(key)
        params = node.get("params", {})
        if isinstance(params, dict) and not _has_placeholder(params):
            from mdmt_nas.model import resolve

            try:
                resolve(registry, kind, ComponentSpec.model_validate(node), f"{src}: {where}")
            except ValidationError as exc:
                raise ConfigError(f"{src}: {where}: {exc.errors()[0].get('msg')}") from None
        # params with placeholders inside are validated when to_arch builds an architecture

    def group_at(node: Any, where: str) -> None:
        if is_placeholder(node):
            c = by_name[node[CHOICE_KEY]]
            for _pv, val, w in _option_sources(c, f"choices.{c.name}"):
                group_at(val, w)
            return
        if node is None or isinstance(node, bool):
            return
        if not isinstance(node, dict):
            raise ConfigError(f"{src}: {where}: expected an expert group mapping, got {node!r}")
        for k, v in node.items():
            if k == MERGE_KEY:
                merge_at(v, where, group_at)
            elif k == "expert":
                spec_at(v, "expert", f"{where}.expert")
            elif k == "experts":
                items_at(v, "expert", f"{where}.experts")
            elif k == "fusion":
                spec_at(v, "fusion", f"{where}.fusion")

    def items_at(node: Any, kind: str, where: str) -> None:
        if is_placeholder(node):
            c = by_name[node[CHOICE_KEY]]
            for _pv, val, w in _option_sources(c, f"choices.{c.name}"):
                items_at(val, kind, w)
            return
        if isinstance(node, list):
            for i, v in enumerate(node):
                spec_at(v, kind, f"{where}[{i}]")

    def merge_at(v: Any, where: str, fn: Any) -> None:
        for ph in v if isinstance(v, list) else [v]:
            if not is_placeholder(ph):
                raise ConfigError(f"{src}: {where}.{MERGE_KEY}: expected {{choice: NAME}} placeholders, got {ph!r}")
            c = by_name[ph[CHOICE_KEY]]
            for _pv, val, w in _option_sources(c, f"choices.{c.name}"):
                if val is None or isinstance(val, bool):
                    continue
                if not isinstance(val, dict):
                    raise ConfigError(f"{src}: {w}: a {MERGE_KEY} choice's value must be a mapping (or null), got {val!r}")
                fn(val, w)

    def top_at(node: dict, where: str) -> None:
        for k, v in node.items():
            w = f"{where}.{k}" if where else k
            if k == MERGE_KEY:
                merge_at(v, where or "template", top_at)
            elif k in TOP_KINDS:
                spec_at(v, TOP_KINDS[k], w)
            elif k in GROUPS:
                group_at(v, w)

    top_at(space.template, "template")


def _has_placeholder(node: Any) -> bool:
    if is_placeholder(node):
        return True
    if isinstance(node, dict):
        return any(_has_placeholder(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_placeholder(v) for v in node)
    return False


# --------------------------------------------------------------------------------- loading
_CACHE: dict[tuple[str, str], Space] = {}


def load_space_file(path: str | Path, registry: "Registry | None" = None) -> Space:
    """Load and validate a space YAML/JSON file (components checked against the registry)."""
    path = Path(path)
    try:
        import hashlib

        key = (str(path.resolve()), hashlib.sha256(path.read_bytes()).hexdigest())
    except OSError:
        key = None
    if key is not None and key in _CACHE and registry is None:
        return _CACHE[key]
    data = load_yaml_or_json(path)
    space = parse_space(data, str(path), default_name=path.stem)
    check_components(space, registry)
    try:
        space.to_arch(space.default_assignment())
    except ConfigError as exc:
        raise ConfigError(f"{path}: the default point of the space is not a valid architecture:\n{exc}") from None
    if key is not None and registry is None:
        _CACHE[key] = space
    return space


def _looks_like_path(s: str) -> bool:
    return s.endswith((".yaml", ".yml", ".json")) or "/" in s or Path(s).is_file()


def load_space(name_or_path: str | Path | Space) -> Space:
    """A registered space by name (kind "space"), or a space file by path."""
    if isinstance(name_or_path, Space):
        return name_or_path
    if isinstance(name_or_path, Path) or _looks_like_path(str(name_or_path)):
        return load_space_file(name_or_path)
    from mdmt_nas.plugins import get_registry

    registry = get_registry()
    entry = registry.entry("space", str(name_or_path), where="--space")
    return _from_entry(entry.obj)


def _from_entry(obj: Any) -> Space:
    if isinstance(obj, Space):
        return obj
    if isinstance(obj, (str, Path)):
        return load_space_file(obj)
    if hasattr(obj, "read_text"):  # an importlib.resources Traversable
        with __import__("importlib.resources").resources.as_file(obj) as p:
            return load_space_file(p)
    raise ConfigError(f"registered space {obj!r} is neither a path nor a Space")


def list_spaces(errors: list[tuple[str, str, Exception]] | None = None) -> list[tuple[str, str, Space]]:
    """(name, plugin, Space) of every registered space; broken ones go to `errors` if given, else raise."""
    from mdmt_nas.plugins import get_registry

    out = []
    for entry in get_registry().entries("space"):
        try:
            out.append((entry.name, entry.plugin, _from_entry(entry.obj)))
        except Exception as exc:
            if errors is None:
                raise
            errors.append((entry.name, entry.plugin, exc))
    return out


__all__ = [
    "ChoicePoint",
    "Space",
    "load_space",
    "load_space_file",
    "list_spaces",
    "parse_space",
    "check_components",
    "auto_labels",
    "MERGE_KEY",
]
