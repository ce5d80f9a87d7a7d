"""Bring the ink of two touching digits into the pair reader's form: cropped, scaled to fit a
``PAIR_BOX`` box keeping its aspect ratio, centred in a ``PAIR_FIELD`` field, normalised the
MNIST way.

Training (``training.pairs``) prepares the pairs it composes with the same function that
the service uses on a group of ink, so what the pair reader learns is what it reads.
"""

from __future__ import annotations

import numpy as np

from imaging.normalise import crop_to_ink, fit_to_box, to_model_input

PAIR_FIELD = (28, 56)  # rows, columns: room for two digits side by side
PAIR_BOX = (20, 48)  # the ink is scaled to fit this box, as one digit is to 20x20
PAIR_SHAPE = (1, *PAIR_FIELD)  # one input of the pair reader


def pair_picture(ink: np.ndarray) -> np.ndarray:
    """The ink (0..255, white on black) cropped, fitted into ``PAIR_BOX`` and centred by its
    box in ``PAIR_FIELD``: a uint8 picture."""
    cropped = crop_to_ink(ink)
    height, width = cropped.shape
    box_rows, box_cols = PAIR_BOX
    # fit_to_box scales the longer side to its box; the pair's limit is whichever side
    # reaches its own edge of the box first.
    scale = min(box_rows / height, box_cols / width)
    fitted = fit_to_box(cropped, max(1, round(max(height, width) * scale)))
    rows, cols = fitted.shape
    field = np.zeros(PAIR_FIELD, dtype=np.float32)
    top, left = (PAIR_FIELD[0] - rows) // 2, (PAIR_FIELD[1] - cols) // 2
    field[top : top + rows, left : left + cols] = fitted[: PAIR_FIELD[0], : PAIR_FIELD[1]]
    return np.round(field).astype(np.uint8)


def pair_input(ink: np.ndarray) -> np.ndarray:
    """The pair reader's normalised float32 input (``PAIR_SHAPE``) for a group's ink."""
    return to_model_input(pair_picture(ink), PAIR_SHAPE)
