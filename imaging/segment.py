"""Find each digit of a written number in an ink map; the network's confidence picks among
the ways the ink could be cut.

    segment(ink_map)          the candidate digits, each prepared the MNIST way, with its box
        label_components      connected ink components (OpenCV)
        group_by_overlap      pieces above one another are one digit (a 5's flag, a 7's bar)
        line_height           how tall the digits of the line are
        slices_of             where a wide group may hold two touching digits
    choose(segmentation, confidences)   the candidates that read best, left to right

The ink is split into *segments* ordered left to right: whole groups, or slices
of a group too wide for one digit, cut where the ink is thinnest. A candidate
digit is a run of neighbouring segments: a slice, a whole group, two touching
digits' slices joined back, or a fragment joined to its neighbour. Every
candidate goes through the network with the others in one batch, and
``choose`` keeps the cover of the line whose digits the network is surest of,
weighed by how much each candidate looks like one digit (its height and width
against the line's, the strokes its cuts go through). Ink with only one group
the size of a digit (one digit, perhaps with a detached flag or bar) has one
candidate: the whole ink map, prepared exactly as a single digit always was.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imaging.errors import NoDigitError
from imaging.ink import InkMap
from imaging.normalise import PreparedDigit, crop_to_ink, even_out_strokes, ink_bounds, prepare_ink
from imaging.opencv import cv2

# The line's height is measured on the groups at least this share of the tallest.
LINE_SHARE = 0.7
# Components smaller than this share of the largest are specks of noise, not strokes.
SPECK_SHARE = 0.03
# Two groups are one digit when their columns overlap by this share of the narrower one.
SAME_DIGIT_OVERLAP = 0.6
# A group lower than this share of the line's height is a fragment of a digit (a bar,
# a flag, a detached tail) ...
FRAGMENT_HEIGHT = 0.6
# ... as is one with less ink than this share of the inkiest group (a faint line) ...
DIGIT_INK = 0.15
# ... and lower than this, with no neighbour to join, a mark that is no digit at all.
NOISE_HEIGHT = 0.3
# Neighbouring groups may be one digit when they are at most this far apart (share of
# the line's height) ...
JOIN_GAP = 0.12
# ... and the joined digit at most this wide (share of the line's height).
MAX_DIGIT_WIDTH = 1.6
# A group wider than this share of the line's height may hold several touching digits,
SPLIT_WIDTH = 0.85
# ... cut along its slant (columns per row, at most this much either way),
MAX_SLANT = 0.5
# ... cut at most at this many columns, each slice at least this wide (a thin 1).
MAX_CUTS = 4
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
CUT_COST = 0.1


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
class Segmentation:
    """Every candidate digit of an upload, and how many segments the line was cut into."""

    candidates: list[Candidate]
    segments: int


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


@dataclass(frozen=True)
class Slice:
    """A segment of the line: the part of a group between two cuts along its slant.

    A pixel at (x, y) of the group lies at ``x - slant * (y - middle)`` across the
    group once its slant is straightened; the slice holds those from ``left`` to
    ``right`` (exclusive; infinite for a group's own edges).
    """

    group: int
    left: float
    right: float
    slant: float
    middle: float
    crossed_left: int = 0  # strokes the cut at its left edge goes through
    crossed_right: int = 0

    @property
    def cut_left(self) -> bool:
        return math.isfinite(self.left)

    @property
    def cut_right(self) -> bool:
        return math.isfinite(self.right)


def label_components(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Each pixel's component (0 for paper) and each component's stats row (left, top,
    width, height, area; row 0 is the paper), 8-connected; None for ink in one piece.

    Most uploads are one piece of ink, which plain labelling tells in a fraction of
    the time the stats take, so they are gathered only for several pieces.
    """
    mask = (ink > 0).astype(np.uint8)
    if cv2.connectedComponents(mask, connectivity=8)[0] <= 2:
        return None
    _count, labels, stats, _centres = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return labels, stats


def group_by_overlap(stats: np.ndarray, mass: np.ndarray) -> list[Group]:
    """Components whose columns overlap by ``SAME_DIGIT_OVERLAP`` of the narrower, merged
    until none do, specks left out; sorted left to right. ``mass`` is each component's
    ink."""
    largest = int(stats[1:, cv2.CC_STAT_AREA].max())
    groups = [
        Group((label,), int(x), int(y), int(x + w), int(y + h), float(mass[label]))
        for label, (x, y, w, h, area) in enumerate(stats[:, :5].tolist())
        if label > 0 and area >= SPECK_SHARE * largest
    ]
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
                if overlap >= SAME_DIGIT_OVERLAP * min(first.width, second.width):
                    groups[i] = Group(first.labels + second.labels, first.left,
                                      min(first.top, second.top), max(first.right, second.right),
                                      max(first.bottom, second.bottom), first.ink + second.ink)
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    return groups


def line_height(groups: Sequence[Group]) -> float:
    """The digits' height: the median of the groups at least ``LINE_SHARE`` as tall as
    the tallest (a long detached flag is not a digit of the line)."""
    tallest = max(group.height for group in groups)
    return float(np.median([g.height for g in groups if g.height >= LINE_SHARE * tallest]))


def without_marks(groups: Sequence[Group], height: float) -> list[Group]:
    """The groups less those lower than ``NOISE_HEIGHT`` of the line that no neighbour
    may join: dots, dashes, smudges."""
    kept = []
    for index, group in enumerate(groups):
        neighbours = [*groups[max(0, index - 1) : index], *groups[index + 1 : index + 2]]
        joined = any(may_join(*sorted((group, other), key=lambda g: g.left), height)
                     for other in neighbours)
        if group.height >= NOISE_HEIGHT * height or joined:
            kept.append(group)
    return kept


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


def slices_of(labels: np.ndarray, group: Group, index: int, height: float) -> list[Slice]:
    """A group whole, or, when it is wider than one digit, cut along its slant where its
    ink is thinnest: the lowest local minima of its ink per straightened column, at
    least a thin digit's width from its edges and from each other."""
    if group.width <= SPLIT_WIDTH * height:
        return [Slice(index, -math.inf, math.inf, 0.0, 0.0)]
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
        if len(chosen) == MAX_CUTS:
            break
    across = cols - slant * (rows - middle)
    edges = [-math.inf]
    for edge in [*sorted(float(first + c) for c in chosen), math.inf]:
        if np.count_nonzero((across >= edges[-1]) & (across < edge)):
            edges.append(edge)
        elif not math.isfinite(edge):
            edges[-1] = edge  # the last slice would be empty: it joins the one before
    crossed = [0, *(strokes_crossed(labels, group, edge, slant, middle) for edge in edges[1:-1]), 0]
    return [Slice(index, edges[k], edges[k + 1], slant, middle, crossed[k], crossed[k + 1])
            for k in range(len(edges) - 1)]


def ink_across(rows: np.ndarray, cols: np.ndarray, slant: float,
               middle: float) -> tuple[int, np.ndarray]:
    """Ink pixels per column along ``slant`` (3-column average), and the first column."""
    across = cols - slant * (rows - middle)
    first = math.floor(float(across.min()))
    profile = np.bincount((across - first).astype(np.int64)).astype(np.float32)
    return first, np.convolve(profile, np.ones(3, np.float32) / 3, mode="same")


def strokes_crossed(labels: np.ndarray, group: Group, across: float, slant: float,
                    middle: float) -> int:
    """How many strokes a cut along the slant at ``across`` goes through: touching digits
    meet in one stroke, while a cut through one wide digit crosses two or more."""
    rows = np.arange(group.top, group.bottom)
    cols = np.clip(np.round(across + slant * (rows - middle)).astype(np.int64),
                   group.left, group.right - 1)
    inked = np.isin(labels[rows, cols], group.labels).astype(np.int8)
    return int(np.count_nonzero(np.diff(inked, prepend=0) == 1))


def prepared_digit(ink: np.ndarray) -> PreparedDigit:
    """A digit's ink map prepared the MNIST way, as a single upload is."""
    return prepare_ink(even_out_strokes(crop_to_ink(ink)))


def single_digit(ink_map: InkMap) -> Segmentation:
    """The whole ink map as the one candidate: how an upload is read as one digit."""
    ink = ink_map.ink
    whole = Candidate(prepared_digit(ink), ink_map.box_in_upload(ink_bounds(ink)), 0, 1,
                      Shape(1.0, 1.0))
    return Segmentation([whole], 1)


def segment(ink_map: InkMap) -> Segmentation:
    """The candidate digits of an ink map (see the module's docstring).

    Ink that preprocessing found is never refused here: should cutting it leave a
    candidate with nothing to read, the whole ink is read as one digit instead.
    """
    try:
        return segment_line(ink_map)
    except NoDigitError:
        return single_digit(ink_map)


def segment_line(ink_map: InkMap) -> Segmentation:
    """The candidate digits of an ink map: its components grouped, cut and combined."""
    ink = ink_map.ink
    components = label_components(ink)
    if components is None:
        return single_digit(ink_map)
    labels, stats = components
    groups = group_by_overlap(stats, np.bincount(labels.ravel(), weights=ink.ravel()))
    height = line_height(groups)
    if len(groups) > 1:
        groups = without_marks(groups, height)
    inkiest = max(group.ink for group in groups)
    digit_like = [g for g in groups
                  if g.height >= FRAGMENT_HEIGHT * height and g.ink >= DIGIT_INK * inkiest]
    if len(digit_like) <= 1:
        # Ink in one piece, or one piece and fragments (a 5's flag), is one digit: read
        # whole, as a single digit always was. The network cannot tell a wide digit
        # from two touching ones well enough to risk the commonest upload on it.
        return single_digit(ink_map)
    segments = [piece for index, group in enumerate(groups)
                for piece in slices_of(labels, group, index, height)]
    candidates = []
    for start in range(len(segments)):
        for end in range(start + 1, len(segments) + 1):
            candidate = candidate_for(ink_map, labels, groups, segments, start, end, height)
            if candidate is not None:
                candidates.append(candidate)
    return Segmentation(candidates, len(segments))


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
    ink = ink_map.ink
    if everything:
        piece = ink  # the whole line as one digit: exactly how one digit is read
    else:
        piece = np.zeros_like(ink)
        for member in members:
            parts = [s for s in run if s.group == member]
            group = groups[member]
            window = (slice(group.top, group.bottom), slice(group.left, group.right))
            keep = np.isin(labels[window], group.labels)
            if parts[0].cut_left or parts[-1].cut_right:
                rows, cols = np.indices(keep.shape, dtype=np.float32)
                across = cols + group.left - parts[0].slant * (rows + group.top - parts[0].middle)
                keep &= (across >= parts[0].left) & (across < parts[-1].right)
            piece[window] = np.where(keep, ink[window], piece[window])
        if not piece.any():
            return None
    left, top, right, bottom = ink_bounds(piece)
    whole_groups = not run[0].cut_left and not run[-1].cut_right
    if (right - left) > MAX_DIGIT_WIDTH * height and end - start > 1 and not everything and (
            len(members) > 1 or not whole_groups):
        return None
    whole_height = sum(1 for g in members if groups[g].height >= FRAGMENT_HEIGHT * height)
    cuts = run[0].crossed_left + run[-1].crossed_right
    shape = Shape((right - left) / height, (bottom - top) / height, max(0, whole_height - 1),
                  cuts)
    try:
        prepared = prepared_digit(piece)
    except NoDigitError:  # a sliver that thinning the strokes wore away: read it as it is
        prepared = prepare_ink(piece)
    return Candidate(prepared, ink_map.box_in_upload((left, top, right, bottom)), start, end,
                     shape)


def choose(segmentation: Segmentation, confidences: Sequence[float]) -> list[int]:
    """The indices of the candidates that cover the line with the best total score, left
    to right: each scores the log of the network's confidence in it plus its shape prior."""
    best: list[tuple[float, list[int]] | None] = [None] * (segmentation.segments + 1)
    best[0] = (0.0, [])
    by_start: dict[int, list[int]] = {}
    for index, candidate in enumerate(segmentation.candidates):
        by_start.setdefault(candidate.start, []).append(index)
    for start in range(segmentation.segments):
        reached = best[start]
        if reached is None:
            continue
        for index in by_start.get(start, []):
            candidate = segmentation.candidates[index]
            score = (reached[0] + math.log(max(confidences[index], 1e-6))
                     + candidate.shape.prior())
            current = best[candidate.end]
            if current is None or score > current[0]:
                best[candidate.end] = (score, [*reached[1], index])
    final = best[segmentation.segments]
    if final is None:  # no cover of single pieces: the whole line, which is always there
        return [index for index, c in enumerate(segmentation.candidates)
                if c.start == 0 and c.end == segmentation.segments]
    return final[1]
