"""CORS for browser clients on other sites: only the origins in ``CORS_ORIGINS``, none by default.

The setting is a comma-separated list (``https://a.example,https://b.example``)
or a JSON list; ``*`` allows every origin. flask-cors answers the preflight
``OPTIONS`` requests and adds the headers to every answer, errors included.
The admin routes and ``/metrics`` are never opened to other sites.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from flask import Flask
from flask_cors import CORS

from web.request_log import REQUEST_ID_HEADER

# Every path but /admin/... and /metrics.
CORS_PATHS = r"^/(?!admin/|metrics$).*"


def allowed_origins(setting: str | Iterable[str] | None) -> list[str]:
    """The origins a ``CORS_ORIGINS`` value names: a comma-separated text or a (JSON) list."""
    if setting is None:
        return []
    if isinstance(setting, str):
        text = setting.strip()
        items = json.loads(text) if text.startswith("[") else text.split(",")
    else:
        items = list(setting)
    origins = [str(item).strip().rstrip("/") for item in items]
    return [origin for origin in origins if origin]


def init_app(app: Flask) -> None:
    """Allow the configured origins to call the API from their pages."""
    origins = allowed_origins(app.config["CORS_ORIGINS"])
    if not origins:
        return
    CORS(app, resources={CORS_PATHS: {"origins": origins}},
         expose_headers=[REQUEST_ID_HEADER], max_age=600)
