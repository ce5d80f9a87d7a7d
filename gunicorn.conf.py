"""Production defaults for ``gunicorn 'app:create_app()'``.

Each may be overridden on the command line or with the ``DIGITS_*``
environment variables named here (see the README's settings table).
"""

import os

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
accesslog = "-"
errorlog = "-"
# Heartbeat files in memory rather than on a possibly slow disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# Each worker gets its share of the cores: with torch's default (every core per
# process) the workers fight over the cores and throughput collapses.
if "DIGITS_TORCH_THREADS" not in os.environ:
    raw_env = [f"DIGITS_TORCH_THREADS={max(1, _cores // workers)}"]
