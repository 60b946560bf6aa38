"""Helpers for plugin tests: fake installed distributions and an in-process CLI runner."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path


def make_dist(
    site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str], version: str = "0.1.0"
) -> Path:
    """Write `modules` (relative path -> source) and a `.dist-info` declaring `entry_points` in group mdmt_nas.

    With `site` on sys.path, importlib.metadata sees an installed distribution,
    exactly as after `pip install`, without running pip.
    """
    for rel, src in modules.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(src))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    eps = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[mdmt_nas]\n{eps}")
    return info


def forget_modules(prefixes: tuple[str, ...]) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in prefixes]:
        del sys.modules[name]
