"""Write-behind MLflow logging (tracking_queue.py, tracking.async_logging): a tracker's writes are queued and written
in order by one thread, and nothing is lost or observed half-written.

The store is a real SQLite MLflow store; a write is made slow (or held at a gate) by wrapping MlflowClient.log_batch,
so writes are still queued when the test looks: without the flushes these tests fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mdmt_nas.config import TrackingConfig
from mdmt_nas.errors import TrackingError
from mdmt_nas.tracking import Tracker
from mdmt_nas.tracking_queue import WriteBehind

ROOT = Path(__file__).resolve().parents[3]
READ_ONLY = "attempt to write a readonly database"


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One SQLite store for the module (creating its tables takes seconds); each test uses its own experiment."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    Tracker(TrackingConfig(uri=uri, experiment="setup")).check()
    return uri


@pytest.fixture()
def tracker(uri, request):
    return Tracker(TrackingConfig(uri=uri, experiment=request.node.name))


def _slow_batches(monkeypatch, seconds: float = 0.02, gate: threading.Event | None = None) -> list[str]:
    """Every log_batch waits `seconds` (or until `gate` is set) before writing; returns the threads that wrote."""
    real = MlflowClient.log_batch
    threads: list[str] = []

    def slow(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        if gate is not None:
            assert gate.wait(30), "the test never opened the gate"
        time.sleep(seconds)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", slow)
    return threads


def _read_only_batches(monkeypatch) -> None:
    """log_batch fails as SQLite does on a read-only file (the guarded client maps it to a one-line TrackingError)."""
    import sqlite3

    def fail(self, *args, **kwargs):
        raise sqlite3.OperationalError(READ_ONLY)

    monkeypatch.setattr(MlflowClient, "log_batch", fail)


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


# ------------------------------------------------------------------------------ order, flushes
def test_writes_of_a_run_are_written_in_the_order_they_were_made(tracker, uri, monkeypatch):
    """Last write wins for tags and the run name: they end as the last value logged; every step of a metric is there."""
    _slow_batches(monkeypatch, 0.005)
    run = tracker.start_run("order")
    for i in range(30):
        tracker.log_metrics(run, {"m": i}, step=i)
        tracker.set_tags(run, {"t": i})
        tracker.rename(run, f"name-{i}")
    tracker.log_batch(run, {"p": "x"}, {"final": 1.0}, step=30, tags={"t": "last"})
    tracker.end_run(run)
    got = MlflowClient(uri).get_run(run)
    assert got.data.tags["t"] == "last" and got.info.run_name == "name-29" and got.info.status == "FINISHED"
    assert _history(uri, run, "m") == [(i, float(i)) for i in range(30)]


def test_a_run_read_right_after_end_run_has_every_write(tracker, uri, monkeypatch):
    _slow_batches(monkeypatch, 0.02)
    run = tracker.start_run("flushed")
    for i in range(20):
        tracker.log_metrics(run, {"m": i}, step=i)
    tracker.log_params(run, {"a": 1, "b": 2})
    tracker.log_texts(run, {"notes.txt": "hello"})
    tracker.end_run(run)
    client = MlflowClient(uri)
    got = client.get_run(run)
    assert got.info.status == "FINISHED" and got.data.params == {"a": "1", "b": "2"}
    assert len(_history(uri, run, "m")) == 20
    assert [f.path for f in client.list_artifacts(run)] == ["notes.txt"]


def test_a_write_to_a_run_that_has_ended_is_in_the_store_when_it_returns(tracker, uri, monkeypatch):
    """What is written after end_run (a model-error tag, a late artifact, a figure) is not left in the queue: a reader
    after the call sees it, while writes to a running run are still queued."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _slow_batches(monkeypatch, 0.05)
    run, live = tracker.start_run("ended"), tracker.start_run("live")
    tracker.end_run(run)
    tracker.set_tags(run, {"late": "tag"})
    tracker.log_metrics(run, {"late_metric": 1.0})
    assert MlflowClient(uri).get_run(run).data.tags.get("late") == "tag"
    assert MlflowClient(uri).get_run(run).data.metrics == {"late_metric": 1.0}
    fig = plt.figure()
    tracker.log_texts(run, {"late.txt": "x"})
    tracker.log_figure(run, fig, "late.png")
    plt.close(fig)
    assert sorted(f.path for f in MlflowClient(uri).list_artifacts(run)) == ["late.png", "late.txt"]
    for i in range(5):  # a running run keeps the write-behind: the caller does not wait for these
        tracker.log_metrics(live, {"m": i}, step=i)
    assert len(_history(uri, live, "m")) < 5
    tracker.end_run(live)
    assert len(_history(uri, live, "m")) == 5


def test_a_reopened_run_is_written_behind_again(tracker, uri, monkeypatch):
    run = tracker.start_run("reopened")
    tracker.end_run(run)
    assert tracker.reopen(run)
    _slow_batches(monkeypatch, 0.05)
    for i in range(5):
        tracker.log_metrics(run, {"m": i}, step=i)
    assert len(_history(uri, run, "m")) < 5  # queued again: the run is live
    tracker.end_run(run)
    assert len(_history(uri, run, "m")) == 5


def test_reading_back_through_the_tracker_flushes_first(tracker, monkeypatch):
    """`tracker.client` (what reads the store: resume, stale children, the Ray executor's run lookup) sees every
    write made before, also of a run still open."""
    _slow_batches(monkeypatch, 0.02)
    run = tracker.start_run("open")
    for i in range(10):
        tracker.log_metrics(run, {"m": i}, step=i)
    tracker.set_tags(run, {"state": "running"})
    got = tracker.client.get_run(run)
    assert got.data.metrics == {"m": 9.0} and got.data.tags["state"] == "running"
    assert len(tracker.client.get_metric_history(run, "m")) == 10
    tracker.end_run(run)


def test_the_caller_does_not_wait_for_the_store(tracker, uri, monkeypatch):
    """A write held by the store (the gate) does not hold the training loop: log_metrics returns, from another
    thread the store is written; end_run waits for it."""
    gate = threading.Event()
    threads = _slow_batches(monkeypatch, 0.0, gate)
    run = tracker.start_run("behind")
    tracker.log_metrics(run, {"m": 1.0}, step=0)
    tracker.log_metrics(run, {"m": 2.0}, step=1)  # returned although the first write is still held
    assert _history(uri, run, "m") == []
    gate.set()
    tracker.end_run(run)
    assert _history(uri, run, "m") == [(0, 1.0), (1, 2.0)]
    assert threads and threading.current_thread().name not in threads


# ------------------------------------------------------------------------------ failures
def test_a_failed_write_is_raised_at_the_flush_as_the_synchronous_one_line_error(uri, monkeypatch, request):
    sync = Tracker(TrackingConfig(uri=uri, experiment=request.node.name, async_logging=False))
    behind = Tracker(TrackingConfig(uri=uri, experiment=request.node.name))
    runs = sync.start_run("sync"), behind.start_run("behind")
    _read_only_batches(monkeypatch)
    with pytest.raises(TrackingError) as at_call:
        sync.log_metrics(runs[0], {"m": 1.0})
    behind.log_metrics(runs[1], {"m": 1.0})  # queued: it fails in the background
    with pytest.raises(TrackingError) as at_flush:
        behind.end_run(runs[1])
    assert str(at_flush.value) == str(at_call.value) and READ_ONLY in str(at_flush.value)
    assert MlflowClient(uri).get_run(runs[1]).info.status == "RUNNING"  # not FINISHED: its metric is missing


def test_a_failed_write_is_raised_by_the_next_call_then_logging_goes_on(tracker, uri, monkeypatch):
    """Raised once, by the next call (which is not queued); the writes queued behind the failure are dropped
    (written past a gap they would break the order); once the store works again so does the tracker."""
    run = tracker.start_run("next")
    with monkeypatch.context() as m:
        _read_only_batches(m)
        tracker.log_metrics(run, {"m": 0.0}, step=0)
        deadline = time.monotonic() + 30
        while tracker._writes.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(TrackingError, match="read-only"):
            tracker.log_metrics(run, {"m": 1.0}, step=1)
    tracker.log_metrics(run, {"m": 2.0}, step=2)
    tracker.end_run(run)
    assert _history(uri, run, "m") == [(2, 2.0)]
    assert MlflowClient(uri).get_run(run).info.status == "FINISHED"


def test_a_run_that_failed_ends_failed_even_when_a_queued_write_failed(tracker, uri, monkeypatch):
    """end_failed reports the error that ended the run, not the write's: the run still ends FAILED with its reason."""
    run = tracker.start_run("failed")
    with monkeypatch.context() as m:
        _read_only_batches(m)
        tracker.log_metrics(run, {"m": 0.0})
        tracker._writes.flush(raise_error=False)
    tracker.end_failed(run, ValueError("the training broke"))
    got = MlflowClient(uri).get_run(run)
    assert got.info.status == "FAILED" and got.data.tags["reason"] == "ValueError: the training broke"


# ------------------------------------------------------------------------------ bounded
def test_a_full_queue_makes_the_caller_wait():
    """Back-pressure: with `maxsize` writes queued behind one the store holds, the next submit waits for room."""
    gate, started, done = threading.Event(), threading.Event(), []
    q = WriteBehind(maxsize=2)

    def write(i):
        started.set()
        assert gate.wait(30)
        done.append(i)

    q.submit(write, 0)
    assert started.wait(30)  # taken by the thread: the queue holds the next two
    q.submit(write, 1)
    q.submit(write, 2)
    waiting = threading.Thread(target=q.submit, args=(write, 3))
    waiting.start()
    waiting.join(0.5)
    assert waiting.is_alive(), "a third queued write should wait for room"
    gate.set()
    waiting.join(30)
    assert not waiting.is_alive()
    assert q.flush(30) and done == [0, 1, 2, 3]


def test_the_trackers_queue_is_bounded(tracker, uri, monkeypatch):
    import mdmt_nas.tracking_queue as tq

    monkeypatch.setattr(tq, "QUEUE_SIZE", 2)
    small = Tracker(tracker.cfg)
    gate = threading.Event()
    _slow_batches(monkeypatch, 0.0, gate)
    run = small.start_run("bounded")
    loop = threading.Thread(target=lambda: [small.log_metrics(run, {"m": i}, step=i) for i in range(6)])
    loop.start()
    loop.join(0.5)
    assert loop.is_alive(), "the logging loop should wait while the store holds its writes"
    gate.set()
    loop.join(30)
    small.end_run(run)
    assert len(_history(uri, run, "m")) == 6


# ------------------------------------------------------------------------------ opt-out
def test_async_logging_false_writes_before_each_call_returns(uri, monkeypatch, request):
    tracker = Tracker(TrackingConfig(uri=uri, experiment=request.node.name, async_logging=False))
    assert tracker._writes is None
    threads = _slow_batches(monkeypatch, 0.0)
    run = tracker.start_run("sync")
    tracker.log_metrics(run, {"m": 1.0}, step=0)
    tracker.set_tags(run, {"state": "running"})
    got = MlflowClient(uri).get_run(run)  # another client, no flush: the writes are in the store already
    assert got.data.metrics == {"m": 1.0} and got.data.tags["state"] == "running"
    assert set(threads) == {threading.current_thread().name}
    tracker.end_run(run)


# ------------------------------------------------------------------------------ process exit, stops
SCRIPT = """
import os, signal, sys, time
from mlflow.tracking import MlflowClient

real = MlflowClient.log_batch
def slow(self, *a, **k):
    time.sleep(float(os.environ["WRITE_SECONDS"]))
    return real(self, *a, **k)
MlflowClient.log_batch = slow

from mdmt_nas.config import TrackingConfig
from mdmt_nas.tracking import Tracker

uri, mode = sys.argv[1], sys.argv[2]
tracker = Tracker(TrackingConfig(uri=uri, experiment="exit-" + mode))
run = tracker.start_run(mode)
if mode != "exit":
    from mdmt_nas.cli.app import _on_signal
    from mdmt_nas.errors import DEFER_SIGNALS

    signal.signal(signal.SIGTERM, _on_signal)
    if mode == "watchdog":  # a search defers the signal; this loop never checks it, so the watchdog ends it
        DEFER_SIGNALS.append(True)
for i in range(10):
    tracker.log_metrics(run, {"m": i}, step=i)
print(run, flush=True)
if mode == "exit":
    sys.exit(0)  # ~10 writes still queued, run not ended
try:
    while True:
        time.sleep(0.01)
except KeyboardInterrupt:  # SIGTERM: Terminated, as in the CLI
    sys.exit(143)
"""


@pytest.mark.parametrize(
    "mode,write_seconds",
    [("exit", 0.05), ("sigterm", 0.05), ("watchdog", 0.03)],
)
def test_a_process_that_ends_or_is_stopped_keeps_what_it_logged(tmp_path, uri, mode, write_seconds):
    """exit: the atexit flush; sigterm: the CLI's handler unwinds into that exit; watchdog: a process that does not
    unwind within MDMT_NAS_STOP_GRACE is ended by os._exit after flushing (at most a second). The writes take
    longer than the grace, so without the flushes metrics are missing."""
    script = tmp_path / "log_then_stop.py"
    script.write_text(SCRIPT)
    grace = "0.1" if mode == "watchdog" else "0"  # 0: no watchdog, the exit path alone
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WRITE_SECONDS": str(write_seconds), "MDMT_NAS_STOP_GRACE": grace}
    proc = subprocess.Popen(
        [sys.executable, str(script), uri, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        run = proc.stdout.readline().strip()
        if mode != "exit":
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert run, err
    assert proc.returncode == (0 if mode == "exit" else 143), err
    assert _history(uri, run, "m") == [(i, float(i)) for i in range(10)], err
