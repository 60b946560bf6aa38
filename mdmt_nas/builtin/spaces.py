"""Built-in search spaces: every YAML file in the top-level `search_spaces/` folder.

The folder ships as the data package `mdmt_nas._spaces` (see pyproject); in a
source checkout without an install it is read from the tree directly.
"""

from __future__ import annotations

from pathlib import Path

from mdmt_nas.plugins import hookimpl


def spaces_dir() -> Path:
    """The folder holding the built-in space files."""
    try:
        from importlib.resources import files

        root = files("mdmt_nas._spaces")
        path = Path(str(root))
        if path.is_dir():
            return path
    except (ModuleNotFoundError, TypeError):  # not installed as a package
        pass
    return Path(__file__).resolve().parents[2] / "search_spaces"


def builtin_space_files() -> list[Path]:
    return sorted(p for p in spaces_dir().glob("*.yaml") if not p.name.startswith("_"))


@hookimpl
def register_search_spaces(register):
    for path in builtin_space_files():
        register(path)
