"""Turn uploaded bytes into an upright Pillow image, within a size budget.

``decode_upload`` caps the pixels, takes an animation's first frame, applies
the EXIF orientation and decodes large JPEGs at a reduced scale.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from imaging.errors import ImageTooLargeError, NotAnImageError, PreprocessError

DEFAULT_MAX_PIXELS = 50_000_000  # decompression-bomb guard: width x height
# JPEGs are decoded at 1/2, 1/4 or 1/8 scale while the longer side keeps at
# least this many pixels, so a digit a twentieth of a photo tall keeps 50.
DECODE_SIZE = 1000


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
