"""Probes for orchestrators and load balancers: liveness and readiness. They never need a key.

    GET /healthz   the process is alive (``/health`` is the same)
    GET /readyz    the model is loaded, warmed and runs a dummy batch; else 503 not_ready
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from web.errors import ApiError
from web.inference import get_slot, warm_up

bp = Blueprint("probes", __name__)


@bp.get("/healthz")
@bp.get("/health")
def healthz():
    """Liveness: answers while the process runs."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Readiness: the model serving runs a dummy batch through the infer stage.

    A worker answers no request before its model is loaded and warmed (``init_app``
    does both before the app exists), so this checks that it still can serve.
    """
    weights, classifier = get_slot().served
    try:
        warm_up(classifier)
    except Exception as error:
        current_app.logger.error("not ready: %s cannot run a dummy batch: %s", weights, error)
        raise ApiError("not_ready", "the model cannot run a batch now") from None
    return jsonify({"status": "ready", "weights": weights})
