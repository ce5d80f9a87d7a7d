"""Production defaults for ``gunicorn 'app:create_app()'``.

Each may be overridden on the command line or with the ``DIGITS_*``
environment variables named here (see the README's settings table).
"""

import os
import shutil
import tempfile

_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

bind = os.environ.get("DIGITS_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("DIGITS_WORKERS", str(max(1, min(_cores, 4)))))
worker_class = "sync"
timeout = int(os.environ.get("DIGITS_TIMEOUT", "30"))
graceful_timeout = 10
keepalive = 2
# Workers load the app (and the model) after forking, so nothing of torch, least
# of all CUDA, is set up in the master process.
preload_app = False
# The service writes one JSON line per request itself (web/request_log.py); gunicorn's
# own access log would repeat each request. DIGITS_GUNICORN_ACCESS_LOG=- turns it on.
accesslog = os.environ.get("DIGITS_GUNICORN_ACCESS_LOG") or None
errorlog = "-"
# Heartbeat files in memory rather than on a possibly slow disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


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


def on_exit(server):
    """Remove the folders this server made (configured ones are left alone)."""
    for folder in (getattr(server, "digits_state_dir", None),
                   getattr(server, "digits_metrics_dir", None)):
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
