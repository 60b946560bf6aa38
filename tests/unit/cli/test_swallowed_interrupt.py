"""A signal that lands inside garbage collection (a weakref callback, a __del__) raises its interruption where Python
can only print it as 'Exception ignored in ... Traceback' and drop it. The CLI's unraisable hook keeps that traceback
off the user's terminal while the signal is pending (it is raised again at the next batch) and passes everything
else to the previous hook."""

from __future__ import annotations

import gc
import importlib
import sys

import pytest

from mdmt_nas.errors import PENDING_SIGNALS, Terminated

app = importlib.import_module("mdmt_nas.cli.app")  # the module (mdmt_nas.cli.app is also the Typer object's name)


class _RaisesOnCollect:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __del__(self) -> None:
        raise self.exc


@pytest.fixture
def hooked(monkeypatch):
    seen: list = []
    monkeypatch.setattr(app, "_PREVIOUS_UNRAISABLEHOOK", [lambda u: seen.append(u.exc_value)])
    monkeypatch.setattr(sys, "unraisablehook", app._quiet_swallowed_interrupt)
    yield seen
    PENDING_SIGNALS.clear()


@pytest.mark.parametrize("exc", [Terminated(), KeyboardInterrupt()])
def test_a_pending_interruption_swallowed_in_gc_prints_nothing(hooked, exc):
    PENDING_SIGNALS.append(15)
    _RaisesOnCollect(exc)
    gc.collect()
    assert hooked == []


def test_without_a_pending_signal_it_goes_to_the_previous_hook(hooked):
    _RaisesOnCollect(KeyboardInterrupt())
    gc.collect()
    assert len(hooked) == 1 and isinstance(hooked[0], KeyboardInterrupt)


def test_other_errors_go_to_the_previous_hook_even_while_a_signal_is_pending(hooked):
    PENDING_SIGNALS.append(15)
    _RaisesOnCollect(ValueError("a real bug in a __del__"))
    gc.collect()
    assert len(hooked) == 1 and isinstance(hooked[0], ValueError)


def test_main_restores_the_hook_it_found(monkeypatch):
    before = sys.unraisablehook
    seen = []
    monkeypatch.setattr(app, "_run", lambda argv, debug: seen.append(sys.unraisablehook))
    app.main(["--version"])
    assert seen == [app._quiet_swallowed_interrupt]  # installed while the command runs
    assert sys.unraisablehook is before
