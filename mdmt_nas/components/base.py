"""What every component shares: a pydantic `Params` model, the `Dims` it is built for and a per-forward `Context`."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from mdmt_nas.routing import DomainRouting, is_static


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
        if is_static():  # a metric is a Python float read off the data: nothing to record in an exported graph
            return
        self.metrics[name] = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)

    def total_loss(self) -> torch.Tensor | None:
        if not self.losses:
            return None
        return torch.stack([v.reshape(()) for v in self.losses.values()]).sum()


@dataclass(frozen=True)
class Dims:
    """What a component is built for: the sizes around it, and where its sub-components come from.

    Every kind is constructed the same way, `cls(params, dims)`; each reads the fields it needs:

    in_dim:      size of the input vector (experts, gates, towers); the hidden size a fusion or
                 a hidden adapter preserves; F*E for a fields adapter
    num_fields, field_dim:  shape [F, E] of `ctx.fields` (interaction experts, fields adapters)
    num_domains, num_tasks: D and T (a gate mixing for one head only has num_tasks=1)
    num_experts: candidates a gate weighs
    per_domain:  gates and towers: one per (domain, task) head, each row using its domain's
    members:     fusions: the member count (level 1) or the part names (level 2)
    task_names:  balancers
    registry:    where components made of other components (DARTS mixed ops) resolve them
                 (None: the loaded plugins)
    """

    in_dim: int = 0
    num_fields: int = 0
    field_dim: int = 0
    num_domains: int = 1
    num_tasks: int = 1
    num_experts: int = 0
    per_domain: bool = False
    members: Any = 1
    task_names: tuple[str, ...] = ()
    registry: Any = field(default=None, compare=False, repr=False)

    def with_(self, **changes: Any) -> Dims:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_args(cls, names: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> Dims:
        """Dims from the sizes of the constructor signature before `Dims` (e.g. in_dim, num_fields, ...)."""
        if len(args) > len(names):
            raise TypeError(f"expected at most {len(names)} sizes ({', '.join(names)}), got {len(args)}")
        values = dict(zip(names, args))
        for k, v in (kwargs or {}).items():
            key = {"dim": "in_dim", "num_members": "members", "parts": "members"}.get(k, k)
            if key not in names or key in values:
                raise TypeError(f"unexpected size argument {k!r}; sizes: {', '.join(names)}")
            values[key] = v
        for k in ("members", "task_names"):
            if isinstance(values.get(k), list):
                values[k] = tuple(values[k])
        return cls(**values)

    def args(self, names: tuple[str, ...]) -> tuple[Any, ...]:
        """The positional sizes of the constructor signature before `Dims` (lists where it took lists)."""
        return tuple(list(v) if isinstance(v, tuple) else v for v in (getattr(self, n) for n in names))


@functools.cache
def takes_dims(fn: Callable[..., Any]) -> bool:
    """Whether a constructor, `bank` or `output_dim` has the `dims` signature (else: the positional sizes of old)."""
    try:
        return "dims" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return True


def as_dims(kind_args: tuple[str, ...], dims: Any, rest: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> Dims:
    """`dims` itself, or the Dims of a subclass that still calls `super().__init__(params, in_dim, ...)`."""
    if isinstance(dims, Dims) and not rest and not kwargs:
        return dims
    return Dims.from_args(kind_args, (dims, *rest), kwargs)


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
    def routing(self) -> DomainRouting:
        """Per-domain row indices of these rows, computed once per context."""
        if self._routing is None:
            self._routing = DomainRouting(self.domain, self.num_domains)
        return self._routing

    @property
    def batch_size(self) -> int:
        return int(self.domain.shape[0])

    def select(self, idx: torch.Tensor) -> Context:
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
    `torch.jit.trace` (no data-dependent Python control flow in forward);
    `exportable` whether it can be exported with `torch.export` (`mdmt-nas
    export`, the MLflow model of a run): no int()/float()/.item()/.tolist() of
    a tensor and no Python `if` on tensor values in eval-mode forward.
    """

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    torchscript: ClassVar[bool] = True
    exportable: ClassVar[bool] = True

    @classmethod
    def make_params(cls, raw: dict[str, Any] | BaseModel | None) -> BaseModel:
        if isinstance(raw, cls.Params):
            return raw
        return cls.Params(**(raw or {}))
