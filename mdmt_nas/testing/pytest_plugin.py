"""pytest plugin of mdmt-nas (entry point `pytest11`), for plugin authors' tests.

Fixtures:
  check_component        `mdmt_nas.testing.check_component`
  mdmt_plugin_host       factory: an isolated PluginHost with the built-ins and the
                         given plugin modules, installed as the process-wide host for
                         the test (entry points are not scanned unless asked)
Marker:
  @pytest.mark.mdmt_component(component=MyExpert, **options)
                         on a test taking a `contract_check` argument: one test item
                         per check of the contract kit (pass the class by keyword:
                         pytest would take a lone positional class as the decorated object)
One line per component without a marker:
  test_my_expert = mdmt_nas.testing.contract_test(MyExpert)

This module is loaded in every pytest run of an environment with mdmt-nas
installed, so it imports nothing heavy until a fixture is used.
"""

from __future__ import annotations

from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mdmt_component(component=cls, **options): run the mdmt-nas contract kit on a component class, one item per check "
        "(the test takes a `contract_check` argument)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("mdmt_component")
    if marker is None or "contract_check" not in metafunc.fixturenames:
        return
    from mdmt_nas.testing import checks_for

    cls, kind = _marked(marker)
    skip = set(marker.kwargs.get("skip", ()))
    metafunc.parametrize("contract_check", [c for c in checks_for(cls, kind) if c not in skip], indirect=True)


def _marked(marker: Any) -> tuple[type, str | None]:
    cls = marker.kwargs.get("component", marker.args[0] if marker.args else None)
    if cls is None:
        raise pytest.UsageError("@pytest.mark.mdmt_component needs the class: mdmt_component(component=MyExpert)")
    return cls, marker.kwargs.get("kind")


@pytest.fixture
def contract_check(request: pytest.FixtureRequest) -> Any:
    """Run the check this item stands for (see the `mdmt_component` marker); returns its result."""
    from mdmt_nas.testing.contract import run_check

    marker = request.node.get_closest_marker("mdmt_component")
    if marker is None:
        raise pytest.UsageError("the contract_check fixture needs @pytest.mark.mdmt_component(component=MyComponent)")
    check = request.param
    cls, kind = _marked(marker)
    options = {k: v for k, v in marker.kwargs.items() if k not in ("skip", "kind", "component")}
    return run_check(cls, kind, check, **options)


@pytest.fixture(name="check_component")
def _check_component() -> Any:
    """`mdmt_nas.testing.check_component(cls, kind=None, **options)`."""
    from mdmt_nas.testing import check_component

    return check_component


@pytest.fixture
def mdmt_plugin_host(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Factory `mdmt_plugin_host(*modules, entry_points=False, **named)` -> a loaded PluginHost.

    Modules are registered in-process as plugins (named after the module, or by
    keyword); the host replaces the process-wide one until the test ends.
    """
    from mdmt_nas import plugins

    saved = plugins._HOST

    def make(*modules: Any, entry_points: bool = False, **named: Any):
        extra = [(getattr(m, "__name__", repr(m)).rsplit(".", 1)[-1], m) for m in modules] + list(named.items())
        host = plugins.PluginHost().load(use_entry_points=entry_points, extra=extra)
        plugins.reset(host)
        return host

    yield make
    plugins.reset(saved)
