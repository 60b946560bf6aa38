"""The DARTS mixed ops: a component kind's candidates in one op, their outputs summed with the choice weights.

Each mixed op is an ordinary registered component (`darts.mixed_*`), so a
supernet is a plain Architecture that `build_model` builds. A candidate's
weight is a sum over terms of products of choice probabilities (see relax.py);
the six mixed ops share that weighting and the weighted sum (`_Mixed.mix`), and
differ only in how a candidate is built and called. Candidates are resolved in
the registry the model is built with (`dims.registry`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mdmt_nas.arch import ComponentSpec
from mdmt_nas.components import Adapter, Context, Dims, Expert, ExpertBank, Fusion, Gate, Tower, build, build_bank
from mdmt_nas.components.kinds import output_size
from mdmt_nas.errors import ConfigError
from mdmt_nas.search.darts.alphas import AlphaController, alpha_key
from mdmt_nas.search.darts.relax import Relaxation


class MixedCandidate(BaseModel):
    """One candidate of a mixed op: a component (None = identity) and its weight terms per slot."""

    model_config = ConfigDict(extra="forbid")
    spec: ComponentSpec | None = None
    terms: list[list[list[tuple[str, int]]]] = Field(
        default_factory=lambda: [[[]]], description="per slot: weight = sum over terms of prod P(choice = index)"
    )


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


class _Mixed:
    """Shared machinery: per-choice alphas (`arch_<choice>`) and candidate weights [K, slots]."""

    choice_sizes: dict[str, int]
    alphas: nn.ParameterDict
    _ctl: AlphaController | None

    def _init_mixed(self, params: Any) -> None:
        self.choice_sizes = dict(params.choices)
        self.alphas = nn.ParameterDict(
            {alpha_key(c): nn.Parameter(torch.zeros(n)) for c, n in self.choice_sizes.items()}
        )
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
        """Hard (Gumbel) samples and argmax evaluation: candidates of weight exactly 0 are not computed."""
        return self._ctl is not None and self._ctl.mode == "gumbel" and bool((w.detach() == 0).all())

    def mix(self, weights: list[torch.Tensor], output: Callable[[int], torch.Tensor]) -> torch.Tensor | None:
        """The weighted sum over candidates k of output(k) * weights[k] (None if every candidate was skipped)."""
        out = None
        for k, w in enumerate(weights):
            if self._skip(w):
                continue
            y = output(k) * w
            out = y if out is None else out + y
        return out

    @staticmethod
    def _candidates(
        params: Any, dims: Dims, kind: str, name: str, check: Callable[[type, ComponentSpec], None] | None = None
    ) -> list[tuple[type, BaseModel] | None]:
        """(class, params) of each candidate (None: the identity), resolved in the registry the model is built with."""
        registry = dims.registry
        if registry is None:  # built outside build_model: the loaded plugins
            from mdmt_nas.plugins import get_registry

            registry = get_registry()
        out: list[tuple[type, BaseModel] | None] = []
        for i, c in enumerate(params.candidates):
            if c.spec is None:
                out.append(None)
                continue
            cls, p = registry.resolve(kind, c.spec, f"{name}.candidates[{i}]")
            if check is not None:
                check(cls, c.spec)
            out.append((cls, p))
        return out


def _pad(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x if x.shape[-1] == dim else F.pad(x, (0, dim - x.shape[-1]))


def _required(kind: str, cands: list[Any]) -> list[tuple[type, BaseModel]]:
    assert all(c is not None for c in cands), f"a {kind} candidate cannot be empty"
    return cands


class MixedExpert(Expert, _Mixed):
    """DARTS mixed expert: weighted sum of candidate experts (zero-padded to the widest); as a bank, slot masks relax the expert count."""

    name = "darts.mixed_expert"
    Params = MixedExpertParams
    torchscript = False

    def __init__(self, params: MixedExpertParams, dims: Dims):
        super().__init__(params, dims)
        self._init_mixed(params)
        cands = self._candidates(params, dims, "expert", self.name)
        self.ops = nn.ModuleList(nn.Identity() if c is None else build(c[0], c[1], dims) for c in cands)

    @classmethod
    def output_dim(cls, params: MixedExpertParams, dims: Dims) -> int:
        cands = cls._candidates(params, dims, "expert", cls.name)
        return max(dims.in_dim if c is None else output_size(c[0], c[1], dims) for c in cands)

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        W = self.mix_weights()[:, 0]

        def output(k: int) -> torch.Tensor:
            op = self.ops[k]
            return _pad(op(x) if isinstance(op, nn.Identity) else op(x, ctx), self.out_dim)

        out = self.mix([W[k] for k in range(len(self.ops))], output)
        return out if out is not None else x.new_zeros(x.shape[0], self.out_dim)

    @classmethod
    def bank(cls, n: int, params: MixedExpertParams, dims: Dims) -> ExpertBank:
        return MixedExpertBank(n, params, dims)


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

    def __init__(self, n: int, params: MixedExpertParams, dims: Dims):
        super().__init__()
        self.params = params
        self._init_mixed(params)
        self.num_experts = n
        self.out_dim = MixedExpert.output_dim(params, dims)
        cands = self._candidates(params, dims, "expert", MixedExpert.name)
        self.banks = nn.ModuleList(
            _IdentityBank(n, dims.in_dim) if c is None else build_bank(c[0], n, c[1], dims) for c in cands
        )

    def forward(self, x: torch.Tensor, ctx: Context, start: int = 0, stop: int | None = None) -> torch.Tensor:
        stop = self.num_experts if stop is None else stop
        W = self.mix_weights()  # [K, S]
        slot = torch.arange(start, stop) % self._slots
        weights = [W[k, slot].view(1, -1, 1) for k in range(len(self.banks))]
        out = self.mix(weights, lambda k: _pad(self.banks[k](x, ctx, start, stop), self.out_dim))
        return out if out is not None else x.new_zeros(x.shape[0], stop - start, self.out_dim)


class MixedGate(Gate, _Mixed):
    """DARTS mixed gate: weighted sum of candidate gates; each candidate combines the experts its own way."""

    name = "darts.mixed_gate"
    Params = MixedGateParams
    per_head_input = True  # the space decides; PLE spaces offer only per-head gates
    torchscript = False

    def __init__(self, params: MixedGateParams, dims: Dims):
        super().__init__(params, dims)
        self._init_mixed(params)
        cands = _required("gate", self._candidates(params, dims, "gate", self.name))
        self.ops = nn.ModuleList(build(cls, p, dims) for cls, p in cands)

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        W = self.mix_weights()[:, 0]
        parts = []

        def output(k: int) -> torch.Tensor:
            wk = self.ops[k](h, ctx)
            parts.append((W[k], self.ops[k], wk))
            return wk

        total = self.mix([W[k] for k in range(len(self.ops))], output)
        total = total.clone()  # a fresh tensor to carry the parts
        total.darts_parts = parts
        return total

    def combine(self, weights: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        parts = getattr(weights, "darts_parts", None)
        if parts is None:
            return super().combine(weights, candidates)
        return self.mix([w for w, _, _ in parts], lambda k: parts[k][1].combine(parts[k][2], candidates))


class _MixedFusionBase(Fusion, _Mixed):
    torchscript = False

    def __init__(self, params: Any, dims: Dims):
        super().__init__(params, dims)
        self._init_mixed(params)

        def same_level(cls: type, spec: ComponentSpec) -> None:
            if cls.level != self.level:
                raise ConfigError(
                    f"{self.name}: candidate {spec.name!r} is a level-{cls.level} fusion, expected level {self.level}"
                )

        cands = _required("fusion", self._candidates(params, dims, "fusion", self.name, same_level))
        self.ops = nn.ModuleList(build(cls, p, dims) for cls, p in cands)
        self.uses_other_members = any(getattr(op, "uses_other_members", True) for op in self.ops)

    def forward(self, x: Any, ctx: Context) -> torch.Tensor:
        W = self.mix_weights()[:, 0]
        return self.mix([W[k] for k in range(len(self.ops))], lambda k: self.ops[k](x, ctx))


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

    def __init__(self, params: Any, dims: Dims):
        super().__init__(params, dims)
        self._init_mixed(params)

        def same_site(cls: type, spec: ComponentSpec) -> None:
            if cls.site != self.site:
                raise ConfigError(
                    f"{self.name}: candidate {spec.name!r} works at site {cls.site!r}, expected {self.site!r}"
                )

        cands = self._candidates(params, dims, "adapter", self.name, same_site)
        self._identity = [c is None for c in cands]
        self.ops = nn.ModuleList(nn.Identity() if c is None else build(c[0], c[1], dims) for c in cands)

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        W = self.mix_weights()[:, 0]
        out = self.mix([W[k] for k in range(len(self.ops))], lambda k: h if self._identity[k] else self.ops[k](h, ctx))
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

    def __init__(self, params: MixedTowerParams, dims: Dims):
        super().__init__(params, dims)
        self._init_mixed(params)
        cands = _required("tower", self._candidates(params, dims, "tower", self.name))
        self.ops = nn.ModuleList(build(cls, p, dims) for cls, p in cands)

    def forward(self, h: torch.Tensor, ctx: Context) -> torch.Tensor:
        W = self.mix_weights()[:, 0]
        return self.mix([W[k] for k in range(len(self.ops))], lambda k: self.ops[k](h, ctx))


def build_supernet(
    relaxation: Relaxation,
    schema: Any,
    mode: str = "softmax",
    tau: float = 1.0,
    registry: Any = None,
    sampled: Any = (),
) -> tuple[nn.Module, AlphaController]:
    """Build the supernet model and tie its alphas (one shared parameter per relaxed choice; `sampled` choices are
    hard-sampled per step, see AlphaController)."""
    from mdmt_nas.model import build_model

    model = build_model(relaxation.arch, schema, registry)
    ctl = AlphaController(relaxation.relaxed, mode=mode, tau=tau, sampled=sampled).attach(model)
    return model, ctl
