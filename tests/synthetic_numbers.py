"""Whole numbers written with held-out MNIST digits, in memory.

A number of two to six digits is laid out the way a hand writes one: each
digit a little taller or shorter than the others, riding a wobbly baseline,
with gaps of about a fifth of the digits' height, the whole line slanted a
few degrees. In a number ``with_touching`` one neighbouring pair is pushed
together until their strokes touch. The line is then put on paper (a scan,
sent as PNG or JPEG) or photographed (uneven light, camera tilt, noise; PNG
or JPEG). ``NUMBER_KINDS`` names the four; ``make_number`` makes one upload
and says what it shows; ``edit_distance`` counts the digits a reading got wrong.

The tests read a small set, ``benchmarks/bench_numbers.py`` a large one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from synthetic_uploads import (
    camera_view,
    defocused,
    encode_upload,
    paint,
    paper_texture,
    photographed,
    place,
    to_image,
)

from training.touching import TOUCH_LEVEL, coverage_of, first_touch

# Kind -> (background, file format, save options).
NUMBER_KINDS: dict[str, tuple[str, str, dict]] = {
    "paper-png": ("paper", "PNG", {"compress_level": 1}),
    "paper-jpeg": ("paper", "JPEG", {"quality": 85}),
    "photo-png": ("photo", "PNG", {"compress_level": 1}),
    "photo-jpeg": ("photo", "JPEG", {"quality": 80}),
}
# Gaps between neighbouring digits' ink, as shares of the line's height.
GAP_RANGE = (0.12, 0.4)
# Each digit's height, as a share of the line's ...
HEIGHT_RANGE = (0.9, 1.05)
# ... and how far it rides above or below the baseline.
WOBBLE = 0.05
# The line's slant (shear), in degrees either way.
SLANT_DEGREES = 10.0
# A digit's ink is whatever of its enlarged picture is at least this dark.
INK_LEVEL = TOUCH_LEVEL


@dataclass(frozen=True)
class NumberUpload:
    """One upload of a written number: its file, what it reads and where each digit is."""

    data: bytes
    number: str
    touching: bool
    size: tuple[int, int]  # width, height of the upload


def line_of_digits(digits: list[np.ndarray], height: int, rng: np.random.Generator,
                   touch_at: int | None) -> np.ndarray:
    """The digits side by side on one wobbly line (coverage 0..1, a margin all round);
    the pair ``touch_at``, ``touch_at + 1`` touching."""
    pieces = [coverage_of(d, round(height * rng.uniform(*HEIGHT_RANGE))) for d in digits]
    tops = [round(height * rng.uniform(-WOBBLE, WOBBLE)) + height - p.shape[0] for p in pieces]
    lefts = [0]
    for index in range(1, len(pieces)):
        before = pieces[index - 1]
        if index - 1 == touch_at:
            step = first_touch(before, pieces[index], tops[index - 1], tops[index])
        else:
            step = round(height * rng.uniform(*GAP_RANGE))
        lefts.append(lefts[-1] + before.shape[1] + step)
    margin = height
    top_most = min(tops)
    width = max(left + p.shape[1] for left, p in zip(lefts, pieces, strict=True)) + 2 * margin
    line = np.zeros((height * 2 + 2 * margin - top_most, width), dtype=np.float32)
    for left, top, piece in zip(lefts, tops, pieces, strict=True):
        y, x = margin + top - top_most, margin + left
        area = line[y : y + piece.shape[0], x : x + piece.shape[1]]
        np.maximum(area, piece, out=area)  # where strokes touch they merge, never add up
    rows = np.flatnonzero(line.max(axis=1) > 0)
    return line[max(0, rows[0] - margin // 2) : rows[-1] + margin // 2 + 1]


def slanted(coverage: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The line sheared by up to ``SLANT_DEGREES`` either way, as a hand leans its digits."""
    shear = float(np.tan(np.radians(rng.uniform(-SLANT_DEGREES, SLANT_DEGREES))))
    height, width = coverage.shape
    pad = int(abs(shear) * height) + 1
    image = Image.fromarray(coverage, mode="F")
    # Output (x, y) reads input (x + shear * (y - height / 2) - pad, y).
    data = (1.0, shear, -shear * height / 2 - pad, 0.0, 1.0, 0.0)
    sheared = image.transform((width + 2 * pad, height), Image.Transform.AFFINE, data,
                              Image.Resampling.BILINEAR)
    return np.asarray(sheared, dtype=np.float32)


def on_paper(coverage: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A scanned page: dark pen on light paper with faint blotches."""
    paper = float(rng.integers(225, 255))
    ink = float(rng.integers(0, 60))
    page = paper + coverage * (ink - paper)
    return to_image(page + paper_texture((coverage.shape[1], coverage.shape[0]), rng, 3.0))


def on_photo(coverage: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A phone photo of the page: tilted a little, soft, unevenly lit, noisy."""
    height, width = coverage.shape
    page = place(coverage, (width + height, height * 2), (height // 2, height // 2))
    page = defocused(camera_view(page, rng, degrees=3.0, tilt=0.02), 1.0)
    paper = tuple(int(v) for v in rng.integers(205, 245, 3))
    ink = tuple(int(v) for v in rng.integers(20, 70, 3))
    return photographed(paint(page, ink, paper), rng, light=0.35, noise=4.0)


def make_number(kind: str, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                length: int | None = None, touching: bool = False) -> NumberUpload:
    """One upload of ``kind``: a number of ``length`` (2..6 when None) digits drawn from
    ``images``/``labels``, with one touching pair when ``touching``."""
    length = int(rng.integers(2, 7)) if length is None else length
    chosen = rng.choice(len(images), size=length, replace=False)
    height = int(rng.integers(40, 90))
    touch_at = int(rng.integers(length - 1)) if touching else None
    coverage = slanted(line_of_digits([images[i] for i in chosen], height, rng, touch_at), rng)
    background, format, options = NUMBER_KINDS[kind]
    picture = on_paper(coverage, rng) if background == "paper" else on_photo(coverage, rng)
    number = "".join(str(int(labels[i])) for i in chosen)
    return NumberUpload(encode_upload(picture, format, **options), number, touching,
                        picture.size)


def edit_distance(a: str, b: str) -> int:
    """Insertions, deletions and substitutions that turn ``a`` into ``b``."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]
