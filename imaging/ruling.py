"""Take the ruling of notebook and squared paper out of an ink map, keeping the digit.

    without_ruling      the ink map less its ruling lines (unchanged when it has none)
        reaches_opposite_edges  ruling runs off the picture's edges
        thin_runs           straight runs of thin ink: ruling, fine strokes
        straight_lines      long straight runs of it (OpenCV's probabilistic Hough transform)
        ruling_lines        those runs gathered into lines, kept when thin and parallel
        erase_lines         the lines' pixels set to paper, where no stronger stroke crosses
        drop_debris         small pieces left along the erased lines
    drop_specks         after the ink's floor on a ruled page: what is left of lines not found

A line of a ruled page is a thin straight stroke running across the whole
picture, one of several parallel; a digit's straight strokes (a 7's bar, a
1) are shorter, thicker, or alone. Where a pen stroke crosses a line it is
darker than the line alone, and is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from imaging.opencv import cv2
from imaging.pixels import mean3x3

# Maps smaller than this (longer side) are not looked at: ruling needs room to show.
RULING_MIN_SIZE = 64
# Ruling is looked for among pixels at least this strong (of 255): a line fainter than this
# is gone once the floor of ``imaging.ink.isolate_ink`` is applied.
RULING_INK = 38.0
# A ruling line runs straight across at least this share of the picture's width (height) ...
RULING_SPAN = 0.6
# ... at most this many degrees off the horizontal (vertical), as on a page photographed askew,
RULING_TILT = 10.0
# ... at most this many pixels thick, or this share of the picture's longer side;
RULING_THICKNESS = 4
RULING_THICKNESS_SHARE = 0.02
# ... and is one of at least this many, parallel.
MIN_RULINGS = 2
# It is found in straight pieces at least this share of the picture's side long (a pen stroke
# crossing it, or running along it, breaks it), gathered into one line when they lie on it.
RULING_PIECE = 0.25
# Lines whose tilts differ by at most this many degrees are parallel (in a photo taken at a
# slant, the page's parallel lines converge a little).
PARALLEL = 5.0
# Ink along a line at most this many times the line's own strength is the line; stronger
# ink there is a pen stroke crossing it.
CROSSING_STRENGTH = 1.5
# The band erased around a line reaches this many pixels beyond its measured thickness,
# where its antialiased edge lies.
EDGE = 1
# A line tilted up to RULING_TILT keeps to one row (column) for at least this many pixels.
RUN = 5
# Pixels of thin runs a ruling line gives, at the least, for each pixel of the picture's
# side it crosses (where a digit does not hide it): fewer, and there is no ruling to look for.
LINE_WORTH = 0.8
# Pieces left along erased lines smaller than this share of the largest piece are debris ...
DEBRIS_SHARE = 0.05
# ... and so are those smaller than a square this share of the map's shorter side.
DEBRIS_SIDE = 0.02
# With this many lines or more, a page with nothing else on it is a blank ruled page; with
# fewer, they may be the strokes of a tightly cropped 11.
BLANK_PAGE_RULINGS = 3
# How far either side of a line its thickness is looked for, in pixels.
PROFILE_REACH = 8


@dataclass(frozen=True)
class Line:
    """A straight line on the map: across it (``horizontal``: y = offset + slope * x) or down
    it (x = offset + slope * y), with its thickness and the reach of the pieces found of it
    along its axis."""

    horizontal: bool
    offset: float
    slope: float
    thickness: float
    reach: tuple[float, float]
    ends: tuple[tuple[float, float], ...]  # (along, across) of each piece's two ends

    @property
    def tilt(self) -> float:
        """Degrees off its axis, signed."""
        return math.degrees(math.atan(self.slope))

    @property
    def extent(self) -> float:
        return self.reach[1] - self.reach[0]

    def across_at(self, along: float) -> float:
        return self.offset + self.slope * along


def without_ruling(ink: np.ndarray, ruled: bool = False) -> tuple[np.ndarray, bool]:
    """``ink`` (bright on zero) with the lines of ruled or squared paper erased, and whether
    there were any (what is left may be faint, or nothing: a blank page). ``ruled``: the page
    is known to be ruled (this map is a part of it), so one line is ruling enough.

    Ruling runs off the picture's edges: only a map at least ``RULING_MIN_SIZE``
    pixels whose ink reaches two opposite edges is looked at, and only its
    straight runs of thin ink: every other map is returned as it is, at the cost
    of four slices. Where erasing fewer than ``BLANK_PAGE_RULINGS`` lines
    leaves no ink, the map is returned unchanged: thin straight strokes a tight
    crop leaves edge to edge (an 11) are not taken for ruling.
    """
    if max(ink.shape) < RULING_MIN_SIZE or not reaches_opposite_edges(ink):
        return ink, ruled
    mask = ink >= RULING_INK
    runs = thin_runs(mask)
    least = 1 if ruled else MIN_RULINGS
    if np.count_nonzero(runs) < least * LINE_WORTH * min(mask.shape):
        return ink, ruled
    lines = ruling_lines(mask, straight_lines(runs), least)
    if not lines:
        return ink, ruled
    erased, bands = erase_lines(ink, lines)
    drop_debris(erased, bands)
    if len(lines) < BLANK_PAGE_RULINGS and float(mean3x3(erased).max()) < RULING_INK:
        return ink, ruled  # a few thin strokes edge to edge, and nothing else: not ruling
    return erased, True


def reaches_opposite_edges(ink: np.ndarray) -> bool:
    """Whether ink at least ``RULING_INK`` strong lies within two pixels of both the left and
    the right edge, or of both the top and the bottom."""
    def inked(strip: np.ndarray) -> bool:
        return bool((strip >= RULING_INK).any())

    return (inked(ink[:, :2]) and inked(ink[:, -2:])) or (inked(ink[:2]) and inked(ink[-2:]))


def thin_runs(mask: np.ndarray) -> np.ndarray:
    """The straight runs of ``mask`` (``RUN`` pixels along a row or a column) less what a
    5x5 opening keeps, as uint8: lines and fine strokes, without specks of grain or the body
    of broad pen strokes (which could pass for thick lines)."""
    mask = mask.view(np.uint8)
    runs = (cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((1, RUN), np.uint8))
            | cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((RUN, 1), np.uint8)))
    return runs & (1 - cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)))


def straight_lines(mask: np.ndarray) -> np.ndarray:
    """Straight runs of ``mask`` at least ``RULING_PIECE`` of its shorter side long, as rows
    of x1, y1, x2, y2 (OpenCV's probabilistic Hough transform)."""
    side = min(mask.shape)
    piece = RULING_PIECE * side
    found = cv2.HoughLinesP(mask, 1, math.pi / 180, threshold=max(8, int(piece / 2)),
                            minLineLength=piece, maxLineGap=max(2, side // 20))
    if found is None:
        return np.empty((0, 4), np.float32)
    return found.reshape(-1, 4).astype(np.float32)


def ruling_lines(mask: np.ndarray, segments: np.ndarray,
                 least: int = MIN_RULINGS) -> list[Line]:
    """The ruling among ``segments``: gathered into lines, each thin and spanning its
    direction, at least ``least`` parallel in one direction. Then the other direction's
    lines count too (the columns of squared paper, a notebook's margin), and so do shorter
    ones parallel to them that run off an edge (a line leaving a tilted photo's frame)."""
    height, width = mask.shape
    limit = max(RULING_THICKNESS, RULING_THICKNESS_SHARE * max(height, width))
    padded = np.pad(mask, PROFILE_REACH)
    full: dict[bool, list[Line]] = {}
    partial: dict[bool, list[Line]] = {}
    for horizontal in (True, False):
        span, other = (width, height) if horizontal else (height, width)
        a1, c1, a2, c2 = (segments.T if horizontal else segments[:, [1, 0, 3, 2]].T)
        steep = np.abs(c2 - c1) > np.abs(a2 - a1) * math.tan(math.radians(RULING_TILT))
        keep = (a1 != a2) & ~steep
        a1, c1, a2, c2 = a1[keep], c1[keep], a2[keep], c2[keep]
        slopes = (c2 - c1) / (a2 - a1)
        offsets = c1 - slopes * a1
        low, high = np.minimum(a1, a2), np.maximum(a1, a2)
        thicknesses = line_thicknesses(padded, horizontal, offsets, slopes, low, high)
        pieces = [Line(horizontal, float(offset), float(slope), float(thickness),
                       (float(start), float(stop)),
                       ((float(b1), float(d1)), (float(b2), float(d2))))
                  for offset, slope, thickness, start, stop, b1, d1, b2, d2
                  in zip(offsets, slopes, thicknesses, low, high, a1, c1, a2, c2, strict=True)
                  if thickness <= limit]
        lines = gathered(pieces, span)
        if lines:
            tilt = float(np.median([line.tilt for line in lines]))
            lines = [line for line in lines if abs(line.tilt - tilt) <= PARALLEL]
        spanning = [max(line.extent, covered(padded, line, span, other)) >= RULING_SPAN * span
                    for line in lines]
        full[horizontal] = [line for line, long in zip(lines, spanning, strict=True) if long]
        partial[horizontal] = [line for line, long in zip(lines, spanning, strict=True)
                               if not long and runs_off_an_edge(line, span, other)]
    if max(len(lines) for lines in full.values()) < least:
        return []
    return [line for horizontal in (True, False)
            for line in full[horizontal] + (partial[horizontal] if full[horizontal] else [])]


def covered(padded: np.ndarray, line: Line, span: int, other: int) -> float:
    """How far ``line``, followed across the whole map, runs through the mask (``padded`` by
    ``PROFILE_REACH``) within a pixel of its thickness, in pixels along its axis. The Hough
    transform may find a line only between the strokes that cross it; followed, it shows
    whole."""
    along = np.arange(span)
    across = np.rint(line.across_at(along)).astype(int)
    inside = (across >= 0) & (across < other)
    along, across = along[inside] + PROFILE_REACH, across[inside] + PROFILE_REACH
    reach = min(PROFILE_REACH, math.ceil(line.thickness / 2) + 1)
    across = across[:, None] + np.arange(-reach, reach + 1)
    values = (padded[across, along[:, None]] if line.horizontal
              else padded[along[:, None], across])
    return float(np.count_nonzero(values.any(axis=1)))


def runs_off_an_edge(line: Line, span: float, other: float) -> bool:
    """Whether one of ``line``'s pieces ends within two pixels of the map's edge (``span``
    along the line's axis, ``other`` across it)."""
    return any(min(along, span - 1 - along, across, other - 1 - across) <= 2
               for along, across in line.ends)


def line_through(ends: list[tuple[float, float]], horizontal: bool, thickness: float) -> Line:
    """The straight line fitted (least squares) through the (along, across) points ``ends``."""
    along = np.array([end[0] for end in ends], np.float64)
    across = np.array([end[1] for end in ends], np.float64)
    centred = along - along.mean()
    slope = float((centred * (across - across.mean())).sum() / (centred * centred).sum())
    offset = float(across.mean() - slope * along.mean())
    return Line(horizontal, offset, slope, thickness,
                (float(along.min()), float(along.max())), tuple(ends))


def gathered(pieces: list[Line], span: float) -> list[Line]:
    """The pieces that lie on one line (within its thickness, give or take two pixels, at the
    middle of the map) as one line fitted through them all, with the thickest measure."""
    middle = span / 2
    lines: list[Line] = []
    for piece in sorted(pieces, key=lambda line: line.across_at(middle)):
        last = lines[-1] if lines else None
        if last is None or piece.across_at(middle) - last.across_at(middle) > max(
                last.thickness, piece.thickness) + 2:
            lines.append(piece)
            continue
        lines[-1] = line_through([*last.ends, *piece.ends], piece.horizontal,
                                 max(last.thickness, piece.thickness))
    return lines


def line_thicknesses(padded: np.ndarray, horizontal: bool, offsets: np.ndarray,
                     slopes: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """For each line (across = offset + slope * along, from ``low`` to ``high`` along), the
    median thickness of the run of a mask (``padded`` by ``PROFILE_REACH``) crossing it,
    measured at points along it (a pen stroke crossing it counts at a few points only)."""
    if offsets.size == 0:
        return np.empty(0)
    steps = np.linspace(0.0, 1.0, 32)
    along = low[:, None] + (high - low)[:, None] * steps[None, :]
    across = offsets[:, None] + slopes[:, None] * along
    reach = np.arange(-PROFILE_REACH, PROFILE_REACH + 1)
    across = np.rint(across).astype(int)[..., None] + PROFILE_REACH + reach
    along = np.rint(along).astype(int)[..., None] + PROFILE_REACH
    limit_across = padded.shape[0 if horizontal else 1] - 1
    across = np.clip(across, 0, limit_across)
    profiles = padded[across, along] if horizontal else padded[along, across]
    before = np.cumprod(profiles[..., PROFILE_REACH::-1], axis=-1).sum(axis=-1)
    after = np.cumprod(profiles[..., PROFILE_REACH:], axis=-1).sum(axis=-1)
    return np.median(np.maximum(before + after - 1, 0), axis=1)


def erase_lines(ink: np.ndarray, lines: list[Line]) -> tuple[np.ndarray, np.ndarray]:
    """``ink`` with the pixels of each line, extended across the whole map, set to paper,
    except where ink is more than ``CROSSING_STRENGTH`` times that line's own strength (a
    stroke crossing it); and the bands erased (uint8, 1 on them)."""
    height, width = ink.shape
    limits = np.zeros(ink.shape, np.float32)  # on each line's band: the strongest ink erased
    padded = np.pad(ink, 1)
    for line in lines:
        last = (width if line.horizontal else height) - 1.0
        ends = [(0.0, line.across_at(0.0)), (last, line.across_at(last))]
        if not line.horizontal:
            ends = [(across, along) for along, across in ends]
        cv2.line(limits, *(tuple(int(round(v)) for v in end) for end in ends),
                 CROSSING_STRENGTH * line_strength(padded, line),
                 thickness=max(1, math.ceil(line.thickness) + 2 * EDGE))
    bands = limits > 0.0
    erased = ink.copy()
    erased[bands & (ink <= limits)] = 0.0
    return erased, bands.view(np.uint8)


def line_strength(padded: np.ndarray, line: Line) -> float:
    """The median strength of ``line``'s ink (the map ``padded`` by one pixel): at points
    along its reach, the strongest pixel within one of its course, where that is ink at all."""
    height, width = padded.shape[0] - 2, padded.shape[1] - 2
    span, other = (width, height) if line.horizontal else (height, width)
    along = np.linspace(line.reach[0], line.reach[1], 64)
    across = np.clip(np.rint(line.across_at(along)).astype(int), 0, other - 1)
    along = np.clip(np.rint(along).astype(int), 0, span - 1)
    if line.horizontal:
        values = np.max([padded[across + 1 + step, along + 1] for step in (-1, 0, 1)], axis=0)
    else:
        values = np.max([padded[along + 1, across + 1 + step] for step in (-1, 0, 1)], axis=0)
    values = values[values >= RULING_INK]
    return float(np.median(values)) if values.size else 0.0


def drop_specks(ink: np.ndarray) -> None:
    """Set to paper the pieces of ink under ``DEBRIS_SHARE`` of the largest: on a ruled page,
    what is left of its lines beyond the ones found (a corner of the frame a line crosses)."""
    labels, areas = ink_pieces(ink)
    if len(areas) <= 2:
        return
    ink[(areas < DEBRIS_SHARE * areas[1:].max())[labels]] = 0.0


def drop_debris(ink: np.ndarray, bands: np.ndarray) -> None:
    """Set to paper the pieces of ink left along the erased ``bands`` (the darker bits where
    lines crossed, a line's edge in a blurred photo) that are under ``DEBRIS_SHARE`` of the
    largest piece, or under a square ``DEBRIS_SIDE`` of the map's side: a digit read whole
    would otherwise be read with them, and a blank page read as a digit."""
    labels, areas = ink_pieces(ink)
    if len(areas) <= 1:
        return
    near = cv2.dilate(bands, np.ones((3, 3), np.uint8)).view(bool)
    touching = np.zeros(len(areas), bool)
    touching[np.unique(labels[near])] = True
    least = max(DEBRIS_SHARE * areas[1:].max(), (DEBRIS_SIDE * min(ink.shape)) ** 2)
    ink[(touching & (areas < least))[labels]] = 0.0


def ink_pieces(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's 8-connected piece of ink (0 for paper) and each piece's area; paper's is
    the whole map's, so that it is never among the small pieces."""
    _count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (ink > 0).view(np.uint8), connectivity=8)
    areas = stats[:, cv2.CC_STAT_AREA].copy()
    areas[0] = ink.size
    return labels, areas
