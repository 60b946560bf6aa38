"""Component interfaces, one per kind. See each class docstring for shapes in and out."""

from mdmt_nas.components.base import AuxCollector, Component, Context, NoParams
from mdmt_nas.components.kinds import Adapter, Balancer, BalanceContext, Expert, ExpertBank, Fusion, Gate, Tower

__all__ = [
    "AuxCollector",
    "Adapter",
    "Balancer",
    "BalanceContext",
    "Component",
    "Context",
    "Expert",
    "ExpertBank",
    "Fusion",
    "Gate",
    "NoParams",
    "Tower",
]
