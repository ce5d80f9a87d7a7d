"""Pictures that plainly show a digit but are hard to read, and pictures that show none.

Each maker of ``VISIBLE_KINDS`` takes one held-out MNIST digit (28x28, white
on black), a size in pixels and a seeded ``numpy.random.Generator`` and returns
a Pillow image that size on its longer side in which a person sees the digit at once:
cropped tight, filling the frame, touching the border, scanned small and
upscaled with smoothing, drawn so thick that ink covers over 40% of the
picture, or in faint pencil. ``BLANK_KINDS`` make pictures with no digit at
all: blank paper, a uniform colour, noise only, an empty canvas.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from imaging.opencv import cv2

# Thick digits are grown until ink covers more than this share of the picture.
THICK_COVERAGE = 0.4


def tight(digit: np.ndarray) -> np.ndarray:
    """The digit's bounding box and nothing else."""
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    return digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def enlarged(digit: np.ndarray, size: int) -> np.ndarray:
    """The tight digit's ink (0..1) enlarged smoothly until its longer side is ``size``."""
    box = tight(digit)
    scale = size / max(box.shape)
    shape = (max(1, round(box.shape[1] * scale)), max(1, round(box.shape[0] * scale)))
    image = Image.fromarray(box).resize(shape, Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def centred(coverage: np.ndarray, size: int, top: int | None = None,
            left: int | None = None) -> np.ndarray:
    """``coverage`` on an empty ``size`` x ``size`` page, centred unless placed."""
    page = np.zeros((size, size), np.float32)
    height, width = coverage.shape
    top = (size - height) // 2 if top is None else top
    left = (size - width) // 2 if left is None else left
    page[top : top + height, left : left + width] = coverage
    return page


def on_paper(coverage: np.ndarray, ink: float = 0.0, paper: float = 255.0) -> Image.Image:
    """Ink of gray level ``ink`` laid on paper of level ``paper`` where ``coverage`` says."""
    page = paper + np.clip(coverage, 0.0, 1.0) * (ink - paper)
    return Image.fromarray(np.clip(np.round(page), 0, 255).astype(np.uint8))


def tight_crop(digit: np.ndarray, size: int, rng: np.random.Generator) -> Image.Image:
    """Black ink cropped to the digit's box: strokes touch all four sides."""
    return on_paper(enlarged(digit, size))


def white_filling_the_frame(digit: np.ndarray, size: int,
                            rng: np.random.Generator) -> Image.Image:
    """White strokes on black, the digit's box stretched over the whole picture."""
    return on_paper(enlarged(digit, size), ink=255.0, paper=0.0)


def touching_the_border(digit: np.ndarray, size: int, rng: np.random.Generator) -> Image.Image:
    """The digit pushed against one side of a square page, with paper on the other three."""
    coverage = enlarged(digit, max(8, round(size * 0.7)))
    height, width = coverage.shape
    side = int(rng.integers(4))  # left, top, right, bottom
    top = {1: 0, 3: size - height}.get(side)
    left = {0: 0, 2: size - width}.get(side)
    return on_paper(centred(coverage, size, top, left))


def blurry_scan(digit: np.ndarray, size: int, low: int) -> Image.Image:
    """A digit scanned at ``low`` pixels, upscaled with smoothing to ``size``, filling it."""
    box = tight(digit)
    scale = low / max(box.shape)
    shape = (max(1, round(box.shape[1] * scale)), max(1, round(box.shape[0] * scale)))
    small = Image.fromarray(255 - box).resize(shape, Image.Resampling.BOX)
    scale = size / max(shape)
    large = small.resize((max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))),
                         Image.Resampling.BICUBIC)
    return large.filter(ImageFilter.GaussianBlur(size / 40))


def thick(digit: np.ndarray, size: int, rng: np.random.Generator) -> Image.Image:
    """A broad marker: strokes grown until ink covers over 40% of the picture.

    The picture is the digit's box with a narrow margin, as a person crops a
    photo of one digit.
    """
    coverage = enlarged(digit, max(8, round(size * 0.8)))
    margin = (size - max(coverage.shape)) // 2
    coverage = np.pad(coverage, margin)
    image = Image.fromarray(np.round(coverage * 255).astype(np.uint8))
    grow = ImageFilter.MaxFilter(3)
    while np.count_nonzero(np.asarray(image) >= 128) <= THICK_COVERAGE * coverage.size:
        image = image.filter(grow)
    return on_paper(np.asarray(image, dtype=np.float32) / 255.0, ink=20.0, paper=245.0)


def pencil(digit: np.ndarray, size: int, rng: np.random.Generator) -> Image.Image:
    """Faint grainy graphite on light paper, with a little sensor noise.

    The graphite is only 40 to 60 levels darker than the paper; a person still
    reads the digit at a glance.
    """
    coverage = centred(enlarged(digit, max(8, round(size * 0.75))), size)
    coverage *= rng.uniform(0.7, 1.0, coverage.shape).astype(np.float32)
    paper = float(rng.integers(215, 240))
    darkness = float(rng.integers(40, 61))
    noise = rng.standard_normal(coverage.shape).astype(np.float32) * 2.0
    page = paper - darkness * coverage + noise
    return Image.fromarray(np.clip(np.round(page), 0, 255).astype(np.uint8))


def thin_pen(digit: np.ndarray, size: int, rng: np.random.Generator) -> Image.Image:
    """The digit's outline drawn one pixel wide in a dark or mid-gray pen on white: a thin pen
    on a large canvas or scan, whose strokes vanish when the picture is averaged down."""
    shape = (enlarged(digit, round(size * 0.75)) >= 0.5).astype(np.uint8)
    outlines, _ = cv2.findContours(shape, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    page = np.zeros(shape.shape, dtype=np.uint8)
    cv2.drawContours(page, outlines, -1, 1, thickness=1)
    ink = float(rng.integers(0, 129))
    return on_paper(centred(page.astype(np.float32), size), ink=ink, paper=255.0)


VisibleMaker = Callable[[np.ndarray, int, np.random.Generator], Image.Image]

VISIBLE_KINDS: dict[str, VisibleMaker] = {
    "tight-crop": tight_crop,
    "white-filling-the-frame": white_filling_the_frame,
    "touching-the-border": touching_the_border,
    "blurry-8px-scan": lambda digit, size, rng: blurry_scan(digit, size, 8),
    "blurry-12px-scan": lambda digit, size, rng: blurry_scan(digit, size, 12),
    "blurry-16px-scan": lambda digit, size, rng: blurry_scan(digit, size, 16),
    "thick-over-40-percent": thick,
    "low-contrast-pencil": pencil,
}

# Every size from the smallest icon to a large scan.
SIZES = (16, 24, 32, 48, 64, 100, 200, 400, 1000)
# A thin pen is looked at on pictures this large, where averaging down loses its strokes.
THIN_PEN_SIZES = (1000, 2000, 3000)


def blank_paper(size: int, rng: np.random.Generator) -> Image.Image:
    """Off-white paper with a faint blotchy unevenness and a little noise."""
    blotches = rng.normal(0.0, 3.0, (4, 4)).astype(np.float32)
    uneven = np.asarray(Image.fromarray(blotches, mode="F").resize(
        (size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    page = float(rng.integers(225, 250)) + uneven
    page = page + rng.standard_normal((size, size)).astype(np.float32) * 1.5
    return Image.fromarray(np.clip(np.round(page), 0, 255).astype(np.uint8))


def uniform_colour(size: int, rng: np.random.Generator) -> Image.Image:
    """One colour, any colour, over the whole picture."""
    return Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))


def noise_only(size: int, rng: np.random.Generator) -> Image.Image:
    """A dark photo of nothing: a mid-gray level and strong sensor noise."""
    level = float(rng.integers(60, 200))
    page = level + rng.standard_normal((size, size, 3)).astype(np.float32) * 12.0
    return Image.fromarray(np.clip(np.round(page), 0, 255).astype(np.uint8))


def empty_canvas(size: int, rng: np.random.Generator) -> Image.Image:
    """A browser canvas exported before anything was drawn: fully transparent."""
    return Image.new("RGBA", (size, size), (0, 0, 0, 0))


def specks(size: int, rng: np.random.Generator) -> Image.Image:
    """Blank paper with dust: thirty dark specks three pixels across, and a thousandth of
    the pixels black or white (salt and pepper)."""
    page = np.asarray(blank_paper(size, rng)).copy()
    for row, col in rng.integers(1, size - 1, (30, 2)):
        page[row - 1:row + 2, col - 1:col + 2] = rng.integers(0, 80)
    salt = rng.random(page.shape)
    page[salt < 0.0005] = 0
    page[salt > 0.9995] = 255
    return Image.fromarray(page)


BlankMaker = Callable[[int, np.random.Generator], Image.Image]

BLANK_KINDS: dict[str, BlankMaker] = {
    "blank-paper": blank_paper,
    "uniform-colour": uniform_colour,
    "noise-only": noise_only,
    "empty-canvas": empty_canvas,
}
