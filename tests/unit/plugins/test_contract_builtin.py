"""Every built-in component passes the contract kit (one test per component)."""

import pytest

from mdmt_nas.plugins import PluginHost
from mdmt_nas.testing import KINDS, check_component

_HOST = PluginHost().load(use_entry_points=False)  # built-ins only: third-party plugins test themselves

#: (kind, name) -> why it fails; reported to the component's owner, flips to a failure once fixed
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

BUILTIN = [(e.kind, e.name) for kind in KINDS for e in _HOST.registry.entries(kind)]


def _param(kind: str, name: str):
    marks = (
        [pytest.mark.xfail(reason=KNOWN_FAILURES[(kind, name)], strict=True)] if (kind, name) in KNOWN_FAILURES else []
    )
    return pytest.param(kind, name, id=f"{kind}:{name}", marks=marks)


def test_there_are_builtin_components_of_every_kind():
    assert {k for k, _ in BUILTIN} == set(KINDS)


@pytest.mark.parametrize("kind,name", [_param(k, n) for k, n in BUILTIN])
def test_builtin_component_passes_contract(kind, name):
    check_component(_HOST.registry.get(kind, name), kind, registry=_HOST.registry)
