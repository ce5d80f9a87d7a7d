"""The three uploads the HTTP benchmark posts, built from one held-out MNIST digit."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class Upload:
    """One benchmark image on disk."""

    kind: str
    path: Path
    content_type: str
    description: str


def load_digit(fixture: Path, index: int = 0) -> np.ndarray:
    """One (28, 28) uint8 white-on-black digit from the fixture npz."""
    with np.load(fixture) as data:
        return data["images"][index]


def mnist_png(digit: np.ndarray) -> bytes:
    """The digit as it is: a 28x28 grayscale PNG."""
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG")
    return buffer.getvalue()


def canvas_png(digit: np.ndarray, side: int = 280) -> bytes:
    """A browser-canvas-like export: transparent background, dark opaque strokes, RGBA."""
    coverage = Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR)
    ink = Image.new("RGB", (side, side), (24, 24, 32))
    canvas = Image.merge("RGBA", [*ink.split(), coverage])
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def phone_photo_jpeg(digit: np.ndarray, size: tuple[int, int] = (640, 480), seed: int = 0) -> bytes:
    """Dark ink on off-white paper, lit unevenly from one corner, with sensor noise."""
    width, height = size
    tall = int(height * 0.45)
    ink = Image.fromarray(digit).resize((tall, tall), Image.Resampling.BICUBIC)
    ink = ink.filter(ImageFilter.GaussianBlur(1.2))
    coverage = np.zeros((height, width), dtype=np.float32)
    top, left = (height - tall) // 2, (width - tall) // 2
    coverage[top : top + tall, left : left + tall] = np.asarray(ink, dtype=np.float32) / 255.0
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 1.0 - 0.25 * np.hypot(rows / height, cols / width) / np.sqrt(2.0)
    paper = 236.0 * light * (1.0 - coverage) + 45.0 * coverage
    noise = np.random.default_rng(seed).normal(0.0, 4.0, (height, width, 3))
    tint = np.array([1.0, 0.98, 0.93], dtype=np.float32)
    pixels = np.clip(paper[..., None] * tint + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def write_uploads(fixture: Path, folder: Path) -> list[Upload]:
    """Write the three uploads into ``folder`` and describe them, smallest first."""
    digit = load_digit(fixture)
    made = [
        ("mnist28", "digit28.png", "image/png", mnist_png(digit), "28x28 grayscale PNG"),
        ("canvas280", "canvas280.png", "image/png", canvas_png(digit), "280x280 RGBA canvas PNG"),
        ("photo640", "photo640.jpg", "image/jpeg", phone_photo_jpeg(digit),
         "640x480 phone-photo JPEG"),
    ]
    uploads = []
    for kind, name, content_type, data, description in made:
        path = folder / name
        path.write_bytes(data)
        uploads.append(Upload(kind, path, content_type, f"{description}, {len(data):,} bytes"))
    return uploads
