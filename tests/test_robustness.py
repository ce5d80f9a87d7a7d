"""Under real gunicorn: stalled clients, graceful shutdown and no debug mode."""

from __future__ import annotations

import io
import json
import signal
import socket
import time
from urllib.parse import urlsplit

import pytest
import urllib3
from helpers import encode_image, gunicorn_server, multipart_file, paper_digit, post_file_over_http
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

import folder_paths

pytestmark = pytest.mark.slow

SERVER = {"DIGITS_BACKEND": "eager", "DIGITS_WORKERS": "2"}


def connect(url: str) -> socket.socket:
    address = urlsplit(url)
    return socket.create_connection((address.hostname, address.port), timeout=30)


def stall(url: str, count: int) -> list[socket.socket]:
    """``count`` connections that stop half-way: half in their headers, half in their body."""
    stalled = []
    for index in range(count):
        sock = connect(url)
        if index % 2:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/"
                         b"form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n")
        else:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
        stalled.append(sock)
    return stalled


def test_fifty_stalled_connections_leave_health_and_predict_answering(heldout_digits):
    """The default workers read requests in their event loop: stalled ones hold no thread."""
    image = encode_image(paper_digit(heldout_digits[0][0]))
    # the stalled connections stay open for the whole test, not cut at the body deadline
    with gunicorn_server({**SERVER, "DIGITS_BODY_TIMEOUT": "60"}) as (url, _):
        stalled = stall(url, 50)
        try:
            time.sleep(1)
            http = urllib3.PoolManager()
            for _ in range(5):
                started = time.perf_counter()
                assert http.request("GET", f"{url}/health", timeout=5, retries=False).status == 200
                assert time.perf_counter() - started < 1.0
                started = time.perf_counter()
                status, _, body = post_file_over_http(url, "/predict", image)
                assert status == 200 and json.loads(body)["prediction"] == heldout_digits[1][0]
                assert time.perf_counter() - started < 1.0
        finally:
            for sock in stalled:
                sock.close()


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_a_body_that_stops_arriving_is_answered_408(heldout_digits):
    with gunicorn_server({**SERVER, "DIGITS_BODY_TIMEOUT": "1"}) as (url, _):
        sock = connect(url)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 100000\r\n\r\n--b\r\n")
        started = time.perf_counter()
        status, body = read_answer(sock)
        sock.close()
        assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
        assert time.perf_counter() - started < 5


def test_a_request_whose_headers_stop_arriving_is_answered_408():
    with gunicorn_server({**SERVER, "DIGITS_BODY_TIMEOUT": "1"}) as (url, _):
        sock = connect(url)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
        started = time.perf_counter()
        status, body = read_answer(sock)
        sock.close()
        assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
        assert time.perf_counter() - started < 5


def test_a_slow_upload_and_expect_100_continue_are_answered(heldout_digits):
    """Bytes that trickle in, and a client that waits for "100 Continue" (as curl does)."""
    body, content_type = multipart_file(encode_image(paper_digit(heldout_digits[0][0])))
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n").encode()
    with gunicorn_server(SERVER) as (url, _):
        sock = connect(url)
        for index in range(0, len(head) + 2, 7):
            sock.sendall((head + b"\r\n")[index:index + 7])
            time.sleep(0.01)
        sock.sendall(body)
        status, answer = read_answer(sock)
        sock.close()
        assert status == 200 and json.loads(answer)["prediction"] == heldout_digits[1][0]

        sock = connect(url)
        sock.sendall(head + b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        status, answer = read_answer(sock)
        sock.close()
        assert status == 200 and json.loads(answer)["prediction"] == heldout_digits[1][0]


def explained_batch_request(image: bytes, files: int = 64) -> bytes:
    """A request of ``files`` copies of ``image``, each to be explained."""
    boundary, body = encode_multipart(MultiDict(
        [("file", FileStorage(io.BytesIO(image), f"{index}.png")) for index in range(files)]))
    return (f"POST /predict?explain=1&input_image=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Connection: close\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def connect_reading_little(url: str) -> socket.socket:
    """A connection whose client takes in a few kilobytes at most until it reads."""
    address = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect((address.hostname, address.port))
    return sock


def test_a_long_request_leaves_the_event_loop_answering_others(heldout_digits):
    """One worker: 64 explained digits (about a second) go to a thread; a digit and the
    probes sent meanwhile are answered by the event loop at once."""
    image = encode_image(paper_digit(heldout_digits[0][0]))
    with gunicorn_server({**SERVER, "DIGITS_WORKERS": "1"}) as (url, _):
        long = connect(url)
        long.sendall(explained_batch_request(image))
        time.sleep(0.1)
        http = urllib3.PoolManager()
        for _ in range(3):
            started = time.perf_counter()
            assert http.request("GET", f"{url}/healthz", timeout=5, retries=False).status == 200
            status, _, body = post_file_over_http(url, "/predict", image)
            assert status == 200 and json.loads(body)["prediction"] == heldout_digits[1][0]
            assert time.perf_counter() - started < 0.4
        status, body = read_answer(long)
        long.close()
        assert status == 200 and len(json.loads(body)["results"]) == 64


def test_a_client_that_does_not_read_its_answer_holds_up_no_one(heldout_digits):
    """One worker: a static file waits for a client that reads little, and others are
    answered meanwhile; the client gets it whole when it reads."""
    image = encode_image(paper_digit(heldout_digits[0][0]))
    script = (folder_paths.base_path() / "static" / "app.js").read_bytes()
    with gunicorn_server({**SERVER, "DIGITS_WORKERS": "1", "DIGITS_BODY_TIMEOUT": "60"}) as (
            url, _):
        slow = connect_reading_little(url)
        slow.sendall(b"GET /static/app.js HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Connection: close\r\n\r\n")
        time.sleep(0.5)
        for _ in range(3):
            started = time.perf_counter()
            status, _, body = post_file_over_http(url, "/predict", image)
            assert status == 200 and json.loads(body)["prediction"] == heldout_digits[1][0]
            assert time.perf_counter() - started < 1.0
        status, body = read_answer(slow)
        slow.close()
        assert status == 200 and body == script


def test_sigterm_answers_the_request_in_flight(heldout_digits):
    body, content_type = multipart_file(encode_image(paper_digit(heldout_digits[0][0])))
    with gunicorn_server(SERVER) as (url, master):
        sock = connect(url)
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
                     .encode() + body[:100])
        time.sleep(0.5)  # the worker is reading the body now
        master.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(body[100:])
        status, answer = read_answer(sock)
        sock.close()
        assert status == 200 and json.loads(answer)["prediction"] == heldout_digits[1][0]
        master.wait(timeout=30)
        assert master.returncode == 0


def test_sigterm_answers_the_connections_still_waiting_to_be_accepted(heldout_digits):
    """Requests sent on twenty new connections just before SIGTERM are all answered."""
    body, content_type = multipart_file(encode_image(paper_digit(heldout_digits[0][0])))
    request = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
               f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
    with gunicorn_server(SERVER) as (url, master):
        waiting = [connect(url) for _ in range(20)]
        for sock in waiting:
            sock.sendall(request)
        master.send_signal(signal.SIGTERM)
        answers = [read_answer(sock) for sock in waiting]
        for sock in waiting:
            sock.close()
        assert [status for status, _ in answers] == [200] * 20
        master.wait(timeout=30)


def test_no_debug_mode_under_gunicorn_whatever_the_environment_says():
    with gunicorn_server({**SERVER, "DIGITS_DEBUG": "1", "FLASK_DEBUG": "1"}) as (url, _):
        http = urllib3.PoolManager()
        console = http.request("GET", f"{url}/console", retries=False)
        assert console.status == 404 and console.json()["error"]["code"] == "not_found"
        resource = http.request("GET", f"{url}/?__debugger__=yes&cmd=resource&f=debugger.js",
                                retries=False)
        # the Werkzeug debugger would answer its script; the app answers its page
        assert resource.headers["Content-Type"].startswith("text/html")
        assert resource.data.lstrip().lower().startswith(b"<!doctype html")
