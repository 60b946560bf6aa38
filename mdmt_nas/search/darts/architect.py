"""The architecture step of DARTS: update alphas on validation batches (bi-level optimisation).

First order: alpha <- alpha - lr * dL_valid(w, alpha)/dalpha, weights as they are.

Second order (Liu et al., 2019, eq. 7-8): the gradient at the weights after one
virtual SGD step w' = w - xi * dL_train(w, alpha)/dw,

    dL_valid(w', alpha)/dalpha - xi * d2L_train(w, alpha)/dalpha dw . dL_valid(w', alpha)/dw',

with the Hessian-vector product by central finite differences at
w +- eps * dL_valid/dw' (eps = 0.01 / |dL_valid/dw'|). The virtual step is plain
SGD with step xi even though the weights are trained with Adam (as in DARTS,
which also ignores the optimiser's state in the unrolled step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from mdmt_nas.steps import LossFn, StructureStep


class Architect(StructureStep):
    """The alpha step of DARTS: Adam (betas (0.5, 0.999) as in DARTS) on first- or second-order alpha gradients."""

    def __init__(
        self,
        alphas: list[nn.Parameter],
        weights: list[nn.Parameter],
        loss_fn: LossFn,
        lr: float = 3e-3,
        weight_decay: float = 1e-3,
        order: str = "first",
        xi: float = 1e-3,
        new_step: Callable[[], None] | None = None,
    ):
        if order not in ("first", "second"):
            raise ValueError(f"order must be 'first' or 'second', got {order!r}")
        super().__init__(
            alphas, loss_fn, lr, betas=(0.5, 0.999), weight_decay=weight_decay, zero_unused=True, new_step=new_step
        )
        self.weights = [w for w in weights if w.requires_grad]
        self.order, self.xi = order, xi

    def gradients(self, train_batch: Any, valid_batch: Any) -> tuple[torch.Tensor, Sequence[torch.Tensor | None]]:
        if self.order == "first":
            return super().gradients(train_batch, valid_batch)
        return self._unrolled(train_batch, valid_batch)

    # ------------------------------------------------------------------ second order
    def _grad(self, loss: torch.Tensor, params: list[nn.Parameter]) -> list[torch.Tensor]:
        gs = torch.autograd.grad(loss, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]

    @torch.no_grad()
    def _add(self, vec: list[torch.Tensor], scale: float) -> None:
        for w, v in zip(self.weights, vec):
            w.add_(v, alpha=scale)

    def _unrolled(self, train_batch: object, valid_batch: object) -> tuple[torch.Tensor, list[torch.Tensor]]:
        backup = [w.detach().clone() for w in self.weights]
        rng = torch.get_rng_state()
        try:
            g_train = self._grad(self.loss_fn(train_batch), self.weights)
            self._add(g_train, -self.xi)  # w' = w - xi * g
            loss = self.loss_fn(valid_batch)
            grads = self._grad(loss, self.alphas + self.weights)
            d_alpha, d_w = grads[: len(self.alphas)], grads[len(self.alphas) :]
            with torch.no_grad():
                for w, b in zip(self.weights, backup):
                    w.copy_(b)
            norm = torch.sqrt(sum((v * v).sum() for v in d_w)).item()
            eps = 0.01 / max(norm, 1e-12)
            self._add(d_w, eps)  # w+
            torch.set_rng_state(rng)  # the same noise (noisy gates) in both evaluations
            g_plus = self._grad(self.loss_fn(train_batch), self.alphas)
            self._add(d_w, -2 * eps)  # w-
            torch.set_rng_state(rng)
            g_minus = self._grad(self.loss_fn(train_batch), self.alphas)
            hvp = [(p - m) / (2 * eps) for p, m in zip(g_plus, g_minus)]
            return loss, [d - self.xi * h for d, h in zip(d_alpha, hvp)]
        finally:
            with torch.no_grad():
                for w, b in zip(self.weights, backup):
                    w.copy_(b)
