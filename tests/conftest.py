"""Shared fixtures: the app and its test client, held-out digits, in-memory images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from werkzeug.datastructures import FileStorage
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


def upload(client, data: bytes, filename: str = "digit.png", query: str = ""):
    """POST ``data`` to /predict as the multipart ``file`` part.

    The body is encoded in memory: the test client would spill a large one to
    a temporary file that nothing closes.
    """
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(data), filename)})
    return client.post(f"/predict{query}", data=body,
                       content_type=f"multipart/form-data; boundary={boundary}")
