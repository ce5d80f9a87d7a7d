"""Probes for orchestrators and load balancers: liveness and readiness. They never need a key.

    GET /healthz   the process is alive (``/health`` is the same)
    GET /readyz    the model is loaded, warmed and answers a dummy batch; else 503 not_ready
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from web.errors import ApiError
from web.inference import warm_up

bp = Blueprint("probes", __name__)


@bp.get("/healthz")
@bp.get("/health")
def healthz():
    """Liveness: answers while the process runs."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Readiness: a model is in the slot and runs a dummy batch through the infer stage."""
    slot = current_app.extensions.get("model_slot")
    if slot is None:
        raise ApiError("not_ready", "no model is loaded yet")
    weights, classifier = slot.served
    try:
        warm_up(classifier)
    except Exception as error:
        current_app.logger.error("not ready: %s cannot run a dummy batch: %s", weights, error)
        raise ApiError("not_ready", "the model cannot run a batch now") from None
    return jsonify({"status": "ready", "weights": weights})
