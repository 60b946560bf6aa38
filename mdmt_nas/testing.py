"""The component contract kit: `check_component(cls)` runs every check its kind needs.

In the spirit of scikit-learn's `check_estimator`: a plugin author calls it on
each component class (or writes `test_x = contract_test(MyExpert)` in a pytest
module, one line per component) and `mdmt-nas plugins check NAME` runs it on
every component of an installed plugin. Checks, per kind:

  interface     subclass of the kind's base, `name`, docstring, class attributes
  params        default params validate, JSON round-trip, unknown keys rejected
  construct     instances build for the standard shapes
  shapes        output shapes for batch sizes 1, 2, 7 (train and eval mode)
  dtype         float32 out for float32 in, finite values
  gradients     every requires_grad parameter and the input receive gradients
  determinism   same seed -> same init and same output; eval forward repeatable
  empty_domain  a batch in which a domain has no rows (and one with one domain)
  bank          (experts) `cls.bank` evaluates n experts, ranges, per-expert inputs and forward_each
  in_model      `build_model` with small architectures using it; forward, backward
  mixed_op      in a softmax-weighted mix, and in the DARTS supernet (mdmt_nas.search.darts.relax)
                against another candidate: the mixing weights receive gradients
  torchscript   (if `cls.torchscript`) `torch.jit.trace` of models using it reproduces outputs

A failed check raises `AssertionError` naming the component and the check
(`raise_on_fail=False` returns the `Report` instead).
"""

from __future__ import annotations

import json
import re
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ValidationError
from torch import nn

from mdmt_nas.components import Adapter, Balancer, BalanceContext, Component, Context, Dims, Expert, Fusion, Gate, Tower, build, build_bank
from mdmt_nas.components.kinds import output_size

KINDS = ("expert", "gate", "fusion", "adapter", "tower", "balancer")
BASES: dict[str, type] = {"expert": Expert, "gate": Gate, "fusion": Fusion, "adapter": Adapter, "tower": Tower, "balancer": Balancer}
NEURAL_CHECKS = ("interface", "params", "construct", "shapes", "dtype", "gradients", "determinism", "empty_domain", "bank", "in_model", "mixed_op", "torchscript")
BALANCER_CHECKS = ("interface", "params", "construct", "shapes", "gradients", "determinism", "empty_domain", "in_model")
#: checks whose failure makes the others meaningless
GATING = ("interface", "construct")

# the small world every check runs in: D domains, T tasks, F = 3 sparse + 2 dense fields of E dims
D, T, NS, ND, E, H = 3, 2, 3, 2, 4, 8
NF = NS + ND
MLP8 = {"name": "mlp", "params": {"hidden": [H]}}


class ContractError(AssertionError):
    """A component failed one or more contract checks; the message names it and each check."""


@dataclass
class CheckResult:
    check: str
    status: str  # pass | fail | skip
    message: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status != "fail"


@dataclass
class Report:
    """Outcome of `check_component`: one `CheckResult` per check."""

    component: str
    kind: str
    name: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "fail"]

    def result(self, check: str) -> CheckResult:
        return next(r for r in self.results if r.check == check)

    def as_dict(self) -> dict[str, Any]:
        return {
            "component": self.component, "kind": self.kind, "name": self.name, "ok": self.ok,
            "checks": [{"check": r.check, "status": r.status, "message": r.message, "seconds": round(r.seconds, 3)} for r in self.results],
        }

    def __str__(self) -> str:
        lines = [f"{self.component}: {'ok' if self.ok else 'FAILED'}"]
        for r in self.results:
            lines.append(f"  {r.status.upper():4} {r.check}" + (f": {r.message}" if r.message else ""))
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        if not self.ok:
            detail = "\n".join(f"  - check '{r.check}': {r.message}" for r in self.failures)
            raise ContractError(f"{self.component} failed {len(self.failures)} contract check(s):\n{detail}")


# ------------------------------------------------------------------------------ inputs
def make_context(batch: int, domain: torch.Tensor | None = None, seed: int = 0, training: bool = True, grad: bool = False) -> Context:
    """A Context of `batch` rows in the kit's world (D=3 domains, T=2 tasks, 5 fields of 4 dims)."""
    g = torch.Generator().manual_seed(seed)
    if domain is None:
        domain = torch.arange(batch) % D
    fields = torch.randn(batch, NF, E, generator=g).requires_grad_(grad)
    labels = (torch.rand(batch, T, generator=g) < 0.4).float()
    return Context(domain=domain.long(), fields=fields, embedding=fields.flatten(1), num_domains=D, num_tasks=T, labels=labels, training=training)


def _randn(seed: int, *shape: int, grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).requires_grad_(grad)


def _fixed(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1000 + seed)) / max(shape[0], 1) ** 0.5


# ------------------------------------------------------------------------------ per-kind harnesses
class _Harness:
    """What the checks need to know about one kind: how to build, feed and wire a component."""

    def __init__(self, cls: type, params: BaseModel, spec: dict[str, Any], registry: Any = None):
        self.cls, self.params, self.spec = cls, params, spec
        #: the kit's world: D domains, T tasks, NF fields of E dims (each kind reads what it needs)
        self.dims = Dims(num_fields=NF, field_dim=E, num_domains=D, num_tasks=T, registry=registry)

    def make(self, **sizes: Any) -> nn.Module:
        """The checked component built for the kit's world with these sizes."""
        return build(self.cls, self.params, self.dims.with_(**sizes))

    def variants(self) -> list[dict[str, Any]]:
        return [{}]

    def build(self, v: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def inputs(self, m: nn.Module, v: dict[str, Any], ctx: Context, seed: int, grad: bool) -> Any:
        raise NotImplementedError

    def run(self, m: nn.Module, inp: Any, ctx: Context) -> torch.Tensor:
        return m(inp, ctx)

    def expected(self, m: nn.Module, v: dict[str, Any], inp: Any, batch: int) -> tuple[int, ...]:
        raise NotImplementedError

    def grad_inputs(self, inp: Any, ctx: Context) -> list[torch.Tensor]:
        """Inputs at least one of which must receive a gradient (empty: not required)."""
        return [inp]

    def alternative(self, m: nn.Module, v: dict[str, Any], inp: Any, ctx: Context) -> torch.Tensor:
        """A fixed second candidate of the same output shape, for the mixed-op check."""
        raise NotImplementedError

    def archs(self) -> list[tuple[str, dict[str, Any]]]:
        raise NotImplementedError

    def supernet(self) -> list[tuple[str, dict[str, Any], Any]]:
        """(label, space template with the choice `c` at this kind's slot, the other option of `c`)."""
        raise NotImplementedError

    def _other(self, *names: str) -> Any:
        """The first built-in of `names` that is not the checked component (an option for `c`)."""
        return next(n for n in names if n != self.spec["name"])


class _ExpertHarness(_Harness):
    def variants(self):
        # as a bottom on the flat embedding, and as an expert on a hidden vector
        return [{"in_dim": NF * E}, {"in_dim": 12}]

    def build(self, v):
        return self.make(in_dim=v["in_dim"])

    def inputs(self, m, v, ctx, seed, grad):
        if v["in_dim"] == NF * E:
            return ctx.embedding
        return _randn(seed, ctx.batch_size, v["in_dim"], grad=grad)

    def expected(self, m, v, inp, batch):
        want = output_size(self.cls, self.params, self.dims.with_(in_dim=v["in_dim"]))
        assert m.out_dim == want, f"out_dim is {m.out_dim} but output_dim(params, dims with in_dim={v['in_dim']}) says {want}"
        return (batch, want)

    def grad_inputs(self, inp, ctx):
        return [inp, ctx.fields]  # interaction experts may read ctx.fields instead of x

    def alternative(self, m, v, inp, ctx):
        return inp @ _fixed(1, v["in_dim"], m.out_dim)

    def archs(self):
        X = self.spec
        return [
            ("as bottom", {"bottom": X}),
            ("in shared/domain/task groups", {"shared": {"experts": [X, X]}, "domain": {"experts": [X], "fusion": "mean"}, "task": {"experts": [X]}, "gate_scope": ["shared", "task"]}),
            ("routed, two levels", {"shared": {"experts": [X]}, "domain": {"experts": [X]}, "task": {"experts": [X]}, "gate_scope": ["shared", "domain", "task"], "levels": 2}),
        ]

    def supernet(self):
        alt = MLP8 if self.spec != MLP8 else {"name": "identity"}
        return [("mixed bottom", {"bottom": {"choice": "c"}}, None),
                ("mixed shared experts", {"shared": {"expert": {"choice": "c"}, "num": 2}}, alt)]


class _GateHarness(_Harness):
    N = 4

    def variants(self):
        out = [{"per_domain": False, "per_head": False}, {"per_domain": True, "per_head": False}]
        if self.cls.per_head_input:
            out.append({"per_domain": False, "per_head": True})
        return out

    def build(self, v):
        return self.make(in_dim=H, num_experts=self.N, per_domain=v["per_domain"])

    def inputs(self, m, v, ctx, seed, grad):
        return _randn(seed, ctx.batch_size, T, H, grad=grad) if v["per_head"] else _randn(seed, ctx.batch_size, H, grad=grad)

    def run(self, m, inp, ctx):
        weights = m(inp, ctx)
        assert tuple(weights.shape) == (inp.shape[0], T, self.N), f"forward returned weights of shape {list(weights.shape)}, expected {[inp.shape[0], T, self.N]}"
        shared = _randn(7, inp.shape[0], self.N, H)
        per_head = _randn(8, inp.shape[0], T, self.N, H)
        a, b = m.combine(weights, shared), m.combine(weights, per_head)
        for what, out in (("combine(weights, [B, N, H])", a), ("combine(weights, [B, T, N, H])", b)):
            assert tuple(out.shape) == (inp.shape[0], T, H), f"{what} returned shape {list(out.shape)}, expected {[inp.shape[0], T, H]}"
        return torch.cat([weights.flatten(1), a.flatten(1), b.flatten(1)], dim=1)

    def expected(self, m, v, inp, batch):
        return (batch, T * self.N + 2 * T * H)

    def grad_inputs(self, inp, ctx):
        return []  # a gate may ignore its input (e.g. uniform)

    def alternative(self, m, v, inp, ctx):
        logits = inp @ _fixed(2, H, T * self.N) if inp.dim() == 2 else inp @ _fixed(2, H, self.N)
        w = torch.softmax(logits.view(inp.shape[0], T, self.N), dim=-1)
        shared = _randn(7, inp.shape[0], self.N, H)
        per_head = _randn(8, inp.shape[0], T, self.N, H)
        a, b = torch.einsum("btn,bnh->bth", w, shared), torch.einsum("btn,btnh->bth", w, per_head)
        return torch.cat([w.flatten(1), a.flatten(1), b.flatten(1)], dim=1)

    def archs(self):
        X = self.spec
        out = [
            ("over shared experts", {"shared": {"expert": MLP8, "num": 3}, "gate": X}),
            ("per (domain, task) head over shared + domain", {"shared": {"expert": MLP8, "num": 2}, "domain": {"expert": MLP8, "num": 1}, "gate": X, "gate_scope": ["shared", "domain"], "heads": "domain_task"}),
        ]
        if self.cls.per_head_input:
            out.append(("two levels (per-head inputs)", {"shared": {"expert": MLP8, "num": 2}, "task": {"expert": MLP8, "num": 1}, "gate": X, "gate_scope": ["shared", "task"], "levels": 2}))
        return out

    def supernet(self):
        return [("mixed gate", {"shared": {"expert": MLP8, "num": 3}, "gate": {"choice": "c"}}, self._other("uniform", "softmax"))]


class _Fusion1Harness(_Harness):
    def variants(self):
        out = [{"members": D, "rows": D}, {"members": T, "rows": T}, {"members": 1, "rows": 1}]
        if not self.cls.uses_other_members:  # the model may pass only each row's own member
            out.append({"members": D, "rows": 1})
        return out

    def build(self, v):
        return self.make(in_dim=H, members=v["members"])

    def inputs(self, m, v, ctx, seed, grad):
        return _randn(seed, ctx.batch_size, v["rows"], H, grad=grad)

    def expected(self, m, v, inp, batch):
        return (batch, v["rows"], H)

    def alternative(self, m, v, inp, ctx):
        return inp @ _fixed(3, H, H)

    def archs(self):
        X = self.spec
        return [
            ("domain and task groups outside the gate", {"shared": {"expert": MLP8, "num": 2}, "domain": {"expert": MLP8, "num": 1, "fusion": X}, "task": {"expert": MLP8, "num": 1, "fusion": X}}),
            ("no shared group", {"domain": {"expert": MLP8, "num": 2, "fusion": X}, "task": {"expert": MLP8, "num": 1, "fusion": X}}),
        ]

    def supernet(self):
        return [("mixed level-1 fusion", {"shared": {"expert": MLP8, "num": 2}, "domain": {"expert": MLP8, "num": 1, "fusion": {"choice": "c"}}}, self._other("mean", "own"))]


class _Fusion2Harness(_Harness):
    PARTS = (("shared", "domain", "task"), ("shared",), ("domain", "task"), ("shared", "task"))

    def variants(self):
        return [{"parts": list(p)} for p in self.PARTS]

    def build(self, v):
        return self.make(in_dim=H, members=tuple(v["parts"]))

    def inputs(self, m, v, ctx, seed, grad):
        return {p: _randn(seed + i, ctx.batch_size, T, H, grad=grad) for i, p in enumerate(v["parts"])}

    def expected(self, m, v, inp, batch):
        return (batch, T, H)

    def grad_inputs(self, inp, ctx):
        return list(inp.values())

    def alternative(self, m, v, inp, ctx):
        return torch.stack(list(inp.values())).sum(0) @ _fixed(4, H, H)

    def archs(self):
        X = self.spec
        return [
            ("shared + domain + task parts", {"shared": {"expert": MLP8, "num": 2}, "domain": {"expert": MLP8, "num": 1}, "task": {"expert": MLP8, "num": 1}, "fusion": X}),
            ("shared part only", {"shared": {"expert": MLP8, "num": 2}, "fusion": X}),
            ("domain + task parts", {"domain": {"expert": MLP8, "num": 1}, "task": {"expert": MLP8, "num": 1}, "fusion": X}),
        ]

    def supernet(self):
        return [("mixed level-2 fusion", {"shared": {"expert": MLP8, "num": 2}, "domain": {"expert": MLP8, "num": 1}, "task": {"expert": MLP8, "num": 1},
                                          "fusion": {"choice": "c"}}, self._other("sum", "gated"))]


class _AdapterHarness(_Harness):
    def variants(self):
        return [{"dim": NF * E}] if self.cls.site == "fields" else [{"dim": H}, {"dim": 12}]

    def build(self, v):
        return self.make(in_dim=v["dim"])

    def inputs(self, m, v, ctx, seed, grad):
        if self.cls.site == "fields":
            return ctx.fields
        return _randn(seed, ctx.batch_size, v["dim"], grad=grad)

    def expected(self, m, v, inp, batch):
        return (batch, NF, E) if self.cls.site == "fields" else (batch, v["dim"])

    def alternative(self, m, v, inp, ctx):
        return inp @ _fixed(5, inp.shape[-1], inp.shape[-1])

    def archs(self):
        X = self.spec
        if self.cls.site == "fields":
            return [("input adapter", {"input_adapter": X, "shared": {"expert": MLP8, "num": 2}})]
        return [("at bottom, experts and towers", {"bottom": MLP8, "shared": {"expert": MLP8, "num": 2}, "adapter": X, "adapter_sites": ["bottom", "experts", "towers"]})]

    def supernet(self):
        if self.cls.site == "fields":
            return [("mixed input adapter", {"input_adapter": {"choice": "c"}, "shared": {"expert": MLP8, "num": 2}}, None)]
        return [("mixed adapter", {"shared": {"expert": MLP8, "num": 2}, "adapter": {"choice": "c"}, "adapter_sites": ["experts", "towers"]}, None)]


class _TowerHarness(_Harness):
    def variants(self):
        return [{"per_domain": False}, {"per_domain": True}]

    def build(self, v):
        return self.make(in_dim=H, per_domain=v["per_domain"])

    def inputs(self, m, v, ctx, seed, grad):
        return _randn(seed, ctx.batch_size, T, H, grad=grad)

    def expected(self, m, v, inp, batch):
        return (batch, T)

    def alternative(self, m, v, inp, ctx):
        return inp @ _fixed(6, H)

    def archs(self):
        X = self.spec
        return [
            ("per task heads", {"shared": {"expert": MLP8, "num": 2}, "tower": X}),
            ("per (domain, task) heads", {"shared": {"expert": MLP8, "num": 2}, "tower": X, "heads": "domain_task"}),
        ]

    def supernet(self):
        alt = {"name": "mlp_tower", "params": {"hidden": []}}
        return [("mixed tower", {"shared": {"expert": MLP8, "num": 2}, "tower": {"choice": "c"}}, alt if self.spec != alt else "mlp_tower")]


def _harness(cls: type, kind: str, params: BaseModel, spec: dict[str, Any], registry: Any = None) -> _Harness:
    if kind == "fusion":
        return (_Fusion1Harness if cls.level == 1 else _Fusion2Harness)(cls, params, spec, registry)
    return {"expert": _ExpertHarness, "gate": _GateHarness, "adapter": _AdapterHarness, "tower": _TowerHarness}[kind](cls, params, spec, registry)


# ------------------------------------------------------------------------------ helpers
def _label(v: dict[str, Any]) -> str:
    return ", ".join(f"{k}={val}" for k, val in v.items()) or "default"


def _loss(out: torch.Tensor, seed: int = 11) -> torch.Tensor:
    """A random projection of the output: sums of softmax weights would give zero gradients."""
    proj = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    return (out * proj).sum()


def _params_of(m: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in m.named_parameters() if p.requires_grad]


def _assert_grads(named: Iterable[tuple[str, nn.Parameter]], where: str) -> None:
    named = list(named)
    missing = [n for n, p in named if p.grad is None]
    assert not missing, f"{where}: no gradient reached parameter(s) {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''} (detached, unused, or computed outside autograd?)"
    bad = [n for n, p in named if not torch.isfinite(p.grad).all()]
    assert not bad, f"{where}: non-finite gradient in {', '.join(bad[:6])}"


def _assert_finite(out: torch.Tensor, where: str) -> None:
    assert torch.isfinite(out).all(), f"{where}: output has NaN/inf values"


def _seeded(seed: int, fn: Callable[[], Any]) -> Any:
    torch.manual_seed(seed)
    return fn()


def _describe_exc(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    here = __file__
    inner = next((f for f in reversed(frames) if f.filename != here), None)
    where = f" (at {inner.filename}:{inner.lineno} in {inner.name})" if inner else ""
    return f"raised {type(exc).__name__}: {exc}{where}"


def _schema():
    from mdmt_nas.data.schema import Schema, SparseField

    return Schema(sparse=[SparseField(name=f"s{i}", vocab_size=10) for i in range(NS)], dense=[f"d{i}" for i in range(ND)],
                  domain_names=[f"dom{i}" for i in range(D)], tasks=[f"task{i}" for i in range(T)])


def _batch(n: int, domain: torch.Tensor | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sparse = torch.randint(1, 10, (n, NS), generator=g)
    dense = torch.randn(n, ND, generator=g)
    dom = torch.arange(n) % D if domain is None else domain
    labels = (torch.rand(n, T, generator=g) < 0.4).float()
    return sparse, dense, dom.long(), labels


def _registry_with(cls: type, kind: str, name: str, registry: Any = None) -> Any:
    """A registry holding the loaded components plus `cls` under `name` (replacing any other)."""
    from mdmt_nas.plugins import get_registry
    from mdmt_nas.plugins.registry import Registry

    base = registry if registry is not None else get_registry()
    reg = Registry()
    for e in base.entries():
        if not (e.kind == kind and e.name == name):
            reg.add(e.kind, e.name, e.obj, e.plugin, e.dist, e.version)
    if (kind, name) in base and base.get(kind, name) is cls:
        e = base.entry(kind, name)
        reg.add(kind, name, cls, e.plugin, e.dist, e.version)
    else:
        reg.add(kind, name, cls, "(checked)", "(checked)", "-")
    return reg


# ------------------------------------------------------------------------------ the checker
class _Checker:
    def __init__(self, cls: type, kind: str, params: dict[str, Any] | None, batch_sizes: tuple[int, ...], seed: int, registry: Any):
        self.cls, self.kind, self.seed = cls, kind, seed
        self.raw_params = params
        self.batch_sizes = batch_sizes
        self.registry_arg = registry
        self.name = getattr(cls, "name", "") or getattr(cls, "__name__", "?")
        self._params: BaseModel | None = None
        self._registry: Any = None

    # lazily computed shared state ------------------------------------------------------
    @property
    def params(self) -> BaseModel:
        if self._params is None:
            self._params = self.cls.make_params(self.raw_params)
        return self._params

    @property
    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "params": json.loads(self.params.model_dump_json())}

    @property
    def registry(self) -> Any:
        if self._registry is None:
            self._registry = _registry_with(self.cls, self.kind, self.name, self.registry_arg)
        return self._registry

    @property
    def h(self) -> _Harness:
        return _harness(self.cls, self.kind, self.params, self.spec, self.registry)

    def forward(self, m: nn.Module, v: dict[str, Any], batch: int, domain: torch.Tensor | None = None, training: bool = True, grad: bool = False, seed: int = 0):
        ctx = make_context(batch, domain, seed=self.seed + seed, training=training, grad=grad)
        inp = self.h.inputs(m, v, ctx, self.seed + seed + 1, grad)
        m.train(training)
        return self.h.run(m, inp, ctx), inp, ctx

    def built(self, v: dict[str, Any]) -> nn.Module:
        return _seeded(self.seed, lambda: self.h.build(v))

    # checks: neural kinds ----------------------------------------------------------------
    def check_interface(self) -> None:
        base = BASES[self.kind]
        assert isinstance(self.cls, type) and issubclass(self.cls, base), f"{self.cls!r} is not a subclass of mdmt_nas.components.{base.__name__}"
        assert self.cls.kind == self.kind, f"class attribute kind is {self.cls.kind!r}, expected {self.kind!r}"
        name = getattr(self.cls, "name", None)
        assert isinstance(name, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_.\-]*", name or ""), (
            f"class attribute `name` must be a non-empty identifier-like string (letters, digits, _ . -), got {name!r}"
        )
        doc = (self.cls.__dict__.get("__doc__") or "").strip()
        assert doc, "the class has no docstring; its first line is what `mdmt-nas plugins` shows"
        assert isinstance(self.cls.Params, type) and issubclass(self.cls.Params, BaseModel), "`Params` must be a pydantic BaseModel subclass"
        assert isinstance(self.cls.torchscript, bool), "`torchscript` must be True or False"
        if self.kind == "fusion":
            assert self.cls.level in (1, 2), f"fusion `level` must be 1 or 2, got {self.cls.level!r}"
        if self.kind == "adapter":
            assert self.cls.site in ("hidden", "fields"), f"adapter `site` must be 'hidden' or 'fields', got {self.cls.site!r}"
        if self.kind == "gate":
            assert isinstance(self.cls.sparse, bool) and isinstance(self.cls.per_head_input, bool), "gate `sparse`/`per_head_input` must be bools"

    def check_params(self) -> None:
        P = self.cls.Params
        try:
            default = P()
        except ValidationError as exc:
            raise AssertionError(f"default params do not validate (give every field a default): {exc.errors()[0].get('loc')}: {exc.errors()[0].get('msg')}") from None
        for label, p in (("default", default), ("checked", self.params)):
            text = p.model_dump_json()
            back = P.model_validate_json(text)
            assert back == p, f"{label} params do not survive a JSON round-trip: {text} -> {back.model_dump_json()}"
            again = self.cls.make_params(json.loads(text))
            assert again == p, f"{label} params rebuilt by make_params(json) differ: {again!r} != {p!r}"
        try:
            P(**{"no_such_param_xyz": 1})
        except ValidationError:
            pass
        else:
            raise AssertionError("Params accept unknown keys; set model_config = ConfigDict(extra='forbid') so typos in a space or arch are reported")

    def check_construct(self) -> None:
        for v in self.h.variants():
            try:
                m = self.built(v)
            except Exception as exc:
                raise AssertionError(f"construction with {_label(v)} {_describe_exc(exc)}") from None
            assert isinstance(m, nn.Module)
            assert m.params == self.params or m.params is self.params, "the instance must keep its params as `self.params` (call super().__init__)"

    def check_shapes(self) -> None:
        for v in self.h.variants():
            m = self.built(v)
            for training in (True, False):
                for b in self.batch_sizes:
                    out, inp, _ = self.forward(m, v, b, training=training)
                    want = self.h.expected(m, v, inp, b)
                    assert isinstance(out, torch.Tensor), f"forward returned {type(out).__name__}, not a tensor ({_label(v)})"
                    assert tuple(out.shape) == tuple(want), f"batch {b} ({_label(v)}, {'train' if training else 'eval'}): output shape {list(out.shape)}, expected {list(want)}"

    def check_dtype(self) -> None:
        for v in self.h.variants():
            m = self.built(v)
            out, _, _ = self.forward(m, v, 7)
            assert out.dtype == torch.float32, f"output dtype {out.dtype} for float32 inputs ({_label(v)}); keep the input dtype"
            _assert_finite(out, _label(v))

    def check_gradients(self) -> None:
        # every parameter must learn in the main configuration; degenerate ones (one member,
        # one part) may leave a parameter unused but must still give finite gradients
        for i, v in enumerate(self.h.variants()):
            m = self.built(v)
            out, inp, ctx = self.forward(m, v, 8, grad=True)
            loss = _loss(out)
            aux = ctx.aux.total_loss()
            if aux is not None:
                assert aux.dim() == 0 or aux.numel() == 1, "ctx.aux losses must be scalars"
                loss = loss + aux
            if not loss.requires_grad:
                assert not _params_of(m) and not self.h.grad_inputs(inp, ctx), f"{_label(v)}: the output does not depend on the parameters or the input (computed outside autograd?)"
                continue
            loss.backward()
            named = _params_of(m)
            if i > 0:
                _assert_grads([(n, p) for n, p in named if p.grad is not None], _label(v))
                continue
            _assert_grads(named, _label(v))
            if named:
                assert any(p.grad.abs().sum() > 0 for _, p in named), f"{_label(v)}: every parameter gradient is exactly zero"
            leaves = [t for t in self.h.grad_inputs(inp, ctx) if isinstance(t, torch.Tensor) and t.is_leaf and t.requires_grad]
            if leaves:
                got = [t.grad is not None and bool(t.grad.abs().sum() > 0) for t in leaves]
                assert any(got), f"{_label(v)}: no gradient reaches the input; the layers below would not learn (is it detached?)"

    def check_determinism(self) -> None:
        for v in self.h.variants():
            a, b = self.built(v), self.built(v)
            sa, sb = a.state_dict(), b.state_dict()
            for k in sa:
                assert torch.equal(sa[k], sb[k]), f"{_label(v)}: initialisation of {k!r} differs under the same torch seed (use torch's RNG, not random/numpy/time)"
            for training in (True, False):
                oa = _seeded(self.seed + 5, lambda: self.forward(a, v, 7, training=training)[0])
                ob = _seeded(self.seed + 5, lambda: self.forward(b, v, 7, training=training)[0])
                assert torch.allclose(oa, ob, atol=1e-6, rtol=1e-5), f"{_label(v)}: two instances with the same seed give different outputs ({'train' if training else 'eval'} mode)"
            o1 = self.forward(a, v, 7, training=False)[0]
            o2 = self.forward(a, v, 7, training=False)[0]
            assert torch.allclose(o1, o2, atol=1e-6, rtol=1e-5), f"{_label(v)}: eval-mode forward is not repeatable (random in eval mode, or state changed by forward?)"

    def check_empty_domain(self) -> None:
        cases = [("domain 1 has no rows", torch.tensor([0, 2, 0, 2, 0, 2])), ("all rows in domain 2", torch.tensor([2, 2, 2, 2]))]
        for v in self.h.variants():
            m = self.built(v)
            for what, dom in cases:
                for training in (True, False):
                    out, inp, _ = self.forward(m, v, len(dom), domain=dom, training=training, grad=training)
                    want = self.h.expected(m, v, inp, len(dom))
                    assert tuple(out.shape) == tuple(want), f"{what} ({_label(v)}): output shape {list(out.shape)}, expected {list(want)}"
                    _assert_finite(out, f"{what} ({_label(v)})")
                    if training and out.requires_grad:
                        _loss(out).backward()
                        for n, p in _params_of(m):
                            assert p.grad is None or torch.isfinite(p.grad).all(), f"{what}: non-finite gradient in {n}"
                        m.zero_grad()

    def check_bank(self) -> None:
        if self.kind != "expert":
            raise _Skip("experts only")
        in_dim, n = 12, 3
        dims = self.h.dims.with_(in_dim=in_dim)
        bank = _seeded(self.seed, lambda: build_bank(self.cls, n, self.params, dims))
        out_dim = output_size(self.cls, self.params, dims)
        assert bank.num_experts == n and bank.out_dim == out_dim, f"bank reports num_experts={bank.num_experts}, out_dim={bank.out_dim}; expected {n}, {out_dim}"
        ctx = make_context(5, seed=self.seed)
        x = _randn(self.seed, 5, in_dim, grad=True)
        cases = [("all experts", (x, ctx), (5, n, out_dim)), ("experts 1..2", (x, ctx, 1, 3), (5, 2, out_dim)),
                 ("one input per expert [B, 2, in]", (_randn(self.seed + 1, 5, 2, in_dim), ctx, 1, 3), (5, 2, out_dim))]
        for what, args, want in cases:
            out = bank(*args)
            assert tuple(out.shape) == want, f"bank forward ({what}): shape {list(out.shape)}, expected {list(want)}"
            _assert_finite(out, f"bank ({what})")
        _loss(bank(x, ctx)).backward()
        _assert_grads(_params_of(bank), "bank")
        # slicing must agree with running all experts
        full, part = bank(x, ctx).detach(), bank(x, ctx, 1, 3).detach()
        assert torch.allclose(full[:, 1:3], part, atol=1e-5), "bank(x, ctx, 1, 3) differs from bank(x, ctx)[:, 1:3]"
        # sparse dispatch: each expert on its own rows (one of them empty) must agree with forward
        bank.eval()
        idxs = [torch.tensor([0, 2, 4]), torch.tensor([], dtype=torch.long)]
        each = bank.forward_each([x.detach()[i] for i in idxs], [ctx.select(i) for i in idxs], 1)
        for j, (i, y) in enumerate(zip(idxs, each)):
            want = bank(x.detach()[i], ctx.select(i), 1 + j, 2 + j)[:, 0]
            assert tuple(y.shape) == tuple(want.shape) and torch.allclose(y, want, atol=1e-5), (
                f"bank.forward_each: expert {1 + j} on {len(i)} rows differs from bank(x, ctx, {1 + j}, {2 + j})")

    def _models(self) -> list[tuple[str, nn.Module]]:
        from mdmt_nas.arch import Architecture
        from mdmt_nas.model import build_model

        out = []
        for label, spec in self.h.archs():
            arch = Architecture.model_validate({"embedding_dim": E, **spec})
            try:
                model = _seeded(self.seed, lambda: build_model(arch, _schema(), self.registry))
            except Exception as exc:
                raise AssertionError(f"build_model ({label}) {_describe_exc(exc)}") from None
            out.append((label, model))
        return out

    def _own_params(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        from mdmt_nas.plugins import component_map

        refs = component_map(model, self.registry)
        paths = [r.path for r in refs.values() if r.kind == self.kind and r.name == self.name]
        assert paths, f"the built model contains no {self.kind} {self.name!r}"
        return [(n, p) for n, p in model.named_parameters() if p.requires_grad and any(n.startswith(q + ".") for q in paths)]

    def check_in_model(self) -> None:
        for k, (label, model) in enumerate(self._models()):
            first = k == 0
            for what, dom in (("all domains", None), ("domain 1 empty", torch.tensor([0, 2, 2, 0, 0]))):
                sparse, dense, domain, labels = _batch(7 if dom is None else len(dom), dom, self.seed)
                model.train()
                ctx = model.make_context(sparse, dense, domain, labels)
                logits = model.forward_context(ctx)
                assert tuple(logits.shape) == (len(domain), T), f"{label}, {what}: model output {list(logits.shape)}, expected {[len(domain), T]}"
                _assert_finite(logits, f"{label}, {what}")
                loss = F.binary_cross_entropy_with_logits(logits, labels)
                aux = ctx.aux.total_loss()
                (loss if aux is None else loss + aux).backward()
                if dom is None and first:
                    _assert_grads(self._own_params(model), f"{label}: in the built model, the component's")
                    _assert_grads([("embedding.weight", model.embedding.weight)], f"{label}: in the built model")
                model.zero_grad(set_to_none=True)
                model.eval()
                with torch.no_grad():
                    again = model(sparse, dense, domain)
                assert tuple(again.shape) == (len(domain), T), f"{label}, {what}: eval output {list(again.shape)}"

    def check_mixed_op(self) -> None:
        # a softmax-weighted mix with a fixed second candidate: the mixing weights must learn
        for v in self.h.variants()[:1]:
            m = self.built(v)
            ctx = make_context(6, seed=self.seed, training=True)
            inp = self.h.inputs(m, v, ctx, self.seed + 1, False)
            m.train()
            alpha = torch.zeros(2, requires_grad=True)
            w = torch.softmax(alpha, 0)
            out = w[0] * self.h.run(m, inp, ctx) + w[1] * self.h.alternative(m, v, inp, ctx)
            _loss(out).backward()
            assert alpha.grad is not None and torch.isfinite(alpha.grad).all(), f"{_label(v)}: the mixing weights receive no finite gradient"
            assert alpha.grad.abs().sum() > 0, f"{_label(v)}: the mixing weights receive a zero gradient"
            _assert_grads(_params_of(m), f"{_label(v)}: inside a mixed op")
        # the real DARTS supernet (mdmt_nas.search.darts.relax), once it is there
        if _supernet() is not None:
            self._supernet_mixed_op()

    def _supernet_mixed_op(self) -> None:
        from mdmt_nas.model import build_model
        from mdmt_nas.spaces import parse_space

        relax, AlphaController = _supernet()
        for label, template, other in self.h.supernet():
            data = {"name": "contract-kit", "template": {"embedding_dim": E, **template}, "choices": {"c": {"options": [self.spec, other]}}}
            space = parse_space(data, "contract kit", default_name="contract-kit")
            try:
                relaxation = relax(space)
                model = _seeded(self.seed, lambda: build_model(relaxation.arch, _schema(), self.registry))
            except Exception as exc:
                raise AssertionError(f"DARTS supernet ({label}) {_describe_exc(exc)}") from None
            ctl = AlphaController(relaxation.relaxed).attach(model)
            ctl.new_step()
            sparse, dense, dom, labels = _batch(7, seed=self.seed)
            model.train()
            ctx = model.make_context(sparse, dense, dom, labels)
            logits = model.forward_context(ctx)
            assert tuple(logits.shape) == (7, T), f"DARTS supernet ({label}): output {list(logits.shape)}"
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            aux = ctx.aux.total_loss()
            (loss if aux is None else loss + aux).backward()
            alpha = ctl.alphas.get("c")
            assert alpha is not None, f"DARTS supernet ({label}): the choice between this component and {other!r} was not relaxed"
            assert alpha.grad is not None and torch.isfinite(alpha.grad).all(), f"DARTS supernet ({label}): the architecture weights receive no finite gradient"
            mine = [(n, p) for n, p in model.named_parameters() if p.requires_grad and _owner_is(model, n, self.cls)]
            _assert_grads(mine, f"DARTS supernet ({label}), the component's")

    def check_torchscript(self) -> None:
        if not self.cls.torchscript:
            raise _Skip("cls.torchscript is False")
        for label, model in self._models()[:2]:
            model.eval()
            ex = _batch(8, seed=self.seed)[:3]
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                try:
                    traced = torch.jit.trace(model, ex, check_trace=False)
                except Exception as exc:
                    raise AssertionError(f"{label}: torch.jit.trace {_describe_exc(exc)} (set `torchscript = False` on the class if it cannot be traced)") from None
                for what, inputs in (("the traced batch", ex), ("another batch (5 rows, domain 1 empty)", _batch(5, torch.tensor([0, 2, 2, 0, 2]), self.seed + 3)[:3])):
                    want, got = model(*inputs), traced(*inputs)
                    assert got.shape == want.shape and torch.allclose(want, got, atol=1e-5, rtol=1e-4), (
                        f"{label}: the traced model does not reproduce the outputs on {what} (max diff "
                        f"{(want - got).abs().max().item() if got.shape == want.shape else 'shape ' + str(list(got.shape))}); "
                        "Python control flow on tensor values? Set `torchscript = False` if it cannot be traced"
                    )

    # checks: balancers ---------------------------------------------------------------------
    def _balancer(self) -> Balancer:
        return _seeded(self.seed, lambda: build(self.cls, self.params, Dims(num_tasks=T, task_names=tuple(f"task{i}" for i in range(T)))))

    def _step(self, bal: Balancer, model: nn.Module, domain: torch.Tensor | None, step: int = 0) -> tuple[torch.Tensor, BalanceContext]:
        sparse, dense, dom, labels = _batch(7 if domain is None else len(domain), domain, self.seed + step)
        model.train()
        ctx = model.make_context(sparse, dense, dom, labels)
        logits = model.forward_context(ctx)
        row = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        shared = model.shared_parameters()
        bctx = BalanceContext(shared, list(model.parameters()), ctx.embedding, dom, labels, ctx.aux.total_loss(), step)
        total = bal.backward(row.mean(0), row, bctx)
        return total, bctx

    def _bal_model(self) -> nn.Module:
        from mdmt_nas.arch import Architecture
        from mdmt_nas.model import build_model

        arch = Architecture.model_validate({"embedding_dim": E, "shared": {"expert": MLP8, "num": 2}, "task": {"expert": MLP8, "num": 1}, "gate_scope": ["shared", "task"], "balancer": self.spec})
        return _seeded(self.seed, lambda: build_model(arch, _schema(), self.registry))

    def bcheck_construct(self) -> None:
        bal = self._balancer()
        assert bal.num_tasks == T and bal.params == self.params, "call super().__init__(params, num_tasks, task_names)"

    def bcheck_shapes(self) -> None:
        bal = self._balancer()
        losses = torch.tensor([0.7, 0.3], requires_grad=True)
        out = bal.combine(losses)
        assert isinstance(out, torch.Tensor) and out.numel() == 1, f"combine(task_losses [T]) must return a scalar, got {getattr(out, 'shape', type(out))}"
        _assert_finite(out, "combine")
        total, _ = self._step(bal, self._bal_model(), None)
        assert isinstance(total, torch.Tensor) and total.numel() == 1, "backward(...) must return the scalar total loss"
        _assert_finite(total, "backward")

    def bcheck_gradients(self) -> None:
        bal, model = self._balancer(), self._bal_model()
        self._step(bal, model, None)
        _assert_grads([(n, p) for n, p in model.named_parameters() if p.requires_grad], "after backward, the model")
        _assert_grads(_params_of(bal), "after backward, the balancer's own parameters")

    def bcheck_determinism(self) -> None:
        grads = []
        for _ in range(2):
            bal, model = self._balancer(), self._bal_model()
            total, _ = _seeded(self.seed, lambda: self._step(bal, model, None))
            grads.append((float(total), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
        assert abs(grads[0][0] - grads[1][0]) < 1e-6, "same seed, different total loss"
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0][1], grads[1][1])), "same seed, different gradients"

    def bcheck_empty_domain(self) -> None:
        bal, model = self._balancer(), self._bal_model()
        total, _ = self._step(bal, model, torch.tensor([0, 2, 0, 2, 2]))
        _assert_finite(total, "domain 1 has no rows")
        for n, p in model.named_parameters():
            assert p.grad is None or torch.isfinite(p.grad).all(), f"domain 1 has no rows: non-finite gradient in {n}"

    def bcheck_in_model(self) -> None:
        from mdmt_nas.arch import Architecture
        from mdmt_nas.model import build_balancer

        arch = Architecture.model_validate({"embedding_dim": E, "shared": {"expert": MLP8, "num": 2}, "balancer": self.spec})
        bal = build_balancer(arch, _schema(), self.registry)
        model = self._bal_model()
        opt = torch.optim.SGD(list(model.parameters()) + [p for p in bal.parameters() if p.requires_grad], lr=0.01)
        for step in range(3):  # a few optimiser steps, as the trainer runs them
            opt.zero_grad(set_to_none=True)
            total, _ = self._step(bal, model, None, step)
            _assert_finite(total, f"training step {step}")
            opt.step()


class _Skip(Exception):
    pass


def _supernet() -> tuple[Any, Any] | None:
    """(relax, AlphaController) of the DARTS supernet, if this build has it."""
    try:
        from mdmt_nas.search.darts.alphas import AlphaController
        from mdmt_nas.search.darts.relax import relax
    except ImportError:
        return None
    return relax, AlphaController


def _owner_is(model: nn.Module, param_name: str, cls: type) -> bool:
    """Whether parameter `param_name` of `model` belongs to an instance of `cls`."""
    parts = param_name.split(".")[:-1]
    m = model
    for p in parts:
        m = getattr(m, p)
        if type(m) is cls:
            return True
    return False


def checks_for(cls: type, kind: str | None = None) -> tuple[str, ...]:
    """Names of the checks `check_component` runs for this class."""
    kind = kind or getattr(cls, "kind", "")
    if kind == "balancer":
        return BALANCER_CHECKS
    names = NEURAL_CHECKS
    if kind != "expert":
        names = tuple(c for c in names if c != "bank")
    return names


def component_label(cls: type, kind: str | None = None) -> str:
    kind = kind or getattr(cls, "kind", "component")
    name = getattr(cls, "name", "") or "?"
    where = f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)!s}"
    try:
        from mdmt_nas.plugins import get_registry

        reg = get_registry()
        if (kind, name) in reg and reg.get(kind, name) is cls:
            e = reg.entry(kind, name)
            return f"{kind} {name!r} ({where}, plugin {e.plugin!r}, distribution {e.dist} {e.version})"
    except Exception:
        pass
    return f"{kind} {name!r} ({where})"


def check_component(
    cls: type,
    kind: str | None = None,
    *,
    params: dict[str, Any] | None = None,
    checks: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    batch_sizes: tuple[int, ...] = (1, 2, 7),
    seed: int = 0,
    registry: Any = None,
    raise_on_fail: bool = True,
) -> Report:
    """Run the contract checks of `cls` (kind defaults to `cls.kind`).

    params: params to check with besides the defaults (a dict, as in an arch file).
    checks / skip: run only these / not these checks (see `checks_for(cls)`).
    registry: where the other components of the test models come from (default:
      the loaded plugins); `cls` is added under its name if it is not there.
    raise_on_fail: raise ContractError (an AssertionError) naming the component and
      every failed check; False returns the Report with `.ok` and `.failures`.
    """
    kind = kind or getattr(cls, "kind", None)
    if kind not in KINDS:
        raise ValueError(f"cannot check {cls!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
    all_checks = checks_for(cls, kind)
    wanted = [c for c in all_checks if (checks is None or c in set(checks)) and c not in set(skip)]
    unknown = set(checks or ()) - set(all_checks)
    if unknown:
        raise ValueError(f"unknown check(s) {sorted(unknown)} for a {kind}; checks: {', '.join(all_checks)}")
    checker = _Checker(cls, kind, params, tuple(batch_sizes), seed, registry)
    report = Report(component_label(cls, kind), kind, checker.name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only cost (and oversubscribe parallel test runs)
    try:
        _run_checks(checker, kind, wanted, report)
    finally:
        torch.set_num_threads(threads)
    if raise_on_fail:
        report.raise_for_failures()
    return report


def _run_checks(checker: _Checker, kind: str, wanted: list[str], report: Report) -> None:
    blocked = ""
    for name in wanted:
        t0 = time.perf_counter()
        if blocked:
            report.results.append(CheckResult(name, "skip", f"not run: {blocked}"))
            continue
        method = getattr(checker, ("bcheck_" if kind == "balancer" and hasattr(checker, f"bcheck_{name}") else "check_") + name)
        try:
            with torch.random.fork_rng(devices=[]):
                method()
        except _Skip as why:
            report.results.append(CheckResult(name, "skip", str(why), time.perf_counter() - t0))
        except AssertionError as exc:
            report.results.append(CheckResult(name, "fail", str(exc) or "assertion failed", time.perf_counter() - t0))
        except Exception as exc:
            report.results.append(CheckResult(name, "fail", _describe_exc(exc), time.perf_counter() - t0))
        else:
            report.results.append(CheckResult(name, "pass", "", time.perf_counter() - t0))
        if report.results[-1].status == "fail" and name in GATING:
            blocked = f"'{name}' failed"


def contract_test(cls: type, kind: str | None = None, **options: Any) -> Callable[..., None]:
    """A pytest test function that runs each contract check of `cls` as its own test item.

        from mdmt_nas.testing import contract_test
        test_my_expert = contract_test(MyExpert)
    """
    import pytest

    names = [c for c in checks_for(cls, kind) if c not in set(options.get("skip", ()))]

    @pytest.mark.parametrize("check", names)
    def test_contract(check: str) -> None:
        opts = {k: v for k, v in options.items() if k != "skip"}
        report = check_component(cls, kind, checks=[check], raise_on_fail=False, **opts)
        result = report.result(check)
        if result.status == "skip":
            pytest.skip(result.message)
        if result.status == "fail":
            raise ContractError(f"{report.component} failed contract check '{check}': {result.message}")

    test_contract.__name__ = f"test_contract_{getattr(cls, 'name', 'component')}"
    return test_contract
