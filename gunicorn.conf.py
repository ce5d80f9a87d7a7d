"""Production defaults for ``gunicorn 'app:create_app()'``.

Each may be overridden on the command line or with the ``DIGITS_*``
environment variables named here (see the README's settings table).
"""

import gc
import os
import shutil
import tempfile

from gunicorn import util

_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

bind = os.environ.get("DIGITS_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("DIGITS_WORKERS", str(max(1, min(_cores, 4)))))
# Measured with benchmarks/bench_http.py (README, "Robustness"): threaded workers answered
# 2-2.5x the requests of sync workers at c=8 with a lower p99. gunicorn's own gthread hands
# a connection to a thread at its first byte, so 50 stalled clients held every thread and
# /healthz went unanswered; web.buffering_worker reads each request whole in the worker's
# event loop first, so a stalled client holds no thread (benchmarks/faults.py, "stalled"),
# and handles a small one (a digit, a canvas, a probe) in that loop too: a 28x28 PNG was
# answered in 1.38 against 1.72 ms at the median at c=1, and 1.18x as often at c=8, than
# through a thread (make bench-versions, six rounds).
# DIGITS_WORKER_CLASS=gthread, sync or gevent choose another. The threads of a worker share
# its torch/ONNX thread share (cores / workers): they overlap I/O and decoding, not inference.
worker_class = os.environ.get("DIGITS_WORKER_CLASS", "web.buffering_worker.BufferingThreadWorker")
# Two threads, measured against one and four (2 workers, c=8, three rounds on 2 cores): a
# 28x28 PNG 853 req/s at the median against 692 with four, p99 2.1x p50 against 3.5x; a
# canvas PNG 324 against 287 req/s. More threads of one process only fight over its GIL;
# one thread lets a slow upload hold up every request behind it, probes included. Under the
# buffering worker the threads take the large requests (big photos, many files) and, with
# DIGITS_DYNAMIC_BATCHING, every request.
threads = int(os.environ.get("DIGITS_THREADS", "2"))
# A worker that stops answering its heartbeat this long (a stuck request under sync or
# gevent; gthread's main loop keeps beating) is killed and replaced.
timeout = int(os.environ.get("DIGITS_TIMEOUT", "30"))
# On SIGTERM, requests in flight get this long to finish before workers are killed.
graceful_timeout = int(os.environ.get("DIGITS_GRACEFUL_TIMEOUT", "20"))
# Idle kept-alive connections (and, under gevent, a request's headers) wait this long.
keepalive = int(os.environ.get("DIGITS_KEEPALIVE", "2"))
# Workers load the app (and the model) after forking, so nothing of torch, least
# of all CUDA, is set up in the master process.
preload_app = False
# The service writes one JSON line per request itself (web/request_log.py); gunicorn's
# own access log would repeat each request. DIGITS_GUNICORN_ACCESS_LOG=- turns it on.
accesslog = os.environ.get("DIGITS_GUNICORN_ACCESS_LOG") or None
errorlog = "-"
# Heartbeat files in memory rather than on a possibly slow disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn's answer to a request it cannot parse, in the service's JSON error shape."""
    # imported here, in a worker that has loaded the app: this file is read before --chdir
    from web.errors import raw_error_response

    util.write_nonblock(sock, raw_error_response(status_int, mesg))


# gunicorn answers malformed requests (a bad Content-Length, a broken chunk) itself, in
# HTML, through this one function; clients of a JSON API get the JSON error shape instead.
util.write_error = write_json_error


def on_starting(server):
    """In the master, before any worker forks: settings every worker of this server inherits."""
    # Each worker gets its share of the cores: with torch's default (every core per
    # process) the workers fight over the cores and throughput collapses. The
    # final worker count (command line included) is known only here.
    if "DIGITS_TORCH_THREADS" not in os.environ:
        os.environ["DIGITS_TORCH_THREADS"] = str(max(1, _cores // server.cfg.workers))
    # One folder per server through which a hot reload reaches every worker.
    if "DIGITS_STATE_DIR" not in os.environ:
        server.digits_state_dir = tempfile.mkdtemp(prefix="digits-state-", dir=worker_tmp_dir)
        os.environ["DIGITS_STATE_DIR"] = server.digits_state_dir
    # prometheus_client's multiprocess mode: each worker writes its metrics to files in
    # this folder and /metrics adds them up. It must be set before the workers import
    # prometheus_client, and start empty, or an earlier server's counts would be added in.
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_dir:
        os.makedirs(metrics_dir, exist_ok=True)
        for name in os.listdir(metrics_dir):
            if name.endswith(".db"):
                os.remove(os.path.join(metrics_dir, name))
    else:
        server.digits_metrics_dir = tempfile.mkdtemp(prefix="digits-metrics-", dir=worker_tmp_dir)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = server.digits_metrics_dir


def child_exit(server, worker):
    """In the master, once a worker has exited: its live gauges (requests in flight) go."""
    # Imported here, after on_starting set the folder: prometheus_client picks its
    # multiprocess mode when it is first imported.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """In each worker, once the app is loaded: never debug mode, whatever the environment says,
    and what is loaded kept out of the garbage collector's full passes.

    Flask's debug mode shows tracebacks and, with the Werkzeug debugger, runs code
    sent by any client; ``DIGITS_DEBUG`` or ``FLASK_DEBUG`` must not turn it on here.
    """
    worker.wsgi.debug = False
    # The app, the model and the libraries (some 60,000 objects) live as long as the worker;
    # each full collection walked them all, holding up a request for 30-40 ms every few
    # thousand. Frozen, they are left out (gc.freeze); requests' own objects are collected
    # as before.
    gc.collect()
    gc.freeze()


def worker_exit(server, worker):
    """In a worker that is leaving: its last metric values reach their files."""
    from serving import metric_files

    metric_files.flush()


def on_exit(server):
    """Remove the folders this server made (configured ones are left alone)."""
    for folder in (getattr(server, "digits_state_dir", None),
                   getattr(server, "digits_metrics_dir", None)):
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
