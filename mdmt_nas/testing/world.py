"""The small world every contract check runs in: its sizes, inputs, and per kind how to build, feed and wire a component."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from mdmt_nas.components import Context, Dims, build
from mdmt_nas.components.kinds import output_size

# the small world every check runs in: D domains, T tasks, F = 3 sparse + 2 dense fields of E dims
D, T, NS, ND, E, H = 3, 2, 3, 2, 4, 8
NF = NS + ND
MLP8 = {"name": "mlp", "params": {"hidden": [H]}}


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

    def rows_view(self, out: torch.Tensor) -> torch.Tensor:
        """The part of `run`'s output that belongs to the component's own rows (for the row-independence check)."""
        return out

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

    def rows_view(self, out):
        return out[:, : T * self.N]  # the weights; `run` mixes them with candidates drawn per batch size

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
    here = os.path.dirname(__file__)  # the kit's own frames (mdmt_nas/testing/) are not the culprit
    inner = next((f for f in reversed(frames) if os.path.dirname(f.filename) != here), None)
    where = f" (at {inner.filename}:{inner.lineno} in {inner.name})" if inner else ""
    return f"raised {type(exc).__name__}: {exc}{where}"


def make_schema():
    """The kit's data schema: D=3 domains, T=2 tasks, 3 sparse fields (vocabulary 10) and 2 dense fields."""
    from mdmt_nas.data.schema import Schema, SparseField

    return Schema(sparse=[SparseField(name=f"s{i}", vocab_size=10) for i in range(NS)], dense=[f"d{i}" for i in range(ND)],
                  domain_names=[f"dom{i}" for i in range(D)], tasks=[f"task{i}" for i in range(T)])


def make_batch(n: int, domain: torch.Tensor | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Model inputs for `make_schema()`: (sparse int64 [n, 3], dense [n, 2], domain int64 [n], labels [n, 2]).

    Domains cycle 0, 1, 2, ... unless `domain` is given; `model(*make_batch(n)[:3])` runs a built model."""
    g = torch.Generator().manual_seed(seed)
    sparse = torch.randint(1, 10, (n, NS), generator=g)
    dense = torch.randn(n, ND, generator=g)
    dom = torch.arange(n) % D if domain is None else domain
    labels = (torch.rand(n, T, generator=g) < 0.4).float()
    return sparse, dense, dom.long(), labels


_schema, _batch = make_schema, make_batch  # the names used before the helpers were public


def _take(inp: Any, idx: torch.Tensor) -> Any:
    """Rows `idx` of a harness input (a tensor, or a dict of tensors for level-2 fusions)."""
    if isinstance(inp, dict):
        return {k: v[idx] for k, v in inp.items()}
    return inp[idx]


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


