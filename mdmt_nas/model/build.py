"""build_model(arch, schema): assemble an nn.Module from registered components (the expert groups are in groups.py).

Routing rules (why this is fast): a domain-specific branch runs only on the
rows of its domain (gather, compute, restore order); identical experts run as
one stacked bank; a sparse gate's unselected experts receive no rows. The
reference M3oE code instead runs every domain branch on every row and masks.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn

from mdmt_nas.arch import Architecture, ComponentSpec
from mdmt_nas.components import Adapter, Balancer, Context, Dims, Expert, Fusion, Gate, Tower, build
from mdmt_nas.data.schema import Schema
from mdmt_nas.errors import ConfigError
from mdmt_nas.model.groups import GroupRunner, Level
from mdmt_nas.plugins.registry import Registry
from mdmt_nas.routing import is_static, sort_by_domain


def resolve(registry: Registry, kind: str, spec: ComponentSpec, where: str) -> tuple[type, BaseModel]:
    """Look up a component class and validate its params; errors name `where` in the arch."""
    return registry.resolve(kind, spec, where)


class MDMTModel(nn.Module):
    """A multi-domain multi-task model assembled from an `Architecture`.

    forward(sparse [B, Fs] int64, dense [B, Fd] float, domain [B] int64) -> logits [B, T],
    each row scored by the heads of its own domain.
    """

    def __init__(self, arch: Architecture, schema: Schema, registry: Registry | None = None):
        super().__init__()
        if registry is None:
            from mdmt_nas.plugins import get_registry

            registry = get_registry()
        self.arch, self.schema = arch, schema
        D, T, E = schema.num_domains, schema.num_tasks, arch.embedding_dim
        self.num_domains, self.num_tasks = D, T

        # input embedding: one table for all sparse fields (offsets), a vector per dense field
        vocab = [f.vocab_size for f in schema.sparse]
        offsets = (
            torch.tensor([0] + vocab[:-1], dtype=torch.long).cumsum(0) if vocab else torch.zeros(0, dtype=torch.long)
        )
        self.register_buffer("offsets", offsets, persistent=False)
        check_embedding_size(schema, E)
        self.embedding = nn.Embedding(max(sum(vocab), 1), E)
        nn.init.normal_(self.embedding.weight, std=0.05)
        #: the table's gradient is sparse (set by the trainer for train.sparse_embedding)
        self.sparse_grad = False
        self.raw_dense = arch.dense_input == "raw"
        self.dense_proj = None if self.raw_dense else nn.Parameter(torch.randn(schema.num_dense, E) * 0.1)
        self.domain_embedding = nn.Embedding(D, E) if arch.domain_feature else None
        if self.domain_embedding is not None:
            nn.init.normal_(self.domain_embedding.weight, std=0.05)
        # per-field embeddings [B, nf, E]; raw dense values are appended to the flat input only
        self.num_fields = nf = (
            schema.num_fields + (1 if arch.domain_feature else 0) - (schema.num_dense if self.raw_dense else 0)
        )
        flat = nf * E + (schema.num_dense if self.raw_dense else 0)
        #: what every component of this model is built for (each reads the sizes of its kind; see components.base.Dims)
        dims = Dims(in_dim=flat, num_fields=nf, field_dim=E, num_domains=D, num_tasks=T, registry=registry)
        rep, hidden_adapter = self._build_input(arch, registry, dims)
        head_dim = self._build_levels(arch, registry, dims, rep, hidden_adapter)
        self._build_heads(arch, registry, dims, head_dim, hidden_adapter)

    def _build_input(
        self, arch: Architecture, registry: Registry, dims: Dims
    ) -> tuple[int, tuple[type, BaseModel] | None]:
        """Input adapter, bottom and its adapter; returns the representation size and the hidden adapter (class, params)."""
        flat = dims.in_dim
        self.input_adapter: Adapter | None = None
        if arch.input_adapter is not None:
            cls, p = resolve(registry, "adapter", arch.input_adapter, "arch.input_adapter")
            if cls.site != "fields":
                raise ConfigError(
                    f"arch.input_adapter: adapter {arch.input_adapter.name!r} works on hidden vectors (site {cls.site!r}); use it in `adapter` with adapter_sites, or pick a fields adapter"
                )
            self.input_adapter = build(
                cls, p, dims.with_(in_dim=dims.num_fields * dims.field_dim)
            )  # the fields, without raw dense values

        hidden_adapter = None
        if arch.adapter is not None:
            hidden_adapter = resolve(registry, "adapter", arch.adapter, "arch.adapter")
            if hidden_adapter[0].site != "hidden":
                raise ConfigError(
                    f"arch.adapter: adapter {arch.adapter.name!r} works on per-field embeddings (site 'fields'); use it as input_adapter"
                )

        self.bottom: Expert | None = None
        rep = flat
        if arch.bottom is not None:
            cls, p = resolve(registry, "expert", arch.bottom, "arch.bottom")
            self.bottom = build(cls, p, dims)
            rep = self.bottom.out_dim
        self.bottom_adapter = _adapter(hidden_adapter, dims, rep) if "bottom" in arch.adapter_sites else None
        self.rep_dim = rep
        return rep, hidden_adapter

    def _build_levels(
        self,
        arch: Architecture,
        registry: Registry,
        dims: Dims,
        rep: int,
        hidden_adapter: tuple[type, BaseModel] | None,
    ) -> int:
        """The expert levels: groups and the gates that mix them; returns the head size."""
        D, T = dims.num_domains, dims.num_tasks
        scope = list(arch.gate_scope)
        groups_spec = arch.groups()
        if arch.levels > 1 and any(g not in scope for g in groups_spec):
            raise ConfigError("arch.levels: levels > 1 needs every expert group in gate_scope")
        members = {"shared": 1, "domain": D, "task": T}
        self.per_domain_heads = arch.heads == "domain_task"
        gate_cls, gate_p = resolve(registry, "gate", arch.gate, "arch.gate") if groups_spec else (None, None)
        if gate_cls is not None and arch.levels > 1 and not gate_cls.per_head_input:
            raise ConfigError(
                f"arch.gate: gate {arch.gate.name!r} cannot take per-task inputs, which levels > 1 needs; use levels: 1 or a gate such as 'softmax'"
            )
        self.levels = nn.ModuleList()
        in_dim = rep
        H = None
        for lvl in range(arch.levels):
            runners = {}
            for g, spec in groups_spec.items():
                runners[g] = GroupRunner(
                    registry,
                    spec,
                    members[g],
                    dims.with_(in_dim=in_dim),
                    hidden_adapter if "experts" in arch.adapter_sites else None,
                    f"arch.{g}",
                )
            out_dims = {r.out_dim for r in runners.values()}
            if len(out_dims) > 1:
                raise ConfigError(
                    "arch: all expert groups must have the same output size, got "
                    + ", ".join(f"{g}={r.out_dim}" for g, r in runners.items())
                )
            gates: dict[str, Gate] = {}
            if runners:
                H = out_dims.pop()
                n_task_gate = sum(runners[g].per_member for g in scope)
                if n_task_gate:
                    gates["task"] = build(
                        gate_cls,
                        gate_p,
                        dims.with_(in_dim=in_dim, num_experts=n_task_gate, per_domain=self.per_domain_heads),
                    )
                if lvl < arch.levels - 1:
                    n_all = sum(r.per_member * (T if g == "task" else 1) for g, r in runners.items())
                    gates["shared"] = build(
                        gate_cls,
                        gate_p,
                        dims.with_(in_dim=in_dim, num_experts=n_all, num_tasks=1, per_domain=self.per_domain_heads),
                    )
                in_dim = H
            self.levels.append(Level(runners, gates))
        return H if H is not None else rep

    def _build_heads(
        self,
        arch: Architecture,
        registry: Registry,
        dims: Dims,
        head_dim: int,
        hidden_adapter: tuple[type, BaseModel] | None,
    ) -> None:
        """Level-1 fusion of groups outside the gate scope, level-2 fusion of parts, tower adapters, towers."""
        T = dims.num_tasks
        groups_spec = arch.groups()
        members = fusion_members(arch, dims.num_domains, T)
        self.group_fusion = nn.ModuleDict()
        for g in ("domain", "task"):
            if g in members:
                fspec = groups_spec[g].fusion
                fcls, fp = resolve(registry, "fusion", fspec, f"arch.{g}.fusion")
                if fcls.level != 1:
                    raise ConfigError(
                        f"arch.{g}.fusion: {fspec.name!r} is a level-{fcls.level} fusion; a group needs a level-1 fusion such as 'own', 'mean' or 'balance'"
                    )
                self.group_fusion[g] = build(fcls, fp, dims.with_(in_dim=head_dim, members=members[g]))
        self.parts = list(members["fusion"])
        fcls, fp = resolve(registry, "fusion", arch.fusion, "arch.fusion")
        if fcls.level != 2:
            raise ConfigError(
                f"arch.fusion: {arch.fusion.name!r} is a level-1 fusion; use a level-2 fusion such as 'sum', 'gated' or 'weighted'"
            )
        self.fusion: Fusion = build(fcls, fp, dims.with_(in_dim=head_dim, members=tuple(self.parts)))

        self.tower_adapters = (
            nn.ModuleList(_adapter(hidden_adapter, dims, head_dim) for _ in range(T))
            if "towers" in arch.adapter_sites
            else None
        )
        tcls, tp = resolve(registry, "tower", arch.tower, "arch.tower")
        self.tower: Tower = build(tcls, tp, dims.with_(in_dim=head_dim, per_domain=self.per_domain_heads))
        self.head_dim = head_dim

    # ------------------------------------------------------------------ forward pieces
    def embed(self, sparse: torch.Tensor, dense: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """Per-field embeddings [B, F, E]: sparse lookups, dense values times a learned vector (unless raw), domain."""
        parts = []
        if sparse.shape[1]:
            ids = (sparse + self.offsets).reshape(-1)
            if self.sparse_grad:  # a sparse gradient: the rows of these ids only (train.sparse_embedding)
                rows = F.embedding(ids, self.embedding.weight, sparse=True)
            else:  # index_select, not F.embedding: its dense backward (index_add) is ~2.5x faster on CPU
                rows = self.embedding.weight.index_select(0, ids)
            parts.append(rows.view(sparse.shape[0], sparse.shape[1], -1))
        if dense.shape[1] and not self.raw_dense:
            parts.append(dense.unsqueeze(-1) * self.dense_proj)
        if self.domain_embedding is not None:
            parts.append(self.domain_embedding(domain).unsqueeze(1))
        if not parts:  # raw dense values only
            return dense.new_zeros(dense.shape[0], 0, self.arch.embedding_dim)
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def make_context(
        self, sparse: torch.Tensor, dense: torch.Tensor, domain: torch.Tensor, labels: torch.Tensor | None = None
    ) -> Context:
        fields = self.embed(sparse, dense, domain)
        ctx = Context(
            domain=domain,
            fields=fields,
            embedding=self._flat(fields, dense),
            num_domains=self.num_domains,
            num_tasks=self.num_tasks,
            labels=labels,
            training=self.training,
        )
        if self.input_adapter is not None:
            ctx.fields = self.input_adapter(fields, ctx)
            ctx.embedding = self._flat(ctx.fields, dense)
        return ctx

    def _flat(self, fields: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """The flat input [B, in]: field embeddings, then the raw dense values (dense_input: raw)."""
        flat = fields.flatten(1)
        return torch.cat([flat, dense], dim=1) if self.raw_dense and dense.shape[1] else flat

    def _mixture(
        self,
        level: Level,
        outs: dict[str, torch.Tensor],
        gate_in: torch.Tensor,
        ctx: Context,
        scope: list[str],
        weights: torch.Tensor | None,
    ) -> torch.Tensor:
        """Gate-weighted mixture over the in-scope candidates of each task head: [B, T, H]."""
        gate: Gate = level.gates["task"]
        if weights is None:
            weights = gate(gate_in, ctx)
        if scope == ["shared"]:
            return gate.combine(weights, outs["shared"])
        T = self.num_tasks
        cands = []
        for g in scope:
            o = outs[g]
            cands.append(o if g == "task" else o.unsqueeze(1).expand(-1, T, -1, -1))
        return gate.combine(weights, torch.cat(cands, dim=2))

    def _run_groups(
        self,
        level: Level,
        s: torch.Tensor,
        u: torch.Tensor | None,
        ctx: Context,
        final: bool,
        sparse_weights: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        outs: dict[str, torch.Tensor] = {}
        scope = self.arch.gate_scope
        for g, runner in level.groups.items():
            if g == "shared":
                if sparse_weights is not None:
                    selected = (sparse_weights[..., : runner.per_member] != 0).any(dim=1)
                    outs[g] = runner.run_sparse(s, ctx, selected)
                else:
                    outs[g] = runner.run_member(s, ctx, 0)
            elif g == "domain":
                if g in scope or not self.group_fusion[g].uses_other_members:
                    outs[g] = runner.run_routed(s, ctx)  # [B, n, H]
                else:
                    outs[g] = runner.run_all(s, ctx)  # [B, D, n, H]
            else:  # task: every row needs every task
                outs[g] = runner.run_all(u if u is not None else s, ctx)  # [B, T, n, H]
        return outs

    def _fuse_groups(self, outs: dict[str, torch.Tensor], ctx: Context) -> dict[str, torch.Tensor]:
        parts: dict[str, torch.Tensor] = {}
        T = self.num_tasks
        for g, fusion in self.group_fusion.items():
            o = outs[g]
            if g == "domain":
                if o.dim() == 3:  # own members only: [B, n, H]
                    fused = fusion(o.mean(dim=1, keepdim=True), ctx).squeeze(1)
                else:  # all members: [B, D, n, H] -> keep the row's own domain
                    view = fusion(o.squeeze(2) if o.shape[2] == 1 else o.mean(dim=2), ctx)
                    idx = ctx.domain.view(-1, 1, 1).expand(-1, 1, view.shape[-1])
                    fused = torch.gather(view, 1, idx).squeeze(1)
                parts["domain"] = fused.unsqueeze(1).expand(-1, T, -1)
            else:
                parts["task"] = fusion(o.squeeze(2) if o.shape[2] == 1 else o.mean(dim=2), ctx)
        return parts

    def forward_context(self, ctx: Context) -> torch.Tensor:
        x = ctx.embedding
        rep = self.bottom(x, ctx) if self.bottom is not None else x
        if self.bottom_adapter is not None:
            rep = self.bottom_adapter(rep, ctx)
        T = self.num_tasks
        scope = list(self.arch.gate_scope)
        parts: dict[str, torch.Tensor]
        if not self.arch.groups():
            parts = {"shared": rep.unsqueeze(1).expand(-1, T, -1)}
        else:
            s, u = rep, None
            L = len(self.levels)
            for li, level in enumerate(self.levels):
                final = li == L - 1
                gate_in_s = s.detach() if self.arch.gate_detach_input else s
                gate_in = gate_in_s if u is None else (u.detach() if self.arch.gate_detach_input else u)
                weights = None
                sparse_w = None
                if final and scope and scope[0] == "shared" and level.gates["task"].sparse:
                    weights = sparse_w = level.gates["task"](gate_in, ctx)
                outs = self._run_groups(level, s, u, ctx, final, sparse_w)
                if final:
                    parts = {"shared": self._mixture(level, outs, gate_in, ctx, scope, weights)} if scope else {}
                    parts.update(self._fuse_groups(outs, ctx))
                else:
                    new_u = self._mixture(level, outs, gate_in, ctx, scope, None)
                    flat = [outs["shared"]] if "shared" in outs else []
                    if "domain" in outs:
                        flat.append(outs["domain"])
                    flat.append(outs["task"].flatten(1, 2))
                    sg: Gate = level.gates["shared"]
                    s = sg.combine(sg(gate_in_s, ctx), torch.cat(flat, dim=1))[:, 0]
                    u = new_u
        h = self.fusion({k: parts[k] for k in self.parts}, ctx)
        if self.tower_adapters is not None:
            h = torch.stack([self.tower_adapters[t](h[:, t], ctx) for t in range(T)], dim=1)
        return self.tower(h, ctx)

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """Logits [B, T] in the input row order (rows are sorted by domain inside, then restored)."""
        if is_static():  # static routing masks by domain: no sort needed, and no data-dependent slices
            return self.forward_context(self.make_context(sparse, dense, domain))
        perm, inverse = sort_by_domain(domain)
        ctx = self.make_context(sparse.index_select(0, perm), dense.index_select(0, perm), domain.index_select(0, perm))
        return self.forward_context(ctx).index_select(0, inverse)

    # ------------------------------------------------------------------ parameter views
    def arch_parameters(self) -> list[nn.Parameter]:
        """Architecture parameters (named `arch_*`): trained by the structure step, not the main optimiser."""
        return [p for n, p in self.named_parameters() if n.rsplit(".", 1)[-1].startswith("arch_")]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task depends on: embeddings, input adapter, bottom, level-0 shared experts."""
        mods: list[nn.Module] = [m for m in (self.input_adapter, self.bottom, self.bottom_adapter) if m is not None]
        if len(self.levels) and "shared" in self.levels[0].groups:
            mods.append(self.levels[0].groups["shared"])
        params = [self.embedding.weight] + ([self.dense_proj] if self.dense_proj is not None else [])
        if self.domain_embedding is not None:
            params.append(self.domain_embedding.weight)
        for m in mods:
            params.extend(m.parameters())
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in params if p.requires_grad and id(p) not in arch and p.numel() > 0]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def torchscript(self) -> bool:
        return all(getattr(m, "torchscript", True) for m in self.modules() if m is not self)


def _adapter(hidden_adapter: tuple[type, BaseModel] | None, dims: Dims, dim: int) -> Adapter:
    acls, ap = hidden_adapter  # type: ignore[misc]
    return build(acls, ap, dims.with_(in_dim=dim))


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_embedding_size(schema: Schema, dim: int, limit_bytes: int | None = None) -> None:
    """ConfigError before allocating an embedding table (with gradients and Adam moments) larger than half the memory."""
    rows = sum(f.vocab_size for f in schema.sparse)
    need = rows * dim * 4 * 4  # float32 weights, gradients, two Adam moments
    limit = limit_bytes if limit_bytes is not None else (_memory_bytes() or 0) // 2
    if not limit or need <= limit:
        return
    top = sorted(schema.sparse, key=lambda f: -f.vocab_size)[:3]
    fields = ", ".join(f"{f.name!r} ({f.vocab_size:,} ids)" for f in top)
    raise ConfigError(
        f"the embedding table needs about {need / 2**30:,.1f} GiB for training ({rows:,} ids x embedding_dim {dim}), "
        f"more than the {limit / 2**30:,.1f} GiB allowed; the largest sparse fields are {fields}. Cap the vocabularies "
        "(max_vocab / min_count in the dataset's column mapping) or lower arch.embedding_dim"
    )


def fusion_members(arch: Architecture, num_domains: int, num_tasks: int) -> dict[str, Any]:
    """What each fusion of `arch` fuses: `domain` / `task` (a group outside the gate scope, level 1) -> its
    member count; `fusion` (level 2) -> the names of the parts it adds up."""
    scope, groups = list(arch.gate_scope), arch.groups()
    out: dict[str, Any] = {}
    for g, count in (("domain", num_domains), ("task", num_tasks)):
        if g in groups and g not in scope:
            out[g] = count
    out["fusion"] = tuple((["shared"] if (scope or not groups) else []) + [g for g in ("domain", "task") if g in out])
    return out


def build_model(arch: Architecture, schema: Schema, registry: Registry | None = None) -> MDMTModel:
    """Assemble the model an architecture describes for a data schema."""
    return MDMTModel(arch, schema, registry)


def build_balancer(arch: Architecture, schema: Schema, registry: Registry | None = None) -> Balancer:
    if registry is None:
        from mdmt_nas.plugins import get_registry

        registry = get_registry()
    cls, p = resolve(registry, "balancer", arch.balancer, "arch.balancer")
    return build(cls, p, Dims(num_tasks=schema.num_tasks, task_names=tuple(schema.tasks), registry=registry))
