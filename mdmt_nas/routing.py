"""Domain routing: run a domain-specific branch only on the rows of its domain.

Fast path: the model sorts each batch by domain once (the trainer feeds sorted
batches), so a domain's rows are one contiguous slice: a branch reads a view,
and its outputs are concatenated in order. No gather, no scatter, no mask.
General path (unsorted rows, or while `torch.jit.trace` records a model):
rows are gathered per domain with `index_select` and put back by the inverse
permutation, so nothing depends on Python-side row counts. Either way the loop
is over domains, never over rows, and a domain with no rows costs nothing.
Static path (inside `static_routing()`, or while `torch.export` traces, which
is how `mdmt-nas export` writes .pt2 and ONNX programs): no shape may depend on
the data, so every domain branch runs on all rows and each row keeps its own
domain's result (`torch.where`). The graph is then valid for any batch size and
any mix of domains, at D times the cost of the domain-specific parts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from itertools import accumulate

import torch

Index = torch.Tensor | slice

_STATIC = [0]  # depth of open static_routing() blocks


@contextlib.contextmanager
def static_routing() -> Iterator[None]:
    """Route rows without data-dependent shapes while the block runs (see the module docstring)."""
    _STATIC[0] += 1
    try:
        yield
    finally:
        _STATIC[0] -= 1


def is_static() -> bool:
    """True inside `static_routing()` and while `torch.export` traces a model."""
    return _STATIC[0] > 0 or torch.compiler.is_exporting()


def is_sorted(domain: torch.Tensor) -> bool:
    return domain.numel() < 2 or bool((domain[1:] >= domain[:-1]).all())


class DomainRouting:
    """Per-domain rows of one batch, computed once and shared by all components."""

    def __init__(self, domain: torch.Tensor, num_domains: int):
        self.num_domains = num_domains
        self.slices: list[slice] | None = None
        self._groups: list[torch.Tensor] | None = None
        self._masks: list[torch.Tensor] | None = None
        if is_static():
            self._masks = [domain == d for d in range(num_domains)]
        elif not torch.jit.is_tracing() and is_sorted(domain):
            counts = torch.bincount(domain, minlength=num_domains)[:num_domains].tolist()
            bounds = [0, *accumulate(counts)]
            self.slices = [slice(bounds[d], bounds[d + 1]) for d in range(num_domains)]
        else:
            self._groups = [torch.nonzero(domain == d).squeeze(1) for d in range(num_domains)]
            self.inverse = torch.argsort(torch.cat(self._groups))

    @property
    def groups(self) -> list[torch.Tensor]:
        """Row indices of each domain (as tensors, whichever path is used)."""
        if self._groups is None:
            if self.slices is None:
                raise RuntimeError(
                    "DomainRouting.groups has data-dependent sizes; it is not available under static routing (torch.export)"
                )
            self._groups = [torch.arange(s.start, s.stop) for s in self.slices]
        return self._groups

    def apply(self, x: torch.Tensor, fn: Callable[[int, torch.Tensor, Index], torch.Tensor]) -> torch.Tensor:
        """Compute `fn(d, x[rows of d], rows of d)` for every domain, results in row order.

        `rows of d` is a slice (sorted batch) or an index tensor; either indexes
        tensors and `Context.select`. Under static routing `fn` gets every row
        (`rows of d` is `slice(None)`) and only the rows of `d` keep its result.
        """
        if self._masks is not None:
            out = None
            for d, mask in enumerate(self._masks):
                y = fn(d, x, slice(None))
                out = y if out is None else torch.where(mask.reshape(-1, *([1] * (y.dim() - 1))), y, out)
            assert out is not None
            return out
        if self.slices is not None:  # split views: their backward is one cat, not a zero-filled copy per domain
            parts = x.split([s.stop - s.start for s in self.slices])
            return torch.cat([fn(d, xs, s) for d, (xs, s) in enumerate(zip(parts, self.slices))])
        parts = [fn(d, x.index_select(0, idx), idx) for d, idx in enumerate(self._groups or [])]
        return torch.cat(parts).index_select(0, self.inverse)

    def grouped_linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """Per-domain affine map: x [B, in], weight [D, in, out], bias [D, out] -> [B, out]."""

        def one(d: int, xs: torch.Tensor, _idx: Index) -> torch.Tensor:
            return torch.addmm(bias[d], xs, weight[d]) if bias is not None else xs @ weight[d]

        return self.apply(x, one)


def sort_by_domain(domain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stable permutation that sorts rows by domain, and its inverse."""
    perm = torch.argsort(domain, stable=True)
    return perm, torch.argsort(perm)


def masked_reference(
    x: torch.Tensor, domain: torch.Tensor, num_domains: int, fn: Callable[[int, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """The reference code's way: every domain branch on every row, then masked.

    Kept only for benchmarks and equivalence tests; never used by models.
    """
    out = None
    for d in range(num_domains):
        y = fn(d, x)
        mask = (domain == d).reshape(-1, *([1] * (y.dim() - 1)))
        out = torch.where(mask, y, out if out is not None else torch.zeros_like(y))
    assert out is not None
    return out
