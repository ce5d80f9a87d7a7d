"""The errors an upload can fail with on its way to the model; each names its reason as ``code``."""

from __future__ import annotations


class PreprocessError(ValueError):
    """An upload that cannot become a digit image; ``code`` names the reason."""

    code = "preprocess_error"


class NotAnImageError(PreprocessError):
    code = "not_an_image"


class ImageTooLargeError(PreprocessError):
    code = "image_too_large"


class NoDigitError(PreprocessError):
    code = "no_digit_found"
