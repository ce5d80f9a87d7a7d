"""Turn uploaded image bytes into the 28x28 input the digit network expects.

Every upload is brought into MNIST's form one small step at a time:

    decode_upload       bytes -> upright Pillow image (imaging.decode)
    digit_ink           where the ink is, on a small copy, then that region's ink map
                        at a resolution fit for the digit (imaging.ink)
    even_out_strokes    thick marker thinned, fine pen thickened (imaging.normalise)
    prepare_ink         crop_to_ink -> fit_to_box -> center_by_mass -> to_model_input

This reads the whole ink as one digit. The request chain runs the same steps
in two stages: preprocess (``imaging.ink.locate_ink``) finds the ink map, and
segment (``imaging.segment``) prepares each digit found in it, the whole ink
when it is one digit.
"""

from __future__ import annotations

from PIL import Image

from imaging.decode import DEFAULT_MAX_PIXELS, decode_upload
from imaging.ink import digit_ink
from imaging.normalise import PreparedDigit, crop_to_ink, even_out_strokes, prepare_ink


def preprocess_image(image: Image.Image) -> PreparedDigit:
    """The model's input for a decoded Pillow image: find the digit, read it, prepare it."""
    ink = digit_ink(image)
    return prepare_ink(even_out_strokes(crop_to_ink(ink)))


def preprocess(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> PreparedDigit:
    """The model's input for uploaded bytes."""
    return preprocess_image(decode_upload(data, max_pixels))
