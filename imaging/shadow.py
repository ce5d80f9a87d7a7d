"""Lift a cast shadow off the paper: the light on the page divided out where it falls in a step.

A phone held over a page, or a hand, casts a shadow whose edge crosses the
paper. The paper's fitted surface (``imaging.ink.fit_paper``) is smooth
and cannot follow that step, so the shaded paper was taken for ink. The light
falling on the paper is read here as the picture's morphological closing with
a square a tenth of its size: it closes over pen strokes (which hold no such
square) and keeps a shadow, whose edge a closing follows. A shadow is told
from light falling off across a page, and from a broad digit, by the shape of
what lies in it (``find_shadow``); the picture is then divided by the light,
which brings the shaded paper, and the ink on it, back to the lit paper's
levels. Only dark ink is lifted: it is on light paper that a shadow shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from imaging.opencv import cv2
from imaging.pixels import rim_inside, steepness

# The closing's square, as a share of the picture's longer side ...
LIGHT_KERNEL = 0.1
# ... taken after a median over this many pixels square.
GRAIN_MEDIAN = 5
# The lit paper's light is this percentile of the light ...
LIT_PERCENTILE = 95
# ... and paper this share darker or more is in shade.
SHADE_STEP = 0.15
# A shadow, and the lit paper beside it, each cover at least this share of the picture ...
SHADOW_SHARE = 0.05
# ... at most this share of the lit paper's light at its median (light falling off
# towards a page's corners leaves it at 0.78 to 0.83 on the phone photos of the tests) ...
SHADOW_DEPTH = 0.75
# ... this share of each at least is broad, a square a fifth of the picture fitting there
# (a stroke, however thick, is narrower: neither a dark digit nor light ink passes) ...
SHADOW_BREADTH = 0.5
BROAD_SQUARE = 0.2
# ... and its edge runs straight: its steep points stray from their line by at most this
# share of the picture (the tests' shadows: 0.003 at the median, 0.046 at most where a digit
# crosses the edge; the outlines of the visible digits' ink that pass the other tests, 0.063
# or more).
EDGE_STRAIGHTNESS = 0.05
# ... and the light changes across it by at least this share of the step a pixel (the
# tests' shadows: 0.038 or more; light falling off across a phone photo, about 0.011).
EDGE_SHARPNESS = 0.025
# Only the edge's points where the light changes at least this share as fast as at its
# steepest tenth count: a cast shadow's edge, not where light falling off across the page
# crosses the shade's level.
STEEP_SHARE = 0.5
# Light is lifted at most this many times: anything darker than this share of the lit paper
# is no paper in shade (a desk, a sleeve) and stays dark.
MAX_LIFT = 1.0 / 0.3
# Pictures smaller than this (longer side) are no photos of a page: nothing is looked for.
MIN_PICTURE = 128


def square(picture: np.ndarray, share: float) -> np.ndarray:
    """A square structuring element ``share`` of the picture's longer side (odd, at least 3)."""
    return square_of(round(max(picture.shape) * share))


def square_of(side: float) -> np.ndarray:
    """A square structuring element about ``side`` pixels wide (odd, at least 3)."""
    side = max(3, round(side) | 1)
    return cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))


def light_on_paper(gray: np.ndarray, side: float) -> np.ndarray:
    """The light falling on the paper at every pixel of ``gray`` (0..255), as uint8: its
    dark pen strokes closed over by a square ``side`` pixels wide."""
    # The median first: the closing would otherwise rise to the grain's brightest specks, and
    # shaded paper, lifted, would stay darker than lit paper by its grain.
    levels = cv2.medianBlur(np.clip(gray, 0, 255).astype(np.uint8), GRAIN_MEDIAN)
    return cv2.morphologyEx(levels, cv2.MORPH_CLOSE, square_of(side),
                            borderType=cv2.BORDER_REPLICATE)


def level_at(levels: np.ndarray, share: float) -> float:
    """The level below which ``share`` of ``levels`` (uint8) lie: a percentile, counted
    rather than sorted."""
    counts = np.cumsum(np.bincount(levels.ravel(), minlength=256))
    return float(np.searchsorted(counts, share * counts[-1]))


@dataclass(frozen=True)
class Shadow:
    """A cast shadow found on a picture: the light on its paper (``light_on_paper``), the
    lit paper's light, and the width of the square the light was read with."""

    light: np.ndarray  # uint8, the shape of the picture it was found on
    lit: float
    side: float

    def lift(self, gray: np.ndarray,
             box: tuple[float, float, float, float] | None = None) -> np.ndarray:
        """``gray`` with the light divided out. ``gray`` shows ``box`` (left, top, right,
        bottom) of the picture the shadow was found on, at any scale; the whole of it when
        None.

        A region is lit by its own light, read with a square as wide as on the
        picture, but nowhere brighter than the picture's light there: a sliver of
        shadow along the region's side is narrower than the square, and would be
        closed over as a stroke is.
        """
        if box is None:
            return divided(gray, self.light.astype(np.float32), self.lit)
        left, top, right, bottom = box
        scale = gray.shape[1] / (right - left)
        window = self.light[math.floor(top):math.ceil(bottom),
                            math.floor(left):math.ceil(right)]
        around = cv2.resize(window, gray.shape[::-1], interpolation=cv2.INTER_LINEAR)
        light = np.minimum(light_on_paper(gray, self.side * scale), around)
        return divided(gray, light.astype(np.float32), self.lit)


def divided(gray: np.ndarray, light: np.ndarray, lit: float) -> np.ndarray:
    """``gray`` divided by ``light`` and brought to ``lit``, lifted at most ``MAX_LIFT``
    times."""
    return np.clip(gray * (lit / np.maximum(light, lit / MAX_LIFT)), 0.0, 255.0)


def find_shadow(gray: np.ndarray) -> Shadow | None:
    """The cast shadow across ``gray`` (0..255), or None: a broad region in shade, as deep
    as a shadow, beside broad lit paper, behind a straight and sharp edge."""
    if max(gray.shape) < MIN_PICTURE:
        return None
    side = max(gray.shape) * LIGHT_KERNEL
    light = light_on_paper(gray, side)
    lit = level_at(light, LIT_PERCENTILE / 100)
    shaded = light < (1.0 - SHADE_STEP) * lit
    if not SHADOW_SHARE <= np.count_nonzero(shaded) / light.size <= 1.0 - SHADOW_SHARE:
        return None
    shade = level_at(light[shaded], 0.5)
    if shade > SHADOW_DEPTH * lit:
        return None
    if not (broad(shaded) and broad(~shaded)):  # light ink's strokes are the lit "paper"
        return None
    straightness, steepness = shade_edge(shaded, light)
    if straightness > EDGE_STRAIGHTNESS or steepness < EDGE_SHARPNESS * (lit - shade):
        return None
    return Shadow(light, lit, side)


def broad(region: np.ndarray) -> bool:
    """Whether ``SHADOW_BREADTH`` of a region lies where a square ``BROAD_SQUARE`` of the
    picture fits."""
    opened = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_OPEN,
                              square(region, BROAD_SQUARE))
    return np.count_nonzero(opened) >= SHADOW_BREADTH * np.count_nonzero(region)


def shade_edge(shaded: np.ndarray, light: np.ndarray) -> tuple[float, float]:
    """The steep points (``STEEP_SHARE``) of a shaded region's edge: how far they stray from
    their best line, as a share of the picture's longer side, and how fast the light changes
    there at the median, per pixel; (1.0, 0.0) with no edge."""
    rows, cols = np.nonzero(rim_inside(shaded))
    if rows.size < 3:
        return 1.0, 0.0
    change = steepness(light)[rows, cols]
    steep = change >= STEEP_SHARE * np.percentile(change, 90)
    points = np.stack([cols[steep], rows[steep]], axis=1).astype(np.float64)
    if len(points) < 3:
        return 1.0, 0.0
    points -= points.mean(axis=0)
    least_spread = np.linalg.eigvalsh(points.T @ points / len(points))[0]
    straightness = float(np.sqrt(max(least_spread, 0.0))) / max(shaded.shape)
    return straightness, float(np.median(change[steep]))
