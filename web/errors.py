"""One JSON error shape for the whole API.

Every error a client can get looks like::

    {"error": {"status": 400, "code": "not_an_image", "message": "..."}}

``ERROR_CODES`` is the documented list of codes and their HTTP statuses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from http import HTTPStatus

from flask import Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import folder_paths
from imaging.errors import PreprocessError

ERROR_CODES: dict[str, tuple[int, str]] = {
    "missing_file": (400, "the request has no multipart file part named 'file'"),
    "empty_filename": (400, "the file part was sent without a file name (no file chosen)"),
    "not_an_image": (400, "the bytes are not a complete image Pillow can read"),
    "bad_request": (400, "the request is malformed"),
    "unauthorized": (401, "the endpoint needs the API key as 'Authorization: Bearer <key>'"),
    "forbidden": (403, "the client may not use this endpoint"),
    "not_found": (404, "no such endpoint"),
    "method_not_allowed": (405, "the endpoint does not accept this HTTP method"),
    "request_timeout": (408, "the request body stopped arriving before it was whole"),
    "payload_too_large": (413, "the request body is larger than the configured limit"),
    "image_too_large": (413, "the image is over a configured limit: pixels, width, height or"
                             " decoded bytes"),
    "too_many_files": (413, "the request has more file parts than the configured limit"),
    "no_digit_found": (422, "the image holds no ink that could be a digit"),
    "invalid_weights": (422, "the new weights are missing, corrupt or do not match their card;"
                             " the old model keeps serving"),
    "rate_limited": (429, "the client sent more requests than the limit allows; see Retry-After"),
    "not_ready": (503, "the model is not loaded and warmed yet, or cannot serve now"),
    "internal_error": (500, "the server failed; the error was logged"),
}

# An over-limit body is read and thrown away up to this size before answering 413,
# so the client sees the JSON answer instead of a connection reset mid-upload.
MAX_DISCARDED_BODY = 64 * 1024 * 1024

# Werkzeug's HTTP errors by status, mapped onto the documented codes.
_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 408: "request_timeout", 413: "payload_too_large",
               429: "rate_limited"}


class ApiError(Exception):
    """An error a view raises to answer with the JSON error shape."""

    def __init__(self, code: str, message: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        self.status, default_message = ERROR_CODES[code]
        self.code = code
        self.message = message or default_message
        self.headers = dict(headers or {})  # sent with the answer, e.g. WWW-Authenticate
        super().__init__(self.message)


def error_body(status: int, code: str, message: str) -> dict:
    """The JSON error shape as a dict."""
    return {"error": {"status": status, "code": code, "message": message}}


def error_body_of(error: Exception) -> dict:
    """The JSON error shape for ``error``, for one item of an answer that holds several."""
    api_error = api_error_from(error)
    return error_body(api_error.status, api_error.code, api_error.message)


def relative_paths(message: str) -> str:
    """``message`` with the service's own folder cut from every path in it.

    A client learns a file's name inside the service (``weights/x.json``),
    never where the service is installed; the server log keeps the full text.
    """
    return message.replace(f"{folder_paths.base_path()}{os.sep}", "")


def error_response(error: ApiError):
    response = jsonify(error_body(error.status, error.code, relative_paths(error.message)))
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def api_error_from(error: Exception) -> ApiError:
    """Translate any exception into the ``ApiError`` it should be answered with."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, PreprocessError):
        return ApiError(error.code, str(error))
    if isinstance(error, HTTPException) and error.code in _HTTP_CODES:
        return ApiError(_HTTP_CODES[error.code], error.description)
    if isinstance(error, HTTPException):
        api_error = ApiError("bad_request", error.description)
        api_error.status = error.code or 500
        return api_error
    return ApiError("internal_error")


def raw_error_response(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 answer in the JSON error shape, for a server writing to a socket.

    gunicorn answers requests it cannot parse (a bad Content-Length, a broken
    chunk) before the app sees them; ``gunicorn.conf.py`` has it write this.
    """
    code = _HTTP_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
    body = json.dumps(error_body(status, code, message or ERROR_CODES[code][1])).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Content-Type-Options: nosniff\r\n\r\n")
    return head.encode("latin-1") + body


def discard_request_body(limit: int = MAX_DISCARDED_BODY) -> None:
    """Read and drop what is left of the request body, at most ``limit`` bytes."""
    environ = request.environ
    length = request.content_length
    if length is None and not environ.get("wsgi.input_terminated"):
        return  # no length and no end marker: reading could block forever
    remaining = limit if length is None else min(length, limit)
    stream = environ["wsgi.input"]
    while remaining > 0:
        chunk = stream.read(min(remaining, 64 * 1024))
        if not chunk:
            break
        remaining -= len(chunk)


def answer_error(error: Exception) -> ApiError:
    """The ``ApiError`` to answer ``error`` with, once the work every error answer needs is done.

    A server failure is logged (to the server log only) with the request's id;
    an error a view raised on purpose (``not_ready``) is not. A body refused as
    too large was never read, so it is read and dropped now; a body already read
    is left alone, since reading past its end would wait for bytes that never
    come. The answer is kept in ``g.api_error`` for the request's metrics and log.
    """
    api_error = api_error_from(error)
    g.api_error = api_error
    if isinstance(error, RequestEntityTooLarge):
        discard_request_body()
    if api_error.status >= 500 and not isinstance(error, ApiError):
        current_app.logger.exception("unhandled error in request %s", g.get("request_id", "-"),
                                     exc_info=error)
    return api_error


def init_app(app: Flask) -> None:
    """Answer every error raised outside the HTML page with the JSON error shape."""

    @app.errorhandler(Exception)
    def handle_any(error: Exception):
        response = error_response(answer_error(error))
        if isinstance(error, HTTPException) and error.code == 405:
            # A 405 names the methods the endpoint does take (RFC 9110).
            response.headers["Allow"] = dict(error.get_headers()).get("Allow", "")
        return response
