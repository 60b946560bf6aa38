"""The pytest plugin's former entry-point path (installs made before it moved to mdmt_nas.testing.pytest_plugin)."""

from mdmt_nas.testing.pytest_plugin import (
    _check_component,
    contract_check,
    mdmt_plugin_host,
    pytest_configure,
    pytest_generate_tests,
)

__all__ = ["_check_component", "contract_check", "mdmt_plugin_host", "pytest_configure", "pytest_generate_tests"]
