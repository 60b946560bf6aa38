"""The expert groups of a model: the banks of one group (shared, per domain, per task) at one level, and a level.

Each member (the model, a domain, a task) owns the same list of experts;
identical experts of all members form one stacked bank, and a domain's rows run
only through their domain's experts (routing).
"""

from __future__ import annotations

import torch
from pydantic import BaseModel
from torch import nn

from mdmt_nas.arch import ComponentSpec, ExpertGroup
from mdmt_nas.components import Context, Dims, ExpertBank, Gate, build, build_bank
from mdmt_nas.errors import ConfigError
from mdmt_nas.plugins.registry import Registry
from mdmt_nas.routing import is_static


class GroupRunner(nn.Module):
    """The experts of one group (shared / domain / task) at one level.

    Each member (the model, a domain, a task) owns the same list of experts;
    identical experts of all members form one bank. Expert j of member m in a
    bank with c copies per member is bank expert m * c + j.
    """

    def __init__(
        self,
        registry: Registry,
        group: ExpertGroup,
        members: int,
        dims: Dims,
        adapter: tuple[type, BaseModel] | None,
        where: str,
    ):
        super().__init__()
        distinct: dict[str, tuple[ComponentSpec, int, int]] = {}
        for i, spec in enumerate(group.experts):
            key = spec.key()
            first, count, idx = distinct.get(key, (spec, 0, i))
            distinct[key] = (first, count + 1, idx)
        self.banks = nn.ModuleList()
        self.counts: list[int] = []
        self.names: list[str] = []
        self.adapters = nn.ModuleList()
        out_dims = []
        for spec, count, idx in distinct.values():
            cls, params = registry.resolve("expert", spec, f"{where}.experts[{idx}]")
            bank: ExpertBank = build_bank(cls, members * count, params, dims)
            self.banks.append(bank)
            self.counts.append(count)
            self.names.append(spec.name)
            out_dims.append((spec.name, bank.out_dim))
            if adapter is not None:
                acls, aparams = adapter
                self.adapters.append(
                    nn.ModuleList(build(acls, aparams, dims.with_(in_dim=bank.out_dim)) for _ in range(members * count))
                )
        sizes = {d for _, d in out_dims}
        if len(sizes) != 1:
            raise ConfigError(
                f"{where}: experts of one group must have the same output size to be mixed, got "
                + ", ".join(f"{n}={d}" for n, d in out_dims)
                + "; set their output-size params equal"
            )
        self.members = members
        self.per_member = sum(self.counts)
        self.out_dim = sizes.pop()
        self.torchscript = all(getattr(b, "torchscript", True) for b in self.banks)

    def _adapt(self, b: int, out: torch.Tensor, ctx: Context, start: int) -> torch.Tensor:
        if len(self.adapters) == 0:
            return out
        ads = self.adapters[b]
        return torch.stack([ads[start + j](out[:, j], ctx) for j in range(out.shape[1])], dim=1)

    def run_member(self, x: torch.Tensor, ctx: Context, member: int = 0) -> torch.Tensor:
        """Experts of one member on these rows: [b, in] -> [b, per_member, H]."""
        outs = []
        for b, (bank, c) in enumerate(zip(self.banks, self.counts)):
            start = member * c
            outs.append(self._adapt(b, bank(x, ctx, start, start + c), ctx, start))
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]

    def run_all(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        """Experts of every member on all rows: [B, in] or per-member inputs [B, M, in] -> [B, M, per_member, H]."""
        outs = []
        for b, (bank, c) in enumerate(zip(self.banks, self.counts)):
            xin = x.repeat_interleave(c, dim=1) if x.dim() == 3 else x
            out = self._adapt(b, bank(xin, ctx), ctx, 0)
            outs.append(out.view(out.shape[0], self.members, c, self.out_dim))
        return torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]

    def run_routed(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        """Each row through its own domain's experts only: [B, in] -> [B, per_member, H]."""
        return ctx.routing.apply(x, lambda d, xs, idx: self.run_member(xs, ctx.select(idx), d))

    def run_sparse(self, x: torch.Tensor, ctx: Context, selected: torch.Tensor) -> torch.Tensor:
        """Single-member group, rows dispatched only to the experts selected for them.

        selected: bool [B, per_member]. Returns [B, per_member, H] with zeros where
        not selected. Compute grows with the number of selected experts per row.
        Under static routing (torch.export) every expert runs on every row and the
        unselected outputs are zeroed: the same result with data-independent shapes.
        """
        if is_static():
            return self.run_member(x, ctx, 0) * selected.unsqueeze(-1).to(x.dtype)
        rows, cols, vals = [], [], []
        offset = 0
        for b, (bank, c) in enumerate(zip(self.banks, self.counts)):
            idxs = [torch.nonzero(selected[:, offset + j]).squeeze(1) for j in range(c)]
            ctxs = [ctx.select(idx) for idx in idxs]
            ys = bank.forward_each([x.index_select(0, idx) for idx in idxs], ctxs, 0)
            for j, (idx, y, cj) in enumerate(zip(idxs, ys, ctxs)):
                rows.append(idx)
                cols.append(torch.full_like(idx, offset + j))
                vals.append(self._adapt(b, y.unsqueeze(1), cj, j)[:, 0])
            offset += c
        out = x.new_zeros(x.shape[0], self.per_member, self.out_dim)
        return out.index_put((torch.cat(rows), torch.cat(cols)), torch.cat(vals))


class Level(nn.Module):
    """One extraction level: expert groups plus the gates that mix them."""

    def __init__(self, groups: dict[str, GroupRunner], gates: dict[str, Gate]):
        super().__init__()
        self.groups = nn.ModuleDict(groups)
        self.gates = nn.ModuleDict(gates)
