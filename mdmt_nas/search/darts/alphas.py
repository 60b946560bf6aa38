"""The alphas of a DARTS supernet: one parameter per relaxed choice, shared by its mixed ops, and their probabilities.

`AlphaController.attach(model)` ties the alphas of every mixed op of one choice
to one shared parameter (named `arch_<choice>`, so `model.arch_parameters()`
returns exactly the alphas) and computes the choice probabilities once per step
(softmax, or a hard Gumbel sample for GDAS, shared by all mixed ops). Also: the
probabilities as metrics and as a heatmap figure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from mdmt_nas.search.darts.relax import Relaxation


def alpha_key(choice: str) -> str:
    """Parameter name of a choice's alpha: `arch_<choice>` (an architecture parameter by naming convention)."""
    return "arch_" + choice.replace(".", "_")


class AlphaController:
    """The alphas of a supernet, tied across its mixed ops, and the per-step choice probabilities.

    mode "softmax": p = softmax(alpha). mode "gumbel": in training, a hard one-hot
    Gumbel-softmax sample with straight-through gradients (GDAS), one sample per choice
    per step (`new_step`) shared by every mixed op; mixed ops skip candidates of weight 0.
    Out of training a sampled choice is its argmax (one-hot): the supernet was never
    trained as a mixture of those values, so scoring one would be meaningless.
    Nothing with an autograd graph is cached, so any number of forwards may share a step.
    """

    def __init__(self, sizes: dict[str, int], mode: str = "softmax", tau: float = 1.0, sampled: Any = ()):
        self.sizes = dict(sizes)
        self.alphas = {c: nn.Parameter(torch.zeros(n)) for c, n in sizes.items()}
        self.mode, self.tau = mode, tau
        #: choices sampled (hard Gumbel-softmax, straight-through) even in softmax mode: the presence flags, whose
        #: softmax relaxation is a scale on the module's output that the valid loss shrinks towards "off"
        self.sampled = set(sampled)
        self.training = True
        self._noise: dict[str, torch.Tensor] = {}  # this step's Gumbel noise (no graph: recomputed per use)

    def attach(self, model: nn.Module) -> "AlphaController":
        """Point every mixed op of `model` at this controller and tie its alphas to the shared ones."""
        for m in model.modules():
            if isinstance(getattr(m, "choice_sizes", None), dict):  # a mixed op (mixed_ops._Mixed)
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
        if self.mode != "gumbel" and not self.sampled:
            return {c: torch.softmax(self.alphas[c], dim=-1) for c in names}
        out = {}
        for c in names:
            a = self.alphas[c]
            if self.mode != "gumbel" and c not in self.sampled:
                out[c] = torch.softmax(a, dim=-1)
                continue
            if not self.training:  # trained one value at a time: evaluate its argmax, not a mixture
                out[c] = _one_hot_argmax(a.detach())
                continue
            if c not in self._noise:
                self._noise[c] = -torch.empty_like(a).exponential_().log()
            soft = torch.softmax((a + self._noise[c]) / self.tau, dim=-1)
            hard = _one_hot_argmax(soft.detach())
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


def _one_hot_argmax(x: torch.Tensor) -> torch.Tensor:
    """1 at the largest entry of the last dimension, 0 elsewhere (no autograd graph)."""
    return torch.zeros_like(x).scatter_(-1, x.argmax(-1, keepdim=True), 1.0)


def alpha_probs(ctl: AlphaController) -> dict[str, list[float]]:
    with torch.no_grad():
        return {c: torch.softmax(a, dim=-1).tolist() for c, a in ctl.alphas.items()}


def alpha_metrics(relaxation: "Relaxation", ctl: AlphaController) -> dict[str, float]:
    """`alpha/<choice>/<label>` -> probability of that value."""
    out = {}
    for c, probs in alpha_probs(ctl).items():
        labels = relaxation.labels(c) if c in relaxation.space._by_name else [str(i) for i in range(len(probs))]
        for lab, p in zip(labels, probs):
            out[f"alpha/{c}/{lab}"] = p
    return out


def alpha_heatmap(relaxation: "Relaxation", ctl: AlphaController, title: str):
    """A matplotlib figure: one row per choice, one cell per value, coloured by probability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = alpha_probs(ctl)
    names = list(probs)
    width = max((len(p) for p in probs.values()), default=1)
    grid = np.full((max(len(names), 1), width), np.nan)
    for i, c in enumerate(names):
        grid[i, : len(probs[c])] = probs[c]
    fig, ax = plt.subplots(figsize=(1.4 + 1.25 * width, 0.9 + 0.42 * len(names)))
    im = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for i, c in enumerate(names):
        labels = relaxation.labels(c)
        best = int(np.nanargmax(grid[i, : len(probs[c])]))
        for j, lab in enumerate(labels[: len(probs[c])]):
            ax.text(
                j,
                i,
                f"{lab}\n{grid[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if grid[i, j] < 0.6 else "black",
                fontweight="bold" if j == best else "normal",
            )
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xticks([])
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig
