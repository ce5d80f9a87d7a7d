"""A sheet of paper photographed on a darker desk: the desk painted over as paper.

A phone photo of a written digit often shows the desk around the sheet. The
desk is darker than the paper, as the ink is, and it lies along the picture's
edge, where the paper is looked for: the sheet would be taken for the ink, or
the desk for part of the digit. ``find_sheet`` finds such a sheet on the
small copy the digit is searched on, and ``Sheet.cover`` paints everything off
it at the paper's level, there and on the region the digit is read from, so
that the rest of the chain sees a page that fills the picture.

A sheet is the largest light region of the picture (split at Otsu's level),
holding ink, as convex as a sheet and filling its smallest enclosing
rectangle; the desk around it is dark, lies along the picture's edge, and
meets the sheet at a sharp edge, well below the paper's level. Uneven light,
a shadow or ruled paper split at Otsu's level give regions that fail one of
these tests, and the picture is read as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from imaging.opencv import cv2
from imaging.pixels import edge_of, mean3x3, rim_inside, steepness

# The sheet covers at least this share of the picture, ...
SHEET_SHARE = 0.2
# ... its outline at least this share of its convex hull (a sheet is convex; paper wound
# between strokes is not) ...
SHEET_SOLIDITY = 0.95
# ... and of its smallest enclosing rectangle, turned as the sheet lies (a sheet is
# four-sided; an oval, the filled outline of a light 0, covers 79%).
SHEET_FILL = 0.85
# The desk covers at least this share of the picture, ...
DESK_SHARE = 0.02
# ... along at least this share of the picture's edge, ...
DESK_EDGE = 0.2
# ... at least this share of it on the dark side of Otsu's level, ...
DESK_DARK = 0.9
# ... the paper standing at least this share of the picture's range above the desk.
SHEET_STEP = 0.25
# Along the sheet's rim the level changes by at least this share of that step per pixel
# (the median): a sheet's edge is sharp, a shadow's or the light's fall-off is not. Rims
# of photographed sheets measured 0.23 to 0.6, light falling off 0.02 to 0.04.
RIM_SHARPNESS = 0.15
# The rim left out of the sheet: this many pixels inside its outline. Of 500 digits
# photographed on a desk, 473 were read right with 3, 478 with 4 and 485 with 6: the
# blurred rim of a photographed sheet is wider than it looks; a stroke this close to the
# sheet's edge is lost.
RIM_WIDTH = 6


@dataclass(frozen=True)
class Sheet:
    """A sheet of paper found on a picture: where it lies (its rim left out) and its level."""

    inside: np.ndarray  # bool, the shape of the picture it was found on
    paper_level: float

    def cover(self, gray: np.ndarray,
              box: tuple[float, float, float, float] | None = None) -> np.ndarray:
        """``gray`` with everything off the sheet painted at the paper's level. ``gray`` shows
        ``box`` (left, top, right, bottom) of the picture the sheet was found on, at any
        scale; the whole of it when None."""
        inside = self.inside
        if box is not None:
            left, top, right, bottom = box
            inside = inside[math.floor(top):math.ceil(bottom), math.floor(left):math.ceil(right)]
        if inside.shape != gray.shape:
            inside = cv2.resize(inside.astype(np.uint8), gray.shape[::-1],
                                interpolation=cv2.INTER_NEAREST).astype(bool)
        if inside.all():
            return gray
        covered = gray.copy()
        covered[~inside] = self.paper_level
        return covered


def find_sheet(gray: np.ndarray) -> Sheet | None:
    """The sheet of paper lying on a darker desk in ``gray``, or None (see the module's
    docstring)."""
    smooth = mean3x3(gray)
    darkest, lightest = float(smooth.min()), float(smooth.max())
    if lightest - darkest < 1.0:
        return None
    levels = ((smooth - darkest) * (255.0 / (lightest - darkest))).astype(np.uint8)
    _, light = cv2.threshold(levels, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    outlines, _ = cv2.findContours(light, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not outlines:
        return None
    outline = max(outlines, key=cv2.contourArea)
    if not sheet_shaped(outline, gray.size):
        return None
    filled = np.zeros(gray.shape, dtype=np.uint8)
    cv2.drawContours(filled, [outline], -1, 1, thickness=cv2.FILLED)
    sheet, light = filled.astype(bool), light.astype(bool)
    desk = ~sheet
    if not desk_around(desk, light) or light[sheet].all():  # no desk, or no ink on the sheet
        return None
    paper_level = float(np.median(gray[sheet & light]))
    step = paper_level - float(np.median(gray[desk]))
    if step < SHEET_STEP * (lightest - darkest):
        return None
    if rim_sharpness(smooth, sheet) < RIM_SHARPNESS * step:
        return None
    # The sheet's rim, where paper and desk blur into each other, is left out too: kept,
    # it would be read as a stroke along the sheet's side.
    margin = np.ones((2 * RIM_WIDTH + 1, 2 * RIM_WIDTH + 1), dtype=np.uint8)
    inside = cv2.erode(sheet.astype(np.uint8), margin).astype(bool)
    if light[inside].all():  # no ink left inside the rim: a picture too small for a sheet
        return None
    return Sheet(inside, paper_level)


def sheet_shaped(outline: np.ndarray, picture_area: int) -> bool:
    """Whether a region's outline could be a sheet's: large, convex and four-sided."""
    area = cv2.contourArea(outline)
    _, (width, height), _ = cv2.minAreaRect(outline)
    return (area >= SHEET_SHARE * picture_area
            and area >= SHEET_SOLIDITY * cv2.contourArea(cv2.convexHull(outline))
            and area >= SHEET_FILL * width * height)


def desk_around(desk: np.ndarray, light: np.ndarray) -> bool:
    """Whether the pixels outside a sheet (``desk``) are a dark desk along the picture's edge."""
    area = np.count_nonzero(desk)
    edge = edge_of(desk)
    return (area >= DESK_SHARE * desk.size
            and np.count_nonzero(edge) >= DESK_EDGE * edge.size
            and np.count_nonzero(light[desk]) <= (1.0 - DESK_DARK) * area)


def rim_sharpness(smooth: np.ndarray, sheet: np.ndarray) -> float:
    """The median change of level per pixel along the sheet's rim, inside the picture."""
    rim = rim_inside(sheet)
    if not rim.any():
        return 0.0
    return float(np.median(steepness(smooth)[rim]))
