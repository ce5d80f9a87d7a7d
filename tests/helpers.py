"""Helpers the tests share: in-memory images, multipart bodies and servers on 127.0.0.1."""

from __future__ import annotations

import http.client
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import urllib3
from PIL import Image, ImageDraw
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.datastructures import FileStorage
from werkzeug.serving import make_server
from werkzeug.test import encode_multipart

import folder_paths


def encode_image(image: Image.Image, format: str = "PNG", **options) -> bytes:
    """An in-memory image file."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def paper_digit(digit: np.ndarray, scale: int = 4) -> Image.Image:
    """An MNIST digit as black ink on white paper, enlarged with a margin."""
    ink = Image.fromarray(255 - digit, mode="L").resize((28 * scale, 28 * scale),
                                                        Image.Resampling.BICUBIC)
    page = Image.new("L", (40 * scale, 40 * scale), 255)
    page.paste(ink, (6 * scale, 6 * scale))
    return page


def multipart_file(data: bytes, filename: str = "digit.png") -> tuple[bytes, str]:
    """A multipart form body with ``data`` as its ``file`` part, and its Content-Type."""
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(data), filename)})
    return body, f"multipart/form-data; boundary={boundary}"


def upload(client, data: bytes, filename: str = "digit.png", query: str = ""):
    """POST ``data`` to /predict as the multipart ``file`` part.

    The body is encoded in memory: the test client would spill a large one to
    a temporary file that nothing closes.
    """
    body, content_type = multipart_file(data, filename)
    return client.post(f"/predict{query}", data=body, content_type=content_type)


def read_right(client, uploads: Iterator[tuple[bytes, int]]) -> int:
    """How many of the (file, digit) ``uploads`` /predict answers with their digit; every
    one must be answered 200."""
    right = 0
    for data, label in uploads:
        response = upload(client, data, "photo.jpg")
        assert response.status_code == 200, response.get_json()
        right += response.get_json()["prediction"] == label
    return right


def post_file_over_http(url: str, path: str, data: bytes,
                        filename: str = "digit.png") -> tuple[int, str, str]:
    """POST ``data`` as the ``file`` part to a real server; status, Content-Type and body text.

    http.client sends the whole body before it reads the answer, as many clients do.
    """
    body, content_type = multipart_file(data, filename)
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


@contextmanager
def served_in_thread(app) -> Iterator[str]:
    """``app`` under Werkzeug's development server on 127.0.0.1 and a free port; its URL."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(http: urllib3.PoolManager, url: str, process: subprocess.Popen) -> None:
    """Wait up to a minute for ``/health`` to answer 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            if http.request("GET", f"{url}/health", retries=False, timeout=2).status == 200:
                return
        except urllib3.exceptions.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer within 60 s")


@contextmanager
def gunicorn_server(env: Mapping[str, str | None], cwd: Path | None = None,
                    http: urllib3.PoolManager | None = None,
                    ) -> Iterator[tuple[str, subprocess.Popen]]:
    """The project under gunicorn with its gunicorn.conf.py on 127.0.0.1: its URL once it
    answers, and the master process.

    ``env`` is laid over this process's environment; a value of None removes that
    variable. The server is stopped (SIGTERM, then waited for) when the block ends.
    """
    project = folder_paths.base_path()
    port = free_port()
    environment = {**os.environ, **{k: v for k, v in env.items() if v is not None}}
    for name in [k for k, v in env.items() if v is None]:
        environment.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", str(project / "gunicorn.conf.py"),
         "--chdir", str(project), "--bind", f"127.0.0.1:{port}", "app:create_app()"],
        cwd=cwd, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(http or urllib3.PoolManager(), url, process)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)


@contextmanager
def running_gunicorn(env: Mapping[str, str | None], cwd: Path | None = None,
                     http: urllib3.PoolManager | None = None) -> Iterator[str]:
    """``gunicorn_server``'s URL alone."""
    with gunicorn_server(env, cwd, http) as (url, _process):
        yield url


def wait_for_workers(url: str, count: int, seconds: float = 60.0) -> None:
    """Until ``count`` workers have loaded their model (a server answers once one has).

    Its connections are closed when it returns: none is left open in a worker.
    """
    deadline = time.monotonic() + seconds
    with urllib3.PoolManager() as http:
        while time.monotonic() < deadline:
            text = http.request("GET", f"{url}/metrics", retries=False, timeout=30).data.decode()
            loaded = sum(sample.value for family in text_string_to_metric_families(text)
                         for sample in family.samples
                         if sample.name == "digits_model_loads_total"
                         and sample.labels == {"kind": "load", "outcome": "ok"})
            if loaded >= count:
                return
            time.sleep(0.2)
    raise AssertionError(f"{count} workers did not load their model in {seconds:g} s")


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a gunicorn master's workers)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def process_holding(connection: http.client.HTTPConnection, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the server's end of a connection to 127.0.0.1 (from /proc)."""
    client_port = connection.sock.getsockname()[1]
    sockets = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == client_port:  # its remote end is the client
            sockets.add(f"socket:[{fields[9]}]")
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in sockets:
                    return pid
            except OSError:
                continue
    return None


def ring(size: int = 60, ink: float = 30.0, paper: float = 220.0) -> np.ndarray:
    """A thick ring of ink on paper (float gray values)."""
    image = Image.new("F", (size, size), paper)
    ImageDraw.Draw(image).ellipse((10, 10, size - 10, size - 10), outline=ink, width=6)
    return np.asarray(image, dtype=np.float32)


def ring_on_page(ink: float = 40.0, paper: float = 225.0, light_falling_to: float = 1.0
                 ) -> np.ndarray:
    """A 240x320 gray page with a ring of 100 pixels in its middle, its light falling off
    to ``light_falling_to`` of itself at the right edge."""
    page = np.full((240, 320), paper, dtype=np.float32)
    page[70:170, 110:210] = ring(size=100, ink=ink, paper=paper)
    return page * np.linspace(1.0, light_falling_to, 320, dtype=np.float32)[None, :]
