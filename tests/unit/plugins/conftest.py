import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # plugin_helpers


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A fresh site directory on sys.path; the plugin host is reloaded from it, and only its plugins load.

    MDMT_NAS_LOAD_PLUGINS is set per test to the entry points the test writes, so
    plugins installed in the environment (e.g. plugins/* in CI) do not interfere.
    """
    from mdmt_nas import plugins

    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("COLUMNS", "200")
    for var in ("MDMT_NAS_DISABLE_PLUGINS", "MDMT_NAS_LOAD_PLUGINS", "MDMT_NAS_TRACE_HOOKS"):
        monkeypatch.delenv(var, raising=False)
    before = set(sys.modules)
    saved = plugins._HOST
    plugins.reset()
    yield root
    plugins.reset(saved)
    for name in set(sys.modules) - before:
        mod = sys.modules.get(name)
        if getattr(mod, "__file__", None) and str(root) in str(mod.__file__):
            del sys.modules[name]
