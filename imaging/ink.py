"""Find the ink: the digit bright on zero, whatever the paper, the light or the pen.

    locate_ink          the ink map that holds the digits, and where it lies in the upload
                        (a small picture without ink is looked at again, enlarged; a large
                        one, keeping strokes too thin to survive averaging: thin_stroke_ink)
    digit_ink           find_digit, then read_digit (once only for a small image on flat
                        paper, averaged down where its digit is large: coarse_flat_ink;
                        and for a large one drawn across: survey_reads_whole)
    find_digit          where the ink is, searched on a small copy of the image
    read_digit          that region again, at a resolution fit for the digit:
        shrink              averaged down to at most READ_SIZE pixels
        to_grayscale        any mode -> 0..255, transparency flattened
        Sheet.cover         the desk around a photographed sheet painted as paper (both
                            passes; imaging.sheet finds the sheet on the small copy)
        Shadow.lift         a shadow cast across the page divided out, for dark ink (both
                            passes; imaging.shadow finds it on the small copy)
        ink_map             ink_off_paper (turned by the one side whose paper lies flat
                            across the picture, else orient_ink; then flatten_background:
                            that flat level, or a fitted surface) -> isolate_ink, or
                            for paper of one exact level
                            ink_above_flat_paper -> isolate_ink (which erases the ruling
                            of notebook and squared paper, imaging.ruling); no ink at
                            all -> NoDigitError
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imaging.decode import UPLOAD_SIZE_KEY
from imaging.errors import NoDigitError
from imaging.normalise import ink_bounds, stroke_width
from imaging.opencv import cv2
from imaging.pixels import edge_of, mean3x3, shrink, to_grayscale
from imaging.ruling import drop_specks, without_ruling
from imaging.shadow import Shadow, find_shadow
from imaging.sheet import Sheet, find_sheet

# The whole image is searched for ink at most this large (longer side): small
# enough to be quick, large enough that a thin faint stroke is not averaged away ...
SURVEY_SIZE = 320
# ... and the region found is read again from the decoded image at most this large,
READ_SIZE = 320
# ... reaching this far beyond the ink on every side (times the ink's longer
# side), so that the region holds paper as well as ink.
READ_MARGIN = 0.5
# A picture on flat paper (a canvas, a cleaned scan) is read averaged down by a whole factor
# to at most this size: the digit's 20-pixel box needs no more, and the map is read in a
# third of the time ...
FLAT_READ_SIZE = 160
# ... where its ink then stays at least this tall (pixels: the strokes' width is measured
# with the digit 80 pixels tall) ...
FLAT_READ_INK = 64
# ... and its strokes at least this wide (pixels), so that none was averaged away.
FLAT_READ_STROKE = 2.0
# The paper's light is measured on a grid of this many cells along the longer side.
BACKGROUND_CELLS = 16
# Ink must stand this far (out of 255) above the paper to count as a digit; the
# 3x3 smoothing it is measured on takes the paper's grain and noise down first.
MIN_INK_CONTRAST = 24
# Pixels fainter than this fraction of the strongest ink are taken for paper.
INK_FLOOR = 0.2
# The paper's level is this percentile of the smoothed ink map: paper unless ink
# covers nine tenths of the picture.
PAPER_PERCENTILE = 10
# Pictures smaller than this (longer side) that seem to hold no ink are looked at
# again enlarged: there a pencil stroke is a pixel wide, and the 3x3 smoothing
# would spread it into the paper ...
SMALL_PICTURE = 64
# ... and then the ink must also stand this many times the picture's grain (its
# pixels' robust deviation from their 3x3 mean) above the paper, as enlarging
# keeps noise from fading under the smoothing. Faint pencil at 16 to 48 pixels
# stands 8.6 to 16 times its grain, photos of nothing but noise at most 4.6 where a
# surface is fitted to the paper, and a little over 6 taken as flat paper
# (``flat_paper_level``): 2 of 1,000 noise-only pictures of 12 pixels then passed 6.0.
SMALL_INK_TO_GRAIN = 7.0
# A large picture that seems to hold no ink once averaged down is looked at again reduced
# by each block's darkest (or lightest) pixel, which keeps a pen stroke one pixel wide on a
# 1,000-pixel canvas; there the ink must also reach this share of the map's longer side in
# one connected piece, since that reduction keeps specks of dust and noise as well.
THIN_STROKE_EXTENT = 0.04
# Cells of the paper's grid further than this many deviations from the fit hold ink.
OUTLIER_SIGMAS = 3.0
# A median absolute deviation times this is the standard deviation of Gaussian noise.
MAD_TO_SIGMA = 1.4826
# A small picture read framed in paper (a tight crop with hardly any paper of its own) must
# span at least this many times its grain along its longer side (``grain_lengthwise``):
# tight crops of a 1 and a 0 at 16 pixels span 14 to 35 times theirs, noise alone at most
# 9 times (200 noise-only pictures at each of 8, 16, 32 and 63 pixels).
TIGHT_CROP_TO_GRAIN = 12.0
# The fit over the whole picture is the ink's, not the paper's, where it stands this share of
# the picture's range above the fit along the border (the paper's) there, as a median: at
# most 0.03 on the photo kinds of tests/synthetic_uploads.py and 0.05 on the photos of
# numbers of benchmarks/bench_numbers.py; up to 0.3 on blurry scans and 0.55 on broad
# markers filling small pictures (tests/visible_digits.py).
TAKEN_BY_INK = 0.1
# Paper is flat, and no surface is fitted to it, where the cells of its grid whose level is
# within this share of the picture's range of the lowest ...
FLAT_PAPER_TOLERANCE = 0.05
# ... reach across at least this share of the grid both ways: light falling off leaves the
# brightest paper to one side or the middle. A surface fitted to a blurry scan filling the
# frame rose into its strokes and hollowed them (1,000 blurry 8-pixel scans: 94 read wrong
# against 62). Neither bound moved that by more than 4 between 0.03 and 0.1, 0.6 and 0.9.
FLAT_PAPER_SPAN = 0.75
# The fit along the border alone ignores directions this weak against the strongest (the
# share of the largest singular value): a quadratic is ill-determined by two sides.
BORDER_FIT_RCOND = 1e-3
# A picture whose longer side is under this is a crop or an icon, not a photographed page:
# no light falls off across it to mislead its edge. The edge then turns it alone: broad
# markers at 16 pixels were turned the wrong way 27 times in 100 otherwise, 3 so. (Light
# falling off to corners at a third of the middle's turns pictures of 32 or 48 pixels the
# wrong way by their edge.)
ICON_SIZE = 32
# The two sides of a picture stray about as far from its fitted paper when the lesser
# reaches this share of the greater: the fit then lies between paper and ink ...
AMBIGUOUS_SIDES = 0.8
# ... and the picture's edge leans to the paper's side by at least this share of it.
EDGE_LEAN = 0.05
# A picture whose edge keeps within this share of its range, darkest to lightest pixel (nine
# tenths of the edge's pixels: a stroke may touch it), is framed by paper, whichever side
# strays further from the paper's fit.
EVEN_EDGE = 0.1
# Paper is taken as flat when at least this share of the pixels hold exactly one
# level, as in canvas exports, scans cleaned to pure white and MNIST-style files.
UNIFORM_PAPER_SHARE = 0.5


def ink_map(gray: np.ndarray, ruled: bool = False) -> np.ndarray:
    """Ink as bright values on a zero background, whatever the paper, the light or the pen;
    without the ruling of notebook or squared paper (``ruled``: the page is known to be
    ruled, see ``isolate_ink``)."""
    return ink_on_paper(gray, uniform_paper_level(gray), ruled=ruled)[0]


def ink_on_paper(gray: np.ndarray, level: float | None, min_contrast: float = MIN_INK_CONTRAST,
                 ruled: bool = False) -> tuple[np.ndarray, bool]:
    """``ink_map`` for paper that ``uniform_paper_level`` found flat at ``level``, or not
    (None), and whether the paper is ruled (``isolate_ink``).

    Flat paper needs no fitted surface: it is the level itself, which is what
    the fit would find on it, at a fraction of the cost.
    """
    if level is not None:
        return isolate_ink(ink_above_flat_paper(gray, level), min_contrast, ruled)
    return isolate_ink(ink_off_paper(gray), min_contrast, ruled)


def ink_off_paper(gray: np.ndarray) -> np.ndarray:
    """Bright ink on 0 for paper not all of one level: ``orient_ink`` then
    ``flatten_background``, but turned by the paper where it shows flat across the
    picture (``flat_paper_level``) on one side only, as a frame turns it; the paper
    cells and flat levels found for that are the ones taken away (``paper_taken_away``).

    A blurry scan of a dark digit filling the frame is darker than its middle level over
    most of its area and its edge, so both quick readings take it for light ink; only
    its paper lies at one level all across (blurry 8-pixel scans, 100 at each of 9 sizes:
    34 read wrong against 17). A side without flat paper is no paper.
    """
    span = float(np.ptp(gray))
    dark_ink, light_ink = paper_cells_either_way(gray)
    flat_if_dark = flat_paper_level(dark_ink, span)
    flat_if_light = flat_paper_level(light_ink, span)
    dark_side_flat, light_side_flat = flat_if_dark is not None, flat_if_light is not None
    by_paper = dark_side_flat if dark_side_flat != light_side_flat else None
    if ink_is_dark_overall(gray, by_paper):
        return paper_taken_away(255.0 - gray, dark_ink, span, flat_if_dark)
    return paper_taken_away(gray, light_ink, span, flat_if_light)


def uniform_paper_level(gray: np.ndarray) -> float | None:
    """The paper's one level when ``UNIFORM_PAPER_SHARE`` of the pixels hold it, else None.

    The candidate is the commonest value among the four corners, where paper
    almost always shows.
    """
    corners = [float(gray[0, 0]), float(gray[0, -1]), float(gray[-1, 0]), float(gray[-1, -1])]
    level = max(corners, key=corners.count)
    if np.count_nonzero(gray == level) >= UNIFORM_PAPER_SHARE * gray.size:
        return level
    return None


def ink_above_flat_paper(gray: np.ndarray, level: float) -> np.ndarray:
    """Bright ink on 0 for paper at one ``level``: ``orient_ink`` and ``flatten_background``
    for paper without light fall-off or grain."""
    difference = gray - level
    if ink_is_dark(mean3x3(difference)):
        difference = -difference
    return np.clip(difference, 0.0, None)


def orient_ink(gray: np.ndarray) -> np.ndarray:
    """Ink as the bright side: dark ink on light paper is inverted, light ink kept
    (``ink_is_dark_overall``)."""
    return 255.0 - gray if ink_is_dark_overall(gray) else gray


def ink_is_dark_overall(gray: np.ndarray, by_paper: bool | None = None) -> bool:
    """Whether the ink is the dark side of ``gray``.

    A picture framed by even paper is turned by its frame
    (``ink_is_dark_within_paper``), then by ``by_paper`` where the caller found the
    paper (``ink_off_paper``). Otherwise two quick readings are asked:
    paper surrounds a digit, so most of the picture's edge is paper
    (``ink_is_dark_by_edge``), and ink covers less of it than paper does
    (``ink_is_dark_by_area``). Where they agree, as they do on most pictures,
    or the picture is smaller than ``ICON_SIZE``, the edge is the answer. Where
    they differ (light falling off to the corners, a blurry digit or a broad
    marker filling the frame), the edge decides unless the paper's surface
    fitted over the whole picture and the one fitted along its border, each
    taken away, both leave an edge that says otherwise (``ink_is_dark_on_paper``).
    """
    framed = ink_is_dark_within_paper(gray)
    if framed is not None:
        return framed
    if by_paper is not None:
        return by_paper
    by_edge = ink_is_dark_by_edge(gray)
    if by_edge is not None and (max(gray.shape) < ICON_SIZE
                                or by_edge == ink_is_dark_by_area(mean3x3(gray))):
        return by_edge
    grid = paper_cells(gray)
    by_fit = ink_is_dark_on_paper(gray, fit_paper(grid))
    if by_edge is None:
        return by_fit
    # Light falling off to the corners misleads the edge; ink covering much of
    # a picture misleads the fit over the whole picture, not the one along
    # its border.
    by_border = ink_is_dark_on_paper(gray, fit_paper(grid.along_border()))
    return by_edge if by_edge in (by_fit, by_border) else by_fit


def ink_is_dark_on_paper(gray: np.ndarray, paper: np.ndarray) -> bool:
    """Whether the ink is the dark side of ``gray`` less the paper's fitted surface (its
    coefficients, ``fit_paper``): by the edge of what is left, or where that is split
    evenly, by which side strays further."""
    difference = mean3x3(gray - quadratic_surface(paper, gray.shape))
    dark = ink_is_dark_by_edge(difference)
    return ink_is_dark(difference) if dark is None else dark


def ink_is_dark_within_paper(gray: np.ndarray) -> bool | None:
    """Whether the ink is the dark side of a picture framed by even paper (its edge within
    ``EVEN_EDGE`` of its range), else None: ink covering most of such a picture (a broad
    marker) misleads the paper's fit and the ink's area, but not its frame."""
    edge = np.sort(edge_of(gray))  # sorted and indexed: np.percentile took 0.1 ms more
    twentieth = edge.size // 20
    low, middle, high = (float(edge[i]) for i in (twentieth, edge.size // 2, -1 - twentieth))
    darkest, lightest = float(gray.min()), float(gray.max())
    if high - low > EVEN_EDGE * (lightest - darkest):
        return None
    return middle - darkest > lightest - middle


def ink_is_dark_by_edge(values: np.ndarray) -> bool | None:
    """Whether the ink is the dark side of ``values``, read from their edge: the paper is the
    side, of the level halfway between the lowest and the highest value, on which most of
    the edge lies; None when the edge is split evenly.

    Even in a tight crop, or a blurry scan filling the frame, strokes reach the
    edge only here and there.
    """
    edge = edge_of(values)
    middle = (float(values.min()) + float(values.max())) / 2.0
    dark = np.count_nonzero(edge < middle)
    light = edge.size - dark
    return None if dark == light else bool(light > dark)


def ink_is_dark_by_area(values: np.ndarray) -> bool:
    """Whether the ink is the dark side of ``values``: fewer of them lie below the level
    halfway between the lowest and the highest than above it."""
    middle = (float(values.min()) + float(values.max())) / 2.0
    return bool(np.count_nonzero(values < middle) < values.size / 2)


def ink_reads_dark(gray: np.ndarray) -> bool:
    """Whether both quick readings of ``orient_ink`` (its edge and its area) take the ink
    for the dark side."""
    return bool(ink_is_dark_by_edge(gray)) and ink_is_dark_by_area(mean3x3(gray))


def ink_is_dark(difference: np.ndarray) -> bool:
    """Whether the ink is the dark side of ``difference`` (the picture less its paper, smoothed).

    The ink is the side straying further from the paper. When both sides
    stray about as far, the paper's fit lies between two levels: a digit
    filling the frame (a tight crop, a blurry scan) has misled it. Then the
    paper is the side the picture's edge leans to, against the picture as a
    whole, since paper surrounds a digit. On 1,440 hard but visible digits
    (``tests/visible_digits.py``) that took the wrong choices from 210 to 156;
    on the 1,000 new-writer uploads of ``training.new_writers`` from 15 to 25.
    Looser bounds (0.6, 0.01) gave 139 and 46: blurry scans of a few pixels
    then lean the wrong way.
    """
    darker, lighter = -float(difference.min()), float(difference.max())
    stray = max(darker, lighter)
    if min(darker, lighter) >= AMBIGUOUS_SIDES * stray:
        lean = float(edge_of(difference).mean()) - float(difference.mean())
        if abs(lean) >= EDGE_LEAN * stray:
            return lean > 0
    return darker > lighter


def flatten_background(ink: np.ndarray) -> np.ndarray:
    """Bright ink with the paper's uneven light taken away, so the paper sits at 0.

    Paper that shows at one level across the picture (``flat_paper_level``) is
    taken away as that level: no surface is fitted to it. Elsewhere ink covering
    much of a picture (a broad marker on a small one) can take the fit over the
    whole picture for its own: the fit then stands above the paper along the
    picture's border by ``TAKEN_BY_INK`` of the picture's range or more, and would
    hollow the strokes. There the paper is the lower of that fit and the fit along
    the border.
    """
    grid = paper_cells(ink, ink_is_bright=True)
    span = float(np.ptp(ink))
    return paper_taken_away(ink, grid, span, flat_paper_level(grid, span))


def paper_taken_away(ink: np.ndarray, grid: PaperCells, span: float,
                     flat: float | None) -> np.ndarray:
    """``flatten_background`` of bright ``ink`` whose paper cells (``grid``), range
    (``span``) and flat paper level (``flat_paper_level``, None where not flat) are known."""
    if flat is not None:
        return np.clip(ink - flat, 0.0, None)
    whole = fit_paper(grid, ink_is_bright=True)
    border = fit_paper(grid.along_border(), ink_is_bright=True)
    paper = quadratic_surface(whole, ink.shape)
    above = float(np.median(grid.terms[grid.outer] @ (whole - border)))
    if above > 0.0 and above >= TAKEN_BY_INK * span:
        paper = np.minimum(paper, quadratic_surface(border, ink.shape))
    return np.clip(ink - paper, 0.0, None)


def flat_paper_level(grid: PaperCells, span: float) -> float | None:
    """The paper's one level, the lowest of ``grid``'s levels, where the cells within
    ``FLAT_PAPER_TOLERANCE`` of ``span`` (the picture's range) of it reach across
    ``FLAT_PAPER_SPAN`` of the grid both ways; else None."""
    lowest = float(grid.levels.min())
    near = grid.levels.reshape(grid.shape) <= lowest + FLAT_PAPER_TOLERANCE * span
    rows, cols = np.nonzero(near)
    reach = (np.ptp(rows) + 1, np.ptp(cols) + 1)
    if all(cells >= FLAT_PAPER_SPAN * side for cells, side in zip(reach, grid.shape, strict=True)):
        return lowest
    return None


@dataclass(frozen=True)
class PaperCells:
    """Each cell's level and its quadratic terms (``quadratic_terms``), a row per cell, and
    the rows of the outermost cells; the grid is ``shape`` cells (rows, columns)."""

    levels: np.ndarray
    terms: np.ndarray
    outer: np.ndarray
    shape: tuple[int, int]
    rcond: float | None = None  # lstsq's cut-off for the fit's singular values

    def along_border(self) -> PaperCells:
        """The outermost cells alone."""
        return PaperCells(self.levels[self.outer], self.terms[self.outer],
                          np.arange(self.outer.size), (1, self.outer.size), BORDER_FIT_RCOND)


def paper_cells(values: np.ndarray, ink_is_bright: bool = False,
                cells: int = BACKGROUND_CELLS) -> PaperCells:
    """A grid of about ``cells`` x ``cells`` over ``values`` and each cell's level: its
    median, or once the ink is known to be the bright side its lower quartile (paper
    unless ink covers nearly all the cell, as inside a thick marker's stroke).

    Light falls off smoothly across a page (a lamp to one side, a phone's vignette), so
    the paper is modelled as a quadratic surface fitted to these levels and refitted
    without the cells that stray from it, which hold ink (``fit_paper``); the outermost
    cells alone (``PaperCells.along_border``) are paper however much of the picture a
    digit's ink covers.
    """
    blocks, cell = cell_blocks(values, cells)
    rank = blocks.shape[2] // (4 if ink_is_bright else 2)
    levels = np.partition(blocks, rank, axis=2)[..., rank]
    return cells_at(levels, cell, values.shape)


def paper_cells_either_way(gray: np.ndarray) -> tuple[PaperCells, PaperCells]:
    """``paper_cells`` of ``gray`` with its ink taken for the bright side, first turned as
    dark ink is (``255 - gray``) and then as it is, from one sort of its cells."""
    blocks, cell = cell_blocks(gray, BACKGROUND_CELLS)
    size = blocks.shape[2]
    low, high = size // 4, size - 1 - size // 4  # the lower quartile of 255 - gray is at high
    # A sort costs what one partition does; a partition at both ranks, three times that.
    levels = np.sort(blocks, axis=2)
    return (cells_at(255.0 - levels[..., high], cell, gray.shape),
            cells_at(levels[..., low], cell, gray.shape))


def cell_blocks(values: np.ndarray, cells: int) -> tuple[np.ndarray, int]:
    """``values`` cut into about ``cells`` x ``cells`` square blocks (rows, columns, pixels),
    edge pixels repeated to fill the last ones, and the blocks' side."""
    height, width = values.shape
    cell = max(1, math.ceil(max(height, width) / cells))
    rows, cols = math.ceil(height / cell), math.ceil(width / cell)
    padded = np.pad(values, ((0, rows * cell - height), (0, cols * cell - width)), mode="edge")
    blocks = padded.reshape(rows, cell, cols, cell).transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    return blocks, cell


def cells_at(levels: np.ndarray, cell: int, size: tuple[int, int]) -> PaperCells:
    """``PaperCells`` of a grid of ``levels`` (rows, columns) of blocks ``cell`` pixels wide
    over a picture of ``size`` (height, width)."""
    rows, cols = levels.shape
    cell_y, cell_x = np.indices((rows, cols), dtype=np.float32)
    terms = quadratic_terms((cell_y.ravel() + 0.5) * cell / size[0],
                            (cell_x.ravel() + 0.5) * cell / size[1])
    return PaperCells(levels.ravel(), terms, edge_of(np.arange(rows * cols).reshape(rows, cols)),
                      (rows, cols))


def fit_paper(grid: PaperCells, ink_is_bright: bool = False) -> np.ndarray:
    """The quadratic surface's coefficients fitted to the paper among ``grid``'s cells.

    The fit starts from the commonest levels and leaves out the cells straying
    from it; once the ink is known to be the bright side, it starts from the
    darker half of the cells and leaves out only those above it.
    """
    levels, terms = grid.levels, grid.terms
    if ink_is_bright:
        paper = levels <= np.median(levels)
    else:
        typical = np.abs(levels - np.median(levels))
        paper = typical <= OUTLIER_SIGMAS * MAD_TO_SIGMA * float(np.median(typical)) + 1.0
    for _ in range(5):
        coefficients, *_ = np.linalg.lstsq(terms[paper], levels[paper], rcond=grid.rcond)
        residual = levels - terms @ coefficients
        if not ink_is_bright:
            residual = np.abs(residual)
        spread = MAD_TO_SIGMA * float(np.median(np.abs(residual[paper])))
        keep = residual <= OUTLIER_SIGMAS * spread + 1.0  # a level's slack for flat paper
        if keep.sum() < terms.shape[1] or np.array_equal(keep, paper):
            break
        paper = keep
    return coefficients


def quadratic_terms(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The terms of a quadratic surface at points ``y``, ``x`` (0..1 across the image)."""
    y, x = y - 0.5, x - 0.5
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


def quadratic_surface(coefficients: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The surface ``quadratic_terms`` fitted, evaluated at every pixel's centre."""
    one, cx, cy, cxx, cxy, cyy = (float(c) for c in coefficients)
    y = (np.arange(shape[0], dtype=np.float32) + 0.5) / shape[0] - 0.5
    x = (np.arange(shape[1], dtype=np.float32) + 0.5) / shape[1] - 0.5
    by_row = one + cy * y + cyy * y * y
    by_column = cx * x + cxx * x * x
    return by_row[:, None] + by_column[None, :] + cxy * np.outer(y, x)


def isolate_ink(flat: np.ndarray, min_contrast: float = MIN_INK_CONTRAST,
                ruled: bool = False) -> tuple[np.ndarray, bool]:
    """Only the ink, scaled so the strongest is 255, and whether ruling was found and erased;
    raises ``NoDigitError`` when there is no ink.

    The paper's level and the strongest ink are read on a 3x3-smoothed copy,
    where the paper's grain and noise have faded. The level is a low
    percentile (``paper_level``), so that a digit covering most of the
    picture does not pass for paper. The strongest ink must stand
    ``min_contrast`` above the paper; pixels fainter than ``INK_FLOOR`` of it
    are paper. The lines of ruled paper are erased before that floor, which
    would leave the bits of them that touch the digit (``imaging.ruling``;
    ``ruled``: the page is known to be ruled, so one line is enough).
    """
    smooth = mean3x3(flat)
    paper = paper_level(smooth)
    peak = float(smooth.max()) - paper
    if peak < min_contrast:
        raise NoDigitError("no digit was found in the image")
    ink, ruled_here = without_ruling(np.clip((flat - paper) * (255.0 / peak), 0.0, 255.0), ruled)
    if ruled_here:  # the contrast and the floor are judged again on what the ruling left
        smooth = mean3x3(ink)
        left = float(smooth.max())
        if left < min_contrast * 255.0 / peak:
            raise NoDigitError("no digit was found in the image")
        ink = np.clip(ink * (255.0 / left), 0.0, 255.0)
        smooth, paper, peak = smooth * (255.0 / left), 0.0, 255.0
    ink[smooth <= paper + INK_FLOOR * peak] = 0.0
    if ruled_here:
        drop_specks(ink)
    return ink, ruled or ruled_here


def paper_level(smooth: np.ndarray) -> float:
    """The paper's level in a smoothed ink map: its ``PAPER_PERCENTILE``th percentile.

    Ink is the bright side, so the darkest tenth is paper as long as ink
    leaves a tenth of the picture bare, as even a thick marker filling the
    frame does. A median over all pixels would stand on the ink of a digit
    that fills the frame.
    """
    if np.count_nonzero(smooth) <= smooth.size * (1 - PAPER_PERCENTILE / 100):
        return 0.0  # that percentile is exactly 0 (flat paper): no need to sort
    return float(np.percentile(smooth, PAPER_PERCENTILE))


def find_digit(image: Image.Image) -> tuple[int, int, int, int]:
    """The region of ``image`` to read: the ink found on a small copy, with paper around it."""
    survey = shrink(image, SURVEY_SIZE)
    return region_around_ink(image, survey, ink_map(to_grayscale(survey)))


def region_around_ink(image: Image.Image, survey: Image.Image,
                      ink: np.ndarray) -> tuple[int, int, int, int]:
    """The ink's box on ``survey`` (a copy of ``image``) in ``image``'s pixels, with margins."""
    left, top, right, bottom = ink_bounds(ink)
    scale_x, scale_y = image.width / survey.width, image.height / survey.height
    margin = READ_MARGIN * max((right - left) * scale_x, (bottom - top) * scale_y)
    return (
        max(0, math.floor(left * scale_x - margin)),
        max(0, math.floor(top * scale_y - margin)),
        min(image.width, math.ceil(right * scale_x + margin)),
        min(image.height, math.ceil(bottom * scale_y + margin)),
    )


def read_digit(image: Image.Image, region: tuple[int, int, int, int],
               ruled: bool = False, sheet: Sheet | None = None,
               survey_scale: tuple[float, float] = (1.0, 1.0),
               shadow: Shadow | None = None) -> np.ndarray:
    """The ink map of ``region``, read at most ``READ_SIZE`` pixels on its longer side
    (``ruled``: on a page known to be ruled), off ``sheet`` painted as paper and with
    ``shadow`` lifted (both found on a copy of ``image`` scaled by ``survey_scale``, across
    and down: a sliver's copy, its width rounded, is not scaled alike both ways)."""
    gray = to_grayscale(shrink(image.crop(region), READ_SIZE))
    scale_x, scale_y = survey_scale
    left, top, right, bottom = region
    on_survey = (left * scale_x, top * scale_y, right * scale_x, bottom * scale_y)
    if sheet is not None:
        gray = sheet.cover(gray, on_survey)
    if shadow is not None:
        gray = shadow.lift(gray, on_survey)
    return ink_map(gray, ruled)


@dataclass(frozen=True)
class InkMap:
    """An ink map and the part of the upright upload it shows.

    ``region`` is (left, top, right, bottom) in the upload's pixels; the map
    covers it evenly, so a box on the map maps back by one scale per axis.
    """

    ink: np.ndarray
    region: tuple[float, float, float, float]

    def box_in_upload(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A (left, top, right, bottom) box on the map in the upload's pixels (outer edges)."""
        left, top, right, bottom = self.region
        scale_x = (right - left) / self.ink.shape[1]
        scale_y = (bottom - top) / self.ink.shape[0]
        return (math.floor(left + box[0] * scale_x), math.floor(top + box[1] * scale_y),
                math.ceil(left + box[2] * scale_x), math.ceil(top + box[3] * scale_y))


def locate_ink(image: Image.Image) -> InkMap:
    """The ink map that holds the digits: ``find_digit``, then ``read_digit``, with its place.

    An image small enough to be surveyed whole, on flat paper, is read once:
    its survey already is the ink map at full resolution, or averaged down
    where the digit is large (``coarse_flat_ink``); so is a larger one on flat
    paper whose region to read is the whole picture (``survey_reads_whole``).
    A small picture in which no ink stands out is looked at once more
    (``small_picture_ink``).
    """
    survey = shrink(image, SURVEY_SIZE)
    gray = to_grayscale(survey)
    level = uniform_paper_level(gray)
    whole = (0, 0, image.width, image.height)
    if level is not None and survey is image:
        coarse = coarse_flat_ink(gray, level)
        if coarse is not None:
            return InkMap(coarse, upload_region(image, whole))
    sheet = shadow = None
    if level is None:
        sheet = find_sheet(gray)
        if sheet is not None:
            gray = sheet.cover(gray)
        gray, shadow = without_shadow(gray)
    try:
        ink, ruled = ink_on_paper(gray, level)
    except NoDigitError:
        if survey is not image:
            return thin_stroke_ink(image, gray)
        if max(gray.shape) >= SMALL_PICTURE:
            raise
        return InkMap(small_picture_ink(gray, level), upload_region(image, whole))
    if survey is image and level is not None:
        region = whole
    else:
        region = region_around_ink(image, survey, ink)
        if not (region == whole and survey_reads_whole(image, level, ruled)):
            scale = (survey.width / image.width, survey.height / image.height)
            ink = read_digit(image, region, ruled, sheet, scale, shadow)
    return InkMap(ink, upload_region(image, region))


def survey_reads_whole(image: Image.Image, level: float | None, ruled: bool) -> bool:
    """Whether ``read_digit`` of the whole picture would give the survey's own ink map again:
    flat paper at ``level``, not ruled, read at the survey's scale (a large canvas with its
    digit drawn across most of it)."""
    longest = max(image.size)
    return (level is not None and not ruled
            and math.ceil(longest / READ_SIZE) == math.ceil(longest / SURVEY_SIZE))


def coarse_flat_ink(gray: np.ndarray, level: float) -> np.ndarray | None:
    """The ink of a picture on flat paper at ``level``, read averaged down by a whole factor to
    at most ``FLAT_READ_SIZE``; None where it is that small already, or where the ink would
    come out short (``FLAT_READ_INK``) or thin (``FLAT_READ_STROKE``) or not at all: there
    the picture is read whole."""
    factor = math.ceil(max(gray.shape) / FLAT_READ_SIZE)
    if factor < 2:
        return None
    height, width = gray.shape
    # Averaged over blocks of factor x factor pixels (OpenCV's area resize: 7 us where
    # Pillow's reduce took 68 on a 280x280 map); the paper keeps its level.
    coarse = cv2.resize(gray, (math.ceil(width / factor), math.ceil(height / factor)),
                        interpolation=cv2.INTER_AREA)
    try:
        ink = ink_on_paper(coarse, level)[0]
    except NoDigitError:
        return None
    _, top, _, bottom = ink_bounds(ink)
    if bottom - top < FLAT_READ_INK or stroke_width(ink) < FLAT_READ_STROKE:
        return None
    return ink


def small_picture_ink(gray: np.ndarray, level: float | None) -> np.ndarray:
    """The ink of a picture under ``SMALL_PICTURE`` in which none stood out, or
    ``NoDigitError``: looked at enlarged (``enlarged``), where a pencil stroke a pixel wide
    is not lost in the 3x3 smoothing, then with a band of paper around it
    (``framed_in_paper``), where a tight crop of a 1 holds too little paper of its own. Its
    ink must stand out from its grain (``SMALL_INK_TO_GRAIN``, ``TIGHT_CROP_TO_GRAIN``).
    """
    try:
        return ink_on_paper(enlarged(gray), level,
                            max(MIN_INK_CONTRAST, SMALL_INK_TO_GRAIN * grain(gray)))[0]
    except NoDigitError:
        if float(np.ptp(gray)) < TIGHT_CROP_TO_GRAIN * grain_lengthwise(gray):
            raise
        framed, band = framed_in_paper(gray)
        return ink_on_paper(framed, uniform_paper_level(framed))[0][band:-band, band:-band]


def grain_lengthwise(gray: np.ndarray) -> float:
    """How far pixels stray from the mean of their two neighbours along the picture's longer
    side, robustly, as a deviation: noise strays every way, while a stroke running the length
    of a sliver changes smoothly along it (``grain`` takes such a sliver for all grain)."""
    along = gray if gray.shape[0] >= gray.shape[1] else gray.T
    if along.shape[0] < 3:
        return 0.0
    strays = along[1:-1] - (along[:-2] + along[2:]) / 2.0
    return MAD_TO_SIGMA * float(np.median(np.abs(strays)))


def framed_in_paper(gray: np.ndarray) -> tuple[np.ndarray, int]:
    """``gray`` in a band of paper a quarter of its longer side wide, and the band's width:
    paper as light as its lightest pixel where its edge takes the ink for dark (or cannot
    tell), as dark as its darkest where light."""
    dark = ink_is_dark_by_edge(gray)
    paper = float(gray.max()) if dark or dark is None else float(gray.min())
    band = math.ceil(max(gray.shape) / 4)
    return np.pad(gray, band, constant_values=paper), band


def without_shadow(gray: np.ndarray) -> tuple[np.ndarray, Shadow | None]:
    """``gray`` with a shadow cast across it lifted, and the shadow; ``gray`` and None where
    there is none, or its ink is light (a shadow shows on the light paper around dark ink)."""
    shadow = find_shadow(gray)
    if shadow is None:
        return gray, None
    lifted = shadow.lift(gray)
    return (lifted, shadow) if ink_reads_dark(lifted) else (gray, None)


def thin_stroke_ink(image: Image.Image, survey: np.ndarray) -> InkMap:
    """The ink of a picture whose strokes averaging it down to ``survey`` (its gray values)
    wiped out, as a thin pen's on a large canvas or scan: found on the whole picture reduced
    by each block's darkest pixel (for dark ink) or lightest (light ink); ``NoDigitError``
    if there is none.

    Ink must stand out from the reduced map's grain as on a small picture, and reach
    ``THIN_STROKE_EXTENT`` of it in one piece.
    """
    gray = to_grayscale(image)
    factor = math.ceil(max(gray.shape) / SURVEY_SIZE)
    rows, cols = gray.shape[0] // factor, gray.shape[1] // factor
    if not rows or not cols:  # a strip thinner than one block
        raise NoDigitError("no digit was found in the image")
    # Whole rows of blocks first, then along them: contiguous and five times quicker.
    bands = gray[:rows * factor, :cols * factor].reshape(rows, factor, cols * factor)
    paper_is_light = float(np.median(survey)) >= 128.0  # thin strokes leave paper the median
    for keep_dark in (paper_is_light, not paper_is_light):
        extreme = np.min if keep_dark else np.max
        reduced = extreme(extreme(bands, axis=1).reshape(rows, cols, factor), axis=2)
        try:
            ink, _ = ink_on_paper(reduced, uniform_paper_level(reduced),
                                  max(MIN_INK_CONTRAST, SMALL_INK_TO_GRAIN * grain(reduced)))
        except NoDigitError:
            continue
        if longest_piece(ink) >= THIN_STROKE_EXTENT * max(ink.shape):
            return InkMap(ink, upload_region(image, (0, 0, cols * factor, rows * factor)))
    raise NoDigitError("no digit was found in the image")


def longest_piece(ink: np.ndarray) -> int:
    """The longer side of the largest box around one connected piece (8-connected) of the
    ink at least half as strong as the strongest: a faint haze around specks joins nothing."""
    count, _labels, stats, _centres = cv2.connectedComponentsWithStats(
        (ink >= 128.0).astype(np.uint8), connectivity=8)
    if count <= 1:
        return 0
    sides = stats[1:, [cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT]]
    return int(sides.max())


def upload_region(image: Image.Image,
                  region: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """A region of the decoded image in the upright upload's pixels (a large JPEG is decoded
    at a reduced scale)."""
    upload_width, upload_height = image.info.get(UPLOAD_SIZE_KEY, image.size)
    scale_x, scale_y = upload_width / image.width, upload_height / image.height
    return (region[0] * scale_x, region[1] * scale_y, region[2] * scale_x, region[3] * scale_y)


def digit_ink(image: Image.Image) -> np.ndarray:
    """The ink map that holds the digit (``locate_ink`` without its place)."""
    return locate_ink(image).ink


def grain(gray: np.ndarray) -> float:
    """How far pixels stray from their 3x3 mean, robustly (a median), as a deviation."""
    return MAD_TO_SIGMA * float(np.median(np.abs(gray - mean3x3(gray))))


def enlarged(gray: np.ndarray) -> np.ndarray:
    """A small picture enlarged smoothly by a whole factor to at least ``SMALL_PICTURE``."""
    factor = math.ceil(SMALL_PICTURE / max(gray.shape))
    height, width = gray.shape
    image = Image.fromarray(gray, mode="F").resize((width * factor, height * factor),
                                                   Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32)
