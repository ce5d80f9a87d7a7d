"""Pillow's Lanczos resampling of a float image, as two small matrix products.

``fit_to_box`` scales every digit twice (to measure its strokes and into the
20x20 box), and for the small pictures of one request Pillow's own resize cost
more in wrapping the array as an image and back than in the arithmetic. Pillow
resamples one axis at a time: each output pixel is a weighted sum of the input
pixels within three (scaled) pixels of its centre, with the weights of
``lanczos`` normalised to sum to 1, in double precision, and the result of each
pass kept as float32. ``lanczos_weights`` builds the same weights as a matrix,
so one pass is one product; the results differ from Pillow's only by the
order of the additions (at most a few units in float32's last place).
"""

from __future__ import annotations

import functools

import numpy as np

LANCZOS_SUPPORT = 3.0  # Pillow's Lanczos window: three lobes either side


def lanczos(x: np.ndarray) -> np.ndarray:
    """The Lanczos-3 kernel, sinc(x) sinc(x/3) within three pixels and 0 beyond."""
    return np.where(np.abs(x) < LANCZOS_SUPPORT, np.sinc(x) * np.sinc(x / LANCZOS_SUPPORT), 0.0)


# Sizes recur (digits scaled to the 20- and 80-pixel boxes); ``fit_to_box`` uses matrices
# of at most 80 x MATRIX_MAX_SIDE doubles (205 KB), so the cache holds at most 13 MB.
@functools.lru_cache(maxsize=64)
def lanczos_weights(in_size: int, out_size: int) -> np.ndarray:
    """The (out_size, in_size) matrix of Pillow's Lanczos weights along one axis."""
    scale = in_size / out_size
    filter_scale = max(1.0, scale)  # scaling down widens the kernel to average what it drops
    support = LANCZOS_SUPPORT * filter_scale
    centres = (np.arange(out_size) + 0.5) * scale
    # Each output reads the inputs from first to last (exclusive), as Pillow truncates them.
    first = np.maximum((centres - support + 0.5).astype(np.int64), 0)
    last = np.minimum((centres + support + 0.5).astype(np.int64), in_size)
    inputs = np.arange(in_size)
    within = (inputs >= first[:, None]) & (inputs < last[:, None])
    weights = np.where(within, lanczos((inputs - centres[:, None] + 0.5) / filter_scale), 0.0)
    totals = weights.sum(axis=1, keepdims=True)
    weights = np.divide(weights, totals, out=weights, where=totals != 0.0)
    weights.flags.writeable = False  # shared by every caller through the cache
    return weights


def lanczos_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float32 image resized to ``size`` (width, height) as Pillow's LANCZOS resize of
    mode ``F`` would: across first, then down, an axis of unchanged size left alone."""
    width, height = size
    resized = image.astype(np.float32, copy=False)
    if width != resized.shape[1]:
        resized = (resized @ lanczos_weights(resized.shape[1], width).T).astype(np.float32)
    if height != resized.shape[0]:
        resized = (lanczos_weights(resized.shape[0], height) @ resized).astype(np.float32)
    return resized
