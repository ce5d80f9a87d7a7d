"""Requests per client per minute (``RATE_LIMIT_PER_MINUTE``; 0, the default, is off), with
Flask-Limiter.

Clients are told apart by their address (``request.remote_addr``); over the
limit they get ``429 rate_limited`` with ``Retry-After`` (seconds). Counts are
kept in ``RATE_LIMIT_STORAGE`` (``memory://``: each gunicorn worker counts
for itself, so a client may get up to workers x the limit; a shared store
such as ``redis://host:6379`` counts for all of them).
"""

from __future__ import annotations

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

# Load balancers' and orchestrators' probes are never limited.
EXEMPT_PATHS = ("/health", "/healthz", "/readyz")


def init_app(app: Flask) -> None:
    """Limit each client's requests per minute when ``RATE_LIMIT_PER_MINUTE`` is set."""
    per_minute = int(app.config["RATE_LIMIT_PER_MINUTE"])
    limiter = Limiter(
        get_remote_address,
        app=app,
        default_limits=[f"{per_minute} per minute"] if per_minute > 0 else [],
        storage_uri=str(app.config["RATE_LIMIT_STORAGE"]),
        headers_enabled=True,
        retry_after="delta-seconds",
        enabled=per_minute > 0,
    )
    limiter.request_filter(lambda: request.path in EXEMPT_PATHS
                           or request.path.startswith("/static/"))
    app.extensions["rate_limiter"] = limiter
