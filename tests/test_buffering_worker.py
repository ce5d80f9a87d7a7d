"""Where a buffered request ends (the framing rules the worker's event loop reads by), and
how the loop sends an answer without waiting for the client."""

from __future__ import annotations

import socket
import time

import pytest

from web.buffering_worker import (
    ACCEPT_DEFER_MAX,
    IN_LOOP_MAX_BYTES,
    MAX_HEAD_BYTES,
    QueuedWrites,
    accept_deferral,
    chunked_body_end,
    handled_in_loop,
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


def small_socket_pair() -> tuple[socket.socket, socket.socket]:
    """Two connected sockets whose buffers hold only a few kilobytes."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return ours, theirs


def read_all(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += sock.recv(65536)
    return data


def test_queued_writes_send_what_fits_and_keep_the_rest_in_order():
    ours, theirs = small_socket_pair()
    with ours, theirs:
        writes = QueuedWrites(ours)
        ours.setblocking(True)  # as gunicorn sets it: the writes must not wait all the same
        answer = bytes(range(256)) * 2000  # far more than both buffers hold
        writes.sendall(answer[:1000])
        writes.sendall(answer[1000:])
        started = time.perf_counter()
        assert not writes.flush()
        assert time.perf_counter() - started < 1.0
        assert 0 < len(writes.pending) < len(answer)
        received = b""
        while not writes.flush():
            received += theirs.recv(65536)
        received += read_all(theirs, len(answer) - len(received))
        assert received == answer


def test_queued_writes_send_an_answer_in_one_call():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        writes = QueuedWrites(ours)
        writes.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
        writes.sendall(b"{}")
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing is sent before the flush
            theirs.recv(1024)
        assert writes.flush() and read_all(theirs, 21) == b"HTTP/1.1 200 OK\r\n\r\n{}"


def test_queued_writes_send_a_file_region_through_the_queue(tmp_path):
    path = tmp_path / "static.js"
    path.write_bytes(b"x" * 10 + b"the part" + b"y" * 10)
    ours, theirs = small_socket_pair()
    with ours, theirs, path.open("rb") as file:
        writes = QueuedWrites(ours)
        assert writes.sendfile(file, offset=10, count=8) == 8
        assert writes.flush()
        assert read_all(theirs, 8) == b"the part"


def test_queued_writes_hand_everything_else_to_the_socket():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        writes = QueuedWrites(ours)
        assert writes.fileno() == ours.fileno()
        assert writes.send(b"abc") == 3 and writes.flush() and read_all(theirs, 3) == b"abc"


def test_the_loop_handles_probes_and_single_small_files_and_hands_on_the_rest():
    probe = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    one = (b"POST /predict HTTP/1.1\r\nContent-Length: 300\r\n\r\n" + b'filename="a.png"'
           + b"x" * 284)
    assert handled_in_loop(probe) and handled_in_loop(one)
    assert not handled_in_loop(one + b'filename="b.png"')  # several files
    assert not handled_in_loop(one + b"x" * IN_LOOP_MAX_BYTES)  # a large upload
