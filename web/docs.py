"""``GET /docs``: Swagger UI over ``/openapi.json``, served by the service itself.

Swagger UI's files come from the pinned ``flask-swagger-ui`` package (only its
``dist`` folder is used, not its blueprint, whose page has an inline script);
the page and its initialiser (``static/docs.js``) are the project's own, so
the page runs under the same Content-Security-Policy as the upload page and
loads nothing from another site.
"""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, render_template, send_from_directory

bp = Blueprint("docs", __name__, url_prefix="/docs")

SWAGGER_UI_FILES = files("flask_swagger_ui") / "dist"


@bp.get("")
def show_docs():
    """The API documentation, where each call can also be tried."""
    return render_template("docs.html")


@bp.get("/assets/<path:filename>")
def asset(filename: str):
    """One of Swagger UI's files (its script, style sheet, icons)."""
    return send_from_directory(str(SWAGGER_UI_FILES), filename, max_age=3600)
