"""The DARTS supernet: a space relaxed into one Architecture of mixed operations.

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

After `build_model(relaxation.arch, schema)`, `AlphaController.attach(model)`
ties the alphas of every mixed op of one choice to one shared parameter (named
`arch_<choice>`, so `model.arch_parameters()` returns exactly the alphas) and
computes the choice probabilities once per step (softmax, or a hard Gumbel
sample for GDAS, shared by all mixed ops).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mdmt_nas.arch import Architecture, ComponentSpec
from mdmt_nas.components import Adapter, Context, Expert, ExpertBank, Fusion, Gate, Tower
from mdmt_nas.errors import ConfigError
from mdmt_nas.spaces import CHOICE_KEY, GROUPS, MERGE_KEY, OMIT, TOP_KINDS, Space, is_placeholder

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


def alpha_key(choice: str) -> str:
    """Parameter name of a choice's alpha: `arch_<choice>` (an architecture parameter by naming convention)."""
    return "arch_" + choice.replace(".", "_")


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


class _Expander:
    def __init__(self, space: Space, fixed: dict[str, Any]):
        self.space = space
        self.fixed = fixed
        self.order = {c.name: i for i, c in enumerate(space.choices)}
        self.by_name = {c.name: c for c in space.choices}

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

    def shallow(self, node: Any, cond: Term) -> list[tuple[Any, Term]]:
        """Expand placeholders at `node` itself (and `$merge` of a mapping), not inside it."""
        if is_placeholder(node):
            name = node[CHOICE_KEY]
            c = self.by_name[name]
            out: list[tuple[Any, Term]] = []
            for term, act in self.activation(name):
                t0 = self.merge(cond, term)
                if t0 is None:
                    continue
                if not act:
                    out.append((ABSENT, t0))
                elif name in self.fixed:
                    out.extend(self.shallow(c.value_of(self.fixed[name]), t0))
                else:
                    for i, v in enumerate(c.values()):
                        t = self.merge(t0, ((name, i),))
                        if t is not None:
                            out.extend(self.shallow(c.value_of(v), t))
            return out
        if isinstance(node, dict) and MERGE_KEY in node:
            base = {k: v for k, v in node.items() if k != MERGE_KEY}
            variants: list[tuple[dict, Term]] = [(base, cond)]
            phs = node[MERGE_KEY] if isinstance(node[MERGE_KEY], list) else [node[MERGE_KEY]]
            for ph in phs:
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
        return [(node, cond)]

    def full(self, node: Any, cond: Term) -> list[tuple[Any, Term]]:
        """Every concrete value of `node` with the condition under which it arises."""
        out: list[tuple[Any, Term]] = []
        for val, t in self.shallow(node, cond):
            if isinstance(val, dict):
                variants: list[tuple[dict, Term]] = [({}, t)]
                for k, v in val.items():
                    nxt = []
                    for d, td in variants:
                        for sub, ts in self.full(v, td):
                            nxt.append(({**d, k: sub} if sub is not ABSENT else d, ts))
                    variants = nxt
                out.extend(variants)
            elif isinstance(val, list):
                lv: list[tuple[list, Term]] = [([], t)]
                for item in val:
                    nxt = []
                    for lst, tl in lv:
                        for sub, ts in self.full(item, tl):
                            nxt.append((lst + [sub] if sub is not ABSENT else lst, ts))
                    lv = nxt
                out.extend(lv)
            else:
                out.append((val, t))
        return out


def _find_fixed(space: Space) -> dict[str, str]:
    """Choices the supernet cannot relax: used in scalar fields or the balancer (and their sub-choices)."""
    by_name = {c.name: c for c in space.choices}
    reasons: dict[str, str] = {}

    def mark(node: Any, why: str) -> None:
        if is_placeholder(node):
            name = node[CHOICE_KEY]
            if name not in reasons:
                reasons[name] = why
                c = by_name[name]
                for v in c.options or []:
                    mark(v, why)
                if c.type == "bool":
                    mark(c.when_on, why)
                    mark(c.when_off, why)
        elif isinstance(node, dict):
            for v in node.values():
                mark(v, why)
        elif isinstance(node, list):
            for v in node:
                mark(v, why)

    def top(node: dict) -> None:
        for k, v in node.items():
            if k == MERGE_KEY:
                for ph in v if isinstance(v, list) else [v]:
                    c = by_name[ph[CHOICE_KEY]]
                    vals = list(c.options or []) + ([c.when_on, c.when_off] if c.type == "bool" else [])
                    for val in vals:
                        if isinstance(val, dict):
                            top(val)
            elif k == "balancer":
                mark(v, "the balancer is a training rule, not a differentiable op")
            elif k not in TOP_KINDS and k not in GROUPS and k not in UNION_FIELDS + ("heads",):
                mark(v, f"`{k}` changes the model's structure")
            elif k in ("heads",):
                mark(v, "`heads` changes the model's structure")
            elif k in UNION_FIELDS:
                mark(v, f"`{k}` changes the model's wiring")

    top(space.template)
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
        return {"name": name, "params": {"candidates": cands, "choices": {n: self.sizes[n] for n in names}, "normalize": normalize}}

    def group(self, entries: list[tuple[Any, Term]]) -> dict | None:
        present: list[tuple[dict, Term]] = []
        for node, t in entries:
            if node is ABSENT:
                continue
            for val, tv in self.x.shallow(node, t):
                if isinstance(val, dict):
                    present.append((val, tv))
                elif val not in (None, ABSENT, False):
                    raise ConfigError(f"space {self.space.name!r}: an expert group must be a mapping or null, got {val!r}")
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
                for v, _tv in ([] if node is ABSENT else b.x.full(node, t)):
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
        raise ConfigError(f"space {space.name!r}: its relaxed supernet is not a valid architecture ({exc}); DARTS cannot search this space") from None
    relaxed = {c.name: len(c) for c in space.choices if c.name in b.used}
    fixed_all = {c.name: default.get(c.name, c.default_value()) for c in space.choices if c.name not in relaxed}
    notes = [f"{n}: kept at {fixed_all[n]!r} ({reasons.get(n, 'does not change the supernet')})" for n in fixed_all]
    return Relaxation(space=space, arch=arch, relaxed=relaxed, fixed=fixed_all, notes=notes)


# ============================================================================ probabilities
class AlphaController:
    """The alphas of a supernet, tied across its mixed ops, and the per-step choice probabilities.

    mode "softmax": p = softmax(alpha). mode "gumbel": in training, a hard one-hot
    Gumbel-softmax sample with straight-through gradients (GDAS), one sample per choice
    per step (`new_step`) shared by every mixed op; mixed ops skip candidates of weight 0.
    Nothing with an autograd graph is cached, so any number of forwards may share a step.
    """

    def __init__(self, sizes: dict[str, int], mode: str = "softmax", tau: float = 1.0):
        self.sizes = dict(sizes)
        self.alphas = {c: nn.Parameter(torch.zeros(n)) for c, n in sizes.items()}
        self.mode, self.tau = mode, tau
        self.training = True
        self._noise: dict[str, torch.Tensor] = {}  # this step's Gumbel noise (no graph: recomputed per use)

    def attach(self, model: nn.Module) -> "AlphaController":
        """Point every mixed op of `model` at this controller and tie its alphas to the shared ones."""
        for m in model.modules():
            if isinstance(m, _Mixed):
                for c in m.choice_sizes:
                    if c not in self.alphas:
                        self.alphas[c] = nn.Parameter(torch.zeros(m.choice_sizes[c]))
                        self.sizes[c] = m.choice_sizes[c]
                    m.alphas[alpha_key(c)] = self.alphas[c]
                m._ctl = self
        return self

    def parameters(self) -> list[nn.Parameter]:
        return list(self.alphas.values())

    def new_step(self) -> None:
        """Draw new Gumbel samples (GDAS): call once per step; every forward until the next call shares them."""
        self._noise = {}

    def probs(self, names: Any = None) -> dict[str, torch.Tensor]:
        """Probabilities of the choices (a fresh autograd graph per call)."""
        names = self.alphas if names is None else names
        if not (self.mode == "gumbel" and self.training):
            return {c: torch.softmax(self.alphas[c], dim=-1) for c in names}
        out = {}
        for c in names:
            a = self.alphas[c]
            if c not in self._noise:
                self._noise[c] = -torch.empty_like(a).exponential_().log()
            soft = torch.softmax((a + self._noise[c]) / self.tau, dim=-1)
            hard = torch.zeros_like(soft).scatter_(-1, soft.detach().argmax(-1, keepdim=True), 1.0)
            out[c] = hard - soft.detach() + soft  # straight-through (GDAS)
        return out

    def soft_probs(self, names: Any = None) -> dict[str, torch.Tensor]:
        return {c: torch.softmax(self.alphas[c], dim=-1) for c in (self.alphas if names is None else names)}

    def state(self) -> dict[str, torch.Tensor]:
        return {c: a.detach().clone() for c, a in self.alphas.items()}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for c, v in state.items():
                if c in self.alphas:
                    self.alphas[c].copy_(v)


# ============================================================================ mixed ops
class MixedCandidate(BaseModel):
    """One candidate of a mixed op: a component (None = identity) and its weight terms per slot."""

    model_config = ConfigDict(extra="forbid")
    spec: ComponentSpec | None = None
    terms: list[list[list[tuple[str, int]]]] = Field(default_factory=lambda: [[[]]], description="per slot: weight = sum over terms of prod P(choice = index)")


def _default_candidates(spec: dict) -> Any:
    return Field(default_factory=lambda: [MixedCandidate(spec=ComponentSpec.model_validate(spec))], min_length=1)


class _MixedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    choices: dict[str, int] = Field(default_factory=dict, description="choice -> number of values (alpha sizes)")
    normalize: bool = Field(default=False, description="divide the weights by their sum (gates, fusions, towers)")


class MixedExpertParams(_MixedParams):
    candidates: list[MixedCandidate] = _default_candidates({"name": "mlp", "params": {"hidden": [16]}})


class MixedGateParams(_MixedParams):
    candidates: list[MixedCandidate] = _default_candidates({"name": "softmax"})


class MixedFusionParams(_MixedParams):
    candidates: list[MixedCandidate] = _default_candidates({"name": "sum"})


class MixedGroupFusionParams(_MixedParams):
    candidates: list[MixedCandidate] = _default_candidates({"name": "mean"})


class MixedAdapterParams(_MixedParams):
    candidates: list[MixedCandidate] = _default_candidates({"name": "bottleneck", "params": {"bottleneck": 8}})


class MixedInputAdapterParams(_MixedParams):
    candidates: list[MixedCandidate] = _default_candidates({"name": "soft_selection"})


class MixedTowerParams(_MixedParams):
    candidates: list[MixedCandidate] = _default_candidates({"name": "mlp_tower", "params": {"hidden": [16]}})


def _resolve(kind: str, spec: ComponentSpec, where: str) -> tuple[type, BaseModel]:
    from mdmt_nas.model import resolve
    from mdmt_nas.plugins import get_registry

    return resolve(get_registry(), kind, spec, where)


class _Mixed:
    """Shared machinery: per-choice alphas (`arch_<choice>`) and candidate weights [K, slots]."""

    choice_sizes: dict[str, int]
    alphas: nn.ParameterDict
    _ctl: AlphaController | None

    def _init_mixed(self, params: Any) -> None:
        self.choice_sizes = dict(params.choices)
        self.alphas = nn.ParameterDict({alpha_key(c): nn.Parameter(torch.zeros(n)) for c, n in self.choice_sizes.items()})
        self._ctl = None
        self._normalize = params.normalize
        self._terms = [[[tuple(f) for f in t] for t in slot] for slot in (c.terms for c in params.candidates)]
        self._slots = max(len(c.terms) for c in params.candidates)

    def _probs(self, soft: bool = False) -> dict[str, torch.Tensor]:
        if self._ctl is not None:
            return self._ctl.soft_probs(self.choice_sizes) if soft else self._ctl.probs(self.choice_sizes)
        return {c: torch.softmax(self.alphas[alpha_key(c)], dim=-1) for c in self.choice_sizes}

    def mix_weights(self, soft: bool = False) -> torch.Tensor:
        """Candidate weights [K, slots]."""
        p = self._probs(soft)
        one = next(iter(p.values())).new_ones(()) if p else torch.ones(())
        rows = []
        for slots in self._terms:
            row = []
            for j in range(self._slots):
                terms = slots[j] if j < len(slots) else []
                total = one * 0
                for t in terms:
                    w = one
                    for c, i in t:
                        w = w * p[c][i]
                    total = total + w
                row.append(total)
            rows.append(torch.stack(row))
        W = torch.stack(rows)
        if self._normalize:
            total = W.sum(dim=0, keepdim=True)
            if not soft and bool((total.detach() == 0).any()):
                # a hard sample switched off every branch that sets this op (e.g. no gate
                # when the common experts are off): its output is unused, mix softly
                return self.mix_weights(soft=True)
            W = W / total.clamp_min(1e-12)
        return W

    def _skip(self, w: torch.Tensor) -> bool:
        """Hard (Gumbel) samples: candidates of weight exactly 0 are not computed."""
        return self._ctl is not None and self._ctl.mode == "gumbel" and self._ctl.training and bool((w.detach() == 0).all())


def _pad(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x if x.shape[-1] == dim else F.pad(x, (0, dim - x.shape[-1]))


class MixedExpert(Expert, _Mixed):
    """DARTS mixed expert: weighted sum of candidate experts (zero-padded to the widest); as a bank, slot masks relax the expert count."""

    name = "darts.mixed_expert"
    Params = MixedExpertParams
    torchscript = False

    def __init__(self, params: MixedExpertParams, in_dim, num_fields, field_dim, num_domains=1):
        super().__init__(params, in_dim, num_fields, field_dim, num_domains)
        self._init_mixed(params)
        ops = []
        for i, c in enumerate(params.candidates):
            if c.spec is None:
                ops.append(nn.Identity())
            else:
                cls, p = _resolve("expert", c.spec, f"darts.mixed_expert.candidates[{i}]")
                ops.append(cls(p, in_dim, num_fields, field_dim, num_domains))
        self.ops = nn.ModuleList(ops)

    @classmethod
    def output_dim(cls, params: MixedExpertParams, in_dim: int) -> int:
        dims = []
        for i, c in enumerate(params.candidates):
            if c.spec is None:
                dims.append(in_dim)
            else:
                ecls, p = _resolve("expert", c.spec, f"darts.mixed_expert.candidates[{i}]")
                dims.append(ecls.output_dim(p, in_dim))
        return max(dims)

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        W = self.mix_weights()[:, 0]
        out = None
        for k, op in enumerate(self.ops):
            if self._skip(W[k]):
                continue
            y = _pad(op(x) if isinstance(op, nn.Identity) else op(x, ctx), self.out_dim) * W[k]
            out = y if out is None else out + y
        return out if out is not None else x.new_zeros(x.shape[0], self.out_dim)

    @classmethod
    def bank(cls, n, params, in_dim, num_fields, field_dim, num_domains=1) -> ExpertBank:
        return MixedExpertBank(n, params, in_dim, num_fields, field_dim, num_domains)


class _IdentityBank(ExpertBank):
    def __init__(self, n: int, in_dim: int):
        super().__init__()
        self.num_experts, self.out_dim = n, in_dim

    def forward(self, x, ctx, start=0, stop=None):
        stop = self.num_experts if stop is None else stop
        return x if x.dim() == 3 else x.unsqueeze(1).expand(-1, stop - start, -1)


class MixedExpertBank(ExpertBank, _Mixed):
    """n mixed experts; expert i is slot i % slots (slot masks relax the count); one inner bank per candidate."""

    torchscript = False

    def __init__(self, n: int, params: MixedExpertParams, in_dim, num_fields, field_dim, num_domains=1):
        super().__init__()
        self.params = params
        self._init_mixed(params)
        self.num_experts = n
        self.out_dim = MixedExpert.output_dim(params, in_dim)
        banks = []
        for i, c in enumerate(params.candidates):
            if c.spec is None:
                banks.append(_IdentityBank(n, in_dim))
            else:
                cls, p = _resolve("expert", c.spec, f"darts.mixed_expert.candidates[{i}]")
                banks.append(cls.bank(n, p, in_dim, num_fields, field_dim, num_domains))
        self.banks = nn.ModuleList(banks)

    def forward(self, x: torch.Tensor, ctx: Context, start: int = 0, stop: int | None = None) -> torch.Tensor:
        stop = self.num_experts if stop is None else stop
        W = self.mix_weights()  # [K, S]
        slot = torch.arange(start, stop) % self._slots
        out = None
        for k, bank in enumerate(self.banks):
            w = W[k, slot]
            if self._skip(w):
                continue
            y = _pad(bank(x, ctx, start, stop), self.out_dim) * w.view(1, -1, 1)
            out = y if out is None else out + y
        return out if out is not None else x.new_zeros(x.shape[0], stop - start, self.out_dim)


class MixedGate(Gate, _Mixed):
    """DARTS mixed gate: weighted sum of candidate gates; each candidate combines the experts its own way."""

    name = "darts.mixed_gate"
    Params = MixedGateParams
    per_head_input = True  # the space decides; PLE spaces offer only per-head gates
    torchscript = False

    def __init__(self, params: MixedGateParams, in_dim, num_experts, num_tasks, num_domains, per_domain):
        super().__init__(params, in_dim, num_experts, num_tasks, num_domains, per_domain)
        self._init_mixed(params)
        ops = []
        for i, c in enumerate(params.candidates):
            assert c.spec is not None, "a gate candidate cannot be empty"
            cls, p = _resolve("gate", c.spec, f"darts.mixed_gate.candidates[{i}]")
            ops.append(cls(p, in_dim, num_experts, num_tasks, num_domains, per_domain))
        self.ops = nn.ModuleList(ops)

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        W = self.mix_weights()[:, 0]
        parts, total = [], None
        for k, op in enumerate(self.ops):
            if self._skip(W[k]):
                continue
            wk = op(h, ctx)
            parts.append((W[k], op, wk))
            total = wk * W[k] if total is None else total + wk * W[k]
        total = total.clone()  # a fresh tensor to carry the parts
        total.darts_parts = parts
        return total

    def combine(self, weights: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        parts = getattr(weights, "darts_parts", None)
        if parts is None:
            return super().combine(weights, candidates)
        out = None
        for w, op, wk in parts:
            y = op.combine(wk, candidates) * w
            out = y if out is None else out + y
        return out


class _MixedFusionBase(Fusion, _Mixed):
    torchscript = False

    def __init__(self, params, dim, members, num_tasks, num_domains):
        super().__init__(params, dim, members, num_tasks, num_domains)
        self._init_mixed(params)
        ops = []
        for i, c in enumerate(params.candidates):
            assert c.spec is not None, "a fusion candidate cannot be empty"
            cls, p = _resolve("fusion", c.spec, f"{self.name}.candidates[{i}]")
            if cls.level != self.level:
                raise ConfigError(f"{self.name}: candidate {c.spec.name!r} is a level-{cls.level} fusion, expected level {self.level}")
            ops.append(cls(p, dim, members, num_tasks, num_domains))
        self.ops = nn.ModuleList(ops)
        self.uses_other_members = any(getattr(op, "uses_other_members", True) for op in ops)

    def forward(self, x: Any, ctx: Context) -> torch.Tensor:
        W = self.mix_weights()[:, 0]
        out = None
        for k, op in enumerate(self.ops):
            if self._skip(W[k]):
                continue
            y = op(x, ctx) * W[k]
            out = y if out is None else out + y
        return out


class MixedFusion(_MixedFusionBase):
    """DARTS mixed level-2 fusion: weighted sum of candidate fusions of the module parts."""

    name = "darts.mixed_fusion"
    Params = MixedFusionParams
    level = 2


class MixedGroupFusion(_MixedFusionBase):
    """DARTS mixed level-1 fusion: weighted sum of candidate fusions inside an expert group."""

    name = "darts.mixed_group_fusion"
    Params = MixedGroupFusionParams
    level = 1


class _MixedAdapterBase(Adapter, _Mixed):
    torchscript = False

    def __init__(self, params, dim, num_fields, field_dim, num_domains):
        super().__init__(params, dim, num_fields, field_dim, num_domains)
        self._init_mixed(params)
        ops = []
        for i, c in enumerate(params.candidates):
            if c.spec is None:
                ops.append(None)
                continue
            cls, p = _resolve("adapter", c.spec, f"{self.name}.candidates[{i}]")
            if cls.site != self.site:
                raise ConfigError(f"{self.name}: candidate {c.spec.name!r} works at site {cls.site!r}, expected {self.site!r}")
            ops.append(cls(p, dim, num_fields, field_dim, num_domains))
        self._identity = [op is None for op in ops]
        self.ops = nn.ModuleList(op if op is not None else nn.Identity() for op in ops)

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        W = self.mix_weights()[:, 0]
        out = None
        for k, op in enumerate(self.ops):
            if self._skip(W[k]):
                continue
            y = (h if self._identity[k] else op(h, ctx)) * W[k]
            out = y if out is None else out + y
        return out if out is not None else h


class MixedAdapter(_MixedAdapterBase):
    """DARTS mixed hidden adapter: weighted sum of candidate adapters (an empty candidate is the identity)."""

    name = "darts.mixed_adapter"
    Params = MixedAdapterParams
    site: ClassVar[str] = "hidden"


class MixedInputAdapter(_MixedAdapterBase):
    """DARTS mixed input adapter on per-field embeddings (an empty candidate is the identity)."""

    name = "darts.mixed_input_adapter"
    Params = MixedInputAdapterParams
    site: ClassVar[str] = "fields"


class MixedTower(Tower, _Mixed):
    """DARTS mixed tower: weighted sum of the candidate towers' logits."""

    name = "darts.mixed_tower"
    Params = MixedTowerParams
    torchscript = False

    def __init__(self, params, in_dim, num_tasks, num_domains, per_domain):
        super().__init__(params, in_dim, num_tasks, num_domains, per_domain)
        self._init_mixed(params)
        ops = []
        for i, c in enumerate(params.candidates):
            assert c.spec is not None, "a tower candidate cannot be empty"
            cls, p = _resolve("tower", c.spec, f"darts.mixed_tower.candidates[{i}]")
            ops.append(cls(p, in_dim, num_tasks, num_domains, per_domain))
        self.ops = nn.ModuleList(ops)

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        W = self.mix_weights()[:, 0]
        out = None
        for k, op in enumerate(self.ops):
            if self._skip(W[k]):
                continue
            y = op(h, ctx) * W[k]
            out = y if out is None else out + y
        return out


MIXED_COMPONENTS: dict[str, list[type]] = {
    "expert": [MixedExpert],
    "gate": [MixedGate],
    "fusion": [MixedFusion, MixedGroupFusion],
    "adapter": [MixedAdapter, MixedInputAdapter],
    "tower": [MixedTower],
}


def build_supernet(relaxation: Relaxation, schema: Any, mode: str = "softmax", tau: float = 1.0) -> tuple[nn.Module, AlphaController]:
    """Build the supernet model and tie its alphas (one shared parameter per relaxed choice)."""
    from mdmt_nas.model import build_model

    model = build_model(relaxation.arch, schema)
    ctl = AlphaController(relaxation.relaxed, mode=mode, tau=tau).attach(model)
    return model, ctl
