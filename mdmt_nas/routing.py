"""Domain routing: run a domain-specific branch only on the rows of its domain.

Rows are gathered per domain (`index_select`), each domain's branch runs on its
own rows, and the results are put back in the original row order with one
gather by the inverse permutation. No Python loop touches rows; the loop is
over domains. Everything here is traceable (`torch.jit.trace`) because no
Python control flow depends on tensor values.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class DomainRouting:
    """Per-domain row indices of one batch, computed once and shared by all components."""

    def __init__(self, domain: torch.Tensor, num_domains: int):
        self.num_domains = num_domains
        self.groups = [torch.nonzero(domain == d).squeeze(1) for d in range(num_domains)]
        self.perm = torch.cat(self.groups)
        self.inverse = torch.argsort(self.perm)

    def apply(self, x: torch.Tensor, fn: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Compute `fn(d, x[rows of d], rows of d)` for every domain and restore row order."""
        parts = [fn(d, x.index_select(0, idx), idx) for d, idx in enumerate(self.groups)]
        return torch.cat(parts).index_select(0, self.inverse)

    def grouped_linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """Per-domain affine map: x [B, in], weight [D, in, out], bias [D, out] -> [B, out]."""

        def one(d: int, xs: torch.Tensor, _idx: torch.Tensor) -> torch.Tensor:
            y = xs @ weight[d]
            return y + bias[d] if bias is not None else y

        return self.apply(x, one)


def masked_reference(x: torch.Tensor, domain: torch.Tensor, num_domains: int, fn: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
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
