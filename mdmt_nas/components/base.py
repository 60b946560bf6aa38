"""What every component shares: a pydantic `Params` model and a per-forward `Context`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn


class NoParams(BaseModel):
    """Params of a component that has none."""

    model_config = ConfigDict(extra="forbid")


class AuxCollector:
    """Auxiliary losses and metrics contributed by components during one forward.

    A component calls `ctx.aux.add_loss(name, value)` (a scalar tensor that the
    trainer adds to the objective) or `ctx.aux.add_metric(name, value)` (a float or
    0-d tensor that the trainer averages per epoch and logs). This is the one
    general mechanism; the trainer has no special cases per component.
    """

    def __init__(self) -> None:
        self.losses: dict[str, torch.Tensor] = {}
        self.metrics: dict[str, float] = {}

    def add_loss(self, name: str, value: torch.Tensor) -> None:
        self.losses[name] = self.losses[name] + value if name in self.losses else value

    def add_metric(self, name: str, value: float | torch.Tensor) -> None:
        self.metrics[name] = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)

    def total_loss(self) -> torch.Tensor | None:
        if not self.losses:
            return None
        return torch.stack([v.reshape(()) for v in self.losses.values()]).sum()


@dataclass
class Context:
    """What a component sees besides its main input, aligned with the rows of that input.

    domain:    int64 [B] domain id of each row.
    fields:    float [B, F, E] per-field embeddings (sparse fields, then dense fields
               projected to E dims); for interaction experts.
    embedding: float [B, F*E] the flat input embedding (e.g. for hyper-networks).
    labels:    float [B, T] or None (None at inference).
    aux:       collector of auxiliary losses and metrics (shared by row subsets).
    """

    domain: torch.Tensor
    fields: torch.Tensor
    embedding: torch.Tensor
    num_domains: int
    num_tasks: int
    labels: torch.Tensor | None = None
    aux: AuxCollector = field(default_factory=AuxCollector)
    training: bool = False
    _routing: Any = field(default=None, repr=False)

    @property
    def routing(self) -> "DomainRouting":
        """Per-domain row indices of these rows, computed once per context."""
        if self._routing is None:
            from mdmt_nas.routing import DomainRouting

            self._routing = DomainRouting(self.domain, self.num_domains)
        return self._routing

    @property
    def batch_size(self) -> int:
        return int(self.domain.shape[0])

    def select(self, idx: torch.Tensor) -> "Context":
        """The context of a row subset (routing gathers rows; aux stays shared)."""
        return Context(
            domain=self.domain[idx],
            fields=self.fields[idx],
            embedding=self.embedding[idx],
            num_domains=self.num_domains,
            num_tasks=self.num_tasks,
            labels=None if self.labels is None else self.labels[idx],
            aux=self.aux,
            training=self.training,
        )


class Component(nn.Module):
    """Base of every neural component: a kind, a name and a pydantic `Params` model.

    `torchscript` says whether a model containing it can be exported with
    `torch.jit.trace` (no data-dependent Python control flow in forward).
    """

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    torchscript: ClassVar[bool] = True

    @classmethod
    def make_params(cls, raw: dict[str, Any] | BaseModel | None) -> BaseModel:
        if isinstance(raw, cls.Params):
            return raw
        return cls.Params(**(raw or {}))
