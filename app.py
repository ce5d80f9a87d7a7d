"""The digit recognition web service.

    python app.py                      # development server on 127.0.0.1:5000
    gunicorn 'app:create_app()'        # production (settings in gunicorn.conf.py)

Settings come from defaults below, then ``DIGITS_*`` environment variables,
then the ``test_config`` mapping; the README lists them all.
"""

from __future__ import annotations

import argparse
import hmac
import io
import ipaddress
import os
import sys
from collections.abc import Mapping
from typing import Any

import torch
from flask import Blueprint, Flask, current_app, jsonify, render_template, request
from flask.wrappers import Request

import folder_paths
from backends import DEFAULT_BACKEND
from errors import ApiError, answer_error, register_error_handlers
from model import DATA_CREDIT, DigitClassifier, WeightsError
from pipeline import encode_prediction, infer
from preprocess import DEFAULT_MAX_PIXELS, preprocess
from reload import ModelSlot, SharedState

ENV_PREFIX = "DIGITS"  # every setting can be overridden by a DIGITS_<NAME> variable
DEFAULT_CONFIG: dict[str, Any] = {
    "WEIGHTS": "model.pt",  # file name inside weights/
    "DEVICE": "auto",  # auto, cpu, cuda or cuda:N
    "BACKEND": DEFAULT_BACKEND,  # eager, onnx, torchscript or compile
    "MAX_CONTENT_LENGTH": 10 * 1024 * 1024,  # largest accepted request body, bytes
    "MAX_IMAGE_PIXELS": DEFAULT_MAX_PIXELS,  # largest accepted image, width x height
    "TORCH_THREADS": 0,  # torch threads per process; 0 keeps torch's default
    "ADMIN_KEY": "",  # empty: /admin/ answers loopback clients only
    "STATE_DIR": "",  # folder shared by one server's workers; empty: reloads stay in-process
}
TRUE_WORDS = ("1", "true", "yes", "on")

bp = Blueprint("digits", __name__)
admin = Blueprint("admin", __name__, url_prefix="/admin")


class InMemoryRequest(Request):
    """Keeps uploaded files in memory, so no upload is ever written to disk."""

    def _get_file_stream(self, total_content_length, content_type, filename=None,
                         content_length=None):
        return io.BytesIO()


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application and load the model once for this process."""
    app = Flask(
        __name__,
        template_folder=folder_paths.get_folder("templates"),
        static_folder=folder_paths.get_folder("static"),
    )
    app.request_class = InMemoryRequest
    app.config.from_mapping(DEFAULT_CONFIG)
    app.config.from_prefixed_env(ENV_PREFIX)
    for key, default in DEFAULT_CONFIG.items():
        # from_prefixed_env parses values as JSON; a text setting (a file name, a key)
        # stays text even when it looks like a number.
        if isinstance(default, str) and f"{ENV_PREFIX}_{key}" in os.environ:
            app.config[key] = os.environ[f"{ENV_PREFIX}_{key}"]
    if test_config is not None:
        app.config.from_mapping(test_config)

    threads = int(app.config["TORCH_THREADS"])
    if threads > 0:
        torch.set_num_threads(threads)

    register_error_handlers(app)
    app.register_blueprint(bp)
    app.register_blueprint(admin)
    app.extensions["model_slot"] = create_model_slot(app.config)
    app.before_request(follow_reloads)
    return app


def create_model_slot(config: Mapping[str, Any]) -> ModelSlot:
    """The process's model, loaded with the configured device, backend and threads."""
    device, backend = config["DEVICE"], config["BACKEND"]
    threads = int(config["TORCH_THREADS"]) or None

    def load(weights: str, expected_sha256: str | None) -> DigitClassifier:
        path = folder_paths.get_full_path("weights", weights)
        return DigitClassifier(path, device, backend, threads, expected_sha256)

    state = SharedState(config["STATE_DIR"]) if config["STATE_DIR"] else None
    return ModelSlot(load, config["WEIGHTS"], state)


def get_model_slot() -> ModelSlot:
    """The slot holding this process's model; reloads go through it."""
    return current_app.extensions["model_slot"]


def get_classifier() -> DigitClassifier:
    """The classifier this process serves now."""
    return get_model_slot().current


def follow_reloads() -> None:
    """Before each request: serve the weights another worker of this server reloaded."""
    get_model_slot().follow()


def describe_model() -> dict[str, object]:
    """What model this process serves, as ``/model`` answers it."""
    weights, classifier = get_model_slot().served
    return {
        "architecture": classifier.architecture,
        "weights": weights,
        "sha256": classifier.sha256,
        "backend": classifier.backend,
        "accuracy": classifier.card.validation_accuracy,
        "device": str(classifier.device),
        "threads": torch.get_num_threads(),
        "loaded_at": classifier.loaded_at.isoformat(),
        "data_credit": DATA_CREDIT,
    }


def read_upload() -> bytes:
    """The bytes of the multipart ``file`` part, or an ``ApiError`` saying what is missing."""
    upload = request.files.get("file")
    if upload is None:
        raise ApiError("missing_file")
    if not upload.filename:
        raise ApiError("empty_filename")
    return upload.read()


def predict_upload(include_input: bool) -> dict[str, object]:
    """Decode, preprocess, infer and encode the request's upload."""
    prepared = preprocess(read_upload(), current_app.config["MAX_IMAGE_PIXELS"])
    (prediction,) = infer(get_classifier(), [prepared.tensor])
    return encode_prediction(prediction, prepared if include_input else None)


@bp.get("/")
def index():
    """The upload page."""
    return render_template("index.html")


@bp.post("/")
def index_result():
    """The upload page with the result, for browsers without JavaScript."""
    try:
        result = predict_upload(include_input=True)
    except Exception as error:
        api_error = answer_error(error)
        return render_template("index.html", error=api_error), api_error.status
    return render_template("index.html", result=result)


# The page runs only its own script and style; images may also be data: URLs (the
# model's input) and blob: URLs (the preview of a chosen file).
PAGE_POLICY = ("default-src 'self'; img-src 'self' data: blob:; base-uri 'none'; "
               "form-action 'self'; frame-ancestors 'none'")


@bp.after_request
def add_page_policy(response):
    """Send the Content-Security-Policy with every HTML page."""
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
    return response


@bp.post("/predict")
def predict():
    """JSON prediction for the multipart ``file`` upload.

    ``?input_image=1`` adds the 28x28 model input as a PNG data URL.
    """
    include_input = request.args.get("input_image", "").lower() in TRUE_WORDS
    return jsonify(predict_upload(include_input))


@bp.get("/model")
def model_info():
    """What model this process serves."""
    return jsonify(describe_model())


@bp.get("/health")
def health():
    """Liveness check for load balancers and tests."""
    return jsonify({"status": "ok"})


def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (also as an IPv4-mapped IPv6 address)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


@admin.before_request
def require_admin() -> None:
    """With ``ADMIN_KEY`` set, the key as a bearer token; without, a loopback client."""
    key = str(current_app.config["ADMIN_KEY"] or "")
    if key:
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(),
                                                                 key.encode()):
            raise ApiError("forbidden", "the admin endpoints need the admin key as a bearer token")
    elif not is_loopback(request.remote_addr):
        raise ApiError("forbidden", "the admin endpoints answer loopback clients only")


@admin.post("/reload")
def reload_model():
    """Load new weights (JSON ``{"weights": "name.pt"}``, default: the same file again).

    The new model is checked beside the old one and swapped in only if it
    passes; every worker of this server follows. A bad file keeps the old model.
    """
    body = request.get_json(silent=True) or {}
    weights = body.get("weights") if isinstance(body, dict) else None
    if weights is not None and not isinstance(weights, str):
        raise ApiError("bad_request", "'weights' must be a file name inside weights/")
    slot = get_model_slot()
    served_weights, served = slot.served
    previous = {"weights": served_weights, "sha256": served.sha256}
    del served  # hold no reference: the old model's memory is freed once it is swapped out
    try:
        slot.reload(weights)
    except WeightsError as error:
        raise ApiError("invalid_weights", f"{error}; still serving {previous['weights']}") from None
    except ValueError as error:
        raise ApiError("bad_request", str(error)) from None
    return jsonify({"reloaded": True, "previous": previous, "model": describe_model()})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the digit service's development server.")
    parser.add_argument("--host", default=os.environ.get("DIGITS_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DIGITS_PORT", "5000")))
    parser.add_argument("--debug", action="store_true",
                        default=os.environ.get("DIGITS_DEBUG", "").lower() in TRUE_WORDS)
    args = parser.parse_args(argv)
    try:
        app = create_app()
    except (WeightsError, ValueError) as error:
        sys.exit(f"error: {error}")
    app.run(host=args.host, port=args.port, debug=args.debug)


if __name__ == "__main__":
    main()
