"""Prometheus metrics of the HTTP layer, and ``GET /metrics`` for whoever may read them.

``init_app`` counts every request by endpoint, method and status, times it,
keeps the gauge of requests in flight, counts uploads refused by error code,
and lists ``serving.metrics.timed_stage`` among the chain's stage wrappers
(so it must run before ``inference.init_app``). The metrics themselves are
defined in ``serving/metrics.py``.

Who may read ``/metrics`` is ``METRICS_ACCESS``: ``loopback`` (the default:
clients on this host), ``open`` (anyone), or ``key`` (``Authorization: Bearer
<METRICS_KEY>``).
"""

from __future__ import annotations

import functools
import hmac
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import Counter, Histogram
from prometheus_client.exposition import choose_encoder

from serving import metric_files, metrics
from web.admin import is_loopback
from web.auth import CHALLENGE
from web.errors import ApiError

bp = Blueprint("metrics", __name__)

METRICS_ACCESS_MODES = ("loopback", "open", "key")
# The endpoints that read an upload: their 4xx answers are rejected uploads.
UPLOAD_ENDPOINTS = frozenset({"api.predict", "page.index_result"})
# Any other method a client sends is counted as "other", so clients cannot add label sets.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def init_app(app: Flask) -> None:
    """Measure every request and time the chain's stages (``bp`` serves ``/metrics``)."""
    access = app.config["METRICS_ACCESS"]
    if access not in METRICS_ACCESS_MODES:
        raise ValueError(f"DIGITS_METRICS_ACCESS must be one of {', '.join(METRICS_ACCESS_MODES)},"
                         f" not {access!r}")
    if access == "key" and not app.config["METRICS_KEY"]:
        raise ValueError("DIGITS_METRICS_ACCESS=key needs DIGITS_METRICS_KEY set")
    app.extensions["metrics_registry"] = metrics.exposition_registry()
    metric_files.start_flushing()
    app.extensions.setdefault("stage_wrappers", []).append(metrics.timed_stage)
    app.before_request(start_request)
    app.after_request(count_request)
    app.teardown_request(end_request)


def endpoint_label(rule) -> str:
    """The route's rule (``/predict``), so the label set stays small; unmatched paths share one."""
    return rule.rule if rule is not None else "unmatched"


@functools.cache
def children_for(endpoint: str, method: str, status: int) -> tuple[Counter, Histogram]:
    """The request counter and latency histogram of these labels, looked up once each."""
    return (metrics.REQUESTS.labels(endpoint, method, str(status)),
            metrics.REQUEST_SECONDS.labels(endpoint))


def start_request() -> None:
    noted = vars(g._get_current_object())
    noted["metrics_started"] = time.perf_counter()
    noted["metrics_in_flight"] = True
    metrics.record(metrics.IN_FLIGHT.inc, 1)


def count_request(response: Response) -> Response:
    """After the answer is made (error answers too): its count, latency and refused upload."""
    # The objects behind the proxies, looked up once rather than on every attribute.
    noted = vars(g._get_current_object())
    started = noted.pop("metrics_started", None)
    if started is None:
        return response
    current = request._get_current_object()
    method = current.method if current.method in KNOWN_METHODS else "other"
    counted, timed = children_for(endpoint_label(current.url_rule), method, response.status_code)
    metrics.record(timed.observe, time.perf_counter() - started)
    metrics.record(counted.inc, 1)
    api_error = noted.get("api_error")
    if api_error is not None and current.endpoint in UPLOAD_ENDPOINTS and api_error.status < 500:
        metrics.record(metrics.REJECTED_UPLOADS.labels(api_error.code).inc, 1)
    return response


def end_request(_error: BaseException | None) -> None:
    """Runs whatever happened, so the in-flight gauge never drifts."""
    if vars(g._get_current_object()).pop("metrics_in_flight", False):
        metrics.record(metrics.IN_FLIGHT.dec, 1)


def may_read_metrics() -> bool:
    """Whether this request may read ``/metrics`` under ``METRICS_ACCESS``."""
    access = current_app.config["METRICS_ACCESS"]
    if access == "open":
        return True
    if access == "key":
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        key = str(current_app.config["METRICS_KEY"])
        return scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(),
                                                                   key.encode())
    return is_loopback(request.remote_addr)


@bp.get("/metrics")
def show_metrics():
    """Every metric, in Prometheus's text format or OpenMetrics, as the scraper asks."""
    if not may_read_metrics():
        access = current_app.config["METRICS_ACCESS"]
        if access == "key":  # a client that may send the key, and did not
            raise ApiError("unauthorized", headers=CHALLENGE)
        raise ApiError("forbidden", f"the metrics are not readable by this client ({access})")
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    metric_files.flush()  # this worker's latest values; the others' are at most a moment old
    return Response(encode(current_app.extensions["metrics_registry"]), content_type=content_type)
