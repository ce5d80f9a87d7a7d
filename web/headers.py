"""Security headers on every response, error answers included."""

from __future__ import annotations

from flask import Flask, Response

# No MIME sniffing of a JSON answer into HTML, and no page address leaks to other sites.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def add_security_headers(response: Response) -> Response:
    """Set ``SECURITY_HEADERS`` on ``response`` (a view's own value is kept)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_app(app: Flask) -> None:
    """Add the security headers to every response the app sends."""
    app.after_request(add_security_headers)
