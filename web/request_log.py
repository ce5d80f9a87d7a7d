"""Request ids and one JSON log line per request.

Every request gets an id: the client's ``X-Request-ID`` when it is a sane
token (``REQUEST_ID_PATTERN``), otherwise 16 random bytes in hex. It is sent
back as ``X-Request-ID`` on every answer, error answers included, and error
logs name it. Once a request is answered, one line of JSON goes to the
``digits.access`` logger::

    {"time": "...", "request_id": "...", "method": "POST", "path": "/predict",
     "status": 200, "latency_ms": 4.21, "body_bytes": 812,
     "image_sizes": [[160, 160]], "predictions": [7]}

``error`` (the error code) is added to error answers; ``image_sizes`` (width
and height of each decoded upload) and ``predictions`` appear when the
request got that far. The upload's bytes, the query string and any header
(keys included) are never logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, has_request_context, request

ACCESS_LOGGER = "digits.access"
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_ENVIRON = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")  # its WSGI name
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")

log = logging.getLogger(ACCESS_LOGGER)
# JSON's escaping of one string (the C version where there is one), with its quotes.
_json_string = json.encoder.encode_basestring_ascii


def init_app(app: Flask) -> None:
    """Give every request an id, answer with it, and log each request as one JSON line."""
    if not log.handlers:
        # The lines are the message alone, for log shippers to parse, apart from the
        # server's own log.
        log.addHandler(LINE_HANDLER)
        log.setLevel(logging.INFO)
        log.propagate = False
    app.before_request(assign_request_id)
    app.after_request(log_request)
    app.extensions.setdefault("stage_wrappers", []).append(noting_stage)


class StderrLineHandler(logging.Handler):
    """Writes each record's message as one line to ``sys.stderr`` as it is when the line is
    logged (a test may have replaced it).

    The message is the whole line, so there is nothing to format; one write of the
    line is one flush, stderr being line-buffered.
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.write_line(record.msg)

    def write_line(self, line: str) -> None:
        try:
            with self.lock:  # the worker's threads write whole lines, never interleaved
                sys.stderr.write(f"{line}\n")
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": line}))


# The access log's own handler: while it is the logger's only handler and nothing filters
# the lines, they are written directly (``write_log_line``).
LINE_HANDLER = StderrLineHandler()


def write_log_line(line: str) -> None:
    """Log one line to ``digits.access``.

    With the logger as ``init_app`` set it up, the line goes straight to its
    handler: a ``LogRecord`` (the time, the process, the thread and their names,
    looked up for every request) was a third of the request log's cost and the
    line needs none of it. A logger configured otherwise gets a record as usual.
    """
    if not log.isEnabledFor(logging.INFO):
        return
    if (log.handlers == [LINE_HANDLER] and not log.filters and not LINE_HANDLER.filters
            and LINE_HANDLER.level <= logging.INFO):
        LINE_HANDLER.write_line(line)
    else:
        # A record made directly: the line needs no caller's file and line, which
        # logging.info would find by walking the stack on every request.
        log.handle(log.makeRecord(ACCESS_LOGGER, logging.INFO, __name__, 0, line, None, None))


def request_id_from(header: str | None) -> str:
    """The client's request id when it is a sane token, else a new one."""
    if header and REQUEST_ID_PATTERN.fullmatch(header):
        return header
    return os.urandom(16).hex()


class _SecondStamps:
    """ISO 8601 UTC timestamps in milliseconds, the date and time formatted once a second."""

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def __call__(self) -> str:
        now = time.time()
        second = int(now)
        if second != self.second:
            self.second, self.prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        return f"{self.prefix}.{int((now - second) * 1000):03d}+00:00"


timestamp = _SecondStamps()


def assign_request_id() -> None:
    # read from the environ: the headers' lookup builds an exception when a header is missing
    noted = vars(g._get_current_object())
    noted["request_id"] = request_id_from(request.environ.get(REQUEST_ID_ENVIRON))
    noted["request_started"] = time.perf_counter()


def log_request(response: Response) -> Response:
    """Send the id back and write the request's log line (error answers too)."""
    request_id = vars(g._get_current_object()).get("request_id")
    if request_id is None:
        return response
    response.headers.add(REQUEST_ID_HEADER, request_id)
    write_log_line(log_line(response))
    return response


def log_line(response: Response) -> str:
    """What the log says about this request, as one line of JSON.

    The line is put together from its parts rather than by ``json.dumps`` of a
    dict, which took a fifth of the logging's cost per request; the texts a
    client chose (method, path) go through JSON's own string escaping.
    """
    # The objects behind the proxies, looked up once rather than on every attribute.
    noted = vars(g._get_current_object())
    current = request._get_current_object()
    latency_ms = (time.perf_counter() - noted["request_started"]) * 1000
    # request ids are tokens of REQUEST_ID_PATTERN or hex: nothing in them needs escaping
    line = (f'{{"time":"{timestamp()}","request_id":"{noted["request_id"]}",'
            f'"method":{_json_string(current.method)},"path":{_json_string(current.path)},'
            f'"status":{response.status_code},"latency_ms":{latency_ms:.3f},'
            f'"body_bytes":{current.content_length or 0}')
    api_error = noted.get("api_error")
    if api_error is not None:
        line += f',"error":"{api_error.code}"'
    if "image_sizes" in noted:
        line += ',"image_sizes":[' + ",".join(f"[{width},{height}]"
                                               for width, height in noted["image_sizes"]) + "]"
    if "predictions" in noted:
        line += ',"predictions":[' + ",".join(str(int(digit))
                                              for digit in noted["predictions"]) + "]"
    return line + "}"


def _note_image(noted: dict[str, Any], image: Any) -> None:
    noted.setdefault("image_sizes", []).append(image.size)


def _note_prediction(noted: dict[str, Any], reading: Any) -> None:
    # The upload's answer as the API's ``prediction`` gives it, not every candidate digit.
    noted.setdefault("predictions", []).append(reading.surest.prediction.digit)


# What the log line takes from a stage's result.
_NOTES: dict[str, Callable[[dict[str, Any], Any], None]] = {"decode": _note_image,
                                                             "read": _note_prediction}


def noting_stage(name: str, stage: Callable[..., Any]) -> Callable[..., Any]:
    """A ``StageWrapper`` noting, for the log line, what the decode and read stages give."""
    note = _NOTES.get(name)
    if note is None:
        return stage

    def noted(*args: Any, **kwargs: Any) -> Any:
        result = stage(*args, **kwargs)
        if has_request_context():
            note(vars(g._get_current_object()), result)
        return result

    return noted
