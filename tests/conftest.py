"""Shared fixtures: the app and its test client, held-out digits, in-memory images."""

from __future__ import annotations

import http.client
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image
from werkzeug.datastructures import FileStorage
from werkzeug.serving import make_server
from werkzeug.test import encode_multipart

import folder_paths
from app import create_app

HELDOUT_FIXTURE = "fixtures/heldout_digits.npz"


@pytest.fixture
def app():
    return create_app({"TESTING": True, "DEVICE": "cpu"})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def heldout_digits() -> tuple[np.ndarray, np.ndarray]:
    """Held-out MNIST digits (white on black, 28x28 uint8) and their labels."""
    with np.load(folder_paths.get_full_path("tests", HELDOUT_FIXTURE)) as data:
        return data["images"], data["labels"].astype(int)


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
