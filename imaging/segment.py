"""Find each digit of a written number in an ink map; the network's confidence picks among
the ways the ink could be cut.

    segment(ink_map)          the candidate digits, each prepared the MNIST way, with its box
    cut_lone(segmentation)    ink read whole, cut after all: the network doubted it is one digit
        label_components      connected ink components (OpenCV)
        underline_of          a line drawn under the number, left out
        frame_of              a printed box around it, left out
        group_by_overlap      pieces above one another are one digit (a 5's flag, a 7's bar)
        line_height           how tall the digits of the line are
        slices_of             where a wide group may hold two touching digits
        pairs_of              wide groups the pair reader may read as two digits
    choose(segmentation, confidences, non_digit)   the candidates that read best, left to
                                                    right

The ink is split into *segments* ordered left to right: whole groups, or slices
of a group too wide for one digit, cut where the ink is thinnest. A candidate
digit is a run of neighbouring segments: a slice, a whole group, two touching
digits' slices joined back, or a fragment joined to its neighbour. Every
candidate goes through the network with the others in one batch, and
``choose`` keeps the cover of the line whose digits the network is surest of,
weighed by how much each candidate looks like one digit (its height and width
against the line's, the strokes its cuts go through, and how much the
network's non-digit head takes it for no digit at all: two touching digits
read as one are what that head was trained to refuse).

A group wider than a digit may also be two digits that meet along a stroke,
where no cut parts them: the pair reader (a second, small network,
``imaging.pairs`` prepares its input) reads such a group whole as two digits,
and ``choose`` weighs that reading against the network's readings of its
slices (``Pair``, ``pairs_of``).

Ink with only one group the size of a digit (one digit, perhaps with a
detached flag or bar) has one candidate: the whole ink map, prepared exactly
as a single digit always was. Only when the network doubts that reading (the
head calls it no digit, or its confidence is low) and the ink is wide enough
to hold two digits is it cut after all (``cut_lone``), the way a line is, and
read again: a two-digit number written in one stroke, at no cost to the
single digits the network reads without doubt. Ink in one piece as wide as two
digits is also read by the pair reader, and read as two digits when it is sure
of both.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from imaging.errors import NoDigitError
from imaging.ink import InkMap
from imaging.normalise import PreparedDigit, crop_to_ink, even_out_strokes, ink_bounds, prepare_ink
from imaging.opencv import cv2
from imaging.pairs import pair_input

# The line's height is measured on the groups at least this share of the tallest.
LINE_SHARE = 0.7
# Components smaller than this share of the largest are specks of noise, not strokes.
SPECK_SHARE = 0.03
# A component at least this many times as wide as it is tall, lying below all the other
# ink and at least as wide as all of it, underlines the number: it is no digit's stroke.
UNDERLINE_ASPECT = 8.0
# A component whose box holds all the other ink, and whose ink runs along every side of
# that box (this share of each side's length) within this share of the box's shorter side,
# and nowhere else, is a printed box the number was written in.
FRAME_SIDES = 0.8
FRAME_BAND = 0.08
# Two groups are one digit when their columns overlap by this share of the narrower one.
SAME_DIGIT_OVERLAP = 0.6
# A group lower than this share of the line's height is a fragment of a digit (a bar,
# a flag, a detached tail) ...
FRAGMENT_HEIGHT = 0.6
# ... as is one with less ink than this share of the inkiest group (a faint line) ...
DIGIT_INK = 0.15
# ... and lower than this, with no neighbour to join, a mark that is no digit at all.
NOISE_HEIGHT = 0.3
# Pieces one above the other are one digit when no further apart than this share of the
# taller's height (a scrap of shadow below a digit is no part of it).
STACK_GAP = 0.25
# Ink further than this share of the line's height from the pieces of the digit (its
# pieces of at least PIECE_SHARE of the largest's area, and those near them in turn) is not
# read with a lone digit.
STRAY_GAP = 0.25
PIECE_SHARE = 0.25
# Neighbouring groups may be one digit when they are at most this far apart (share of
# the line's height) ...
JOIN_GAP = 0.12
# ... and the joined digit at most this wide (share of the line's height).
MAX_DIGIT_WIDTH = 1.6
# A group wider than this share of the line's height may hold several touching digits
# (a touching pair with a 1 in it is narrower than most single digits: the network,
# not the width, tells them apart),
SPLIT_WIDTH = 0.5
# ... and ink in one group is cut, when the network doubts it is one digit, only when it
# is wider than this share of its own height.
LONE_SPLIT_WIDTH = 0.5
# ... cut along its slant (columns per row, at most this much either way),
MAX_SLANT = 0.5
# ... each also cut along the path through the least ink that winds at most this far
# (share of the line's height) either side of that line, at this cost (in inked pixels)
# per column it strays,
SEAM_BAND = 0.35
SEAM_DRIFT = 0.02
# ... cut at most at this many columns, each slice at least this wide (a thin 1).
MAX_CUTS = 6
# Ink in one group cut by ``cut_lone`` (most often two digits, and a single digit the
# network doubted) is cut at fewer columns: of 82 generated two-digit numbers in one
# piece, 6 columns read 48 right and 4 read 45, in half the time (32 against 70 ms each),
# which the few doubted single digits pay too.
LONE_MAX_CUTS = 4
MIN_SLICE_WIDTH = 0.12
# The log-probability a candidate loses for looking unlike one digit: per share of the
# line's height it is wider than ``WIDE_FROM`` of it, per share it is lower than
# ``LOW_FROM`` of it, for two whole-height groups joined (two digits, rarely one) and
# for each stroke a cut goes through. Chosen on generated numbers (not those the tests
# and the benchmark read) for the most numbers read right without a single digit lost.
LOW_FROM = 0.75
WIDE_FROM = 0.9
WIDE_COST = 1.0
LOW_COST = 4.0
JOIN_COST = 1.0
CUT_COST = 0.2
# A candidate also loses this times the softplus of the non-digit head's margin (its
# score less its threshold): little while the head takes it for a digit, more the
# surer the head is that it is none, such as two touching digits read as one.
NON_DIGIT_COST = 0.5
# Each digit read from ink in one group costs this much: cutting a digit the network
# doubted into two needs more evidence than it being one.
LONE_DIGIT_COST = 0.5
# ... and it is read in pieces only when the network reads each with at least this
# confidence and the non-digit head takes each for a digit by at least this margin. Of
# generated drawings (the non-digit head's fitting set, 60 of each kind) 7 objects were
# still read as a number (31 without these bounds), and no shape, scribble, texture,
# noise or digit-like letter; 48 of 82 generated two-digit numbers in one piece were
# read in pieces (50 with 0.9 and 1.0).
LONE_PIECE_CONFIDENCE = 0.98
LONE_PIECE_MARGIN = 2.0
# A group cut into slices and at least this wide (share of the line's height) is also
# offered whole to the pair reader, read as two touching digits ...
PAIR_WIDTH = 0.6
# ... scoring the logs of its confidence in both digits less this. Ink in one piece at
# least ``LONE_PAIR_WIDTH`` as wide as high is offered to it whole as well, and read as
# two digits only when it is this sure of both (``LONE_PAIR_CONFIDENCE``), as ``cut_lone``'s
# pieces must be: the network's reading stays otherwise. Chosen on generated numbers
# (not those the tests and the benchmark read): of 100 with a touching pair, 75 were
# read right without the pair reader and 93 with it (0.5 to 1.0 wide, cost -0.5 to 0.0:
# 92 to 93; ink in one piece 0.9 to 1.2 as wide: 93, never offered: 91, sure at 0.98:
# 90); of the generated drawings (60 of each kind) none more is read as a number. Ink
# in one piece 1.2 as wide as high is rare for one digit (91 of 900 single-digit
# uploads of every kind, 233 at 0.9), and only those pay for a run of the reader.
PAIR_COST = 0.0
LONE_PAIR_WIDTH = 1.2
LONE_PAIR_CONFIDENCE = 0.9
# Ink in one piece that the network read without doubt is read by the pair reader only
# when the non-digit head's margin on it is above this: two touching digits, which the
# head was trained to refuse, come close to its threshold (the lowest of 12 generated
# two-digit numbers in one piece at 1.2 as wide: -0.18), single digits seldom (8 of 91
# single-digit uploads that wide above -2.5).
LONE_PAIR_MARGIN = -2.0


@dataclass(frozen=True)
class Shape:
    """A candidate's shape against the line: width and height as shares of the line's
    height, whole-height groups it joins beyond the first, strokes cut through at its
    edges."""

    width: float
    height: float
    joins: int = 0
    cuts: int = 0

    def prior(self) -> float:
        """The log-probability it loses for its shape: too wide or too low for one digit,
        whole-height groups joined (two digits, rarely one), strokes cut through."""
        wide = max(0.0, self.width - WIDE_FROM)
        low = max(0.0, LOW_FROM - self.height)
        return -(WIDE_COST * wide + LOW_COST * low + JOIN_COST * self.joins
                 + CUT_COST * self.cuts)


@dataclass(frozen=True)
class Candidate:
    """One way to read part of the line as a digit: the network's input and where it is."""

    prepared: PreparedDigit
    box: tuple[int, int, int, int]  # left, top, right, bottom in the upload's pixels
    start: int  # the first segment it covers ...
    end: int  # ... and the one after its last
    shape: Shape  # how much it looks like one digit, by its shape alone


@dataclass(frozen=True)
class Pair:
    """A group of ink that may be two touching digits, for the pair reader to read whole:
    its ink (cropped to its box), where it is, and its input."""

    ink: np.ndarray
    box: tuple[int, int, int, int]  # left, top, right, bottom in the upload's pixels
    start: int  # the first segment it covers ...
    end: int  # ... and the one after its last

    @functools.cached_property
    def model_input(self) -> np.ndarray:
        """The pair reader's input (imaging.pairs.PAIR_SHAPE), made only for a pair it reads:
        most wide single digits are read without doubt and never go to it."""
        return pair_input(self.ink)

    def halves(self) -> list[tuple[PreparedDigit, tuple[int, int, int, int]]]:
        """Each digit's picture and box, told apart by the middle of the pair's box: what
        a reading shows of them (the pair reader reads them whole, not split)."""
        middle = self.ink.shape[1] // 2
        left, top, right, bottom = self.box
        split = left + (right - left) // 2
        return [(prepared_or_raw(self.ink[:, :middle]), (left, top, split, bottom)),
                (prepared_or_raw(self.ink[:, middle:]), (split, top, right, bottom))]


@dataclass(frozen=True)
class Segmentation:
    """Every candidate digit of an upload, and how many segments the line was cut into.

    ``uncut`` is ink read whole that ``cut_lone`` may cut should the network doubt it is
    one digit; ``lone`` marks the candidates of ink so cut. ``pairs`` are the groups the
    pair reader may read as two touching digits.
    """

    candidates: list[Candidate]
    segments: int
    uncut: InkMap | None = None
    lone: bool = False
    pairs: tuple[Pair, ...] = ()


@dataclass(frozen=True)
class Group:
    """Components that are one digit, or part of one, by their shape alone."""

    labels: tuple[int, ...]
    left: int
    top: int
    right: int  # exclusive
    bottom: int  # exclusive
    ink: float  # how much ink it holds: the sum of its ink map values

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


@dataclass(frozen=True, eq=False)
class Slice:
    """A segment of the line: the part of a group between two cuts from its top to its
    bottom.

    A cut is the column, for each of the group's rows top to bottom, where the part
    right of it begins; the slice holds the ink from its ``left`` cut (inclusive) to
    its ``right`` one (exclusive), None for the group's own edges.
    """

    group: int
    left: np.ndarray | None = None
    right: np.ndarray | None = None
    crossed_left: int = 0  # strokes the cut at its left edge goes through
    crossed_right: int = 0

    @property
    def cut_left(self) -> bool:
        return self.left is not None

    @property
    def cut_right(self) -> bool:
        return self.right is not None


def label_components(ink: np.ndarray,
                     whole: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """Each pixel's component (0 for paper) and each component's stats row (left, top,
    width, height, area; row 0 is the paper), 8-connected; None for ink in one piece
    unless ``whole``.

    Most uploads are one piece of ink, which plain labelling tells in a fraction of
    the time the stats take, so they are gathered only for several pieces.
    """
    mask = (ink > 0).astype(np.uint8)
    if not whole and cv2.connectedComponents(mask, connectivity=8)[0] <= 2:
        return None
    _count, labels, stats, _centres = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return labels, stats


def pieces_of(stats: np.ndarray) -> list[int]:
    """The labels of the components that are not specks (``SPECK_SHARE`` of the largest)."""
    areas = stats[:, cv2.CC_STAT_AREA]
    largest = int(areas[1:].max())
    return [label for label in range(1, len(stats)) if areas[label] >= SPECK_SHARE * largest]


def underline_of(stats: np.ndarray) -> int | None:
    """The component (its label) that underlines the rest of the ink, if one does: flat
    (``UNDERLINE_ASPECT``), wholly below every other piece that is not a speck, and reaching
    at least as far left and right as all of them."""
    boxes = stats[:, :5].astype(float)
    pieces = pieces_of(stats)
    for label in pieces:
        x, y, w, h, _area = boxes[label]
        others = [boxes[other] for other in pieces if other != label]
        if not others or w < UNDERLINE_ASPECT * h:
            continue
        left = min(box[0] for box in others)
        right = max(box[0] + box[2] for box in others)
        bottom = max(box[1] + box[3] for box in others)
        if y >= bottom and x <= left and x + w >= right:
            return label
    return None


def frame_of(labels: np.ndarray, stats: np.ndarray) -> int | None:
    """The component (its label) that frames the rest of the ink, if one does: a box drawn
    around it (``FRAME_SIDES``, ``FRAME_BAND``), holding every other piece that is not a
    speck."""
    boxes = stats[:, :5].astype(int)
    pieces = pieces_of(stats)
    for label in pieces:
        x, y, w, h, area = boxes[label]
        band = max(2, math.ceil(FRAME_BAND * min(w, h)))
        others = [boxes[other] for other in pieces if other != label]
        if not others or area > 2 * (w + h) * band or not all(
                x < ox and y < oy and ox + ow < x + w and oy + oh < y + h
                for ox, oy, ow, oh, _ in others):
            continue
        own = labels[y:y + h, x:x + w] == label
        sides = (own[:band].any(axis=0), own[-band:].any(axis=0),
                 own[:, :band].any(axis=1), own[:, -band:].any(axis=1))
        inside = own[band:-band, band:-band]
        if all(side.mean() >= FRAME_SIDES for side in sides) and not inside.any():
            return label
    return None


def group_by_overlap(stats: np.ndarray, mass: np.ndarray) -> list[Group]:
    """Components whose columns overlap by ``SAME_DIGIT_OVERLAP`` of the narrower, merged
    until none do, specks left out; sorted left to right. ``mass`` is each component's
    ink."""
    groups = []
    for label in pieces_of(stats):
        x, y, w, h = stats[label, :4].tolist()
        groups.append(Group((label,), x, y, x + w, y + h, float(mass[label])))
    merged = True
    while merged:
        merged = False
        groups.sort(key=lambda group: group.left)
        for i, first in enumerate(groups):
            for j in range(i + 1, len(groups)):
                second = groups[j]
                if second.left >= first.right:
                    break
                overlap = min(first.right, second.right) - second.left
                gap = max(first.top, second.top) - min(first.bottom, second.bottom)
                if (overlap >= SAME_DIGIT_OVERLAP * min(first.width, second.width)
                        and gap <= STACK_GAP * max(first.height, second.height)):
                    groups[i] = Group(first.labels + second.labels, first.left,
                                      min(first.top, second.top), max(first.right, second.right),
                                      max(first.bottom, second.bottom), first.ink + second.ink)
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    return groups


def line_groups(groups: Sequence[Group]) -> list[Group]:
    """The groups that make the line: at least ``LINE_SHARE`` as tall as the tallest (a long
    detached flag is not a digit of the line)."""
    tallest = max(group.height for group in groups)
    return [group for group in groups if group.height >= LINE_SHARE * tallest]


def line_height(groups: Sequence[Group]) -> float:
    """The digits' height: the median of the ``line_groups``."""
    return float(np.median([group.height for group in line_groups(groups)]))


def on_the_line(groups: Sequence[Group]) -> list[Group]:
    """The groups that reach into the line's band, from the median top to the median
    bottom of the ``line_groups``: a group wholly above or below it is no digit of the
    line. Where none does (two digits one above the other, the band between them), all
    of them."""
    line = line_groups(groups)
    top = float(np.median([group.top for group in line]))
    bottom = float(np.median([group.bottom for group in line]))
    return [group for group in groups if group.bottom > top and group.top < bottom] or list(groups)


def without_marks(groups: Sequence[Group], height: float) -> list[Group]:
    """The groups less those lower than ``NOISE_HEIGHT`` of the line that no neighbour
    may join: dots, dashes, smudges. Where every group is such a mark (dust on a page),
    all of them."""
    kept = []
    for index, group in enumerate(groups):
        neighbours = [*groups[max(0, index - 1) : index], *groups[index + 1 : index + 2]]
        joined = any(may_join(*sorted((group, other), key=lambda g: g.left), height)
                     for other in neighbours)
        if group.height >= NOISE_HEIGHT * height or joined:
            kept.append(group)
    return kept or list(groups)


def without_strays(ink_map: InkMap, labels: np.ndarray, stats: np.ndarray,
                   digits: Sequence[Group], height: float) -> InkMap:
    """The ink map less the components that no chain of pieces, each within ``STRAY_GAP``
    of the line's height of the next, links to the large pieces of a group in ``digits``
    (the groups that may be the digit; a large piece covers ``PIECE_SHARE`` of the area of
    the group's largest): specks of dust, a stray mark, a scrap of a desk's or a shadow's edge
    at the picture's border, none of which may widen a lone digit, even where it lies right
    below or above the digit and was grouped with it."""
    margin = STRAY_GAP * height
    areas = stats[:, cv2.CC_STAT_AREA]
    linked = {label for group in digits for label in group.labels
              if areas[label] >= PIECE_SHARE * max(areas[other] for other in group.labels)}
    boxes = stats[:, :4].tolist()

    def near(first: int, second: int) -> bool:
        (x, y, w, h), (ox, oy, ow, oh) = boxes[first], boxes[second]
        return x < ox + ow + margin and ox - margin < x + w and y < oy + oh + margin \
            and oy - margin < y + h

    unlinked = set(range(1, len(stats))) - linked
    while True:
        reached = {label for label in unlinked if any(near(label, other) for other in linked)}
        if not reached:
            break
        linked |= reached
        unlinked -= reached
    if not unlinked:
        return ink_map
    return InkMap(np.where(np.isin(labels, sorted(unlinked)), 0.0, ink_map.ink), ink_map.region)


def may_join(first: Group, second: Group, height: float) -> bool:
    """Whether neighbouring groups may hold parts of one digit: close enough."""
    return second.left - first.right <= JOIN_GAP * height


def group_pixels(labels: np.ndarray, group: Group) -> tuple[np.ndarray, np.ndarray]:
    """The rows and columns (in the ink map) of a group's ink."""
    window = labels[group.top : group.bottom, group.left : group.right]
    rows, cols = np.nonzero(np.isin(window, group.labels))
    return rows + group.top, cols + group.left


def slant_of(rows: np.ndarray, cols: np.ndarray) -> tuple[float, float]:
    """How far the ink leans (columns per row, the slope of x on y, as MNIST's own
    deskewing measures it) and its middle row."""
    middle = float(rows.mean())
    spread = float(((rows - middle) ** 2).mean())
    if spread == 0.0:
        return 0.0, middle
    lean = float(((rows - middle) * (cols - cols.mean())).mean()) / spread
    return min(max(lean, -MAX_SLANT), MAX_SLANT), middle


def slices_of(labels: np.ndarray, group: Group, index: int, height: float,
              max_cuts: int = MAX_CUTS) -> list[Slice]:
    """A group whole, or, when it is wider than one digit, cut along its slant where its
    ink is thinnest: the lowest local minima of its ink per straightened column, at
    least a thin digit's width from its edges and from each other."""
    if group.width <= SPLIT_WIDTH * height:
        return [Slice(index)]
    rows, cols = group_pixels(labels, group)
    slant, middle = slant_of(rows, cols)
    margin = max(1, math.ceil(MIN_SLICE_WIDTH * height))
    first, smooth = ink_across(rows, cols, slant, middle)
    inner = range(margin, len(smooth) - margin)
    minima = [c for c in inner if smooth[c] <= smooth[c - 1] and smooth[c] <= smooth[c + 1]]
    chosen: list[int] = []
    for column in sorted(minima, key=lambda c: (smooth[c], c)):
        if all(abs(column - other) >= margin for other in chosen):
            chosen.append(column)
        if len(chosen) == max_cuts:
            break
    window = np.isin(labels[group.top : group.bottom, group.left : group.right], group.labels)
    starts = np.array(sorted(first + c for c in chosen), dtype=np.float64) - group.left
    paths = thinnest_paths(window, starts, slant, middle - group.top, 0)
    band = round(SEAM_BAND * height)
    if band > 0:
        paths += thinnest_paths(window, starts, slant, middle - group.top, band)
    paths.sort(key=lambda path: float(path.mean()))
    inked_rows, inked_cols = rows - group.top, cols - group.left
    edges: list[np.ndarray | None] = [None]
    for path in [*paths, None]:
        between = np.ones(inked_cols.shape, dtype=bool)
        if edges[-1] is not None:
            if path is not None and np.array_equal(path, edges[-1]):
                continue
            between &= inked_cols >= edges[-1][inked_rows]
        if path is not None:
            between &= inked_cols < path[inked_rows]
        if between.any():
            edges.append(path)
        elif path is None:
            edges[-1] = None  # the last slice would be empty: it joins the one before
    crossed = [0, *(strokes_on(window, path) for path in edges[1:-1]), 0]
    shifted = [None if e is None else e + group.left for e in edges]
    return [Slice(index, shifted[k], shifted[k + 1], crossed[k], crossed[k + 1])
            for k in range(len(edges) - 1)]


def thinnest_paths(window: np.ndarray, starts: np.ndarray, slant: float, middle: float,
                   band: int) -> list[np.ndarray]:
    """For each straightened column in ``starts``, the cut from the window's top row to its
    bottom that goes through the least ink, at most ``band`` columns either side of the
    line along ``slant`` through that column, a column at most from row to row (dynamic
    programming over rows, all cuts at once; ``band`` 0: the straight cuts)."""
    height, width = window.shape
    rows = np.arange(height)
    lines = np.clip(np.round(starts[:, None] + slant * (rows[None, :] - middle)), 0,
                    width).astype(np.int64)
    if band == 0:
        return list(lines)
    columns = np.arange(width + 1)  # a cut at ``width`` leaves the whole window left of it
    ink = np.zeros((height, width + 1), dtype=np.float64)
    ink[:, :width] = window
    cost = np.zeros((len(starts), width + 1))
    moves = np.zeros((height, len(starts), width + 1), dtype=np.int8)
    for row in range(height):
        off = np.abs(columns[None, :] - lines[:, row, None])
        here = ink[row][None, :] + SEAM_DRIFT * off
        here[off > band] = np.inf
        if row:
            before = np.full((3, *cost.shape), np.inf)  # from the column left, same, right
            before[0, :, 1:] = cost[:, :-1]
            before[1] = cost
            before[2, :, :-1] = cost[:, 1:]
            moves[row] = before.argmin(axis=0) - 1
            cost = before.min(axis=0) + here
        else:
            cost = here
    paths = []
    for index in range(len(starts)):
        path = np.empty(height, dtype=np.int64)
        path[-1] = int(cost[index].argmin())
        for row in range(height - 1, 0, -1):
            path[row - 1] = path[row] + moves[row, index, path[row]]
        paths.append(path)
    return paths


def strokes_on(window: np.ndarray, path: np.ndarray) -> int:
    """How many strokes a cut goes through: touching digits meet in one stroke, while a
    cut through one wide digit crosses two or more."""
    height, width = window.shape
    inked = np.zeros(height, dtype=np.int8)
    inside = path < width
    inked[inside] = window[np.arange(height)[inside], path[inside]]
    return int(np.count_nonzero(np.diff(inked, prepend=0) == 1))


def ink_across(rows: np.ndarray, cols: np.ndarray, slant: float,
               middle: float) -> tuple[int, np.ndarray]:
    """Ink pixels per column along ``slant`` (3-column average), and the first column."""
    across = cols - slant * (rows - middle)
    first = math.floor(float(across.min()))
    profile = np.bincount((across - first).astype(np.int64)).astype(np.float32)
    return first, np.convolve(profile, np.ones(3, np.float32) / 3, mode="same")


def prepared_digit(ink: np.ndarray) -> PreparedDigit:
    """A digit's ink map prepared the MNIST way, as a single upload is."""
    return prepare_ink(even_out_strokes(crop_to_ink(ink)))


def single_digit(ink_map: InkMap,
                 bounds: tuple[int, int, int, int] | None = None) -> Segmentation:
    """The whole ink map as the one candidate: how an upload is read as one digit.
    ``bounds`` are the ink's (``ink_bounds``), where the caller has them already."""
    left, top, right, bottom = bounds or ink_bounds(ink_map.ink)
    prepared = prepare_ink(even_out_strokes(ink_map.ink[top:bottom, left:right]))
    whole = Candidate(prepared, ink_map.box_in_upload((left, top, right, bottom)), 0, 1,
                      Shape(1.0, 1.0))
    return Segmentation([whole], 1)


def lone_digit(ink_map: InkMap) -> Segmentation:
    """``single_digit``, kept for ``cut_lone`` when the ink is wide enough for two digits,
    and offered to the pair reader whole when it is as wide as two digits."""
    bounds = left, top, right, bottom = ink_bounds(ink_map.ink)
    read_whole = single_digit(ink_map, bounds)
    if right - left <= LONE_SPLIT_WIDTH * (bottom - top):
        return read_whole
    pairs: tuple[Pair, ...] = ()
    if right - left >= LONE_PAIR_WIDTH * (bottom - top):
        ink = ink_map.ink[top:bottom, left:right]
        pairs = (Pair(ink, ink_map.box_in_upload(bounds), 0, 1),)
    return Segmentation(read_whole.candidates, 1, uncut=ink_map, pairs=pairs)


def pairs_to_read(segmentation: Segmentation, whole_margin: float | None) -> bool:
    """Whether its pairs are worth a run of the pair reader: always, but for ink in one
    piece the network read without doubt only where the non-digit head's margin on it
    (``whole_margin``) is above ``LONE_PAIR_MARGIN``."""
    if not segmentation.pairs:
        return False
    return segmentation.uncut is None or (whole_margin is not None
                                          and whole_margin > LONE_PAIR_MARGIN)


def cut_lone(segmentation: Segmentation) -> Segmentation:
    """The candidates of ink that was read whole, cut as a line is: its whole reading
    (the same candidate, first) and the pieces it may be cut into, marked ``lone``.
    Ink that cannot be cut keeps its one candidate."""
    ink_map = segmentation.uncut
    if ink_map is None:
        return segmentation
    try:
        finer = segment_line(ink_map, cut=True)
    except NoDigitError:
        return Segmentation(segmentation.candidates, 1)
    whole = segmentation.candidates[0]
    pieces = [c for c in finer.candidates if not (c.start == 0 and c.end == finer.segments)]
    if not pieces:
        return Segmentation(segmentation.candidates, 1)
    kept = Candidate(whole.prepared, whole.box, 0, finer.segments, whole.shape)
    pairs = finer.pairs or tuple(replace(pair, end=finer.segments)
                                 for pair in segmentation.pairs)
    return Segmentation([kept, *pieces], finer.segments, lone=True, pairs=pairs)


def segment(ink_map: InkMap) -> Segmentation:
    """The candidate digits of an ink map (see the module's docstring).

    Ink that preprocessing found is never refused here: should cutting it leave a
    candidate with nothing to read, the whole ink is read as one digit instead.
    """
    try:
        return segment_line(ink_map)
    except NoDigitError:
        return single_digit(ink_map)


def segment_line(ink_map: InkMap, cut: bool = False) -> Segmentation:
    """The candidate digits of an ink map: its components grouped, cut and combined.
    Ink with one digit-like group is read whole (``lone_digit``) unless ``cut``."""
    ink = ink_map.ink
    components = label_components(ink, whole=cut)
    if components is None:
        return lone_digit(ink_map)
    labels, stats = components
    guide = underline_of(stats)
    if guide is None:
        guide = frame_of(labels, stats)
    if guide is not None:
        return segment_line(InkMap(np.where(labels == guide, 0.0, ink), ink_map.region), cut)
    groups = group_by_overlap(stats, np.bincount(labels.ravel(), weights=ink.ravel()))
    height = line_height(groups)
    if len(groups) > 1:
        groups = without_marks(on_the_line(groups), height)
    inkiest = max(group.ink for group in groups)
    digit_like = [g for g in groups
                  if g.height >= FRAGMENT_HEIGHT * height and g.ink >= DIGIT_INK * inkiest]
    if len(digit_like) <= 1:
        # Ink in one piece, or one piece and fragments (a 5's flag), is read whole first,
        # as a single digit always was: the commonest upload is cut only when the
        # network doubts it (``cut_lone``), and then on the scale of that piece.
        if not cut or not digit_like:
            return lone_digit(without_strays(ink_map, labels, stats, digit_like or groups,
                                             height))
        height = float(digit_like[0].height)
    segments = [piece for index, group in enumerate(groups)
                for piece in slices_of(labels, group, index, height,
                                       LONE_MAX_CUTS if cut else MAX_CUTS)]
    candidates = []
    for start in range(len(segments)):
        for end in range(start + 1, len(segments) + 1):
            if cut and start == 0 and end == len(segments):
                continue  # the whole ink, which ``cut_lone`` has already read
            candidate = candidate_for(ink_map, labels, groups, segments, start, end, height)
            if candidate is not None:
                candidates.append(candidate)
    return Segmentation(candidates, len(segments), pairs=pairs_of(ink_map, labels, groups,
                                                                  segments, height))


def pairs_of(ink_map: InkMap, labels: np.ndarray, groups: Sequence[Group],
             segments: Sequence[Slice], height: float) -> tuple[Pair, ...]:
    """The groups that were cut into slices and are at least ``PAIR_WIDTH`` of the line's
    height wide, each with the run of segments it covers: perhaps two touching digits."""
    pairs = []
    for index, group in enumerate(groups):
        covered = [k for k, s in enumerate(segments) if s.group == index]
        if len(covered) < 2 or group.width < PAIR_WIDTH * height:
            continue
        window = (slice(group.top, group.bottom), slice(group.left, group.right))
        ink = np.where(np.isin(labels[window], group.labels), ink_map.ink[window], 0)
        box = ink_map.box_in_upload((group.left, group.top, group.right, group.bottom))
        pairs.append(Pair(ink, box, covered[0], covered[-1] + 1))
    return tuple(pairs)


def prepared_or_raw(ink: np.ndarray) -> PreparedDigit:
    """``prepared_digit``, or the ink prepared as it is where evening out its strokes wore
    it away."""
    try:
        return prepared_digit(ink)
    except NoDigitError:
        return prepare_ink(ink)


def candidate_for(ink_map: InkMap, labels: np.ndarray, groups: Sequence[Group],
                  segments: Sequence[Slice], start: int, end: int,
                  height: float) -> Candidate | None:
    """The candidate digit covering ``segments[start:end]``, or None where those cannot
    be one digit: more than two groups, or two too far apart, or wider than a digit
    can be. A single segment is always a candidate, so that some reading covers the
    line, and so is the whole line, read as one digit is."""
    run = segments[start:end]
    members = sorted({s.group for s in run})
    everything = start == 0 and end == len(segments)
    if not everything and (len(members) > 2 or (len(members) == 2 and not may_join(
            groups[members[0]], groups[members[1]], height))):
        return None
    whole_groups = not run[0].cut_left and not run[-1].cut_right
    # only a candidate joined from several segments, and not all of the line, can be too wide
    width_bound = end - start > 1 and not everything and (len(members) > 1 or not whole_groups)
    if width_bound:
        # too wide by its cuts' mean columns: rejected before its ink is gathered
        left = groups[members[0]].left if run[0].left is None else float(run[0].left.mean())
        right = (groups[members[-1]].right if run[-1].right is None
                 else float(run[-1].right.mean()))
        if right - left > MAX_DIGIT_WIDTH * height:
            return None
    ink = ink_map.ink
    corner = (0, 0)
    if everything:
        piece = ink  # the whole line as one digit: exactly how one digit is read
    else:
        # gathered in the members' box only: cropping to the ink makes it the same digit
        corner = (min(groups[m].left for m in members), min(groups[m].top for m in members))
        piece = np.zeros((max(groups[m].bottom for m in members) - corner[1],
                          max(groups[m].right for m in members) - corner[0]), dtype=ink.dtype)
        for member in members:
            parts = [s for s in run if s.group == member]
            group = groups[member]
            window = (slice(group.top, group.bottom), slice(group.left, group.right))
            inside = (slice(group.top - corner[1], group.bottom - corner[1]),
                      slice(group.left - corner[0], group.right - corner[0]))
            keep = np.isin(labels[window], group.labels)
            columns = np.arange(group.left, group.right)[None, :]
            if parts[0].left is not None:
                keep &= columns >= parts[0].left[:, None]
            if parts[-1].right is not None:
                keep &= columns < parts[-1].right[:, None]
            piece[inside] = np.where(keep, ink[window], piece[inside])
        if not piece.any():
            return None
    left, top, right, bottom = ink_bounds(piece)
    left, top, right, bottom = (left + corner[0], top + corner[1], right + corner[0],
                                bottom + corner[1])
    if width_bound and (right - left) > MAX_DIGIT_WIDTH * height:
        return None
    whole_height = sum(1 for g in members if groups[g].height >= FRAGMENT_HEIGHT * height)
    cuts = run[0].crossed_left + run[-1].crossed_right
    shape = Shape((right - left) / height, (bottom - top) / height, max(0, whole_height - 1),
                  cuts)
    prepared = prepared_or_raw(piece)  # a sliver may be worn away by thinning its strokes
    return Candidate(prepared, ink_map.box_in_upload((left, top, right, bottom)), start, end,
                     shape)


def choose(segmentation: Segmentation, confidences: Sequence[float],
           non_digit: Sequence[float | None] | None = None,
           doubted: Sequence[bool] | None = None,
           pair_confidences: Sequence[tuple[float, float]] | None = None) -> list[int]:
    """The indices of the candidates that cover the line with the best total score, left
    to right: each scores the log of the network's confidence in it plus its shape prior,
    less ``NON_DIGIT_COST`` times the softplus of the non-digit head's margin (where
    ``non_digit`` gives it) and ``LONE_DIGIT_COST`` for ink cut by ``cut_lone``.

    With ``pair_confidences`` (the pair reader's confidence in each digit of each of
    ``segmentation.pairs``) a pair is one more way to cover its segments, scoring the
    logs of both less ``PAIR_COST``; a pair chosen is the index
    ``len(segmentation.candidates)`` plus its own.

    Ink cut by ``cut_lone`` is read in pieces only when the network is sure of every
    one (``LONE_PIECE_CONFIDENCE``, ``LONE_PIECE_MARGIN``, none ``doubted``): a drawing
    the network took for no digit is not made into a number of pieces it half believes,
    and keeps its doubt.
    """
    lone_cost = LONE_DIGIT_COST if segmentation.lone else 0.0
    each = [math.log(max(confidence, 1e-6)) + candidate.shape.prior() - lone_cost
            for candidate, confidence in zip(segmentation.candidates, confidences, strict=True)]
    if non_digit is not None:
        each = [score - NON_DIGIT_COST * softplus(margin) if margin is not None else score
                for score, margin in zip(each, non_digit, strict=True)]
    spans = [(c.start, c.end) for c in segmentation.candidates]
    if pair_confidences is not None:
        for pair, (left, right) in zip(segmentation.pairs, pair_confidences, strict=True):
            each.append(math.log(max(left, 1e-6)) + math.log(max(right, 1e-6))
                        - PAIR_COST - 2 * lone_cost)
            spans.append((pair.start, pair.end))
    best: list[tuple[float, list[int]] | None] = [None] * (segmentation.segments + 1)
    best[0] = (0.0, [])
    by_start: dict[int, list[int]] = {}
    for index, (start, _end) in enumerate(spans):
        by_start.setdefault(start, []).append(index)
    for start in range(segmentation.segments):
        reached = best[start]
        if reached is None:
            continue
        for index in by_start.get(start, []):
            end = spans[index][1]
            score = reached[0] + each[index]
            current = best[end]
            if current is None or score > current[0]:
                best[end] = (score, [*reached[1], index])
    final = best[segmentation.segments]
    whole = [index for index, c in enumerate(segmentation.candidates)
             if c.start == 0 and c.end == segmentation.segments]
    if final is None:  # no cover of single pieces: the whole line, which is always there
        return whole
    if (segmentation.lone or segmentation.uncut is not None) and not all(
            sure_piece(i, segmentation, confidences, non_digit, doubted, pair_confidences)
            for i in final[1]):
        return whole
    return final[1]


def sure_piece(index: int, segmentation: Segmentation, confidences: Sequence[float],
               non_digit: Sequence[float | None] | None, doubted: Sequence[bool] | None,
               pair_confidences: Sequence[tuple[float, float]] | None) -> bool:
    """Whether the network is sure enough of a piece of ink in one piece to read it in
    pieces (``LONE_PIECE_CONFIDENCE``, ``LONE_PIECE_MARGIN``), or the pair reader of
    both digits of a pair (``LONE_PAIR_CONFIDENCE``)."""
    count = len(segmentation.candidates)
    if index >= count:
        assert pair_confidences is not None
        return min(pair_confidences[index - count]) >= LONE_PAIR_CONFIDENCE
    return (confidences[index] >= LONE_PIECE_CONFIDENCE
            and (non_digit is None or non_digit[index] is None
                 or non_digit[index] <= -LONE_PIECE_MARGIN)
            and (doubted is None or not doubted[index]))


def softplus(value: float) -> float:
    """log(1 + e^value), without overflow."""
    return max(value, 0.0) + math.log1p(math.exp(-abs(value)))
