"""The service's Prometheus metrics, and the stage wrapper that times the request chain.

Every metric is defined here, once per process, with the ``digits_`` prefix.
Under gunicorn, prometheus_client's multiprocess mode keeps each worker's
values in files in ``PROMETHEUS_MULTIPROC_DIR`` (gunicorn.conf.py sets the
folder up before the workers fork), and ``exposition_registry`` adds them up
for ``/metrics``; without that variable (``python app.py``, the tests) the
process's own default registry is exposed.

``timed_stage`` is a ``serving.chain.StageWrapper``: the chain's owner passes
it to ``Chain(wrap=...)`` and the stages that take a request's time (decode,
preprocess, infer) are timed from outside, so the stages themselves know
nothing of metrics. It also reads two results as they pass: the size of each
batch and the digit of each prediction.

Under gunicorn the observations themselves are queued and made by the
writer thread of ``serving/metric_files.py`` just before it writes the files:
an observation made right after a stage's numeric work found
prometheus_client's code cold in the CPU's caches (12.8 µs for one write where
the next took 3.6 µs, on this project's machine), and a request makes about
a dozen of them.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.multiprocess import MultiProcessCollector

from model import NUM_CLASSES
from serving import metric_files

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable

# Whole requests take milliseconds (a small PNG) to a second or more (a 12-megapixel photo).
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A stage takes microseconds (batching one tensor) to a second (decoding a huge photo).
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                 0.5, 1.0, 2.5)
# A model load is an ONNX export or a torch.compile build: seconds to a minute.
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
# The stages whose time is measured: those that take the time of a request.
TIMED_STAGES = ("decode", "preprocess", "segment", "infer")

# Values in memory, written to the multiprocess files in the background (before any metric).
metric_files.install()

# No *_created series: they double what is exposed and the dashboards need none of them.
disable_created_metrics()

REQUESTS = Counter(
    "digits_http_requests_total", "HTTP requests answered, by endpoint, method and status.",
    ["endpoint", "method", "status"])
REQUEST_SECONDS = Histogram(
    "digits_http_request_duration_seconds", "Time to answer an HTTP request, by endpoint.",
    ["endpoint"], buckets=REQUEST_BUCKETS)
IN_FLIGHT = Gauge(
    "digits_http_requests_in_flight", "HTTP requests being answered now.",
    multiprocess_mode="livesum")
REJECTED_UPLOADS = Counter(
    "digits_rejected_uploads_total", "Uploads answered with an error, by error code.", ["code"])
STAGE_SECONDS = Histogram(
    "digits_stage_duration_seconds",
    "Time spent in the decode, preprocess, segment and infer stages.",
    ["stage"], buckets=STAGE_BUCKETS)
BATCH_SIZE = Histogram(
    "digits_batch_size", "Images per batch through the network.", buckets=BATCH_BUCKETS)
PREDICTIONS = Counter(
    "digits_predictions_total", "Images answered, by predicted digit.", ["digit"])
MODEL_LOADS = Counter(
    "digits_model_loads_total",
    "Model loads: kind is load (at start) or reload; outcome is ok or failed.",
    ["kind", "outcome"])
MODEL_LOAD_SECONDS = Histogram(
    "digits_model_load_duration_seconds", "Time to load, build and check a model, by kind.",
    ["kind"], buckets=LOAD_BUCKETS)

# Every digit is listed from the start, so a digit never predicted reads 0 rather than
# nothing; the children are looked up once, not on every prediction.
_PREDICTED = [PREDICTIONS.labels(digit=str(digit)) for digit in range(NUM_CLASSES)]


def record(write: Callable[[float], None], value: float) -> None:
    """``write(value)`` (a child's ``observe`` or ``inc``): at once, or in multiprocess mode
    by the values' writer thread (``metric_files.record``)."""
    metric_files.record(write, value)


def _observe_batch(inputs: Any) -> None:
    record(BATCH_SIZE.observe, len(inputs))


def _observe_prediction(reading: Any) -> None:
    # One count per image answered, by its top-level prediction, however many digits it held.
    record(_PREDICTED[reading.surest.prediction.digit].inc, 1)


# What a stage's result tells, read as it passes through the wrapper.
_RESULT_OBSERVERS: dict[str, Callable[[Any], None]] = {
    "batch": _observe_batch,
    "read": _observe_prediction,
}


def timed_stage(name: str, stage: Callable[..., Any]) -> Callable[..., Any]:
    """``stage`` timed into ``digits_stage_duration_seconds{stage=name}`` (a StageWrapper).

    Only the ``TIMED_STAGES`` are timed; the others take microseconds, about what
    timing them would cost, and are only read (batch sizes, predicted digits).
    """
    observe_result = _RESULT_OBSERVERS.get(name)
    if name not in TIMED_STAGES:
        return stage if observe_result is None else _observing(stage, observe_result)
    seconds = STAGE_SECONDS.labels(stage=name)

    @functools.wraps(stage)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = stage(*args, **kwargs)
        finally:
            record(seconds.observe, time.perf_counter() - started)
        if observe_result is not None:
            observe_result(result)
        return result

    return timed


def _observing(stage: Callable[..., Any],
               observe_result: Callable[[Any], None]) -> Callable[..., Any]:
    @functools.wraps(stage)
    def observed(*args: Any, **kwargs: Any) -> Any:
        result = stage(*args, **kwargs)
        observe_result(result)
        return result

    return observed


def record_model_load(kind: str, ok: bool, seconds: float) -> None:
    """Count one model load (``load`` or ``reload``) and how long it took."""
    MODEL_LOADS.labels(kind=kind, outcome="ok" if ok else "failed").inc()
    MODEL_LOAD_SECONDS.labels(kind=kind).observe(seconds)


def exposition_registry() -> CollectorRegistry:
    """What ``/metrics`` shows: every worker's files in multiprocess mode, else this process."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY
