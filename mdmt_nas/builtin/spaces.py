"""Built-in search spaces: every YAML file in the top-level `search_spaces/` folder.

The folder ships as the data package `mdmt_nas._spaces` (see pyproject); in a
source checkout without an install it is read from the tree directly.
"""

from __future__ import annotations

from pathlib import Path

from mdmt_nas.files import shipped_dir
from mdmt_nas.plugins import hookimpl


def spaces_dir() -> Path:
    """The folder holding the built-in space files."""
    return shipped_dir("mdmt_nas._spaces")


def builtin_space_files() -> list[Path]:
    return sorted(p for p in spaces_dir().glob("*.yaml") if not p.name.startswith("_"))


@hookimpl
def register_search_spaces(register):
    for path in builtin_space_files():
        register(path)
