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
    # One look at the few headers there are: Werkzeug's Headers.setdefault builds an HTTP
    # exception for every header it does not find.
    present = {name.lower() for name, _value in response.headers}
    for name, value in SECURITY_HEADERS.items():
        if name.lower() not in present:
            response.headers.add(name, value)
    return response


def init_app(app: Flask) -> None:
    """Add the security headers to every response the app sends."""
    app.after_request(add_security_headers)
