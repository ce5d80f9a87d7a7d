"""Digits set side by side until their ink meets: what the pair reader is trained on
(``training.pairs``) and what the numbers tests and benchmark compose (NumPy and Pillow
only, no torch)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from imaging.normalise import crop_to_ink

# Coverage (0..1) from which a pixel counts as ink where two digits are made to meet.
TOUCH_LEVEL = 0.25


def coverage_of(digit: np.ndarray, height: int, stretch: float = 1.0) -> np.ndarray:
    """A 28x28 digit cropped to its ink and resized to ``height`` rows, its width by
    ``stretch`` more (0..1)."""
    cropped = crop_to_ink(digit)
    width = max(1, round(cropped.shape[1] * height * stretch / cropped.shape[0]))
    image = Image.fromarray(cropped).resize((width, height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(image, dtype=np.float32) / 255.0, 0.0, 1.0)


def first_touch(left: np.ndarray, right: np.ndarray, left_top: int, right_top: int) -> int:
    """How far right of the left digit's right edge the right one starts so that their inks
    just meet, overlapping by a pixel (negative: inside the left digit's box)."""
    gaps = []
    for row in range(max(left_top, right_top),
                     min(left_top + left.shape[0], right_top + right.shape[0])):
        left_ink = np.flatnonzero(left[row - left_top] >= TOUCH_LEVEL)
        right_ink = np.flatnonzero(right[row - right_top] >= TOUCH_LEVEL)
        if left_ink.size and right_ink.size:
            gaps.append(left.shape[1] - 1 - left_ink[-1] + right_ink[0])
    return -1 if not gaps else -min(gaps) - 1
