"""Relaxation and its inverse: a space relaxed into one supernet Architecture of mixed ops, and the argmax back.

`relax(space)` turns every choice point into a differentiable weighting:

- a component position (bottom, adapters, gate, fusions, tower, an expert) whose
  value depends on choices becomes a *mixed op* (`darts.mixed_*` components):
  the softmax-weighted sum of every candidate it can hold. A candidate's weight
  is the probability of the choices that lead to it: a sum over paths of the
  product of `softmax(alpha[choice])[value]` (so choices nested in params, in
  options or under flags all work the same way);
- an expert count (`num`) becomes soft slot masks over the largest count:
  expert slot j is scaled by P(count > j);
- a presence flag of an expert module scales the module's experts by P(on);
  a missing optional component (no bottom / adapter) is the identity.

Mixed ops whose candidates differ in output size are zero-padded to the largest.
Gates, fusions and towers are normalised over the branches that set them (a
branch that leaves one out, e.g. no gate when the common experts are off, does
not count). Choices the supernet cannot relax (the balancer, scalar fields such
as `levels`, `embedding_dim`, `gate_detach_input`, and their sub-choices) keep
their space default; `Relaxation.fixed` lists them.

`discretize(space, alphas)` is the inverse: the argmax of each active choice's
alpha; `derive(space, relaxation, controller)` discretises a trained supernet
(and keeps an expert group when the argmax would drop them all). The mixed ops
live in `mixed_ops.py`, the shared alphas in `alphas.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from mdmt_nas.arch import Architecture, ComponentSpec
from mdmt_nas.errors import ConfigError
from mdmt_nas.spaces import CHOICE_KEY, GROUPS, MERGE_KEY, OMIT, TOP_KINDS, Space, is_placeholder
from mdmt_nas.spaces.template import Placeholders, TemplateVisitor, merge_list, top_fields

if TYPE_CHECKING:  # pragma: no cover
    from mdmt_nas.search.darts.alphas import AlphaController

ABSENT = OMIT  # a key a branch does not set
Term = tuple[tuple[str, int], ...]  # product of P(choice = value index)

#: Architecture fields whose union over branches is taken; the others come from the default point
UNION_FIELDS = ("gate_scope", "adapter_sites")
OPTIONAL_KINDS = ("bottom", "input_adapter", "adapter")  # absent = identity
MIXED_NAMES = {
    "bottom": "darts.mixed_expert",
    "input_adapter": "darts.mixed_input_adapter",
    "adapter": "darts.mixed_adapter",
    "gate": "darts.mixed_gate",
    "fusion": "darts.mixed_fusion",
    "tower": "darts.mixed_tower",
    "group_fusion": "darts.mixed_group_fusion",
    "expert": "darts.mixed_expert",
}


# ============================================================================ relaxation
@dataclass
class Relaxation:
    """A relaxed space: the supernet architecture plus which choices it relaxes."""

    space: Space
    arch: Architecture
    relaxed: dict[str, int]  # choice -> number of values (length of its alpha)
    fixed: dict[str, Any]  # choice -> value kept (the space default)
    notes: list[str] = field(default_factory=list)

    def labels(self, choice: str) -> list[str]:
        return self.space.choice(choice).labels()


def _merge_terms(a: Term, b: Term, order: dict[str, int]) -> Term | None:
    """Product of two conditions; None if they contradict (one choice, two values)."""
    d = dict(a)
    for c, i in b:
        if d.get(c, i) != i:
            return None
        d[c] = i
    return tuple(sorted(d.items(), key=lambda ci: (order[ci[0]], ci[1])))


class _Expander(TemplateVisitor):
    """The fold of the relaxation: every concrete value of a template node, each with the condition it arises under.

    `visit(node, cond)` (also `full`) expands placeholders, `$merge` and every mapping
    and list inside; `shallow(node, cond)` only the placeholders at `node` itself and
    its `$merge`. Fixed choices take their kept value, no condition.
    """

    def __init__(self, space: Space, fixed: dict[str, Any]):
        super().__init__(space.choices)
        self.space = space
        self.fixed = fixed
        self.order = {c.name: i for i, c in enumerate(space.choices)}

    def merge(self, a: Term, b: Term) -> Term | None:
        return _merge_terms(a, b, self.order)

    def activation(self, name: str) -> list[tuple[Term, bool]]:
        """Conditions on the parent chain under which choice `name` is active (True) or not."""
        c = self.by_name[name]
        if c.parent is None:
            return [((), True)]
        p = self.by_name[c.parent]
        out: list[tuple[Term, bool]] = []
        for term, act in self.activation(p.name):
            if not act:
                out.append((term, False))
            elif p.name in self.fixed:
                out.append((term, self.fixed[p.name] == c.parent_value))
            else:
                for i, v in enumerate(p.values()):
                    t = self.merge(term, ((p.name, i),))
                    if t is not None:
                        out.append((t, v == c.parent_value))
        return out

    def alternatives(self, c: Any, cond: Term) -> list[tuple[Any, Term]]:
        """(template value, condition) of each value choice `c` takes under `cond`; ABSENT where it is inactive."""
        out: list[tuple[Any, Term]] = []
        for term, act in self.activation(c.name):
            t0 = self.merge(cond, term)
            if t0 is None:
                continue
            if not act:
                out.append((ABSENT, t0))
            elif c.name in self.fixed:
                out.append((c.value_of(self.fixed[c.name]), t0))
            else:
                for i, v in enumerate(c.values()):
                    t = self.merge(t0, ((c.name, i),))
                    if t is not None:
                        out.append((c.value_of(v), t))
        return out

    def merged(self, node: dict, cond: Term) -> list[tuple[dict, Term]]:
        """The variants of a mapping with a `$merge`: each option's mapping merged in (and their own `$merge`)."""
        base = {k: v for k, v in node.items() if k != MERGE_KEY}
        variants: list[tuple[dict, Term]] = [(base, cond)]
        for ph in merge_list(node[MERGE_KEY]):
            nxt = []
            for d, t in variants:
                for val, tv in self.shallow(ph, t):
                    if val is ABSENT or val is None or isinstance(val, bool):
                        nxt.append((d, tv))
                    else:
                        nxt.append(({**d, **val}, tv))
            variants = nxt
        out = []
        for d, t in variants:
            out.extend(self.shallow(d, t) if MERGE_KEY in d else [(d, t)])
        return out

    def shallow(self, node: Any, cond: Term) -> list[tuple[Any, Term]]:
        """Expand placeholders at `node` itself (and `$merge` of a mapping), not inside it."""
        if is_placeholder(node):
            c = self.by_name[node[CHOICE_KEY]]
            return [
                (v, t)
                for val, t0 in self.alternatives(c, cond)
                for v, t in ([(ABSENT, t0)] if val is ABSENT else self.shallow(val, t0))
            ]
        if isinstance(node, dict) and MERGE_KEY in node:
            return self.merged(node, cond)
        return [(node, cond)]

    def full(self, node: Any, cond: Term) -> list[tuple[Any, Term]]:
        """Every concrete value of `node` with the condition under which it arises."""
        return self.visit(node, cond)

    def placeholder(self, c: Any, cond: Term) -> list[tuple[Any, Term]]:
        return [
            (v, t)
            for val, t0 in self.alternatives(c, cond)
            for v, t in ([(ABSENT, t0)] if val is ABSENT else self.visit(val, t0))
        ]

    def mapping(self, node: dict, cond: Term) -> list[tuple[Any, Term]]:
        if MERGE_KEY in node:
            return [x for d, t in self.merged(node, cond) for x in self.mapping(d, t)]
        variants: list[tuple[dict, Term]] = [({}, cond)]
        for k, v in node.items():
            nxt = []
            for d, td in variants:
                for sub, ts in self.visit(v, td):
                    nxt.append(({**d, k: sub} if sub is not ABSENT else d, ts))
            variants = nxt
        return variants

    def sequence(self, node: list, cond: Term) -> list[tuple[Any, Term]]:
        lv: list[tuple[list, Term]] = [([], cond)]
        for item in node:
            nxt = []
            for lst, tl in lv:
                for sub, ts in self.visit(item, tl):
                    nxt.append((lst + [sub] if sub is not ABSENT else lst, ts))
            lv = nxt
        return lv

    def leaf(self, node: Any, cond: Term) -> list[tuple[Any, Term]]:
        return [(node, cond)]


def _find_fixed(space: Space) -> dict[str, str]:
    """Choices the supernet cannot relax: used in scalar fields or the balancer (and their sub-choices)."""
    reasons: dict[str, str] = {}
    walk = TemplateVisitor(space.choices)

    def mark(node: Any, why: str) -> None:
        for name in Placeholders(space.choices, follow=True, seen=reasons).visit(node):
            reasons[name] = why

    for k, v, _w in top_fields(walk, space.template, strict=False):
        if k == "balancer":
            mark(v, "the balancer is a training rule, not a differentiable op")
        elif k not in TOP_KINDS and k not in GROUPS and k not in UNION_FIELDS + ("heads",):
            mark(v, f"`{k}` changes the model's structure")
        elif k in ("heads",):
            mark(v, "`heads` changes the model's structure")
        elif k in UNION_FIELDS:
            mark(v, f"`{k}` changes the model's wiring")
    changed = True
    while changed:  # sub-choices of fixed choices are fixed too
        changed = False
        for c in space.choices:
            if c.name not in reasons and c.parent in reasons:
                reasons[c.name] = f"its parent {c.parent!r} is fixed"
                changed = True
    return reasons


def _simplify(terms: set[Term], sizes: dict[str, int], order: dict[str, int]) -> set[Term]:
    """Collapse sums of terms that run over every value of a choice (sum of its probabilities = 1)."""
    terms = set(terms)
    changed = True
    while changed:
        changed = False
        for t in sorted(terms, key=len, reverse=True):
            for c, _i in t:
                rest = tuple(f for f in t if f[0] != c)
                siblings = {_merge_terms(rest, ((c, j),), order) for j in range(sizes[c])}
                if siblings <= terms:
                    terms -= siblings
                    terms.add(rest)
                    changed = True
                    break
            if changed:
                break
    return terms


def _spec_dict(v: Any) -> dict | None:
    if v is None or v is ABSENT:
        return None
    return ComponentSpec.model_validate(v).model_dump(mode="json")


class _Builder:
    def __init__(self, space: Space, fixed: dict[str, Any]):
        self.space = space
        self.x = _Expander(space, fixed)
        self.sizes = {c.name: len(c) for c in space.choices}
        self.used: set[str] = set()

    def _terms_json(self, terms: set[Term]) -> list[list[list[Any]]]:
        for t in terms:
            self.used.update(c for c, _ in t)
        return [[[c, i] for c, i in t] for t in sorted(terms, key=lambda t: (len(t), t))]

    def mixed(self, kind_key: str, cands: list[tuple[Any, Term]], optional: bool) -> dict | None:
        """A concrete spec if every branch agrees, else a mixed-op spec; None if absent everywhere."""
        by_key: dict[str, tuple[dict | None, set[Term]]] = {}
        for val, t in cands:
            if val is ABSENT and not optional:
                continue
            spec = _spec_dict(val)
            key = json.dumps(spec, sort_keys=True)
            by_key.setdefault(key, (spec, set()))[1].add(t)
        if not by_key:
            return None
        if len(by_key) == 1:
            return next(iter(by_key.values()))[0]
        cand_json = []
        for spec, terms in by_key.values():
            terms = _simplify(terms, self.sizes, self.x.order)
            cand_json.append({"spec": spec, "terms": [self._terms_json(terms)]})
        return self._mixed_spec(MIXED_NAMES[kind_key], cand_json, normalize=not optional)

    def _mixed_spec(self, name: str, cands: list[dict], normalize: bool) -> dict:
        names = sorted({f[0] for c in cands for slot in c["terms"] for t in slot for f in t}, key=self.x.order.get)
        return {
            "name": name,
            "params": {"candidates": cands, "choices": {n: self.sizes[n] for n in names}, "normalize": normalize},
        }

    def group(self, entries: list[tuple[Any, Term]]) -> dict | None:
        present: list[tuple[dict, Term]] = []
        for node, t in entries:
            if node is ABSENT:
                continue
            for val, tv in self.x.shallow(node, t):
                if isinstance(val, dict):
                    present.append((val, tv))
                elif val not in (None, ABSENT, False):
                    raise ConfigError(
                        f"space {self.space.name!r}: an expert group must be a mapping or null, got {val!r}"
                    )
        if not present:
            return None
        slots: list[list[tuple[dict | None, Term]]] = []
        fusions: list[tuple[Any, Term]] = []

        def put(j: int, spec: Any, t: Term) -> None:
            while len(slots) <= j:
                slots.append([])
            slots[j].append((_spec_dict(spec), t))

        for g, t in present:
            if "expert" in g:
                for n, tn in self.x.full(g.get("num", 1), t):
                    for spec, ts in self.x.full(g["expert"], tn):
                        for j in range(int(n)):
                            put(j, spec, ts)
            else:
                for lst, tl in self.x.full(g.get("experts", []), t):
                    for j, spec in enumerate(lst):
                        put(j, spec, tl)
            fusions.extend(self.x.full(g.get("fusion", ABSENT), t))
        S = len(slots)
        keys: dict[str, dict | None] = {}
        per: dict[str, list[set[Term]]] = {}
        for j, slot in enumerate(slots):
            for spec, t in slot:
                k = json.dumps(spec, sort_keys=True)
                keys[k] = spec
                per.setdefault(k, [set() for _ in range(S)])[j].add(t)
        per = {k: [_simplify(s, self.sizes, self.x.order) for s in v] for k, v in per.items()}
        out: dict[str, Any] = {}
        if len(per) == 1 and all(s == {()} for s in next(iter(per.values()))):
            out["expert"] = next(iter(keys.values()))
        else:
            cands = [{"spec": keys[k], "terms": [self._terms_json(s) for s in v]} for k, v in per.items()]
            out["expert"] = self._mixed_spec(MIXED_NAMES["expert"], cands, normalize=False)
        out["num"] = S
        fusion = self.mixed("group_fusion", fusions, optional=False)
        if fusion is not None:
            out["fusion"] = fusion
        return out


def relax(space: Space) -> Relaxation:
    """The supernet Architecture of a space and the choices it relaxes (see the module docstring)."""
    reasons = _find_fixed(space)
    default = space.default_assignment()
    fixed = {n: default.get(n, space.choice(n).default_value()) for n in reasons}
    b = _Builder(space, fixed)
    base = space.to_arch(default).model_dump(mode="json")
    variants = b.x.shallow(space.template, ())
    keys: list[str] = []
    for d, _t in variants:
        keys.extend(k for k in d if k not in keys)
    data: dict[str, Any] = {k: v for k, v in base.items() if k not in TOP_KINDS and k not in GROUPS}
    data["balancer"] = base["balancer"]
    for k in keys:
        entries = [(d.get(k, ABSENT), t) for d, t in variants]
        if k in GROUPS:
            g = b.group(entries)
            data[k] = g
        elif k in TOP_KINDS and k != "balancer":
            cands = []
            for node, t in entries:
                cands.extend([(ABSENT, t)] if node is ABSENT else b.x.full(node, t))
            spec = b.mixed(k, cands, optional=k in OPTIONAL_KINDS)
            if spec is not None:
                data[k] = spec
            else:
                data.pop(k, None)
        elif k in UNION_FIELDS:
            vals: list[str] = []
            for node, t in entries:
                for v, _tv in [] if node is ABSENT else b.x.full(node, t):
                    vals.extend(x for x in (v or []) if x not in vals)
            data[k] = vals or base.get(k)
        elif k == "heads":
            heads = {v for node, t in entries if node is not ABSENT for v, _ in b.x.full(node, t)}
            data[k] = "domain_task" if "domain_task" in heads else base[k]
    groups = [g for g in GROUPS if data.get(g)]
    if data.get("gate_scope") is not None:
        data["gate_scope"] = [g for g in GROUPS if g in data["gate_scope"] and g in groups]
        if "shared" in groups and "shared" not in data["gate_scope"]:
            data["gate_scope"].insert(0, "shared")
    if data.get("adapter") is None:
        data["adapter_sites"] = []
    elif not data.get("adapter_sites"):
        data["adapter_sites"] = base.get("adapter_sites") or ["towers"]
    data["name"] = f"{space.name}-supernet"
    try:
        arch = Architecture.model_validate(data)
    except Exception as exc:
        raise ConfigError(
            f"space {space.name!r}: its relaxed supernet is not a valid architecture ({exc}); DARTS cannot search this space"
        ) from None
    relaxed = {c.name: len(c) for c in space.choices if c.name in b.used}
    fixed_all = {c.name: default.get(c.name, c.default_value()) for c in space.choices if c.name not in relaxed}
    notes = [f"{n}: kept at {fixed_all[n]!r} ({reasons.get(n, 'does not change the supernet')})" for n in fixed_all]
    return Relaxation(space=space, arch=arch, relaxed=relaxed, fixed=fixed_all, notes=notes)


# ============================================================================ discretisation
def discretize(
    space: Space, alphas: dict[str, torch.Tensor], forced: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Architecture]:
    """Argmax of each active choice's alpha (choices without alphas keep their default; `forced` values win)."""

    def pick(c: Any) -> Any:
        if forced and c.name in forced:
            return c.normalize(forced[c.name], space.name)
        a = alphas.get(c.name)
        if a is None:
            return c.default_value()
        if a.numel() != len(c):
            raise ConfigError(
                f"space {space.name!r}: alpha of {c.name!r} has {a.numel()} entries, the choice has {len(c)} values"
            )
        return c.values()[int(a.detach().reshape(-1).argmax())]

    out = space.assign(pick)
    return out, space.to_arch(out)


def derive(space: Any, relaxation: Relaxation, ctl: AlphaController) -> tuple[dict[str, Any], Architecture, str]:
    """Argmax per active choice; returns (assignment, architecture, note of any adjustment).

    The supernet cannot represent an architecture without expert groups (its bottom
    would feed the towers directly), so if the argmax removes every group while the
    supernet has some, the choice with the smallest probability margin is moved to
    its next value that keeps a group.
    """
    alphas = {c: a.detach() for c, a in ctl.alphas.items()}
    assignment, arch = discretize(space, alphas)
    if arch.groups() or not relaxation.arch.groups():
        return assignment, arch, ""
    probs = {c: torch.softmax(a, -1) for c, a in alphas.items()}

    def margin(c: str) -> float:
        top = probs[c].topk(min(2, probs[c].numel())).values
        return float(top[0] - top[-1])

    for c in sorted((c for c in assignment if c in probs), key=margin):
        choice = space.choice(c)
        for idx in probs[c].argsort(descending=True).tolist():
            value = choice.values()[idx]
            if value == assignment[c]:
                continue
            a2, arch2 = discretize(space, alphas, forced={c: value})
            if arch2.groups():
                note = (
                    f"the argmax {assignment} has no expert groups, which the supernet cannot represent; "
                    f"set {c}={value} (smallest margin {margin(c):.3f})"
                )
                return a2, arch2, note
    return assignment, arch, ""
