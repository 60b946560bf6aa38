"""The `mdmt-nas` command line: one typer app; each command group lives in its own module.

Errors a user can cause (`UserError`) print as one clear message and exit 2;
`--debug` (or MDMT_NAS_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import errno
import importlib
import os
import signal
import sys
import threading
import warnings

import typer
from rich.markup import escape

from mdmt_nas import __version__
from mdmt_nas.cli.console import make_console
from mdmt_nas.errors import DEFER_SIGNALS, PENDING_SIGNALS, DeprecatedNameWarning, Terminated, TrialFailed, UserError

_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)

app = typer.Typer(
    name="mdmt-nas",
    help="Architecture search for multi-domain, multi-task recommendation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = make_console(stderr=True)

#: (module, attribute, name) of command groups mounted under the main app.
SUBAPPS = (
    ("mdmt_nas.cli.data", "data_app", "data"),
    ("mdmt_nas.cli.plugins", "plugins_app", "plugins"),
    ("mdmt_nas.cli.spaces", "spaces_app", "spaces"),
)
#: modules that add top-level commands to `app` when imported.
COMMAND_MODULES = (
    "mdmt_nas.cli.train",
    "mdmt_nas.cli.search",
    "mdmt_nas.cli.export",
    "mdmt_nas.cli.ui",
    "mdmt_nas.cli.server",
    "mdmt_nas.cli.dashboard",
    "mdmt_nas.cli.benchmark",
)


def _version(value: bool) -> None:
    if value:
        print(f"mdmt-nas {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks for errors."),
) -> None:
    if debug:
        os.environ["MDMT_NAS_DEBUG"] = "1"


def _mount() -> None:
    for module, attr, name in SUBAPPS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        app.add_typer(getattr(mod, attr), name=name)
    for module in COMMAND_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def report_plugin_failures() -> None:
    """Print plugin load failures (they never stop healthy plugins from working)."""
    from mdmt_nas.plugins import get_host

    host = get_host()
    for failure in host.failures:
        err_console.print(f"[red]{escape(str(failure))}[/red]", highlight=False, soft_wrap=True)
    for warning in host.warnings:
        err_console.print(f"[yellow]warning: {escape(warning)}[/yellow]", highlight=False, soft_wrap=True)


#: seconds between the first SIGINT/SIGTERM and a forced exit, for a process stuck where no check runs (a long C call,
#: one huge batch, a hanging server): a process manager's grace period (docker: 10 s) must not end in SIGKILL
STOP_GRACE = 8.0
#: the command line of this invocation (for the resume command printed on interruption)
ARGV: list[str] = []
#: callables giving lines to print after "interrupted"/"terminated": what was kept, the exact resume command
INTERRUPT_NOTES: list = []
_WATCHDOG: list[threading.Timer] = []


def _stop_grace() -> float:
    try:
        return float(os.environ.get("MDMT_NAS_STOP_GRACE", STOP_GRACE))
    except ValueError:
        return STOP_GRACE


def _force_exit(signum: int, grace: float) -> None:
    """The watchdog: the interruption did not end the process within `grace` seconds; exit now, without cleanup
    (the queued MLflow writes get a second)."""
    name = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
    try:
        lines = [
            f"did not stop within {grace:g} s of {name} (busy in a step that cannot be interrupted); exiting now. "
            "Files on disk are whole (written atomically); runs left RUNNING are marked KILLED by the next --resume"
        ]
        lines += _notes()
        os.write(2, ("\n".join(lines) + "\n").encode())
        from mdmt_nas.tracking_queue import flush_all

        # MLflow writes still queued (write-behind): what was logged is kept, unless the store hangs
        flush_all(timeout=1.0)
    finally:
        os._exit(143 if signum == signal.SIGTERM else 130)


def _on_signal(signum: int, frame: object) -> None:
    first = not PENDING_SIGNALS
    PENDING_SIGNALS.append(signum)
    if first:
        grace = _stop_grace()
        if grace > 0:
            timer = threading.Timer(grace, _force_exit, (signum, grace))
            timer.daemon = True
            timer.start()
            _WATCHDOG.append(timer)
    if DEFER_SIGNALS and first:  # a search runs: raised at the next batch, outside any database call
        return
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _quiet_swallowed_interrupt(unraisable: object) -> None:
    """sys.unraisablehook: a signal that lands inside a weakref callback or __del__ (garbage collection, e.g.
    SQLAlchemy's) raises its interruption where Python can only print and drop it. It is not lost (PENDING_SIGNALS
    holds it; check_interrupt raises it again at the next batch), so print nothing; anything else goes to the
    previous hook."""
    exc = getattr(unraisable, "exc_value", None)
    if isinstance(exc, KeyboardInterrupt) and PENDING_SIGNALS:
        return
    _PREVIOUS_UNRAISABLEHOOK[-1](unraisable)


_PREVIOUS_UNRAISABLEHOOK: list = [sys.unraisablehook]


def _notes() -> list[str]:
    out: list[str] = []
    for note in INTERRUPT_NOTES:
        try:
            out += list(note())
        except Exception:  # noqa: BLE001 - a note must never hide the interruption
            pass
    return out


def main(argv: list[str] | None = None) -> None:
    _mount()
    debug = "--debug" in (argv if argv is not None else sys.argv) or os.environ.get("MDMT_NAS_DEBUG") == "1"
    PENDING_SIGNALS.clear()
    INTERRUPT_NOTES.clear()
    ARGV[:] = list(argv if argv is not None else sys.argv[1:])
    warnings.filterwarnings("default", category=DeprecatedNameWarning)  # a renamed component in a user's file: say so
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    if sys.unraisablehook is not _quiet_swallowed_interrupt:  # main() called again from inside a run: keep the outer hook
        _PREVIOUS_UNRAISABLEHOOK[-1] = sys.unraisablehook
    sys.unraisablehook = _quiet_swallowed_interrupt
    try:
        _run(argv, debug)
    finally:
        sys.unraisablehook = _PREVIOUS_UNRAISABLEHOOK[-1]
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not PENDING_SIGNALS:  # signalled: the process is ending, and the watchdog still guards a shutdown that hangs
            while _WATCHDOG:
                _WATCHDOG.pop().cancel()


def _is_click_error(exc: BaseException) -> bool:
    return any(c.__name__ == "ClickException" and c.__module__.endswith("click.exceptions") for c in type(exc).__mro__)


def _run(argv: list[str] | None, debug: bool) -> None:
    try:
        rc = app(args=argv, standalone_mode=False)
        if rc == 130 and PENDING_SIGNALS:  # typer turns an interruption into exit code 130, SIGTERM included
            raise Terminated() if PENDING_SIGNALS[-1] == signal.SIGTERM else KeyboardInterrupt()
        if isinstance(rc, int) and rc:  # typer.Exit(code) comes back as a return value here
            sys.exit(rc)
    except UserError as exc:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        err_console.print(f"[yellow]{'terminated' if terminated else 'interrupted'}[/yellow]")
        for line in _notes():
            err_console.print(escape(line), highlight=False, soft_wrap=True)
        sys.exit(143 if terminated else 130)
    except (
        TrialFailed
    ) as exc:  # `train` of an architecture that cannot train (NaN loss, a limit): the reason, not a bug
        if debug:
            raise
        err_console.print(
            f"[bold red]error:[/bold red] training failed: {escape(exc.reason)}", highlight=False, soft_wrap=True
        )
        sys.exit(2)
    except MemoryError:
        if debug:
            raise
        err_console.print(
            "[bold red]error:[/bold red] out of memory; use less data (e.g. dataset.params.n_rows), a smaller "
            "train.batch_size or smaller vocabularies (max_vocab in the column mapping)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except Exception as exc:  # click usage errors and the like
        if _is_click_error(exc):  # typer >= 0.16 raises its vendored click's exceptions, not click's own
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if debug:
            raise
        if (
            isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS
        ):  # a write outside files.atomic_path (a library's own file)
            from mdmt_nas.files import storage_error

            err_console.print(
                f"[bold red]error:[/bold red] {escape(str(storage_error(exc, exc.filename or '(a file)')))}",
                highlight=False,
                soft_wrap=True,
            )
            sys.exit(2)
        err_console.print(
            f"[bold red]internal error:[/bold red] {type(exc).__name__}: {escape(str(exc))}\n(run with --debug for the traceback)",
            highlight=False,
        )
        sys.exit(1)
