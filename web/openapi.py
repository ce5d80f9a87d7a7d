"""The OpenAPI 3.1 document of the whole HTTP API, served at ``GET /openapi.json``.

It is built here, in code, from the same constants the service uses (the
error codes and their statuses, the upload field, the class count), so a
status cannot drift from ``web/errors.py``. Each operation lists the error
codes it can answer with; every error response's schema narrows the error
shape's ``code`` to exactly those codes. The tests validate the document with
openapi-spec-validator, check that every route and error code of the app is
in it, and run schemathesis against a live server to check every answer
against it.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from functools import cache
from typing import Any

from flask import Blueprint, jsonify

import folder_paths
from model import NUM_CLASSES
from runtime.backend_names import BACKENDS
from serving.trust import REASONS
from web.docs import SWAGGER_UI_FILES
from web.errors import ERROR_CODES
from web.uploads import UPLOAD_FIELD

bp = Blueprint("openapi", __name__)

JSON = "application/json"
HTML = "text/html"
PROMETHEUS_TEXT = "text/plain"  # Prometheus's text format, version 0.0.4
OPENMETRICS_TEXT = "application/openmetrics-text"  # for scrapers that ask for it

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def json_answer(description: str, schema: Schema) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def error_answers(*codes: str) -> dict[str, dict[str, Any]]:
    """The JSON error responses for ``codes``, one per status, each naming its codes."""
    by_status: dict[int, list[str]] = defaultdict(list)
    for code in codes:
        by_status[ERROR_CODES[code][0]].append(code)
    answers = {}
    for status, status_codes in sorted(by_status.items()):
        meanings = "; ".join(f"`{code}`: {ERROR_CODES[code][1]}" for code in status_codes)
        schema = {"allOf": [ref("Error"), {"properties": {"error": {"properties": {
            "status": {"const": status}, "code": {"enum": status_codes}}}}}]}
        answers[str(status)] = json_answer(meanings, schema)
    return answers


def html_answers(*codes: str) -> dict[str, dict[str, Any]]:
    """The page's error answers: the page again, with the error's message, at its status."""
    by_status: dict[int, list[str]] = defaultdict(list)
    for code in codes:
        by_status[ERROR_CODES[code][0]].append(code)
    return {
        str(status): {"description": "the page with the error shown: "
                      + ", ".join(f"`{code}`" for code in status_codes),
                      "content": {HTML: {"schema": {"type": "string"}}}}
        for status, status_codes in sorted(by_status.items())
    }


def swagger_ui_files() -> list[str]:
    """The names of the files ``/docs/assets/`` serves."""
    return sorted(entry.name for entry in SWAGGER_UI_FILES.iterdir() if entry.is_file())


EXPLAIN_PARAMETER = {"name": "explain", "in": "query", "required": False,
                     "description": "`1`, `true`, `yes` or `on` adds each answer's"
                                    " `explanation` (occlusion on the served network: it costs"
                                    " about one batch of 169 images per upload)",
                     "schema": {"type": "string"}}
# What the upload endpoints can refuse an upload with.
UPLOAD_ERRORS = ("missing_file", "empty_filename", "not_an_image", "bad_request",
                 "request_timeout", "payload_too_large", "image_too_large", "too_many_files",
                 "no_digit_found", "rate_limited", "internal_error")
# What the API key (DIGITS_API_KEY), where it is set, adds to an operation's answers.
KEYED_ERRORS = ("unauthorized",)
# A bearer key where one is set (DIGITS_API_KEY, DIGITS_ADMIN_KEY, DIGITS_METRICS_KEY), else none.
OPTIONAL_KEY = [{}, {"bearerKey": []}]

REASON_SCHEMA: Schema = {
    "type": "string", "enum": list(REASONS),
    "description": "only when `uncertain`: " + "; ".join(f"`{code}`: {words}"
                                                       for code, words in REASONS.items())}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["status", "code", "message"],
            "properties": {
                "status": {"type": "integer", "description": "the HTTP status, repeated"},
                "code": {"type": "string", "enum": list(ERROR_CODES)},
                "message": {"type": "string"},
            },
        }},
    },
    "Prediction": {
        "type": "object",
        "description": "An image's reading. `prediction`, `confidence`, `probabilities`,"
                       " `input_image` and `explanation` describe one digit: for an image"
                       " of one digit, that digit; for a number, the digit the model is"
                       " surest of. `uncertain` is true when any digit read is in doubt."
                       " `digits` and `number` give every digit found, left to right.",
        "required": ["prediction", "confidence", "probabilities", "uncertain", "digits",
                     "number"],
        "properties": {
            "prediction": {"type": "integer", "minimum": 0, "maximum": NUM_CLASSES - 1},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1,
                           "description": "the prediction's calibrated probability (softmax"
                                          " with the card's temperature; for a digit read"
                                          " with a touching neighbour, the pair reader's)"},
            "probabilities": {"type": "array", "minItems": NUM_CLASSES,
                              "maxItems": NUM_CLASSES,
                              "items": {"type": "number", "minimum": 0, "maximum": 1},
                              "description": "every digit's probability, digit 0 first"},
            "uncertain": {"type": "boolean",
                          "description": "true: do not take the prediction as a fact;"
                                         " `reason` says why"},
            "reason": REASON_SCHEMA,
            "input_image": {"type": "string", "pattern": "^data:image/png;base64,",
                            "description": "with `?input_image=1`: the 28x28 picture the model"
                                           " saw"},
            "explanation": {"type": "string", "pattern": "^data:image/png;base64,",
                            "description": "with `?explain=1`: a 28x28 RGBA heatmap to lay"
                                           " over `input_image`, red where a pixel pushed"
                                           " towards the prediction, blue where it pushed"
                                           " away, more opaque the more it mattered"},
            "digits": {"type": "array", "minItems": 1, "items": ref("Digit"),
                       "description": "every digit found in the image, left to right"},
            "number": {"type": "string", "pattern": "^[0-9]+$",
                       "description": "the digits' values in order, e.g. `\"2024\"`"},
        },
    },
    "Digit": {
        "type": "object",
        "required": ["value", "confidence", "box", "uncertain"],
        "properties": {
            "value": {"type": "integer", "minimum": 0, "maximum": NUM_CLASSES - 1},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "box": {"type": "array", "minItems": 4, "maxItems": 4,
                    "items": {"type": "integer", "minimum": 0},
                    "description": "`[left, top, right, bottom]` around the digit's ink, in"
                                   " pixels of the upright image (after its EXIF"
                                   " orientation), right and bottom exclusive"},
            "uncertain": {"type": "boolean",
                          "description": "whether this digit's reading is in doubt"},
            "reason": REASON_SCHEMA,
        },
    },
    "Results": {
        "type": "object",
        "required": ["results"],
        "properties": {"results": {
            "type": "array",
            "description": "one entry per `file` part, in the order sent",
            "items": {"anyOf": [ref("Prediction"), ref("Error")]},
        }},
    },
    "Model": {
        "type": "object",
        "required": ["architecture", "weights", "sha256", "backend", "accuracy", "device",
                     "threads", "loaded_at", "data_credit"],
        "properties": {
            "architecture": {"type": "string"},
            "weights": {"type": "string", "description": "file name inside weights/"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "backend": {"type": "string", "enum": list(BACKENDS)},
            "accuracy": {"type": ["number", "null"], "description": "held-out, from its card"},
            "device": {"type": "string"},
            "threads": {"type": "integer", "minimum": 1},
            "loaded_at": {"type": "string", "format": "date-time"},
            "data_credit": {"type": "string"},
        },
    },
    "Health": {"type": "object", "required": ["status"],
               "properties": {"status": {"const": "ok"}}},
    "Ready": {"type": "object", "required": ["status", "weights"],
              "properties": {"status": {"const": "ready"}, "weights": {"type": "string"}}},
    "Reloaded": {
        "type": "object",
        "required": ["reloaded", "previous", "model"],
        "properties": {
            "reloaded": {"const": True},
            "previous": {"type": "object", "required": ["weights", "sha256"],
                         "properties": {"weights": {"type": "string"},
                                        "sha256": {"type": "string"}}},
            "model": ref("Model"),
        },
    },
}

PATHS: dict[str, dict[str, Any]] = {
    "/": {
        "get": {"summary": "The upload page", "operationId": "page",
                "responses": {"200": {"description": "the page",
                                      "content": {HTML: {"schema": {"type": "string"}}}}}},
        "post": {
            "summary": "The upload page with its result, for browsers without JavaScript",
            "operationId": "pageResult",
            "requestBody": {"required": True, "content": {"multipart/form-data": {
                "schema": {"type": "object", "required": [UPLOAD_FIELD], "properties": {
                    UPLOAD_FIELD: {"type": "string", "format": "binary"},
                    "explain": {"type": "string", "description": "the page's \"Show why\""
                                " box: present (`on`) adds the heatmap"}}}}}},
            "responses": {"200": {"description": "the page with the prediction",
                                  "content": {HTML: {"schema": {"type": "string"}}}},
                          **html_answers(*UPLOAD_ERRORS)},
        },
    },
    "/predict": {"post": {
        "summary": "Which digit or number each uploaded image shows",
        "operationId": "predict",
        "security": OPTIONAL_KEY,
        "parameters": [{"name": "input_image", "in": "query", "required": False,
                        "description": "`1`, `true`, `yes` or `on` adds each image's 28x28"
                                       " model input as a PNG data URL",
                        "schema": {"type": "string"}}, EXPLAIN_PARAMETER],
        "requestBody": {"required": True, "content": {"multipart/form-data": {
            "schema": {"type": "object", "required": [UPLOAD_FIELD], "properties": {
                UPLOAD_FIELD: {"type": "array", "minItems": 1,
                               "description": "one or more `file` parts, each an image",
                               "items": {"type": "string", "format": "binary"}}}}}}},
        "responses": {
            "200": json_answer("one image: its prediction; several: `results`, one prediction"
                               " or error per image, in order",
                               {"oneOf": [ref("Prediction"), ref("Results")]}),
            **error_answers(*UPLOAD_ERRORS, *KEYED_ERRORS),
        },
    }},
    "/page/predict": {"post": {
        "summary": "What the page's own script posts to: one image's prediction with its"
                   " 28x28 model input, never guarded by the API key",
        "operationId": "pagePredict",
        "parameters": [EXPLAIN_PARAMETER],
        "requestBody": {"required": True, "content": {"multipart/form-data": {
            "schema": {"type": "object", "required": [UPLOAD_FIELD], "properties": {
                UPLOAD_FIELD: {"type": "array", "minItems": 1,
                               "items": {"type": "string", "format": "binary"}}}}}}},
        "responses": {
            "200": json_answer("the prediction, with `input_image`",
                               {"oneOf": [ref("Prediction"), ref("Results")]}),
            **error_answers(*UPLOAD_ERRORS),
        },
    }},
    "/model": {"get": {
        "summary": "The model this worker serves", "operationId": "model",
        "security": OPTIONAL_KEY,
        "responses": {"200": json_answer("the model", ref("Model")),
                      **error_answers("rate_limited", *KEYED_ERRORS)},
    }},
    "/health": {"get": {
        "summary": "Liveness (the same as /healthz)", "operationId": "health",
        "responses": {"200": json_answer("the process runs", ref("Health"))},
    }},
    "/healthz": {"get": {
        "summary": "Liveness: the process runs", "operationId": "healthz",
        "responses": {"200": json_answer("the process runs", ref("Health"))},
    }},
    "/readyz": {"get": {
        "summary": "Readiness: the model is loaded, warmed and runs a dummy batch",
        "operationId": "readyz",
        "responses": {"200": json_answer("ready to serve", ref("Ready")),
                      **error_answers("not_ready")},
    }},
    "/metrics": {"get": {
        "summary": "Prometheus metrics, in Prometheus's text format (or OpenMetrics when asked)",
        "description": "Who may read them is `DIGITS_METRICS_ACCESS`: loopback clients (the"
                       " default), anyone, or clients sending `DIGITS_METRICS_KEY` as a bearer"
                       " token (then that key alone: 401 without it).",
        "operationId": "metrics",
        "security": OPTIONAL_KEY,
        "responses": {"200": {"description": "every metric",
                              "content": {PROMETHEUS_TEXT: {"schema": {"type": "string"}},
                                          OPENMETRICS_TEXT: {"schema": {"type": "string"}}}},
                      **error_answers("forbidden", *KEYED_ERRORS)},
    }},
    "/admin/reload": {"post": {
        "summary": "Load new weights without a restart, in every worker",
        "description": "Loopback clients only, unless `DIGITS_ADMIN_KEY` is set: then any client"
                       " sending it as a bearer token, and no other.",
        "operationId": "reload",
        "security": OPTIONAL_KEY,
        "requestBody": {"required": False, "content": {JSON: {"schema": {
            "type": "object",
            "properties": {"weights": {"type": ["string", "null"],
                                       "description": "file name inside weights/; absent or"
                                                      " null: the file served now, read"
                                                      " again"}}}}}},
        "responses": {"200": json_answer("the new model serves", ref("Reloaded")),
                      **error_answers("bad_request", "forbidden", "invalid_weights",
                                      "internal_error", *KEYED_ERRORS)},
    }},
    "/openapi.json": {"get": {
        "summary": "This document", "operationId": "openapi",
        "responses": {"200": json_answer("the OpenAPI document", {"type": "object"})},
    }},
    "/docs": {"get": {
        "summary": "The API's documentation, to read and try (Swagger UI)", "operationId": "docs",
        "responses": {"200": {"description": "the page",
                              "content": {HTML: {"schema": {"type": "string"}}}}},
    }},
    "/docs/assets/{filename}": {"get": {
        "summary": "Swagger UI's scripts, style sheets and icons", "operationId": "docsAsset",
        "parameters": [{"name": "filename", "in": "path", "required": True,
                        "schema": {"type": "string", "enum": swagger_ui_files()}}],
        "responses": {"200": {"description": "the file",
                              "content": {"*/*": {"schema": {"type": "string",
                                                             "format": "binary"}}}},
                      **error_answers("not_found")},
    }},
}

# How /docs groups the operations, in this order.
TAGS = {
    "predictions": ("/predict", "/model"),
    "page": ("/", "/page/predict"),
    "probes": ("/healthz", "/health", "/readyz"),
    "operations": ("/metrics", "/admin/reload"),
    "documentation": ("/openapi.json", "/docs", "/docs/assets/{filename}"),
}
for _tag, _paths in TAGS.items():
    for _path in _paths:
        for _operation in PATHS[_path].values():
            _operation["tags"] = [_tag]

# Answers any path can give, outside the operations above.
GENERAL_ANSWERS = {
    "NotFound": error_answers("not_found")["404"],
    "MethodNotAllowed": error_answers("method_not_allowed")["405"],
}


@cache
def api_document() -> dict[str, Any]:
    """The OpenAPI document (built once per process)."""
    with open(folder_paths.base_path() / "pyproject.toml", "rb") as project_file:
        version = tomllib.load(project_file)["project"]["version"]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Digit recogniser",
            "version": version,
            "description": "Recognises handwritten digits (0-9). Every error is JSON of one"
                           " shape, `{\"error\": {\"status\", \"code\", \"message\"}}`; a path"
                           " that does not exist answers 404 `not_found`, a method an endpoint"
                           " does not take 405 `method_not_allowed`.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [{"name": tag} for tag in TAGS],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "responses": GENERAL_ANSWERS,
            "securitySchemes": {"bearerKey": {
                "type": "http", "scheme": "bearer",
                "description": "`DIGITS_API_KEY` for /predict, /model, /metrics and /admin/;"
                               " `DIGITS_ADMIN_KEY` for /admin/ and `DIGITS_METRICS_KEY` for"
                               " /metrics, where they are set"}},
        },
    }


@bp.get("/openapi.json")
def document():
    """The OpenAPI document of this API."""
    return jsonify(api_document())
