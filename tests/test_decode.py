"""imaging/decode.py's limits: formats, each side, decoded bytes (TIFF tiles included), NaN."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from helpers import encode_image, upload
from PIL import Image, ImageDraw

import folder_paths
from imaging.decode import DecodeLimits, decode_upload, decoded_bytes
from imaging.errors import ImageTooLargeError, NotAnImageError
from serving.chain import Chain


def tiled_tiff(width: int = 64, height: int = 64, tile: int = 32768) -> bytes:
    """A deflate TIFF of ``width`` x ``height`` whose one tile is declared ``tile`` square."""
    payload = zlib.compress(b"\0" * 64)
    data_offset = 8 + 2 + 12 * 10 + 4
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 8), (262, 3, 1),
               (277, 3, 1), (322, 4, tile), (323, 4, tile), (324, 4, data_offset),
               (325, 4, len(payload))]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        ifd += struct.pack("<HHIHH" if kind == 3 else "<HHII", tag, kind, 1,
                           *((value, 0) if kind == 3 else (value,)))
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + payload


def stroke_page(size=(200, 200)) -> Image.Image:
    page = Image.new("L", size, 230)
    ImageDraw.Draw(page).line([(90, 60), (110, 140)], fill=20, width=8)
    return page


def test_a_tile_declared_far_larger_than_the_image_is_refused():
    with pytest.raises(ImageTooLargeError, match="1,073,741,824 bytes"):
        decode_upload(tiled_tiff())


def test_the_tile_bomb_is_refused_without_allocating_it():
    """Peak resident memory of a fresh process, before and after decoding the 1 GiB tile."""
    script = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {str(folder_paths.base_path())!r})
        from imaging.decode import decode_upload
        from imaging.errors import ImageTooLargeError
        data = sys.stdin.buffer.read()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            decode_upload(data)
        except ImageTooLargeError:
            pass
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """)
    grown_kib = int(subprocess.run([sys.executable, "-c", script], input=tiled_tiff(),
                                   capture_output=True, check=True).stdout)
    assert grown_kib < 50 * 1024


def test_a_declared_tile_counts_whole_and_strips_count_within_the_image():
    assert decoded_bytes(Image.open(io.BytesIO(tiled_tiff(64, 64, tile=128)))) == 128 * 128
    strips = Image.open(io.BytesIO(encode_image(stroke_page((256, 256)), "TIFF")))
    assert decoded_bytes(strips) == 256 * 256
    assert decode_upload(encode_image(stroke_page((256, 256)), "TIFF")).size == (256, 256)


@pytest.mark.parametrize("size", [(65_000, 1), (1, 65_000)])
def test_a_side_over_its_limit_is_refused_from_the_header(size):
    data = encode_image(Image.new("L", size, 255))
    with pytest.raises(ImageTooLargeError, match="wide"):
        decode_upload(data)


def test_side_limits_are_configurable():
    data = encode_image(stroke_page((300, 100)))
    limits = DecodeLimits(max_width=299)
    with pytest.raises(ImageTooLargeError):
        decode_upload(data, limits=limits)
    fits = DecodeLimits(max_width=300, max_height=100)
    assert decode_upload(data, limits=fits).size == (300, 100)


@pytest.mark.parametrize(("mode", "bytes_per_pixel"),
                         [("L", 1), ("P", 1), ("I;16", 2), ("RGB", 4), ("RGBA", 4), ("F", 4)])
def test_the_budget_counts_bytes_per_pixel_of_each_mode(mode, bytes_per_pixel):
    assert decoded_bytes(Image.new(mode, (30, 20))) == 30 * 20 * bytes_per_pixel


def test_the_decoded_bytes_budget_is_refused_before_decoding():
    data = encode_image(Image.new("RGBA", (100, 100)))  # 40,000 bytes in memory
    with pytest.raises(ImageTooLargeError, match="40,000 bytes"):
        decode_upload(data, limits=DecodeLimits(max_decoded_bytes=39_999))
    assert decode_upload(data, limits=DecodeLimits(max_decoded_bytes=40_000)).mode == "RGBA"


def test_a_large_jpeg_is_budgeted_at_its_draft_scale():
    data = encode_image(stroke_page((4000, 4000)).convert("RGB"), "JPEG")
    # 64 MB at full size; drafted to 1000x1000 (4 MB) it fits an 8 MB budget
    assert decode_upload(data, limits=DecodeLimits(max_decoded_bytes=8_000_000)).size == (1000,
                                                                                           1000)


def test_formats_outside_the_allowlist_are_not_opened():
    data = encode_image(stroke_page(), "PPM")
    with pytest.raises(NotAnImageError, match="PNG, JPEG"):
        decode_upload(data)
    assert decode_upload(data, limits=DecodeLimits(formats=("PPM",))).size == (200, 200)
    with pytest.raises(NotAnImageError):
        decode_upload(encode_image(stroke_page(), "PNG"), limits=DecodeLimits(formats=("ppm",)))


def test_eps_is_never_handed_to_ghostscript():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(NotAnImageError):
        decode_upload(eps)


def test_unknown_formats_and_bad_limits_are_refused_at_start():
    with pytest.raises(ValueError, match="unknown image formats"):
        DecodeLimits(formats=("PNG", "NOPE"))
    with pytest.raises(ValueError, match="max_width"):
        DecodeLimits(max_width=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_float_image_with_non_finite_values_is_read(bad):
    values = np.asarray(stroke_page(), dtype=np.float32) / 255.0
    values[3, 3] = bad
    buffer = io.BytesIO()
    Image.fromarray(values, mode="F").save(buffer, "TIFF")
    decoded = decode_upload(buffer.getvalue())
    assert np.isfinite(np.asarray(decoded)).all()
    segmentation = Chain().prepare(buffer.getvalue())
    assert all(np.isfinite(c.prepared.model_input).all() for c in segmentation.candidates)


def test_limits_are_settings_answered_with_413(make_app):
    client = make_app(MAX_IMAGE_WIDTH=150).test_client()
    response = upload(client, encode_image(stroke_page()))
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "image_too_large"
    client = make_app(MAX_DECODED_BYTES=1000).test_client()
    assert upload(client, encode_image(stroke_page())).status_code == 413
    client = make_app(IMAGE_FORMATS="JPEG").test_client()
    assert upload(client, encode_image(stroke_page())).get_json()["error"]["code"] == (
        "not_an_image")


def test_the_strip_and_the_tiff_bomb_through_predict(client):
    for data in (tiled_tiff(), encode_image(Image.new("L", (65_000, 1), 255))):
        response = upload(client, data)
        assert response.status_code == 413
        assert response.get_json()["error"]["code"] == "image_too_large"


def png_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def pillow_pixels(data: bytes) -> tuple[str, np.ndarray]:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.mode, np.asarray(image)


def noise_image(mode: str, size=(37, 23)) -> Image.Image:
    rng = np.random.default_rng(sum(map(ord, mode)))
    bands = len(Image.new(mode, (1, 1)).getbands())
    pixels = rng.integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if bands == 1 else pixels,
                            mode=mode if bands > 1 else "L")
    return image if mode in ("L", "LA", "RGB", "RGBA") else image.convert(mode)


@pytest.mark.parametrize(("mode", "options", "fast"), [
    ("L", {}, True), ("RGB", {}, True), ("RGBA", {}, True), ("LA", {}, False),
    ("RGB", {"optimize": True, "compress_level": 9}, True),
    ("RGB", {"transparency": (1, 2, 3)}, False),
    ("L", {"transparency": 7}, False),
    ("P", {}, False), ("1", {}, False), ("I;16", {}, False),
    ("RGB", {"exif": b"Exif\0\0II*\0\x08\0\0\0\0\0\0\0\0\0"}, False),
])
def test_plain_pngs_decode_through_libspng_to_pillows_pixels(monkeypatch, mode, options, fast):
    import imaging.decode

    calls = []
    real_load = imaging.decode.pyspng.load
    monkeypatch.setattr(imaging.decode.pyspng, "load", lambda data: calls.append(1) or
                        real_load(data))
    data = png_bytes(noise_image(mode), **options)
    decoded = decode_upload(data)
    expected_mode, expected = pillow_pixels(data)
    assert (decoded.mode, decoded.size) == (expected_mode, (37, 23))
    np.testing.assert_array_equal(np.asarray(decoded), expected)
    assert bool(calls) == fast


def test_a_plain_png_is_checked_and_decoded_without_pillow_opening_it(monkeypatch):
    data = png_bytes(noise_image("RGBA", (64, 48)))
    expected = decode_upload(data)

    def refuse(*args, **kwargs):
        raise AssertionError("Pillow opened a plain PNG")

    monkeypatch.setattr(Image, "open", refuse)
    decoded = decode_upload(data)
    assert (decoded.mode, decoded.size) == ("RGBA", (64, 48))
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(expected))
    with pytest.raises(ImageTooLargeError, match="64x48 pixels; the limit is 3,071"):
        decode_upload(data, max_pixels=3_071)
    with pytest.raises(ImageTooLargeError, match="12,288 bytes"):
        decode_upload(data, limits=DecodeLimits(max_decoded_bytes=12_287))


def test_an_animated_png_still_opens_on_its_first_frame():
    frames = [Image.new("L", (20, 20), 0), Image.new("L", (20, 20), 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    assert np.asarray(decode_upload(buffer.getvalue())).max() == 0


@pytest.mark.parametrize("damage", ["truncated", "bad crc"])
def test_a_damaged_plain_png_is_not_an_image(damage):
    data = bytearray(png_bytes(noise_image("RGB", (64, 64))))
    idat = data.index(b"IDAT")
    if damage == "truncated":
        data = data[:idat + 40]
    else:
        data[idat + 20] ^= 0xFF
    with pytest.raises(NotAnImageError):
        decode_upload(bytes(data))
