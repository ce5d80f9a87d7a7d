"""The real production server: gunicorn on 127.0.0.1, a free port, real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import time
from collections import Counter
from urllib.parse import urlsplit

import pytest
import urllib3
from helpers import (
    children_of,
    encode_image,
    gunicorn_server,
    paper_digit,
    post_file_over_http,
    process_holding,
    running_gunicorn,
    wait_for_workers,
)

pytestmark = pytest.mark.slow  # a real gunicorn server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """gunicorn with two workers, started from an unrelated working directory."""
    env = {"DIGITS_DEVICE": "cpu", "DIGITS_WORKERS": "2", "DIGITS_BASE_PATH": None}
    with running_gunicorn(env, cwd=tmp_path_factory.mktemp("elsewhere")) as url:
        yield url


def post_file(url: str, data: bytes, filename: str = "digit.png") -> urllib3.BaseHTTPResponse:
    return urllib3.request("POST", f"{url}/predict", fields={"file": (filename, data)},
                           retries=False, timeout=30)


def test_gunicorn_predicts_a_real_png(server, heldout_digits):
    images, labels = heldout_digits
    response = post_file(server, encode_image(paper_digit(images[42])))
    assert response.status == 200
    assert response.json()["prediction"] == labels[42]


def test_gunicorn_answers_an_oversized_body_with_json_413(server):
    # Unless the server reads the rest of the upload, a client that sends the whole
    # body before reading sees a broken pipe or a reset connection, not the 413.
    status, content_type, text = post_file_over_http(
        server, "/predict", os.urandom(12 * 1024 * 1024), "huge.png")
    assert status == 413
    assert content_type == "application/json"
    assert json.loads(text)["error"]["code"] == "payload_too_large"


def test_each_worker_uses_its_share_of_the_cores(server):
    cores = len(os.sched_getaffinity(0))
    for _ in range(4):
        body = urllib3.request("GET", f"{server}/model", retries=False, timeout=30).json()
        assert body["threads"] == max(1, cores // 2)


def test_gunicorn_survives_hostile_uploads(server, heldout_digits):
    for data in (b"%PDF-1.4 nothing", b"<svg/>", b"\x89PNG\r\n\x1a\n\0\0"):
        assert post_file(server, data).status == 400
    images, labels = heldout_digits
    assert post_file(server, encode_image(paper_digit(images[5]))).json()["prediction"] == labels[5]


def test_new_connections_go_to_the_worker_holding_fewer(tmp_path):
    """Each worker is woken for a new connection; one already holding connections leaves it
    to the other for a moment, so kept-alive connections opened at once are shared out rather
    than all taken by whichever worker woke first."""
    env = {"DIGITS_DEVICE": "cpu", "DIGITS_WORKERS": "2",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with urllib3.PoolManager() as pool, gunicorn_server(env, http=pool) as (url, master):
        pool.clear()  # no connection of the start-up check stays open in a worker
        wait_for_workers(url, 2)
        time.sleep(0.2)  # for the workers to see those connections closed
        workers = children_of(master.pid)
        address = urlsplit(url)
        connections = [http.client.HTTPConnection(address.hostname, address.port, timeout=30)
                       for _ in range(8)]
        for connection in connections:  # all at once, as a load generator or a proxy does
            connection.connect()
        for connection in connections:
            connection.request("GET", "/healthz")
            assert connection.getresponse().read()
        holders = Counter(process_holding(connection, workers) for connection in connections)
        for connection in connections:
            connection.close()
    # 4 and 4, or 5 and 3 where a worker still counts a connection of the start-up checks
    assert len(holders) == 2 and min(holders.values()) >= 3 and None not in holders, holders
