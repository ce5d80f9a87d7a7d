"""Fuzzing with Hypothesis: random bytes and random valid images of every mode, size, format
and EXIF orientation through decode and preprocess (only ``PreprocessError``s) and through
``/predict`` (never a 500).

Examples per test: ``DIGITS_FUZZ_EXAMPLES`` (default 30, kept small for the fast suite;
e.g. ``DIGITS_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py`` for a long run).
"""

from __future__ import annotations

import functools
import io
import os
import warnings

import numpy as np
from helpers import upload
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from app import create_app
from imaging.errors import PreprocessError
from serving.chain import Chain

EXAMPLES = int(os.environ.get("DIGITS_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

MODES = ("1", "L", "P", "LA", "PA", "RGB", "RGBA", "RGBa", "La", "CMYK", "YCbCr", "LAB", "HSV",
         "I", "I;16", "I;16B", "F")
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
# The first bytes of each format, so random tails reach each decoder's deeper parts.
MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
         b"RIFF\x00\x00\x00\x00WEBPVP8 ")
EXIF_ORIENTATION = 0x0112

CHAIN = Chain()


@functools.cache
def client():
    return create_app({"TESTING": True, "DEVICE": "cpu", "BACKEND": "eager"}).test_client()


def in_mode(gray: Image.Image, mode: str) -> Image.Image | None:
    """``gray`` in ``mode`` (16-bit on its full scale), or None where Pillow cannot convert."""
    try:
        if mode.startswith("I;16"):
            wide = np.asarray(gray).astype(np.uint16) * 257
            return Image.fromarray(wide.astype(">u2" if mode == "I;16B" else "<u2"), mode=mode)
        if mode in ("LAB", "HSV"):
            return gray.convert("RGB").convert(mode)
        return gray.convert(mode)
    except (ValueError, TypeError):
        return None


@st.composite
def images(draw) -> bytes:
    """A valid image file: any mode, size, format, content and EXIF orientation."""
    mode = draw(st.sampled_from(MODES))
    width, height = draw(st.integers(1, 96)), draw(st.integers(1, 96))
    seed = draw(st.integers(0, 2**32 - 1))
    content = draw(st.sampled_from(("noise", "stroke", "flat")))
    rng = np.random.default_rng(seed)
    if content == "noise":
        gray = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8))
    else:
        gray = Image.new("L", (width, height), int(rng.integers(0, 256)))
        if content == "stroke":
            ImageDraw.Draw(gray).line([(width * 0.4, height * 0.2), (width * 0.6, height * 0.8)],
                                      fill=int(rng.integers(0, 256)), width=max(1, width // 8))
    image = in_mode(gray, mode)
    assume(image is not None)
    format = draw(st.sampled_from(FORMATS))
    options = {}
    orientation = draw(st.integers(1, 8))
    if format in ("JPEG", "PNG", "WEBP", "TIFF"):
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.save(buffer, format=format, **options)
    except (OSError, ValueError, KeyError, TypeError):
        assume(False)  # Pillow cannot write this mode in this format
    return buffer.getvalue()


def prepare_or_documented_error(data: bytes) -> None:
    try:
        segmentation = CHAIN.prepare(data)
    except PreprocessError as error:
        assert error.code in ("not_an_image", "image_too_large", "no_digit_found")
        return
    assert segmentation.candidates
    for candidate in segmentation.candidates:
        assert candidate.prepared.model_input.shape == (1, 28, 28)
        assert np.isfinite(candidate.prepared.model_input).all()


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_give_only_documented_errors(data):
    prepare_or_documented_error(data)


@FUZZ
@given(st.sampled_from(MAGIC), st.binary(max_size=2048))
def test_random_bytes_behind_each_formats_magic_give_only_documented_errors(magic, tail):
    prepare_or_documented_error(magic + tail)


@FUZZ
@given(images())
def test_valid_images_of_every_mode_format_and_orientation_decode_or_fail_documented(data):
    prepare_or_documented_error(data)


@FUZZ
@given(images(), st.integers(0, 4096))
def test_truncated_images_give_only_documented_errors(data, cut):
    prepare_or_documented_error(data[: max(0, len(data) - cut)])


def assert_no_server_error(response) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    if response.status_code >= 400:
        error = response.get_json()["error"]
        assert error["status"] == response.status_code and error["code"]


@FUZZ
@given(st.one_of(images(), st.binary(max_size=2048),
                 st.builds(lambda m, t: m + t, st.sampled_from(MAGIC), st.binary(max_size=1024))),
       st.text(max_size=40))
def test_predict_never_answers_500(data, filename):
    assert_no_server_error(upload(client(), data, filename=filename or "x"))


@FUZZ
@given(st.binary(max_size=2048), st.sampled_from(("multipart/form-data; boundary=b",
                                                  "multipart/form-data", "image/png",
                                                  "application/json", "text/plain")))
def test_predict_never_answers_500_to_any_body(body, content_type):
    assert_no_server_error(client().post("/predict", data=body, content_type=content_type))
