"""Where a buffered request ends: the framing rules the worker's event loop reads by."""

from __future__ import annotations

import pytest

from web.buffering_worker import (
    ACCEPT_DEFER_MAX,
    MAX_HEAD_BYTES,
    accept_deferral,
    chunked_body_end,
    request_end,
)

LIMIT = 1000


def test_a_head_without_its_blank_line_is_not_whole():
    assert request_end(b"GET /healthz HTTP/1.1\r\nHost: x\r\n", LIMIT) is None


def test_a_request_without_a_body_ends_with_its_head():
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    assert request_end(request + b"GET /next", LIMIT) == len(request)


def test_a_body_of_declared_length_must_arrive_whole():
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 10\r\n\r\n"
    assert request_end(head + b"12345", LIMIT) is None
    assert request_end(head + b"1234567890", LIMIT) == len(head) + 10


def test_an_oversized_declared_body_is_handed_on_at_its_head():
    """The app answers 413 from the header without waiting for the body."""
    head = b"POST /predict HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"
    assert request_end(head, LIMIT) == len(head)


def test_an_endless_head_is_handed_on_for_gunicorn_to_refuse():
    assert request_end(b"GET /" + b"a" * MAX_HEAD_BYTES, LIMIT) == MAX_HEAD_BYTES + 5


@pytest.mark.parametrize(("body", "end"), [
    (b"5\r\nhello\r\n0\r\n\r\n", 15),
    (b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\n\r\nnext", 29),
    (b"5\r\nhello\r\n0\r\nTrailer: x\r\n\r\n", 27),
    (b"5\r\nhel", None),
    (b"5\r\nhello\r\n0\r\n", None),
    (b"zz\r\nhello\r\n", 0),  # unreadable framing: handed on, gunicorn answers 400
])
def test_chunked_bodies_end_after_their_last_chunk(body, end):
    assert chunked_body_end(body, 0) == end


def test_a_chunked_request_ends_after_its_last_chunk():
    head = b"POST /predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert request_end(head + b"3\r\nabc\r\n", LIMIT) is None
    assert request_end(head + b"3\r\nabc\r\n0\r\n\r\n", LIMIT) == len(head) + 13


def test_only_a_worker_holding_connections_leaves_new_ones_to_the_others():
    assert accept_deferral(0) == 0
    assert 0 < accept_deferral(1) < accept_deferral(2)
    assert accept_deferral(1000) == ACCEPT_DEFER_MAX
