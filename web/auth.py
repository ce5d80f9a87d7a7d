"""The optional API key: with ``API_KEY`` set, the API's paths need ``Authorization: Bearer <key>``.

``PROTECTED_PATHS`` names what the key guards, by path prefix. The page
(``/``) and the routes its own form and script post to (``/`` and
``/page/predict``) stay open, so the page keeps working for its visitors
without ever holding the key; a deployment that must close the page as well
puts the proxy's own authentication in front of it. ``/admin/`` with an
``ADMIN_KEY`` set is guarded by that key alone (``web/admin.py``), and
``/metrics`` with ``METRICS_ACCESS=key`` by ``METRICS_KEY`` alone
(``web/metrics.py``), since such a client sends its key in the one
``Authorization`` header.
"""

from __future__ import annotations

import hmac

from flask import Flask, current_app, request

from web.errors import ApiError

# The paths the API key guards, each with everything below it.
PROTECTED_PATHS = ("/predict", "/model", "/metrics", "/admin")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="digits"'}


def bearer_token() -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def matches(token: str | None, key: str) -> bool:
    """Whether ``token`` is ``key``, compared in constant time."""
    return token is not None and hmac.compare_digest(token.encode(), key.encode())


def is_protected(path: str) -> bool:
    """Whether the API key guards ``path``."""
    return any(path == base or path.startswith(base + "/") for base in PROTECTED_PATHS)


def is_protected_by_own_key(path: str) -> bool:
    """Whether a key of its own guards ``path`` instead: the admin key the admin routes, the
    metrics key ``/metrics``."""
    config = current_app.config
    if path == "/metrics":
        return config["METRICS_ACCESS"] == "key"
    return bool(config["ADMIN_KEY"]) and (path == "/admin" or path.startswith("/admin/"))


def require_api_key() -> None:
    """Before each request: with ``API_KEY`` set, a protected path needs it as a bearer token."""
    key = str(current_app.config["API_KEY"] or "")
    if not key or not is_protected(request.path):
        return
    if is_protected_by_own_key(request.path):
        return
    if not matches(bearer_token(), key):
        raise ApiError("unauthorized", headers=CHALLENGE)


def init_app(app: Flask) -> None:
    """Check the API key before every request (before any blueprint's own checks)."""
    app.before_request(require_api_key)
