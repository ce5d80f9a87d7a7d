"""The JSON API: predictions and what model is served."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from web.config import is_true
from web.inference import describe_model, predict_upload

bp = Blueprint("api", __name__)


@bp.post("/predict")
def predict():
    """JSON prediction for the multipart ``file`` upload.

    ``?input_image=1`` adds the 28x28 model input as a PNG data URL, ``?explain=1`` the
    heatmap of which of its pixels pushed the answer.
    """
    return jsonify(predict_upload(include_input=query_flag("input_image"),
                                  explained=query_flag("explain")))


def query_flag(name: str) -> bool:
    """Whether the query string turns ``name`` on (``?name=1``); off when it is absent."""
    # Werkzeug's MultiDict.get builds an HTTP exception for every missing key it looks up.
    args = request.args
    return name in args and is_true(args[name])


@bp.get("/model")
def model_info():
    """What model this process serves."""
    return jsonify(describe_model())
