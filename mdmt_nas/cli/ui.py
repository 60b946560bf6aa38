"""`mdmt-nas ui`: the MLflow UI on the tracking store the other commands write to."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import typer

from mdmt_nas.cli.app import app
from mdmt_nas.cli.common import console
from mdmt_nas.errors import UserError


def tracking_uri(explicit: str | None, config: Path | None) -> str:
    """--tracking-uri, else the config's tracking.uri, else $MLFLOW_TRACKING_URI, else MLflow's default."""
    if explicit:
        return explicit
    if config is not None:
        from mdmt_nas.config import load_config

        uri = load_config(config).tracking.uri
        if uri:
            return uri
    from mdmt_nas.config import TrackingConfig
    from mdmt_nas.tracking import Tracker

    return Tracker(TrackingConfig()).tracking_uri


def server_command(uri: str, host: str, port: int, workers: int = 1) -> list[str]:
    exe = shutil.which("mlflow", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    base = [exe] if exe else [sys.executable, "-m", "mlflow"]
    return [*base, "server", "--backend-store-uri", uri, "--host", host, "--port", str(port), "--workers", str(workers)]


@app.command()
def ui(
    port: int = typer.Option(5000, "--port", "-p", help="Port to listen on."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind; the default keeps the UI on this machine."
    ),
    tracking_uri_opt: str = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)."
    ),
    config: Path = typer.Option(None, "--config", "-c", help="Read tracking.uri from this experiment config."),
    workers: int = typer.Option(1, "--workers", min=1, help="Server worker processes (one is plenty for a local UI)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the server command and address, do not start it."),
) -> None:
    """Start the MLflow UI on the same tracking store as `train` and `search` (Ctrl-C stops it)."""
    uri = tracking_uri(tracking_uri_opt, config)
    if uri.startswith(("http://", "https://", "databricks")):
        console.print(f"the tracking store is a server already: open {uri}", highlight=False)
        return
    cmd = server_command(uri, host, port, workers)
    address = f"http://{host}:{port}"
    console.print(f"MLflow UI for {uri} at [bold]{address}[/bold] (Ctrl-C stops it)", highlight=False)
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(
            f"[yellow]listening on {host}: anyone who can reach this machine can read the runs[/yellow]",
            highlight=False,
        )
    if dry_run:
        console.print(" ".join(cmd), highlight=False, soft_wrap=True)
        return
    run_until_exit(cmd, port)


def run_until_exit(cmd: list[str], port: int, started: Callable[[subprocess.Popen], None] | None = None) -> None:
    """Run the MLflow server `cmd` until it exits or Ctrl-C, then stop its whole process group.

    `started(proc)` runs once the process is up (e.g. to wait until it answers); a server that exits
    with a non-zero status is a UserError naming the port.
    """
    try:
        # its own process group: the server's workers and job runners are stopped together with it
        proc = subprocess.Popen(cmd, start_new_session=True)
    except OSError as exc:
        raise UserError(f"cannot start the MLflow server ({exc.strerror}): {' '.join(cmd)}") from None
    try:
        if started is not None:
            started(proc)
        code = proc.wait()
    except KeyboardInterrupt:
        stop_group(proc)
        return
    finally:
        if proc.poll() is None:
            stop_group(proc)
    if code:
        raise UserError(f"the MLflow server exited with status {code} (is port {port} in use? try --port)")


def stop_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGINT to the server's process group, SIGKILL to what is left after `timeout` seconds."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if not _group_alive(pgid):
            break
        time.sleep(0.5)
        if not _group_alive(pgid):
            break
    try:
        proc.wait(timeout=1)
    except subprocess.TimeoutExpired:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
