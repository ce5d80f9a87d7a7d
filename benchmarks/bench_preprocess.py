"""Time the preprocessing of a large phone photo, step by step.

    python benchmarks/bench_preprocess.py [--runs 30] [--size 4000x3000]

A 12-megapixel JPEG of a pen digit on unevenly lit, grainy paper is made in
memory, then each step is timed over repeated runs (median and slowest, in
milliseconds). The first two rows are baselines in the same run: decoding the
whole JPEG, and the naive ``convert("L").resize((28, 28))`` on top of it.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imaging.decode import decode_upload  # noqa: E402
from imaging.ink import find_digit, read_digit  # noqa: E402
from imaging.normalise import crop_to_ink, even_out_strokes, prepare_ink  # noqa: E402
from serving.chain import Chain  # noqa: E402


def phone_photo_jpeg(size: tuple[int, int], seed: int = 0) -> bytes:
    """A pen-drawn 4 on off-white paper, lit from one side, with sensor grain."""
    width, height = size
    ink = Image.new("L", size, 0)
    draw = ImageDraw.Draw(ink)
    stroke = max(2, height // 60)
    left, top, right, bottom = width * 0.40, height * 0.25, width * 0.60, height * 0.75
    draw.line([(left + (right - left) * 0.55, top), (left, top + (bottom - top) * 0.62),
               (right, top + (bottom - top) * 0.62)], fill=255, width=stroke, joint="curve")
    draw.line([(left + (right - left) * 0.70, top + (bottom - top) * 0.30),
               (left + (right - left) * 0.66, bottom)], fill=255, width=stroke)
    ink = ink.filter(ImageFilter.GaussianBlur(stroke / 8))
    light = np.linspace(1.0, 0.65, width, dtype=np.float32)[None, :]
    coverage = np.asarray(ink, dtype=np.float32) / 255.0
    paper = 232.0 * light * (1.0 - coverage) + 40.0 * coverage
    grain = np.random.default_rng(seed).normal(0.0, 3.0, (height, width)).astype(np.float32)
    gray = np.clip(paper + grain, 0, 255).astype(np.uint8)
    photo = Image.merge("RGB", [Image.fromarray(gray)] * 3)
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def timed(step: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and slowest wall time of ``step`` in milliseconds, after one warm-up run."""
    step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times), max(times)


def full_decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--size", default="4000x3000", help="photo size, WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    size = tuple(int(side) for side in args.size.lower().split("x"))

    data = phone_photo_jpeg(size)
    image = decode_upload(data)
    region = find_digit(image)
    ink = read_digit(image, region)
    digit = crop_to_ink(ink)
    print(f"photo: {size[0]}x{size[1]} JPEG, {len(data) / 1e6:.1f} MB; decoded at "
          f"{image.width}x{image.height}; digit region {region}; {args.runs} runs")

    steps: list[tuple[str, Callable[[], object]]] = [
        ("baseline: full decode", lambda: full_decode(data)),
        ("baseline: full decode + L + resize 28", lambda: full_decode(data).convert("L").resize(
            (28, 28))),
        ("decode_upload (draft, EXIF)", lambda: decode_upload(data)),
        ("find_digit", lambda: find_digit(image)),
        ("read_digit", lambda: read_digit(image, region)),
        ("even_out_strokes + prepare_ink",
         lambda: prepare_ink(even_out_strokes(digit))),
        ("total: Chain.prepare(bytes)", lambda: Chain().prepare(data)),
    ]
    print(f"{'step':40s} {'median ms':>10s} {'max ms':>10s}")
    for name, step in steps:
        median, slowest = timed(step, args.runs)
        print(f"{name:40s} {median:10.1f} {slowest:10.1f}")


if __name__ == "__main__":
    main()
