"""Turn uploaded image bytes into the 28x28 input the digit network expects.

MNIST digits are white ink on black, the digit's bounding box scaled to fit
20x20 keeping its aspect ratio, and placed in a 28x28 field so that its centre
of mass sits in the middle. Every upload is brought into that same form, one
small step at a time:

    decode_upload -> to_grayscale -> ink_map -> crop_to_ink -> fit_to_box -> center_by_mass

``preprocess`` runs the whole chain on bytes; ``preprocess_image`` on a
Pillow image; ``normalise_digit`` on an MNIST-style array (used in training,
so the network learns from exactly what it is served).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

# MNIST's mean and standard deviation, the one normalisation used everywhere.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

FIELD_SIZE = 28  # the model's input is FIELD_SIZE x FIELD_SIZE
BOX_SIZE = 20  # the digit's longer side is scaled to BOX_SIZE
DEFAULT_MAX_PIXELS = 50_000_000  # decompression-bomb guard: width x height
# JPEGs are decoded at a reduced scale while both sides stay at least this long.
DRAFT_SIZE = (640, 640)
# Ink must stand this far (out of 255) above the background to count as a digit.
MIN_INK_CONTRAST = 40


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

    Raises ``NotAnImageError`` for bytes Pillow cannot read completely and
    ``ImageTooLargeError`` when the image has more than ``max_pixels`` pixels.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns before refusing a decompression bomb; both mean "too large".
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"the image is {width}x{height} pixels; the limit is {max_pixels:,} pixels"
                )
            image.draft(image.mode, DRAFT_SIZE)  # JPEG only: decode at 1/2, 1/4 or 1/8 scale
            image.load()
            return ImageOps.exif_transpose(image)
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


def to_grayscale(image: Image.Image) -> np.ndarray:
    """A float32 array in 0..255 for any Pillow mode, transparency flattened.

    What is opaque is the ink, so transparent images are composited onto a
    background that contrasts with their opaque pixels: dark strokes go on
    white, light strokes on black.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        low, high = float(values.min()), float(values.max())
        if high <= low:
            return np.zeros(values.shape, dtype=np.float32)
        return (values - low) * (255.0 / (high - low))
    if image.mode == "LAB":
        return np.asarray(image.getchannel("L"), dtype=np.float32)
    if _has_transparency(image):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3] / 255.0
        luma = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        coverage = float(alpha.sum())
        if coverage == 0.0:
            return np.zeros(alpha.shape, dtype=np.float32)
        stroke_luma = float((luma * alpha).sum()) / coverage
        background = 255.0 if stroke_luma < 128.0 else 0.0
        return luma * alpha + background * (1.0 - alpha)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.float32)


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Ink as bright values on a zero background, whatever the original polarity.

    The background level is the median of the image's border; dark ink on
    light paper is inverted. Anything within the background's noise is zeroed.
    """
    border = np.concatenate([gray[0, :], gray[-1, :], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background > 127.5:
        ink = background - gray
    else:
        ink = gray - background
    ink = np.clip(ink, 0.0, None)
    if float(ink.max()) < MIN_INK_CONTRAST:
        raise NoDigitError("no digit was found in the image")
    ink *= 255.0 / float(ink.max())
    ink[ink < 0.2 * 255.0] = 0.0
    return ink


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """The smallest rectangle holding every ink pixel."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        raise NoDigitError("no digit was found in the image")
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


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
    """The model's input for a decoded Pillow image."""
    return prepare_ink(ink_map(to_grayscale(image)))


def preprocess(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> PreparedDigit:
    """The model's input for uploaded bytes."""
    return preprocess_image(decode_upload(data, max_pixels))


def normalise_digit(digit: np.ndarray) -> np.ndarray:
    """An MNIST-style uint8 digit (white on black) re-centred exactly as uploads are."""
    ink = digit.astype(np.float32)
    if float(ink.max()) <= 0.0:
        return digit.astype(np.uint8)
    return prepare_ink(ink * (255.0 / float(ink.max()))).image
