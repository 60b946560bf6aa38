"""The component contract kit: `check_component(cls)` runs every check its kind needs (contract.py; checks in checks.py, world in world.py)."""

from mdmt_nas.testing.checks import BALANCER_CHECKS, NEURAL_CHECKS, checks_for
from mdmt_nas.testing.contract import (
    KINDS,
    CheckResult,
    ContractError,
    Report,
    check_component,
    component_label,
    contract_test,
)
from mdmt_nas.testing.world import (
    ND,
    NF,
    NS,
    D,
    E,
    H,
    T,
    _batch,
    _registry_with,
    _schema,
    make_batch,
    make_context,
    make_schema,
)

__all__ = [
    "D",
    "E",
    "H",
    "NF",
    "ND",
    "NS",
    "T",
    "_batch",
    "_schema",
    "BALANCER_CHECKS",
    "KINDS",
    "NEURAL_CHECKS",
    "CheckResult",
    "ContractError",
    "Report",
    "check_component",
    "checks_for",
    "component_label",
    "contract_test",
    "make_batch",
    "make_context",
    "make_schema",
]
