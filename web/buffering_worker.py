"""A gunicorn worker that reads each request whole before a thread handles it.

gunicorn's ``gthread`` worker hands a connection to a thread as soon as its
first bytes arrive, and the thread then blocks reading the rest: a client that
sends half its headers, or a body that stops arriving, holds a thread, and a
few dozen of them hold every thread of every worker. Here the worker's event
loop reads each request (headers and body) from non-blocking sockets as its
bytes come, as a buffering proxy would, and only a complete request reaches a
thread. A stalled or slow client then costs a connection slot and its bytes so
far, never a thread, and one that sends nothing for ``BODY_TIMEOUT`` seconds is
answered 408 and closed.

Once whole, a small request (no body, or one file of at most
``IN_LOOP_MAX_BYTES``: a digit, a canvas, a probe) is handled in the event
loop itself, not handed to a thread and back: the two wake-ups of other
threads cost a 28x28 PNG's request a third of a millisecond at one
connection, and the threads would only take turns with the GIL. Its answer is
sent without blocking the loop (``QueuedWrites``): what the socket cannot take
at once waits and goes out as the client reads, and a client that takes none
of it for ``BODY_TIMEOUT`` seconds is cut off. Larger requests (big photos,
many files, which can take from tens of milliseconds to a second) go to the
thread pool, so that the loop keeps answering others meanwhile; so does every
request where the app gathers concurrent requests into batches
(``DYNAMIC_BATCHING``, which needs several in flight), and on TLS or HTTP/2
connections, which gunicorn serves itself.

    gunicorn -k web.buffering_worker.BufferingThreadWorker 'app:create_app()'

gunicorn.conf.py makes it the default.
"""

from __future__ import annotations

import errno
import re
import selectors
import socket
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

from web.errors import raw_error_response

RECEIVE_SIZE = 256 * 1024
# gunicorn's loop beats its heartbeat (a syscall) on every pass, several a request; once a
# second is plenty against a worker timeout of tens of seconds.
HEARTBEAT_SECONDS = 1.0
# Request lines and headers together beyond this are handed on unread; gunicorn's
# own limits (limit_request_line, limit_request_fields) then refuse them.
MAX_HEAD_BYTES = 64 * 1024
# Every worker is woken for each new connection, and the first to call accept gets it. A
# worker that already holds connections first leaves the listener alone for this long per
# connection it holds (at most ACCEPT_DEFER_MAX), so that one holding fewer takes it: without
# it the worker that woke first often took every connection of a client that opened a few at
# once (wrk's 2 or 8, a proxy's kept-alive pool), and the other workers' cores stayed idle.
ACCEPT_DEFER_PER_CONNECTION = 0.001
ACCEPT_DEFER_MAX = 0.005

# The event loop looks for new events after handling requests for this long: 64 connections
# opened at once were otherwise accepted over more than a second, one per pass of 30 ms.
PASS_SECONDS = 0.001

# How long a closed connection's client may take to close its side (gunicorn's own wait).
LINGER_SECONDS = 2.0
# What is read from such a client before its connection is closed all the same.
LINGER_MAX_BYTES = 64 * 1024

# The largest request the event loop handles itself, if it uploads at most one file: a
# 280x280 canvas PNG is 13 KB. A batch of 64 explained digits (30 KB) took a second.
IN_LOOP_MAX_BYTES = 16 * 1024

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([0-9]+)[ \t]*(?=\r\n)", re.I)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding[ \t]*:[^\r\n]*chunked", re.I)
_EXPECT_CONTINUE = re.compile(rb"\r\nexpect[ \t]*:[ \t]*100-continue[ \t]*(?=\r\n)", re.I)


def handled_in_loop(request: bytes | bytearray) -> bool:
    """Whether a whole request is small enough for the event loop to handle itself."""
    return len(request) <= IN_LOOP_MAX_BYTES and request.count(b"filename=") <= 1


def received(sock: socket.socket) -> bytes | None:
    """What has arrived on a non-blocking socket: None while nothing has, and nothing (b"")
    once the client has closed its side or the connection failed."""
    try:
        return sock.recv(RECEIVE_SIZE)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def accept_deferral(held: int) -> float:
    """How long a worker holding ``held`` connections leaves a new one to the others."""
    return min(ACCEPT_DEFER_MAX, ACCEPT_DEFER_PER_CONNECTION * held)


def chunked_body_end(buffer: bytes | bytearray, start: int) -> int | None:
    """Where a chunked body that begins at ``start`` ends, or None while it is incomplete.

    A framing that cannot be read returns ``start``: the request goes on as it
    is, and gunicorn's parser answers it with a 400.
    """
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size_text = bytes(buffer[position:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return start
        if size == 0:
            trailers_end = buffer.find(b"\r\n\r\n", line_end)
            return None if trailers_end < 0 else trailers_end + 4
        position = line_end + 2 + size + 2
        if position > len(buffer):
            return None


def request_end(buffer: bytes | bytearray, max_body: int) -> int | None:
    """How many bytes of ``buffer`` make its first request, or None while more must come.

    A request whose head or declared body is over the limits ends where its
    head does: the app refuses it (413) before reading the rest.
    """
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return len(buffer) if len(buffer) > MAX_HEAD_BYTES else None
    body_start = head_end + 4
    head = bytes(buffer[:head_end + 2])
    if _CHUNKED.search(head):
        end = chunked_body_end(buffer, body_start)
        if end is None and len(buffer) - body_start > max_body:
            return body_start
        return end
    length = _CONTENT_LENGTH.search(head)
    if length is None:
        return body_start
    declared = int(length.group(1))
    if declared > max_body:
        return body_start
    end = body_start + declared
    return end if len(buffer) >= end else None


@dataclass
class PartRequest:
    """A request being read: its bytes so far and when the last of them came."""

    data: bytearray = field(default_factory=bytearray)
    last_byte: float = field(default_factory=time.monotonic)
    head_read: bool = False


class QueuedWrites:
    """A connection's socket while the event loop handles its request: every write waits in
    ``pending``, and ``flush`` sends as much of it as the socket takes without waiting,
    in one call (gunicorn writes an answer's head and body apart: two system calls where
    one does). Everything else is the socket's own."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    def sendall(self, data: bytes) -> None:
        self.pending += data

    def send(self, data: bytes, flags: int = 0) -> int:
        self.sendall(data)
        return len(data)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """The file's bytes through ``sendall``: the kernel's sendfile would wait for a
        client that reads slowly."""
        file.seek(offset)
        sent = 0
        while count is None or sent < count:
            chunk = file.read(RECEIVE_SIZE if count is None else min(RECEIVE_SIZE, count - sent))
            if not chunk:
                break
            self.sendall(chunk)
            sent += len(chunk)
        return sent

    def flush(self) -> bool:
        """Send what the socket takes of ``pending`` now; whether all of it has gone."""
        if self.pending:
            try:
                sent = self.sock.send(self.pending, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                sent = 0
            del self.pending[:sent]
        return not self.pending


class LingeringConn(TConn):
    """A connection whose graceful close waits for the client in the worker's event loop.

    gunicorn closes a connection after a "Connection: close" answer as RFC 9112
    asks: it sends its FIN, then reads what the client still sends until the
    client closes too, for up to ``LINGER_SECONDS``, so that unread bytes do not
    make the kernel reset the connection and cut the answer short. It waited on
    the event loop's own thread: a client that neither read nor closed held the
    whole worker for two seconds, every request of every other client included.
    """

    def __init__(self, worker: BufferingThreadWorker, *args: Any) -> None:
        super().__init__(*args)
        self.worker = worker

    def close(self, graceful: bool = False) -> None:
        if not graceful:
            super().close()
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            super().close()
            return
        self.worker.linger(self)


@dataclass
class Answer:
    """An answer the client has not taken whole yet: its rest, what ``handle`` returned
    (whether to keep the connection) and when the client last took any of it."""

    writes: QueuedWrites
    result: Any
    last_progress: float = field(default_factory=time.monotonic)


def done(result: Any) -> Future:
    """A future already holding ``result``, as gunicorn's ``finish_request`` takes one."""
    future: Future = Future()
    future.set_result(result)
    return future


class BufferingThreadWorker(ThreadWorker):
    """``gthread`` with requests buffered whole by the event loop (see the module's docstring)."""

    def init_process(self) -> None:
        self.reading: dict[TConn, PartRequest] = {}
        self.answering: dict[TConn, Answer] = {}
        self.lingering: dict[TConn, list[float]] = {}  # deadline, bytes left to read
        self.last_beat = 0.0
        self.accept_resumes = 0.0  # while deferring to other workers: when to accept again
        self.accept_now = False  # the poll after a deferral: accept what is still waiting
        super().init_process()

    def notify(self) -> None:
        """Tell the master this worker is alive, at most once every ``HEARTBEAT_SECONDS``."""
        now = time.monotonic()
        if now - self.last_beat >= HEARTBEAT_SECONDS:
            self.last_beat = now
            super().notify()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.idle_limit = float(self.wsgi.config["BODY_TIMEOUT"])
        self.max_body = int(self.wsgi.config["MAX_CONTENT_LENGTH"])
        self.handles_in_loop = not (self.wsgi.config.get("DYNAMIC_BATCHING") or self.cfg.is_ssl
                            or "h2" in getattr(self.cfg, "http_protocols", ()))

    def enqueue_req(self, conn: TConn) -> None:
        """Handle a whole request here, or in the thread pool (see the module's docstring)."""
        if not (self.handles_in_loop and getattr(conn, "in_loop", False)):
            super().enqueue_req(conn)
            return
        sock = conn.sock
        writes = conn.sock = QueuedWrites(sock)
        try:
            result = self.handle(conn)
        finally:
            conn.sock = sock
        try:
            sent_all = writes.flush()
        except OSError:  # the client went away
            sent_all, result = True, False
        if sent_all:
            self.finish_request(conn, done(result))
        else:
            self.answering[conn] = Answer(writes, result)
            self.poller.register(sock, selectors.EVENT_WRITE, partial(self.on_writable, conn))

    def on_writable(self, conn: TConn, client) -> None:
        """More of an answer the client is reading; once all of it is sent, the connection
        is kept or closed as ``handle`` said."""
        answer = self.answering[conn]
        try:
            sent_all = answer.writes.flush()
        except OSError:  # the client went away
            sent_all, answer.result = True, False
        answer.last_progress = time.monotonic()
        if sent_all:
            self.stop_answering(conn)
            self.finish_request(conn, done(answer.result))

    def linger(self, conn: TConn) -> None:
        """Read and drop what the client of a half-closed connection still sends, until it
        closes too or ``LINGER_SECONDS`` pass; then close it."""
        conn.sock.setblocking(False)
        self.lingering[conn] = [time.monotonic() + LINGER_SECONDS, LINGER_MAX_BYTES]
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_lingering, conn))

    def on_lingering(self, conn: TConn, client) -> None:
        data = received(conn.sock)
        if data is None:
            return
        left = self.lingering[conn]
        left[1] -= len(data)
        if not data or left[1] <= 0:
            self.stop_lingering(conn)

    def stop_lingering(self, conn: TConn) -> None:
        self.unwatch(conn, self.lingering)
        TConn.close(conn)

    def stop_answering(self, conn: TConn) -> None:
        self.unwatch(conn, self.answering)

    def unwatch(self, conn: TConn, table: dict) -> None:
        """Take ``conn`` out of ``table`` (what the loop is doing with it) and the poller."""
        table.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def set_accept_enabled(self, enabled: bool) -> None:
        """gunicorn's loop enables accepting whenever there is room; not while deferring.
        Stopping, it takes what already waits to be accepted, to answer it."""
        if not enabled and not self.alive and not self.cfg.is_ssl:
            for listener in self.sockets:
                listener.setblocking(False)
                while self.take_connection(listener):
                    pass
        if enabled and time.monotonic() < self.accept_resumes:
            return
        if enabled and self.accept_resumes:
            self.accept_resumes = 0.0
            self.accept_now = True
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if self.accept_now:  # one look at what is waiting now, without blocking
            timeout = 0.0
        elif self.accept_resumes:  # wake when the deferral ends, not a second later
            timeout = max(0.0, min(timeout, self.accept_resumes - time.monotonic()))
        try:
            events = self.poller.select(timeout)
        except InterruptedError:
            events = []
        # New connections first: accepting one at a time (``defers_accepting``) must not
        # wait behind a pass of requests handled here. Every registration is level-triggered,
        # so what a pass leaves after PASS_SECONDS is reported again by the next select.
        events.sort(key=lambda event: event[0].data != self.accept)
        ends = time.monotonic() + PASS_SECONDS
        for key, _ in events:
            key.data(key.fileobj)
            if time.monotonic() > ends:
                break
        self.accept_now = False

    def defers_accepting(self) -> bool:
        """Whether to leave a new connection to less busy workers for a moment first."""
        if self.nr_conns == 0 or self.accept_now:
            return False
        self.accept_resumes = time.monotonic() + accept_deferral(self.nr_conns)
        super().set_accept_enabled(False)
        return True

    def accept(self, listener) -> None:
        """A new connection waits in the event loop for its request, holding no thread."""
        if self.defers_accepting():
            return
        if self.cfg.is_ssl:
            super().accept(listener)
            return
        self.take_connection(listener)

    def take_connection(self, listener) -> bool:
        """Accept one waiting connection, if there is one, and read its request here."""
        try:
            client, address = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return False
        self.nr_conns += 1
        self.read_request(LingeringConn(self, self.cfg, client, address,
                                        listener.getsockname()))
        return True

    def on_client_socket_readable(self, conn: TConn, client) -> None:
        """A kept-alive connection's next request is read whole too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.read_request(conn)
        self.on_request_bytes(conn, client)

    def read_request(self, conn: TConn) -> None:
        self.reading[conn] = PartRequest()
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_request_bytes, conn))

    def on_request_bytes(self, conn: TConn, client) -> None:
        """Take what has arrived; once the request is whole, it is handled (``enqueue_req``)."""
        part = self.reading.get(conn)
        if part is None:
            return
        data = received(conn.sock)
        if data is None:
            return
        if not data and not part.data:  # the client went away
            self.stop_reading(conn)
            self.nr_conns -= 1
            conn.close()
            return
        part.last_byte = time.monotonic()
        part.data += data
        if not part.head_read and b"\r\n\r\n" in part.data:
            part.head_read = True
            self.answer_expect_continue(conn, part.data)
        # a client that stopped sending half-way still gets its answer (a 400)
        if data and request_end(part.data, self.max_body) is None:
            return
        self.stop_reading(conn)
        conn.data_ready = True
        conn.init()
        conn.parser.unreader.unread(bytes(part.data))
        conn.in_loop = handled_in_loop(part.data)
        self.enqueue_req(conn)

    @staticmethod
    def answer_expect_continue(conn: TConn, data: bytearray) -> None:
        """Answer ``Expect: 100-continue`` at once, so the client sends its body to the loop.

        The header is then taken out of the buffered request, so that gunicorn
        does not answer it a second time.
        """
        head_end = data.find(b"\r\n\r\n")
        expect = _EXPECT_CONTINUE.search(data, 0, head_end + 2)
        if expect is None:
            return
        del data[expect.start():expect.end()]
        try:
            conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        except OSError:
            pass

    def stop_reading(self, conn: TConn) -> None:
        self.unwatch(conn, self.reading)

    def murder_pending(self) -> None:
        """Close connections that sent nothing for ``BODY_TIMEOUT`` (a 408 where a request
        began) or took none of their answer for as long, and those lingering after their
        last answer for ``LINGER_SECONDS``."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [conn for conn, (until, _) in self.lingering.items() if until < now]:
            self.stop_lingering(conn)
        deadline = now - self.idle_limit
        for conn in [conn for conn, answer in self.answering.items()
                     if answer.last_progress < deadline]:
            self.stop_answering(conn)
            self.nr_conns -= 1
            conn.close()
        for conn, part in [(conn, part) for conn, part in self.reading.items()
                           if part.last_byte < deadline]:
            self.stop_reading(conn)
            self.nr_conns -= 1
            if part.data:
                try:
                    conn.sock.send(raw_error_response(
                        408, "the request stopped arriving; send it whole and promptly"))
                except OSError:
                    pass
            conn.close()
