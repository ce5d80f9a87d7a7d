"""web/request_log.py: request ids on every answer and one JSON log line per request."""

from __future__ import annotations

import json
import logging

import pytest
from helpers import encode_image, multipart_file, paper_digit, upload

from web.request_log import ACCESS_LOGGER, LINE_HANDLER, request_id_from


@pytest.fixture
def log_lines(caplog):
    """The JSON lines the access logger writes while the test runs."""
    logger = logging.getLogger(ACCESS_LOGGER)
    # caplog.handler is another handler in the teardown phase: remove the one added here
    handler = caplog.handler
    logger.addHandler(handler)
    try:
        yield lambda: [json.loads(record.getMessage()) for record in caplog.records
                       if record.name == ACCESS_LOGGER]
    finally:
        logger.removeHandler(handler)


def test_a_sane_request_id_is_kept_and_returned(client):
    answer = client.get("/model", headers={"X-Request-ID": "lb-7f3a.2_x"})
    assert answer.headers["X-Request-ID"] == "lb-7f3a.2_x"


@pytest.mark.parametrize("sent", ["", "has space", "x" * 129, "semi;colon", "é", "a\tb"])
def test_an_odd_request_id_is_replaced(sent):
    made = request_id_from(sent)
    assert made != sent
    assert len(made) == 32 and int(made, 16) >= 0


def test_every_answer_has_an_id_errors_included(client):
    ids = set()
    for answer in (client.get("/healthz"), client.get("/nowhere"), client.get("/predict"),
                   upload(client, b"not an image"), client.post("/predict", data={})):
        ids.add(answer.headers["X-Request-ID"])
    assert len(ids) == 5  # a fresh one for each


def test_one_json_line_per_request(client, log_lines, heldout_digits):
    images, labels = heldout_digits
    png = encode_image(paper_digit(images[3]))
    answer = upload(client, png, query="?input_image=1")
    (line,) = log_lines()
    assert line["request_id"] == answer.headers["X-Request-ID"]
    assert line["method"] == "POST"
    assert line["path"] == "/predict"
    assert line["status"] == 200
    assert line["latency_ms"] > 0
    assert line["body_bytes"] == answer.request.content_length > len(png)
    assert line["image_sizes"] == [[160, 160]]
    assert line["predictions"] == [int(labels[3])]
    assert "error" not in line


def test_the_default_handler_writes_each_line_whole_to_stderr(client, capsys, monkeypatch,
                                                               heldout_digits):
    # The logger as the service sets it up (pytest adds capturing handlers to loggers):
    # the lines take the direct path to stderr.
    monkeypatch.setattr(logging.getLogger(ACCESS_LOGGER), "handlers", [LINE_HANDLER])
    images, labels = heldout_digits
    answers = [upload(client, encode_image(paper_digit(images[index]))) for index in range(3)]
    lines = [json.loads(text) for text in capsys.readouterr().err.splitlines()
             if text.startswith('{"time"')]
    assert [line["request_id"] for line in lines] == [answer.headers["X-Request-ID"]
                                                      for answer in answers]
    assert [line["predictions"] for line in lines] == [[int(label)] for label in labels[:3]]


def test_odd_paths_and_methods_stay_valid_json(client, log_lines):
    """The line is put together by hand: what a client chose must still be escaped."""
    path = '/no"where\\x/\u00e9\u2028'
    client.get(path)
    client.open("/healthz", method="PROPFIND")
    first, second = log_lines()
    assert first["path"] == path and first["status"] == 404
    assert second["method"] == "PROPFIND" and second["status"] == 405


def test_an_error_line_names_its_code_and_no_bytes_or_keys(make_app, log_lines):
    client = make_app(ADMIN_KEY="top-secret-key").test_client()
    secret_bytes = b"GIF89a-secret-upload-bytes"
    upload(client, secret_bytes, filename="secret-name.gif")
    client.post("/admin/reload", headers={"Authorization": "Bearer top-secret-key-wrong"})
    first, second = log_lines()
    assert first["status"] == 400 and first["error"] == "not_an_image"
    assert "image_sizes" not in first and "predictions" not in first
    assert second["status"] == 403 and second["error"] == "forbidden"
    text = json.dumps([first, second])
    for secret in ("secret-upload", "secret-name", "top-secret"):
        assert secret not in text


def test_server_errors_are_logged_with_the_request_id(make_app, caplog, monkeypatch,
                                                      heldout_digits):
    app = make_app()
    images, _ = heldout_digits

    def broken_network(*_args):
        raise RuntimeError("the network broke")

    monkeypatch.setattr(app.extensions["chain"], "predict", broken_network)
    body, content_type = multipart_file(encode_image(paper_digit(images[0])))
    with caplog.at_level(logging.ERROR, logger=app.logger.name):
        answer = app.test_client().post("/predict", data=body, content_type=content_type,
                                        headers={"X-Request-ID": "trace-500"})
    assert answer.status_code == 500
    assert answer.headers["X-Request-ID"] == "trace-500"
    (record,) = [r for r in caplog.records if r.name == app.logger.name]
    assert "trace-500" in record.getMessage()
