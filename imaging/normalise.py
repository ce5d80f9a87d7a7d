"""Bring an ink map into MNIST's form: cropped, strokes evened, 20x20 box, centred by mass.

MNIST digits are white ink on black, the digit's bounding box scaled to fit
20x20 keeping its aspect ratio, and placed in a 28x28 field so that its centre
of mass sits in the middle. ``prepare_ink`` does that for an upload's ink map
(``imaging.preprocess.normalise_digit`` runs the whole chain on an MNIST-style
array, for training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imaging.errors import NoDigitError
from imaging.opencv import cv2
from imaging.resample import lanczos_resize

# MNIST's mean and standard deviation, the one normalisation used everywhere.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

FIELD_SIZE = 28  # the model's input is FIELD_SIZE x FIELD_SIZE
BOX_SIZE = 20  # the digit's longer side is scaled to BOX_SIZE

# The shape of one model input: one channel, FIELD_SIZE x FIELD_SIZE.
INPUT_SHAPE = (1, FIELD_SIZE, FIELD_SIZE)
# Nine MNIST digits in ten have strokes this wide, in pixels of the 20-pixel box:
# the 5th and 95th percentiles of ``stroke_width`` over the subset's 9,000
# training digits. Uploads drawn thicker or thinner are brought to the nearer end.
MNIST_STROKE_WIDTHS = (1.63, 3.65)
# Strokes are thinned or thickened at this many times the box's final size.
STROKE_SCALE = 4
# Thinned by this many passes or more (at STROKE_SCALE), a digit is worn down by a round
# filter rather than a square one: a square leaves spurs where a broad marker's blob has
# corners. Broad markers filling 16-pixel pictures were read wrong 48 times in 500
# instead of 86; from fewer passes on, a held-out 0 was worn into an 8.
ROUND_THINNING_PASSES = 4
# A picture scaled down more than twice this much is first averaged down by a whole
# factor (Pillow's ``reducing_gap``), leaving Lanczos at least this much to do: 8% less
# CPU for a whole 280x280 canvas upload, the same digits read right on every upload
# kind, and nothing changes for pictures scaled up or down less (28x28 uploads).
REDUCING_GAP = 3.0
# Pictures are resized by ``lanczos_resize`` (Pillow's own weights as matrices, without
# wrapping the array as an image) where the two matrix products take at most
# MATRIX_MAX_PRODUCTS multiply-adds and no side is longer than MATRIX_MAX_SIDE (which bounds
# the cached matrices): a 20x16 digit scaled to the 80-pixel box in 11 instead of 58 µs, a
# 103x80 canvas digit to the 20-pixel box in 19 instead of 72 µs. Pillow's own resize, which
# works on each output pixel's few neighbours alone, is faster for larger pictures scaled up.
MATRIX_MAX_SIDE = 320
MATRIX_MAX_PRODUCTS = 200_000


@dataclass(frozen=True)
class PreparedDigit:
    """The model's input for one image and the 28x28 picture it was made from."""

    model_input: np.ndarray  # INPUT_SHAPE, float32, normalised
    image: np.ndarray  # (28, 28), uint8, white ink on black


def ink_bounds(ink: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the ink, right and bottom exclusive."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        raise NoDigitError("no digit was found in the image")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """The smallest rectangle holding every ink pixel."""
    left, top, right, bottom = ink_bounds(ink)
    return ink[top:bottom, left:right]


def stroke_width(ink: np.ndarray) -> float:
    """The ink's mean stroke width in pixels: twice its area over its outline's length.

    A stroke of width w and length L covers w * L and is outlined by two
    edges of length L; the outline is measured as the sum of the gradient's
    magnitude, so antialiased edges count as fully as sharp ones.
    """
    values = ink.astype(np.float32) / max(float(ink.max()), 1e-6)
    down = np.diff(values, axis=0)[:, :-1]
    across = np.diff(values, axis=1)[:-1, :]
    outline = float(np.sqrt(down * down + across * across).sum())
    return 2.0 * float(values.sum()) / outline if outline > 0.0 else 0.0


def even_out_strokes(digit: np.ndarray, widths: tuple[float, float] = MNIST_STROKE_WIDTHS,
                     scale: int = STROKE_SCALE) -> np.ndarray:
    """A cropped digit with strokes as wide as MNIST's: thick marker thinned, fine pen thickened.

    The digit is measured at ``scale`` times its final size, where each pass
    of a 3x3 minimum (or maximum) filter takes half a final pixel off (or
    adds it to) the strokes' width (``ROUND_THINNING_PASSES`` or more passes
    thinning it: a round filter as wide). Digits already within ``widths`` are
    returned untouched.
    """
    large = fit_to_box(digit, BOX_SIZE * scale)
    width = stroke_width(large) / scale
    low, high = widths
    if low <= width <= high:
        return digit
    passes = math.ceil(abs(width - (high if width > high else low)) * scale / 2)
    # ``passes`` 3x3 minimum (maximum) filters are one square filter ``passes`` pixels
    # either way, which OpenCV runs at a fraction of the cost of the passes one by one;
    # more passes than the picture is wide change nothing further (a block of solid ink
    # measures strokes of any width).
    passes = min(passes, max(large.shape))
    if width > high:
        passes = thinning_passes(large, passes, high, scale)
        if passes < 1:
            return digit
    thinning = width > high
    shape = (cv2.MORPH_ELLIPSE if thinning and passes >= ROUND_THINNING_PASSES
             else cv2.MORPH_RECT)
    kernel = cv2.getStructuringElement(shape, (2 * passes + 1, 2 * passes + 1))
    morph = cv2.erode if thinning else cv2.dilate
    return crop_to_ink(morph(large.astype(np.float32), kernel, borderType=cv2.BORDER_REPLICATE))


def thinning_passes(large: np.ndarray, passes: int, high: float, scale: int) -> int:
    """``passes``, unless they would thin ``large`` (a digit at ``scale`` times its final
    size) away altogether: then as many as its measure with paper around it asks, and
    fewer than it takes to leave nothing.

    ``stroke_width`` does not see the outline along the sides of a digit's box, where ink
    that fills it across lies (a thick 1): measured so, a bar of 4 pixels seemed 24 wide,
    and the whole digit was thinned away.
    """
    # A stroke outlives a square minimum filter ``p`` pixels either way only where its
    # chessboard distance to paper is more than ``p`` (a round one, where its straight-line
    # distance is, which is never less). Beyond the map is paper: the filter
    # sees its edge's ink there (BORDER_REPLICATE), so a soft bar filling the map across
    # (a 1, its ink nowhere quite zero) was otherwise worn down to a grey block.
    inked = np.pad(large > 0, 1).astype(np.uint8)
    deepest = int(cv2.distanceTransform(inked, cv2.DIST_C, 3).max())
    if passes < deepest:
        return passes
    width = stroke_width(np.pad(large, 1)) / scale
    return min(math.ceil((width - high) * scale / 2), deepest - 1)


def fit_to_box(ink: np.ndarray, box: int = BOX_SIZE) -> np.ndarray:
    """Scale so the longer side is ``box`` pixels, keeping the aspect ratio."""
    height, width = ink.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if (max(height, width) <= MATRIX_MAX_SIDE and not reduces_first(ink.shape, size)
            and height * width * size[0] + size[0] * height * size[1] <= MATRIX_MAX_PRODUCTS):
        return np.clip(lanczos_resize(ink, size), 0.0, 255.0)
    source = Image.fromarray(ink.astype(np.float32), mode="F")
    resized = source.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    return np.clip(np.asarray(resized), 0.0, 255.0)


def reduces_first(shape: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether Pillow's resize to ``size`` averages the picture down by a whole factor
    before resampling (``REDUCING_GAP``), as it does for either axis shrunk six times or more."""
    height, width = shape
    return int(width / size[0] / REDUCING_GAP) > 1 or int(height / size[1] / REDUCING_GAP) > 1


def center_by_mass(digit: np.ndarray, field: int = FIELD_SIZE) -> np.ndarray:
    """Place ``digit`` in a ``field`` x ``field`` square with its centre of mass in the middle."""
    height, width = digit.shape
    total = float(digit.sum())
    rows, cols = np.indices(digit.shape)
    mass_row = float((rows * digit).sum()) / total
    mass_col = float((cols * digit).sum()) / total
    # MNIST puts the centre of mass on pixel (14, 14), not between pixels.
    top = int(round(field / 2 - mass_row))
    left = int(round(field / 2 - mass_col))
    # Keep the whole box inside the field even when the mass is far off-centre.
    top = min(max(top, 0), field - height)
    left = min(max(left, 0), field - width)
    canvas = np.zeros((field, field), dtype=np.float32)
    canvas[top : top + height, left : left + width] = digit
    return canvas


def to_model_input(image: np.ndarray, shape: tuple[int, ...] = INPUT_SHAPE) -> np.ndarray:
    """A uint8 picture as the normalised float32 input a network takes: the digit network's
    28x28 (``INPUT_SHAPE``), or the pair reader's ``shape``."""
    scaled = image.astype(np.float32).reshape(shape) * np.float32(1.0 / 255.0)
    return (scaled - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)


def prepare_ink(ink: np.ndarray) -> PreparedDigit:
    """Crop, scale and centre an ink map into the model's input."""
    placed = center_by_mass(fit_to_box(crop_to_ink(ink)))
    picture = np.round(placed).astype(np.uint8)
    return PreparedDigit(model_input=to_model_input(picture), image=picture)
