"""serving/metric_files.py: metric values kept in memory and written to prometheus_client's
multiprocess files by a flush."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import values
from prometheus_client.multiprocess import MultiProcessCollector

from serving import metric_files


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """Buffered values writing through the library's own multiprocess values into tmp_path."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(metric_files, "_file_value_class", values.MultiProcessValue())
    monkeypatch.setattr(metric_files, "_buffered", [])
    return tmp_path


def counter(name: str) -> metric_files.BufferedFileValue:
    return metric_files.BufferedFileValue("counter", name, f"{name}_total", (), (), "A count.")


def on_file(folder: Path, sample_name: str) -> float:
    """What MultiProcessCollector (what /metrics reads) finds for this sample."""
    files = [str(path) for path in folder.glob("*.db")]
    return sum(sample.value for family in MultiProcessCollector.merge(files)
               for sample in family.samples if sample.name == sample_name)


def test_a_value_reaches_its_file_when_flushed(folder):
    requests = counter("requests")
    requests.inc(3)
    assert requests.get() == 3
    assert on_file(folder, "requests_total") == 0
    metric_files.flush()
    assert on_file(folder, "requests_total") == 3
    requests.inc(2)
    metric_files.flush()
    assert on_file(folder, "requests_total") == 5


def test_a_gauge_file_holds_the_value_at_the_flush(folder):
    in_flight = metric_files.BufferedFileValue("gauge", "in_flight", "in_flight", (), (),
                                               "Now.", multiprocess_mode="livesum")
    in_flight.inc(1)
    in_flight.inc(1)
    in_flight.inc(-1)
    metric_files.flush()
    assert on_file(folder, "in_flight") == 1
    in_flight.set(0)
    metric_files.flush()
    assert on_file(folder, "in_flight") == 0


def test_observations_wait_for_the_flush(folder, monkeypatch):
    monkeypatch.setattr(metric_files, "_flusher", threading.current_thread())  # as if running
    requests = counter("requests")
    metric_files.record(requests.inc, 2)
    metric_files.record(requests.inc, 1)
    assert requests.get() == 0
    metric_files.flush()
    assert requests.get() == 3
    assert on_file(folder, "requests_total") == 3


def test_without_the_writer_thread_an_observation_is_made_at_once(monkeypatch):
    monkeypatch.setattr(metric_files, "_flusher", None)
    made: list[float] = []
    metric_files.record(made.append, 0.25)
    assert made == [0.25]


def test_the_flushing_thread_writes_within_a_moment(folder, monkeypatch):
    monkeypatch.setattr(metric_files, "_flusher", None)
    requests = counter("requests")
    metric_files.start_flushing()
    requests.inc(7)
    deadline = time.monotonic() + 20 * metric_files.FLUSH_SECONDS
    while on_file(folder, "requests_total") != 7:
        assert time.monotonic() < deadline, "never written"
        time.sleep(metric_files.FLUSH_SECONDS / 5)


def test_a_failing_observation_does_not_stop_the_writer(folder, monkeypatch):
    monkeypatch.setattr(metric_files, "_flusher", None)
    requests = counter("requests")
    metric_files.start_flushing()

    def broken(_value: float) -> None:
        raise ValueError("not an observation")

    metric_files.record(broken, 1)
    time.sleep(metric_files.FLUSH_SECONDS * 2)
    metric_files.record(requests.inc, 1)
    deadline = time.monotonic() + 20 * metric_files.FLUSH_SECONDS
    while on_file(folder, "requests_total") != 1:
        assert time.monotonic() < deadline, "the writer stopped"
        time.sleep(metric_files.FLUSH_SECONDS / 5)


def test_a_forked_child_counts_from_its_own_empty_file(folder):
    requests = counter("requests")
    requests.inc(4)  # the parent's, not yet written
    metric_files._queued.append((requests.inc, 1))  # the parent's, not yet made
    pid = os.fork()
    if pid == 0:  # the child: its own count only, written to its own file
        requests.inc(1)
        metric_files.flush()
        os._exit(0 if requests.get() == 1 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    metric_files.flush()
    assert requests.get() == 5
    assert on_file(folder, "requests_total") == 6  # the parent's 5 and the child's 1
