"""Read any Pillow mode as 0..255 gray values, average images down by whole factors, and
smooth a map of values over each pixel's neighbours."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from imaging.opencv import cv2

# Modes holding more than 8 bits per pixel, read on their own scales.
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
# Modes Image.reduce cannot average, and the mode each is averaged in instead.
UNREDUCIBLE_MODES = {"1": "L", "P": "RGB", "PA": "RGBA"}
# Modes with an alpha channel (the lower-case ones premultiplied).
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


def shrink(image: Image.Image, longest: int) -> Image.Image:
    """``image`` averaged down by a whole factor until its longer side is at most ``longest``."""
    factor = math.ceil(max(image.size) / longest)
    if factor <= 1:
        return image
    if has_transparency(image) and image.mode not in ALPHA_MODES:
        image = image.convert("RGBA")  # averaging needs real alpha, not a transparent colour
    elif image.mode in HIGH_BIT_MODES:
        # Averaged in its own mode first, so only the small copy becomes floats; read on
        # the whole image's scale.
        full = high_bit_scale(image)
        native = image if image.mode in ("I", "F") else image.convert("I")
        return Image.fromarray(high_bit_to_8_bit(native.reduce(factor), full), mode="F")
    elif image.mode in UNREDUCIBLE_MODES:
        image = image.convert(UNREDUCIBLE_MODES[image.mode])
    return image.reduce(factor)


def to_grayscale(image: Image.Image) -> np.ndarray:
    """A float32 array in 0..255 for any Pillow mode, transparency flattened.

    What is opaque is the ink, so transparent images are composited onto a
    background that contrasts with their opaque pixels: dark strokes go on
    white, light strokes on black.
    """
    if image.mode in HIGH_BIT_MODES:
        return high_bit_to_8_bit(image)
    if has_transparency(image):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        # Pillow's own luma (ITU-R 601, the weights of convert("L")) of the colour channels.
        luma = np.asarray(rgba.convert("L"), dtype=np.float32)
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) * np.float32(1.0 / 255.0)
        coverage = float(alpha.sum())
        if coverage == 0.0:
            return np.zeros(alpha.shape, dtype=np.float32)
        strokes = luma * alpha
        if float(strokes.sum()) / coverage >= 128.0:
            return strokes  # light strokes, on black
        return strokes + 255.0 * (1.0 - alpha)  # dark strokes, on white
    if image.mode == "LAB":
        return np.asarray(image.getchannel("L"), dtype=np.float32)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.float32)


def has_transparency(image: Image.Image) -> bool:
    """Whether ``image`` has an alpha channel or a transparent colour."""
    return image.mode in ALPHA_MODES or "transparency" in image.info


def high_bit_to_8_bit(image: Image.Image, full: float | None = None) -> np.ndarray:
    """A 16-bit, 32-bit or float image on the 0..255 scale (``full`` maps to 255).

    ``full`` defaults to ``high_bit_scale(image)``.
    """
    values = np.asarray(image, dtype=np.float32)
    full = high_bit_scale(image) if full is None else full
    return np.clip(values * (255.0 / full), 0.0, 255.0)


def high_bit_scale(image: Image.Image) -> float:
    """The value that is white in a 16-bit, 32-bit or float image.

    16-bit modes span 0..65535. ``I`` and ``F`` carry no range of their own,
    so they are read on the smallest usual scale that holds their values:
    0..1 (float only), 0..255, 0..65535, else their own maximum. The scale is
    never stretched to the values, so a blank image's faint noise stays faint.
    """
    if image.mode.startswith("I;16"):
        return 65535.0
    top = float(image.getextrema()[1]) if image.width and image.height else 0.0
    if image.mode == "F" and top <= 1.0:
        full = 1.0
    elif top <= 255.0:
        full = 255.0
    elif top <= 65535.0:
        full = 65535.0
    else:
        full = top
    return full


def mean3x3(values: np.ndarray) -> np.ndarray:
    """Each pixel averaged with its eight neighbours (edges repeated): grain and noise fade."""
    # OpenCV's box filter: 3 against 70 us on a 28x28 map with numpy's padding and sums.
    return cv2.blur(values.astype(np.float32, copy=False), (3, 3),
                    borderType=cv2.BORDER_REPLICATE)


def edge_of(values: np.ndarray) -> np.ndarray:
    """The pixels along the four sides of ``values``, each once."""
    return np.concatenate([values[0], values[-1], values[1:-1, 0], values[1:-1, -1]])


def rim_inside(region: np.ndarray) -> np.ndarray:
    """The pixels of a region (bool) along its outline, but for where it runs off the
    picture: there the picture's border is no edge of it."""
    inner = cv2.erode(region.astype(np.uint8), np.ones((3, 3), dtype=np.uint8)).astype(bool)
    rim = region & ~inner
    rim[[0, -1], :] = False
    rim[:, [0, -1]] = False
    return rim


def steepness(values: np.ndarray) -> np.ndarray:
    """How fast ``values`` change at each pixel, per pixel (Sobel's gradient magnitude)."""
    # Sobel's 3x3 kernels weigh the difference across two pixels by 4 each: /8 per pixel.
    across = cv2.Sobel(values, cv2.CV_32F, 1, 0, ksize=3)
    down = cv2.Sobel(values, cv2.CV_32F, 0, 1, ksize=3)
    return np.hypot(across, down) / 8.0
