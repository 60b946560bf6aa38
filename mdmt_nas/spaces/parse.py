"""Reading a search space: a YAML/JSON file (or mapping) validated into a Space, and the registered spaces by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdmt_nas.errors import ConfigError, closest
from mdmt_nas.files import config_error, load_yaml_or_json
from mdmt_nas.spaces.check import check_components
from mdmt_nas.spaces.space import (
    CHOICE_KEY,
    LABEL_RE,
    OMIT,
    ChoicePoint,
    KnownPoint,
    Space,
    auto_labels,
    is_placeholder,
    option_sources,
)

if TYPE_CHECKING:  # pragma: no cover
    from mdmt_nas.plugins.registry import Registry


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
    known: list[KnownPoint] = Field(default_factory=list)


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
            raise ConfigError(
                f"{where}: cannot tell the choice's type; give `options` (categorical), `low`/`high` (int) or `type: bool`"
            )
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
                raise ConfigError(
                    f"{where}.options[{i}]: duplicate labels/options: the same value as options[{seen_vals[key]}]"
                )
            seen_vals[key] = i
        auto = auto_labels(values)
        labels = [e if e is not None else a for e, a in zip(explicit, auto)]
        dup = sorted({lab for lab in labels if labels.count(lab) > 1})
        if dup:
            raise ConfigError(
                f"{where}.options: duplicate labels {dup}; give the options explicit labels ({{label: ..., value: ...}})"
            )
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


def _find_refs(
    node: Any, ctx: tuple[str, Any] | None, where: str, out: list[tuple[str, tuple[str, Any] | None, str]]
) -> None:
    if is_placeholder(node):
        out.append((node[CHOICE_KEY], ctx, where))
        return
    if isinstance(node, dict):
        if CHOICE_KEY in node and len(node) > 1 and isinstance(node[CHOICE_KEY], str):
            raise ConfigError(
                f"{where}: a placeholder is written {{choice: NAME}} with no other keys, got {sorted(node)}"
            )
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
        raise ConfigError(
            f"{src}: choices: the space has no choices; add at least one (a space with one point is an architecture file)"
        )
    choices = {n: _make_choice(n, c, f"{src}: choices.{n}") for n, c in raw.choices.items()}
    placed = _placements(raw, choices, src)
    _set_parents(raw, choices, placed, src)
    space = Space(
        name=name,
        description=raw.description.strip(),
        choices=_parents_first(choices, src),
        template=raw.template,
        source=source,
    )
    space.known = _known_points(raw, space, src)
    return space


def _known_points(raw: _SpaceFile, space: Space, src: str) -> list[KnownPoint]:
    """The `known:` entries with their full assignments (names unique, choices and values checked)."""
    names = [k.name for k in raw.known]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{src}: known: {dup[0]!r} is listed twice; known points need distinct names")
    return [
        k.model_copy(update={"assignment": space.assignment_from(k.assign, f"{src}: known.{i} ({k.name}).assign")})
        for i, k in enumerate(raw.known)
    ]


def _placements(
    raw: _SpaceFile, choices: dict[str, ChoicePoint], src: str
) -> dict[str, tuple[tuple[str, Any] | None, str]]:
    """Where each choice is referenced: (parent choice and option it sits under, or None; path in the file)."""
    refs: list[tuple[str, tuple[str, Any] | None, str]] = []
    _find_refs(raw.template, None, "template", refs)
    for c in choices.values():
        for pv, val, where in option_sources(c, f"choices.{c.name}"):
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
        raise ConfigError(
            f"{src}: choices.{unused[0]}: choice {unused[0]!r} is never used; place {{choice: {unused[0]}}} in the template or in an option"
        )
    return seen_ctx


def _set_parents(
    raw: _SpaceFile, choices: dict[str, ChoicePoint], seen_ctx: dict[str, tuple[tuple[str, Any] | None, str]], src: str
) -> None:
    """Each choice's parent: implied by its placement, or explicit (for choices placed in the template itself)."""
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
                raise ConfigError(
                    f"{where}.parent_value: give the value of {rawc.parent!r} under which this choice exists ({parent.labels()})"
                )
            try:
                pv = parent.normalize(pv)
            except ConfigError as exc:
                raise ConfigError(f"{where}.parent_value: {exc}") from None
            if implied is not None and implied != (rawc.parent, pv):
                raise ConfigError(
                    f"{where}.parent: contradicts its placement under {_ctx_text(implied)} ({seen_ctx[n][1]})"
                )
            c.parent, c.parent_value = rawc.parent, pv
        elif rawc.parent_value is not None:
            raise ConfigError(f"{where}.parent_value: set without `parent`")
        elif implied is not None:
            c.parent, c.parent_value = implied
        else:
            c.parent, c.parent_value = None, True


def _parents_first(choices: dict[str, ChoicePoint], src: str) -> list[ChoicePoint]:
    """The choices with each parent before its children (stable); a cycle of conditional choices is an error."""
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
    return ordered


def _ctx_text(ctx: tuple[str, Any] | None) -> str:
    return "the template (unconditional)" if ctx is None else f"{ctx[0]}={ctx[1]!r}"


# --------------------------------------------------------------------------------- loading
_CACHE: dict[tuple[str, str], Space] = {}


def load_space_file(path: str | Path, registry: Registry | None = None) -> Space:
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
    for k in space.known:
        try:
            space.to_arch(k.assignment)
        except ConfigError as exc:
            raise ConfigError(f"{path}: known point {k.name!r} is not a valid architecture:\n{exc}") from None
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
