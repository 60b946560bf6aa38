"""Helpers of the bad-input tests: the CLI in-process, tree hashes, throwaway plugin distributions.

The CLI runs in this process (`mdmt_nas.cli.app.main`), so a case costs
milliseconds instead of a Python start with torch, MLflow and Optuna; a few
tests run the real `python -m mdmt_nas` to check what a user's terminal shows.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import textwrap
import traceback
from dataclasses import dataclass
from pathlib import Path

from helpers import tiny_space_yaml

ROOT = Path(__file__).resolve().parents[3]

TINY_SPACE = tiny_space_yaml(description="tiny space of the bad-input tests (4 architectures)")

#: options that keep every command small (3000 synthetic rows, one epoch, one thread)
TINY = [
    "--set",
    "dataset.params.n_rows=3000",
    "--set",
    "train.epochs=1",
    "--set",
    "train.batch_size=512",
    "--set",
    "train.threads=1",
    "--set",
    "train.progress=false",
]


@dataclass
class Result:
    code: int | str
    out: str
    err: str
    exc: BaseException | None = None

    @property
    def text(self) -> str:
        return self.out + self.err


def cli(*argv: str, cwd: Path | None = None) -> Result:
    """Run `mdmt-nas ARGV` in-process; code is the exit status (or "raised" when --debug let an exception through)."""
    from mdmt_nas.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    code: int | str = 0
    exc = None
    old_cwd = os.getcwd()
    old_debug = os.environ.get("MDMT_NAS_DEBUG")
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in argv])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception as e:  # noqa: BLE001 - --debug re-raises: record it like Python would print it
                code, exc = "raised", e
                traceback.print_exc(file=err)
    finally:
        os.chdir(old_cwd)
        if old_debug is None:
            os.environ.pop("MDMT_NAS_DEBUG", None)
        else:
            os.environ["MDMT_NAS_DEBUG"] = old_debug
    return Result(code, out.getvalue(), err.getvalue(), exc)


def cli_subprocess(*argv: str, cwd: Path, env_extra: dict[str, str] | None = None, timeout: float = 300) -> Result:
    env = {**os.environ, "COLUMNS": "200", **(env_extra or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "mdmt_nas", *map(str, argv)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def tree_hash(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (relative path -> digest)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def plugin_dist(site: Path, name: str, body: str, entry: str | None = None) -> Path:
    """A throwaway installed distribution `mdmt-nas-<name>` with entry point `<name>` in group mdmt_nas."""
    pkg = site / f"{name}_plugin"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(body))
    dist = site / f"mdmt_nas_{name}-0.1.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: mdmt-nas-{name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[mdmt_nas]\n{name} = {entry or pkg.name}\n")
    return site


@contextlib.contextmanager
def plugins_from(site: Path | None):
    """Load plugins afresh with `site` on sys.path (its distributions' entry points become visible)."""
    import importlib

    from mdmt_nas import plugins

    saved_host, saved_path = plugins._HOST, list(sys.path)
    saved_modules = set(sys.modules)
    if site is not None:
        sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    plugins.reset(None)
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for m in set(sys.modules) - saved_modules:
            if m.endswith("_plugin"):
                del sys.modules[m]
        importlib.invalidate_caches()
        plugins.reset(saved_host)
