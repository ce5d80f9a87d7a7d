"""The upload page, which also works without JavaScript (its form posts back to ``/``), and
the route its script posts to."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request

from imaging.ink import READ_SIZE
from serving.trust import REASONS
from web.api import query_flag
from web.config import is_true
from web.errors import answer_error
from web.inference import predict_upload

bp = Blueprint("page", __name__)

# The page runs only its own script and style; images may also be data: URLs (the
# model's input) and blob: URLs (the preview of a chosen file).
PAGE_POLICY = ("default-src 'self'; img-src 'self' data: blob:; base-uri 'none'; "
               "form-action 'self'; frame-ancestors 'none'")


@bp.get("/")
def index():
    """The upload page."""
    return render_template("index.html")


@bp.post("/")
def index_result():
    """The upload page with the result, for browsers without JavaScript."""
    explained = False
    try:  # reading the form may fail too (a malformed body): the page shows that as well
        explained = is_true(request.form.get("explain"))
        result = predict_upload(include_input=True, explained=explained)
    except Exception as error:
        api_error = answer_error(error)
        return (render_template("index.html", error=api_error, explained=explained),
                api_error.status)
    return render_template("index.html", result=result, explained=explained)


@bp.post("/page/predict")
def predict():
    """The page's own script: the JSON prediction with the model's input image.

    It answers what ``POST /predict?input_image=1`` answers (``?explain=1`` too), but the
    API key does not guard it, so the page works for its visitors (``web/auth.py``).
    """
    return jsonify(predict_upload(include_input=True, explained=query_flag("explain")))


@bp.app_context_processor
def reasons() -> dict[str, object]:
    """Why an answer can be uncertain, in plain words, for the page to say."""
    return {"reasons": REASONS}


@bp.app_context_processor
def read_size() -> dict[str, object]:
    """The longer side a picture is read at, at most: the page sends no larger drawings."""
    return {"read_size": READ_SIZE}


@bp.after_app_request
def add_page_policy(response):
    """Send the Content-Security-Policy with every HTML page."""
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
    return response
