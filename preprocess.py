"""Turn uploaded image bytes into the 28x28 input the digit network expects.

MNIST digits are white ink on black, the digit's bounding box scaled to fit
20x20 keeping its aspect ratio, and placed in a 28x28 field so that its centre
of mass sits in the middle. Every upload is brought into that same form, one
small step at a time:

    decode_upload       bytes -> upright Pillow image: size cap, first frame, EXIF
                        orientation; large JPEGs decoded at reduced scale
    find_digit          where the ink is, searched on a small copy of the image
    read_digit          that region again, at a resolution fit for the digit:
        shrink              averaged down to at most READ_SIZE pixels
        to_grayscale        any mode -> 0..255, transparency flattened
        ink_map             orient_ink -> flatten_background -> isolate_ink:
                            the ink bright on 0, whatever the paper, light or pen;
                            no ink at all -> NoDigitError
    even_out_strokes    thick marker thinned, fine pen thickened to MNIST's widths
    prepare_ink         crop_to_ink -> fit_to_box -> center_by_mass -> to_model_input

``preprocess`` runs the whole chain on bytes; ``preprocess_image`` on a
Pillow image; ``normalise_digit`` on an MNIST-style array (used in training,
so the network learns from digits cropped, scaled and centred as uploads are).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

# MNIST's mean and standard deviation, the one normalisation used everywhere.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

FIELD_SIZE = 28  # the model's input is FIELD_SIZE x FIELD_SIZE
BOX_SIZE = 20  # the digit's longer side is scaled to BOX_SIZE
DEFAULT_MAX_PIXELS = 50_000_000  # decompression-bomb guard: width x height
# JPEGs are decoded at 1/2, 1/4 or 1/8 scale while the longer side keeps at
# least this many pixels, so a digit a twentieth of a photo tall keeps 50.
DECODE_SIZE = 1000
# The whole image is searched for ink at most this large (longer side): small
# enough to be quick, large enough that a thin faint stroke is not averaged away ...
SURVEY_SIZE = 320
# ... and the region found is read again from the decoded image at most this large,
READ_SIZE = 320
# ... reaching this far beyond the ink on every side (times the ink's longer
# side), so that the region holds paper as well as ink.
READ_MARGIN = 0.5
# The paper's light is measured on a grid of this many cells along the longer side.
BACKGROUND_CELLS = 16
# Ink must stand this far (out of 255) above the paper to count as a digit ...
MIN_INK_CONTRAST = 24
# ... and this many times further than the paper's own grain and noise vary.
MIN_INK_TO_NOISE = 20.0
# Pixels within this many deviations of the paper's noise are taken for paper,
NOISE_SIGMAS = 6.0
# ... as are those fainter than this fraction of the strongest ink.
INK_FLOOR = 0.2
# Cells of the paper's grid further than this many deviations from the fit hold ink.
OUTLIER_SIGMAS = 3.0
# A median absolute deviation times this is the standard deviation of Gaussian noise.
MAD_TO_SIGMA = 1.4826
# Nine MNIST digits in ten have strokes this wide, in pixels of the 20-pixel box:
# the 5th and 95th percentiles of ``stroke_width`` over the subset's 9,000
# training digits. Uploads drawn thicker or thinner are brought to the nearer end.
MNIST_STROKE_WIDTHS = (1.63, 3.65)
# Strokes are thinned or thickened at this many times the box's final size.
STROKE_SCALE = 4

# Modes holding more than 8 bits per pixel, read on their own scales.
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
# Modes Image.reduce cannot average, and the mode each is averaged in instead.
UNREDUCIBLE_MODES = {"1": "L", "P": "RGB", "PA": "RGBA"}
# Modes with an alpha channel (the lower-case ones premultiplied).
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


class PreprocessError(ValueError):
    """An upload that cannot become a digit image; ``code`` names the reason."""

    code = "preprocess_error"


class NotAnImageError(PreprocessError):
    code = "not_an_image"


class ImageTooLargeError(PreprocessError):
    code = "image_too_large"


class NoDigitError(PreprocessError):
    code = "no_digit_found"


@dataclass(frozen=True)
class PreparedDigit:
    """The model's input for one image and the 28x28 picture it was made from."""

    tensor: torch.Tensor  # (1, 28, 28), float32, normalised
    image: np.ndarray  # (28, 28), uint8, white ink on black


def decode_upload(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode bytes into an upright Pillow image (first frame, EXIF orientation applied).

    JPEGs are decoded at a reduced scale when they are much larger than
    ``DECODE_SIZE``. Raises ``NotAnImageError`` for bytes Pillow cannot read
    completely and ``ImageTooLargeError`` when the image has more than
    ``max_pixels`` pixels.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns before refusing a decompression bomb; both mean "too large".
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # an animation opens on its first frame
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"the image is {width}x{height} pixels; the limit is {max_pixels:,} pixels"
                )
            image.draft(image.mode, draft_request(image.size))  # only JPEG acts on it
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            return image
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageTooLargeError(
            f"the image has more pixels than the limit of {max_pixels:,}"
        ) from None
    except PreprocessError:
        raise
    except UnidentifiedImageError:
        raise NotAnImageError(
            "the file is not an image in a format the service reads"
            " (PNG, JPEG, GIF, BMP, TIFF, WebP and the other formats Pillow opens)"
        ) from None
    except Exception:  # Pillow raises many types for broken or hostile files
        raise NotAnImageError("the image is damaged or truncated and cannot be decoded") from None


def draft_request(size: tuple[int, int], longer: int = DECODE_SIZE) -> tuple[int, int]:
    """The size to ask ``Image.draft`` for: ``size`` scaled so its longer side is ``longer``.

    Pillow decodes at the smallest scale that still covers both requested sides.
    """
    scale = min(1.0, longer / max(size))
    return max(1, int(size[0] * scale)), max(1, int(size[1] * scale))


def shrink(image: Image.Image, longest: int) -> Image.Image:
    """``image`` averaged down by a whole factor until its longer side is at most ``longest``."""
    factor = math.ceil(max(image.size) / longest)
    if factor <= 1:
        return image
    if has_transparency(image) and image.mode not in ALPHA_MODES:
        image = image.convert("RGBA")  # averaging needs real alpha, not a transparent colour
    elif image.mode in HIGH_BIT_MODES:
        image = Image.fromarray(high_bit_to_8_bit(image), mode="F")  # read on the mode's scale
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
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3] / 255.0
        luma = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        coverage = float(alpha.sum())
        if coverage == 0.0:
            return np.zeros(alpha.shape, dtype=np.float32)
        stroke_luma = float((luma * alpha).sum()) / coverage
        background = 255.0 if stroke_luma < 128.0 else 0.0
        return luma * alpha + background * (1.0 - alpha)
    if image.mode == "LAB":
        return np.asarray(image.getchannel("L"), dtype=np.float32)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.float32)


def has_transparency(image: Image.Image) -> bool:
    """Whether ``image`` has an alpha channel or a transparent colour."""
    return image.mode in ALPHA_MODES or "transparency" in image.info


def high_bit_to_8_bit(image: Image.Image) -> np.ndarray:
    """A 16-bit, 32-bit or float image on the 0..255 scale.

    16-bit modes span 0..65535. ``I`` and ``F`` carry no range of their own,
    so they are read on the smallest usual scale that holds their values:
    0..1 (float only), 0..255, 0..65535, else their own maximum. The scale is
    never stretched to the values, so a blank image's faint noise stays faint.
    """
    values = np.asarray(image, dtype=np.float32)
    top = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16"):
        full = 65535.0
    elif image.mode == "F" and top <= 1.0:
        full = 1.0
    elif top <= 255.0:
        full = 255.0
    elif top <= 65535.0:
        full = 65535.0
    else:
        full = top
    return np.clip(values * (255.0 / full), 0.0, 255.0)


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Ink as bright values on a zero background, whatever the paper, the light or the pen."""
    return isolate_ink(flatten_background(orient_ink(gray)))


def orient_ink(gray: np.ndarray) -> np.ndarray:
    """Ink as the bright side: dark ink on light paper is inverted, light ink kept.

    The ink is whichever side strays further from the paper, darker (pen on
    paper) or lighter (chalk on a board, white strokes on black). The paper
    is measured where it lies, so uneven light does not tip the choice.
    """
    difference = mean3x3(gray - paper_surface(gray))
    return 255.0 - gray if -float(difference.min()) > float(difference.max()) else gray


def flatten_background(ink: np.ndarray) -> np.ndarray:
    """Bright ink with the paper's uneven light taken away, so the paper sits at 0."""
    return np.clip(ink - paper_surface(ink, ink_is_bright=True), 0.0, None)


def paper_surface(values: np.ndarray, ink_is_bright: bool = False,
                  cells: int = BACKGROUND_CELLS) -> np.ndarray:
    """The paper's level at every pixel, as if no ink lay on it.

    Light falls off smoothly across a page (a lamp to one side, a phone's
    vignette), so the paper is modelled as a quadratic surface, fitted to a
    coarse grid of cells and refitted without the cells that stray from it:
    those hold ink. Each cell's level is its median, and the fit starts from
    the commonest levels. Once the ink is known to be the bright side, each
    cell's lower quartile is used instead (paper unless ink covers nearly all
    the cell, as inside a thick marker's stroke), only cells above the fit
    are left out, and the fit starts from the darker half of the cells.
    """
    height, width = values.shape
    cell = max(1, math.ceil(max(height, width) / cells))
    rows, cols = math.ceil(height / cell), math.ceil(width / cell)
    padded = np.pad(values, ((0, rows * cell - height), (0, cols * cell - width)), mode="edge")
    blocks = padded.reshape(rows, cell, cols, cell).transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    rank = blocks.shape[2] // (4 if ink_is_bright else 2)
    levels = np.partition(blocks, rank, axis=2)[..., rank].ravel()
    cell_y, cell_x = np.indices((rows, cols), dtype=np.float32)
    terms = quadratic_terms((cell_y.ravel() + 0.5) * cell / height,
                            (cell_x.ravel() + 0.5) * cell / width)
    if ink_is_bright:
        paper = levels <= np.median(levels)
    else:
        typical = np.abs(levels - np.median(levels))
        paper = typical <= OUTLIER_SIGMAS * MAD_TO_SIGMA * float(np.median(typical)) + 1.0
    for _ in range(5):
        coefficients, *_ = np.linalg.lstsq(terms[paper], levels[paper], rcond=None)
        residual = levels - terms @ coefficients
        if not ink_is_bright:
            residual = np.abs(residual)
        spread = MAD_TO_SIGMA * float(np.median(np.abs(residual[paper])))
        keep = residual <= OUTLIER_SIGMAS * spread + 1.0  # a level's slack for flat paper
        if keep.sum() < terms.shape[1] or np.array_equal(keep, paper):
            break
        paper = keep
    return quadratic_surface(coefficients, values.shape)


def quadratic_terms(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The terms of a quadratic surface at points ``y``, ``x`` (0..1 across the image)."""
    y, x = y - 0.5, x - 0.5
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


def quadratic_surface(coefficients: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The surface ``quadratic_terms`` fitted, evaluated at every pixel's centre."""
    one, cx, cy, cxx, cxy, cyy = (float(c) for c in coefficients)
    y = (np.arange(shape[0], dtype=np.float32) + 0.5) / shape[0] - 0.5
    x = (np.arange(shape[1], dtype=np.float32) + 0.5) / shape[1] - 0.5
    by_row = one + cy * y + cyy * y * y
    by_column = cx * x + cxx * x * x
    return by_row[:, None] + by_column[None, :] + cxy * np.outer(y, x)


def isolate_ink(flat: np.ndarray) -> np.ndarray:
    """Only the ink, scaled so the strongest is 255; raises ``NoDigitError`` when there is none.

    The paper's level and its grain and noise are measured on a 3x3-smoothed
    copy (median and median absolute deviation). The strongest ink must stand
    ``MIN_INK_CONTRAST`` and ``MIN_INK_TO_NOISE`` times the noise above the
    paper; pixels no further above it than ``NOISE_SIGMAS`` times the noise, or
    than ``INK_FLOOR`` of the strongest ink, are paper.
    """
    smooth = mean3x3(flat)
    paper = float(np.median(smooth))
    noise = MAD_TO_SIGMA * float(np.median(np.abs(smooth - paper)))
    peak = float(smooth.max()) - paper
    if peak < MIN_INK_CONTRAST or peak < MIN_INK_TO_NOISE * noise:
        raise NoDigitError("no digit was found in the image")
    cut = paper + max(NOISE_SIGMAS * noise, INK_FLOOR * peak)
    ink = np.clip((flat - paper) * (255.0 / peak), 0.0, 255.0)
    ink[smooth <= cut] = 0.0
    return ink


def mean3x3(values: np.ndarray) -> np.ndarray:
    """Each pixel averaged with its eight neighbours (edges repeated): grain and noise fade."""
    padded = np.pad(values, 1, mode="edge")
    height, width = values.shape
    total = np.zeros(values.shape, dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            total += padded[dy : dy + height, dx : dx + width]
    return total / 9.0


def ink_bounds(ink: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the ink, right and bottom exclusive."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        raise NoDigitError("no digit was found in the image")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def find_digit(image: Image.Image) -> tuple[int, int, int, int]:
    """The region of ``image`` to read: the ink found on a small copy, with paper around it."""
    survey = shrink(image, SURVEY_SIZE)
    left, top, right, bottom = ink_bounds(ink_map(to_grayscale(survey)))
    scale_x, scale_y = image.width / survey.width, image.height / survey.height
    margin = READ_MARGIN * max((right - left) * scale_x, (bottom - top) * scale_y)
    return (
        max(0, math.floor(left * scale_x - margin)),
        max(0, math.floor(top * scale_y - margin)),
        min(image.width, math.ceil(right * scale_x + margin)),
        min(image.height, math.ceil(bottom * scale_y + margin)),
    )


def read_digit(image: Image.Image, region: tuple[int, int, int, int]) -> np.ndarray:
    """The ink map of ``region``, read at most ``READ_SIZE`` pixels on its longer side."""
    return ink_map(to_grayscale(shrink(image.crop(region), READ_SIZE)))


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
    adds it to) the strokes' width. Digits already within ``widths`` are
    returned untouched.
    """
    large = fit_to_box(digit, BOX_SIZE * scale)
    width = stroke_width(large) / scale
    low, high = widths
    if low <= width <= high:
        return digit
    passes = math.ceil(abs(width - (high if width > high else low)) * scale / 2)
    rank_filter = ImageFilter.MinFilter(3) if width > high else ImageFilter.MaxFilter(3)
    image = Image.fromarray(large, mode="F")
    for _ in range(passes):
        image = image.filter(rank_filter)
    return crop_to_ink(np.asarray(image, dtype=np.float32))


def fit_to_box(ink: np.ndarray, box: int = BOX_SIZE) -> np.ndarray:
    """Scale so the longer side is ``box`` pixels, keeping the aspect ratio."""
    height, width = ink.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    source = Image.fromarray(ink.astype(np.float32), mode="F")
    resized = source.resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized), 0.0, 255.0)


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


def to_model_input(image: np.ndarray) -> torch.Tensor:
    """A uint8 28x28 picture as the normalised (1, 28, 28) tensor the network takes."""
    scaled = torch.from_numpy(image).to(torch.float32).div_(255.0).unsqueeze(0)
    return scaled.sub_(MNIST_MEAN).div_(MNIST_STD)


def prepare_ink(ink: np.ndarray) -> PreparedDigit:
    """Crop, scale and centre an ink map into the model's input."""
    placed = center_by_mass(fit_to_box(crop_to_ink(ink)))
    picture = np.round(placed).astype(np.uint8)
    return PreparedDigit(tensor=to_model_input(picture), image=picture)


def preprocess_image(image: Image.Image) -> PreparedDigit:
    """The model's input for a decoded Pillow image: find the digit, read it, prepare it."""
    ink = read_digit(image, find_digit(image))
    return prepare_ink(even_out_strokes(crop_to_ink(ink)))


def preprocess(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> PreparedDigit:
    """The model's input for uploaded bytes."""
    return preprocess_image(decode_upload(data, max_pixels))


def normalise_digit(digit: np.ndarray) -> np.ndarray:
    """An MNIST-style uint8 digit (white on black) cropped, scaled and centred as uploads are.

    Its strokes are left as drawn: ``even_out_strokes`` only brings uploads
    into the range of widths nine MNIST digits in ten already have.
    """
    ink = digit.astype(np.float32)
    if float(ink.max()) <= 0.0:
        return digit.astype(np.uint8)
    return prepare_ink(ink * (255.0 / float(ink.max()))).image
