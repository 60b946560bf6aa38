"""The kinds table: each kind of registered thing, its base class, its hook and the output shape it promises.

The registry, the plugin host, the model builder, the contract kit, the
scaffold and the DARTS supernet read this table; adding a kind means one row
here plus its base class (components/kinds.py) and its hook (plugins/hookspecs.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mdmt_nas.components.kinds import Adapter, Balancer, Expert, ExpertBank, Fusion, Gate, Tower

#: (args, kwargs) of a forward call -> the output shape the interface promises (None: not checked)
ShapeRule = Callable[[tuple[Any, ...], dict[str, Any]], "tuple[int, ...] | None"]


@dataclass(frozen=True)
class Kind:
    """One kind: `base` is the interface class of a neural kind (None for searchers, datasets, spaces)."""

    name: str
    hook: str
    base: type | None = None
    #: module -> its shape rule (neural kinds)
    shape: Callable[[Any], ShapeRule] | None = None
    summary: str = ""


def _lead(args: tuple[Any, ...]) -> Any:
    return args[0] if args and hasattr(args[0], "shape") else None


def _rows_then(*tail: Callable[[Any], int]) -> Callable[[Any], ShapeRule]:
    """A rule [B, *tail(module)] with B the rows of the first input."""

    def rule(module: Any) -> ShapeRule:
        return lambda args, kwargs: None if _lead(args) is None else (args[0].shape[0], *(f(module) for f in tail))

    return rule


def _same_shape(module: Any) -> ShapeRule:
    return lambda args, kwargs: None if _lead(args) is None else tuple(args[0].shape)


def _fusion_shape(module: Any) -> ShapeRule:
    if module.level != 2:
        return _same_shape(module)

    def fusion2(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, ...] | None:
        parts = args[0] if args and isinstance(args[0], dict) else None
        first = next(iter(parts.values()), None) if parts else None
        return None if first is None else (first.shape[0], module.num_tasks, module.dim)

    return fusion2


def _bank_shape(module: ExpertBank) -> ShapeRule:
    def bank(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, ...] | None:
        x = _lead(args)
        if x is None:
            return None
        start = args[2] if len(args) > 2 else kwargs.get("start", 0)
        stop = args[3] if len(args) > 3 else kwargs.get("stop")
        stop = module.num_experts if stop is None else stop
        return (x.shape[0], stop - start, module.out_dim)

    return bank


#: every kind, in the order listings show them
KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("expert", "register_experts", Expert, _rows_then(lambda m: m.out_dim), "[B, in_dim] -> [B, out_dim]"),
        Kind(
            "gate",
            "register_gates",
            Gate,
            _rows_then(lambda m: m.num_tasks, lambda m: m.num_experts),
            "[B, in_dim] -> weights [B, T, N]",
        ),
        Kind(
            "fusion",
            "register_fusions",
            Fusion,
            _fusion_shape,
            "level 1: [B, M, H] -> [B, M, H]; level 2: {part: [B, T, H]} -> [B, T, H]",
        ),
        Kind("adapter", "register_adapters", Adapter, _same_shape, "shape-preserving: [B, dim] or [B, F, E]"),
        Kind("tower", "register_towers", Tower, _rows_then(lambda m: m.num_tasks), "[B, T, H] -> logits [B, T]"),
        Kind("balancer", "register_balancers", Balancer, None, "per-task losses -> the update of one step"),
        Kind("searcher", "register_searchers", summary="proposes architectures from a space"),
        Kind("dataset", "register_datasets", summary="loads train/valid/test splits"),
        Kind("space", "register_search_spaces", summary="a search space (YAML file or Space)"),
    )
}
#: hook name -> the kind it registers
HOOK_KINDS: dict[str, str] = {k.hook: k.name for k in KINDS.values()}
#: the kinds that are nn.Module components with a base class
NEURAL_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS.values() if k.base is not None)


def base_of(kind: str) -> type | None:
    """The base class of a neural kind (None for searchers, datasets and spaces)."""
    entry = KINDS.get(kind)
    return entry.base if entry else None


def shape_rule(module: Any) -> ShapeRule:
    """A function (args, kwargs) -> the output shape `module`'s interface promises (None: not checked)."""
    if isinstance(module, ExpertBank):
        return _bank_shape(module)
    for kind in KINDS.values():
        if kind.base is not None and kind.shape is not None and isinstance(module, kind.base):
            return kind.shape(module)
    return lambda args, kwargs: None
