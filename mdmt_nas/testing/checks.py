"""The contract checks themselves: one method per check and kind, run on a component class in the kit's world."""

from __future__ import annotations

import json
import re
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ValidationError
from torch import nn

from mdmt_nas.components import BalanceContext, Balancer, Dims, base_of, build, build_bank
from mdmt_nas.components.kinds import output_size
from mdmt_nas.testing.world import (
    MLP8,
    E,
    T,
    _assert_finite,
    _assert_grads,
    _describe_exc,
    _Harness,
    _harness,
    _label,
    _loss,
    _params_of,
    _randn,
    _registry_with,
    _seeded,
    _take,
    make_batch,
    make_context,
    make_schema,
)

NEURAL_CHECKS = ("interface", "params", "construct", "shapes", "dtype", "gradients", "determinism", "empty_domain", "rows", "bank", "in_model",
                 "mixed_op", "torchscript", "export")
BALANCER_CHECKS = ("interface", "params", "construct", "shapes", "gradients", "determinism", "empty_domain", "in_model")
#: checks whose failure makes the others meaningless
GATING = ("interface", "construct")

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
        base = base_of(self.kind)
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

    def check_rows(self) -> None:
        keep, none = torch.tensor([1, 4, 6]), torch.zeros(0, dtype=torch.long)
        for v in self.h.variants():
            m = self.built(v).eval()
            ctx = make_context(7, seed=self.seed, training=False)
            inp = self.h.inputs(m, v, ctx, self.seed + 1, False)
            with torch.no_grad():
                full = self.h.rows_view(self.h.run(m, inp, ctx))
                part = self.h.rows_view(self.h.run(m, _take(inp, keep), ctx.select(keep)))
            assert tuple(part.shape) == tuple(full[keep].shape) and torch.allclose(full[keep], part, atol=1e-5, rtol=1e-4), (
                f"{_label(v)}: in eval mode the output of rows 1, 4, 6 changes when they run without the other rows of the batch (routing runs components on the rows of one domain or of one expert; keep rows independent at inference)")
            for training in (True, False):
                m.train(training)
                c0 = ctx.select(none)
                c0.training = training
                try:
                    out = self.h.run(m, _take(inp, none), c0)
                except Exception as exc:
                    raise AssertionError(f"{_label(v)}, {'train' if training else 'eval'} mode: a batch of 0 rows {_describe_exc(exc)} "
                                         "(a component gets 0 rows when a domain is absent from a batch or no row selected an expert)") from None
                want = self.h.expected(m, v, _take(inp, none), 0)
                assert tuple(out.shape) == tuple(want), f"{_label(v)}: 0 rows in, output shape {list(out.shape)}, expected {list(want)}"

    def check_export(self) -> None:
        if not getattr(self.cls, "exportable", True):
            raise _Skip("cls.exportable is False")
        from mdmt_nas.serving.export import Scorer, trace_program

        label, model = self._models()[0]
        scorer = Scorer(model.eval()).eval()
        try:
            module = trace_program(scorer, make_batch(8, seed=self.seed)[:3], model.arch).module()
        except Exception as exc:  # noqa: BLE001 - a UserError naming the component, or what torch.export raised
            raise AssertionError(f"{label}: {exc} (set `exportable = False` on the class if it cannot be exported)") from None
        for what, inputs in (("another batch (5 rows, domain 1 empty)", make_batch(5, torch.tensor([0, 2, 2, 0, 2]), self.seed + 3)[:3]),
                             ("one row of domain 2", make_batch(1, torch.tensor([2]), self.seed + 4)[:3])):
            with torch.no_grad():
                want, got = scorer(*inputs), module(*inputs)
            assert got.shape == want.shape and torch.allclose(want, got, atol=1e-5, rtol=1e-4), (
                f"{label}: the exported program does not reproduce the outputs on {what} (max diff "
                f"{(want - got).abs().max().item() if got.shape == want.shape else 'shape ' + str(list(got.shape))}); "
                "Python control flow on tensor values, or int()/float()/.item() of a tensor?")

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
                model = _seeded(self.seed, lambda: build_model(arch, make_schema(), self.registry))
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
                sparse, dense, domain, labels = make_batch(7 if dom is None else len(dom), dom, self.seed)
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
                model = _seeded(self.seed, lambda: build_model(relaxation.arch, make_schema(), self.registry))
            except Exception as exc:
                raise AssertionError(f"DARTS supernet ({label}) {_describe_exc(exc)}") from None
            ctl = AlphaController(relaxation.relaxed).attach(model)
            ctl.new_step()
            sparse, dense, dom, labels = make_batch(7, seed=self.seed)
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
            ex = make_batch(8, seed=self.seed)[:3]
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                try:
                    traced = torch.jit.trace(model, ex, check_trace=False)
                except Exception as exc:
                    raise AssertionError(f"{label}: torch.jit.trace {_describe_exc(exc)} (set `torchscript = False` on the class if it cannot be traced)") from None
                for what, inputs in (("the traced batch", ex), ("another batch (5 rows, domain 1 empty)", make_batch(5, torch.tensor([0, 2, 2, 0, 2]), self.seed + 3)[:3])):
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
        sparse, dense, dom, labels = make_batch(7 if domain is None else len(domain), domain, self.seed + step)
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
        return _seeded(self.seed, lambda: build_model(arch, make_schema(), self.registry))

    def bcheck_construct(self) -> None:
        bal = self._balancer()
        assert bal.num_tasks == T and bal.params == self.params, "call super().__init__(params, dims)"

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
        bal = build_balancer(arch, make_schema(), self.registry)
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


