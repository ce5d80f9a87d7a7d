"""Malformed framing over real sockets: every broken body is a 4xx in the JSON error shape
(the page answers its own HTML page with that status), never a 500, under Werkzeug's server
and under gunicorn."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest
from helpers import multipart_file, running_gunicorn, served_in_thread

BODY, CONTENT_TYPE = multipart_file(b"\x89PNG\r\n\x1a\n" + b"x" * 100)


def head(path: str, *lines: str) -> bytes:
    return ("\r\n".join([f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *lines]) + "\r\n\r\n").encode()


FRAMINGS = {
    "bad chunk size": lambda p: head(p, f"Content-Type: {CONTENT_TYPE}",
                                     "Transfer-Encoding: chunked") + b"zz\r\nabc\r\n0\r\n\r\n",
    "chunk cut short": lambda p: head(p, f"Content-Type: {CONTENT_TYPE}",
                                      "Transfer-Encoding: chunked") + b"100\r\nabc",
    "wrong boundary": lambda p: head(p, "Content-Type: multipart/form-data; boundary=nope",
                                     f"Content-Length: {len(BODY)}") + BODY,
    "no boundary": lambda p: head(p, "Content-Type: multipart/form-data",
                                  f"Content-Length: {len(BODY)}") + BODY,
    "truncated multipart": lambda p: head(p, f"Content-Type: {CONTENT_TYPE}",
                                          f"Content-Length: {len(BODY) // 2}")
                                     + BODY[: len(BODY) // 2],
    "body shorter than its length": lambda p: head(p, f"Content-Type: {CONTENT_TYPE}",
                                                   f"Content-Length: {len(BODY) + 50}") + BODY,
    "content length not a number": lambda p: head(p, f"Content-Type: {CONTENT_TYPE}",
                                                  "Content-Length: abc") + BODY,
    "negative content length": lambda p: head(p, f"Content-Type: {CONTENT_TYPE}",
                                              "Content-Length: -5") + BODY,
}
ROUTES = ("/predict", "/", "/admin/reload")


def exchange(url: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw``, half-close, read the first answer: status, headers, body."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    header_block, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body[: _length(data)]


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 1 << 30


def assert_client_error(status: int, headers: dict[str, str], body: bytes, route: str) -> None:
    assert 400 <= status < 500, body[:200]
    if route == "/":
        assert headers["content-type"].startswith("text/html")
        return
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["status"] == status and error["code"]


@pytest.fixture(scope="module")
def dev_server():
    from app import create_app

    with served_in_thread(create_app({"DEVICE": "cpu", "BACKEND": "eager"})) as url:
        yield url


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("framing", FRAMINGS)
def test_malformed_framing_under_werkzeug(dev_server, framing, route):
    assert_client_error(*exchange(dev_server, FRAMINGS[framing](route)), route)


@pytest.mark.slow
def test_malformed_framing_under_gunicorn():
    with running_gunicorn({"DIGITS_BACKEND": "eager", "DIGITS_WORKERS": "1"}) as url:
        for framing, make in FRAMINGS.items():
            for route in ROUTES:
                status, headers, body = exchange(url, make(route))
                if status < 400 or status >= 500:
                    pytest.fail(f"{framing} on {route}: {status} {body[:200]!r}")
                # gunicorn itself refuses a bad Content-Length, in the JSON shape too
                if headers["content-type"] == "application/json" or route != "/":
                    assert json.loads(body)["error"]["status"] == status
