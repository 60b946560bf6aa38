"""Component interfaces, one per kind, the `Dims` they are built for and the kinds table."""

from mdmt_nas.components.base import AuxCollector, Component, Context, Dims, NoParams
from mdmt_nas.components.kinds import (
    Adapter,
    BalanceContext,
    Balancer,
    Expert,
    ExpertBank,
    Fusion,
    Gate,
    Tower,
    build,
    build_bank,
)
from mdmt_nas.components.table import HOOK_KINDS, KINDS, NEURAL_KINDS, Kind, base_of, shape_rule

__all__ = [
    "AuxCollector",
    "Adapter",
    "Balancer",
    "BalanceContext",
    "Component",
    "Context",
    "Dims",
    "Expert",
    "ExpertBank",
    "Fusion",
    "Gate",
    "HOOK_KINDS",
    "KINDS",
    "Kind",
    "NEURAL_KINDS",
    "NoParams",
    "Tower",
    "base_of",
    "build",
    "build_bank",
    "shape_rule",
]
