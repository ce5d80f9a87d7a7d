"""prometheus_client's multiprocess values, kept in memory and written to their files a few
times a second rather than on every change.

In multiprocess mode each metric value is prometheus_client's ``MmapedValue``:
every ``inc`` takes a process-wide lock, checks the pid and writes the value
to its memory-mapped file, 2 to 3 µs each on this project's machine, and a
request to ``/predict`` makes about sixteen of them (a histogram observation
is two). ``BufferedFileValue`` keeps the running value in memory, as the
single-process ``MutexValue`` does, and ``flush`` writes the values that
changed to their files through the library's own ``MmapedValue``, so the
files keep the library's format and ``MultiProcessCollector`` reads them as
before.

A request's own observations go further: ``record`` queues them and ``flush``
makes them just before it writes, in one warm loop, where each made right
after a stage's numeric work found the library's code cold in the CPU's caches.

``install`` makes ``BufferedFileValue`` the class prometheus_client builds
every value from (``prometheus_client.values.ValueClass``, which the library
reads whenever a metric or child is made); it must run before the first
metric is defined. ``start_flushing`` starts the process's writer thread. An
observation reaches its file at most ``FLUSH_SECONDS`` after it was recorded;
``/metrics`` flushes its own worker before reading the files, and a worker
leaving flushes its last ones (gunicorn.conf.py's ``worker_exit``). A worker
killed outright loses at most the last ``FLUSH_SECONDS`` of its counts.
Outside multiprocess mode nothing changes: values are the library's own, no
thread runs, and ``record`` makes each observation at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from prometheus_client import values

# How stale another worker's values may be in /metrics: a scrape every 15 s or more sees
# them all; the flush writes only what changed, a few dozen values.
FLUSH_SECONDS = 0.25

log = logging.getLogger(__name__)

_file_value_class: Any = None  # the library's MmapedValue, which owns the files
_buffered: list[BufferedFileValue] = []
# Observations (a child's observe or inc, and its argument) waiting for the next flush.
_queued: deque[tuple[Callable[[float], None], float]] = deque()
_flush_lock = threading.Lock()
_flusher: threading.Thread | None = None


class BufferedFileValue:
    """A metric's value in memory, written to its multiprocess file by ``flush``."""

    _multiprocess = True  # prometheus_client's marker: no exemplars, no set_function

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._file_value = _file_value_class(*args, **kwargs)
        self._value = self._written = self._file_value.get()
        self._lock = threading.Lock()
        with _flush_lock:
            _buffered.append(self)

    def inc(self, amount: float) -> None:
        with self._lock:
            self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        with self._lock:
            self._value = value

    def set_exemplar(self, exemplar: Any) -> None:
        """Exemplars are not kept in multiprocess mode (nor by the library's own value)."""

    def get(self) -> float:
        return self._value

    def get_exemplar(self) -> None:
        return None

    def write(self) -> None:
        """Write the value to its file if it changed since the last write."""
        value = self._value
        if value != self._written:
            self._file_value.set(value)
            self._written = value

    def restart(self) -> None:
        """In a forked child: start from the child's own file, as the library's value does."""
        self._lock = threading.Lock()
        self._value = self._written = self._file_value.get()


def install() -> None:
    """Make prometheus_client build buffered values, in multiprocess mode only."""
    global _file_value_class
    if getattr(values.ValueClass, "_multiprocess", False) and _file_value_class is None:
        _file_value_class = values.ValueClass
        values.ValueClass = BufferedFileValue


def record(write: Callable[[float], None], value: float) -> None:
    """``write(value)``: by the writer thread's next ``flush`` while it runs, else at once
    (so nothing waits in the queue for a thread that is not there)."""
    if _flusher is None:
        write(value)
    else:
        _queued.append((write, value))


def flush() -> None:
    """Make the queued observations, then write every value that changed to its file."""
    with _flush_lock:
        while _queued:
            write, value = _queued.popleft()
            write(value)
        for value in _buffered:
            value.write()


def _restart_in_child() -> None:
    global _flusher
    _flusher = None  # the parent's thread is not the child's
    _queued.clear()  # the parent's observations
    for value in _buffered:
        value.restart()
    _flush_lock.release()


# A fork waits for a flush to end (so no lock is copied held) and the child starts afresh.
os.register_at_fork(before=_flush_lock.acquire, after_in_parent=_flush_lock.release,
                    after_in_child=_restart_in_child)


def start_flushing() -> None:
    """Start this process's writer thread, once per process."""
    global _flusher
    if _file_value_class is None or (_flusher is not None and _flusher.is_alive()):
        return
    _flusher = threading.Thread(target=_flush_forever, name="metrics-flush", daemon=True)
    _flusher.start()


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        try:
            flush()
        except Exception:  # a bad observation must not stop every later one
            log.exception("writing the metrics failed")
