"""Admin routes (``/admin/...``): the admin key as a bearer token, or a loopback client."""

from __future__ import annotations

import ipaddress
import json

from flask import Blueprint, current_app, jsonify, request

from model import WeightsError
from web.auth import bearer_token, matches
from web.errors import ApiError
from web.inference import describe_model, get_slot

bp = Blueprint("admin", __name__, url_prefix="/admin")


def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (also as an IPv4-mapped IPv6 address)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


@bp.before_request
def require_admin() -> None:
    """With ``ADMIN_KEY`` set, the key as a bearer token; without, a loopback client."""
    key = str(current_app.config["ADMIN_KEY"] or "")
    if key:
        if not matches(bearer_token(), key):
            raise ApiError("forbidden", "the admin endpoints need the admin key as a bearer token")
    elif not is_loopback(request.remote_addr):
        raise ApiError("forbidden", "the admin endpoints answer loopback clients only")


def requested_weights() -> str | None:
    """The weights file a reload's body names; ``None`` for no body (the current file again).

    Any body must be a JSON object naming the file: ``{"weights": "name.pt"}``.
    """
    data = request.get_data(cache=True)
    if not data.strip():
        return None
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    weights = body.get("weights") if isinstance(body, dict) else None
    if not isinstance(weights, str) or not weights:
        raise ApiError("bad_request", 'the body must be a JSON object naming a file inside'
                                      ' weights/, e.g. {"weights": "name.pt"}, or empty')
    return weights


@bp.post("/reload")
def reload_model():
    """Load new weights (JSON ``{"weights": "name.pt"}``, default: the same file again).

    The new model is checked beside the old one and swapped in only if it
    passes; every worker of this server follows. A bad file keeps the old model.
    """
    weights = requested_weights()
    slot = get_slot()
    served_weights, served = slot.served
    previous = {"weights": served_weights, "sha256": served.sha256}
    del served  # hold no reference: the old model's memory is freed once it is swapped out
    try:
        slot.reload(weights)
    except WeightsError as error:
        current_app.logger.warning("reload refused: %s", error)
        # error_response cuts the install folder from the answer; the log keeps it
        raise ApiError("invalid_weights", f"{error}; still serving {previous['weights']}") from None
    except ValueError as error:
        raise ApiError("bad_request", str(error)) from None
    return jsonify({"reloaded": True, "previous": previous, "model": describe_model()})
