"""Realistic uploads made from held-out MNIST digits, in memory.

Each maker takes one 28x28 MNIST digit (white on black) and a seeded
``numpy.random.Generator`` and returns a Pillow image the way a person would
send it: on paper, photographed, drawn on a canvas, in colour, small on a big
page, in thick marker or faint pencil. ``UPLOAD_KINDS`` names them all with
the file format each is sent in; ``make_upload`` makes the file's bytes.
``RULED_KINDS`` are the same on notebook and squared paper, scanned or
photographed, whose ruling crosses the digit.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Colour = tuple[int, int, int]

# (ink, paper) pairs: pens on coloured notes, and light chalk on a dark board.
INK_ON_PAPER: list[tuple[Colour, Colour]] = [
    ((30, 50, 160), (250, 235, 140)),  # blue pen on a yellow note
    ((190, 30, 40), (200, 225, 245)),  # red pen on light blue paper
    ((20, 110, 50), (250, 210, 220)),  # green pen on pink paper
    ((90, 40, 140), (215, 240, 200)),  # purple pen on light green paper
    ((40, 30, 30), (250, 180, 90)),  # black pen on orange paper
    ((235, 235, 225), (40, 85, 60)),  # white chalk on a green board
    ((250, 220, 60), (30, 40, 110)),  # yellow paint pen on dark blue card
]

# (ruling, paper) colours of notebooks and squared paper, and the pens people write on them with.
RULING_ON_PAPER: list[tuple[Colour, Colour]] = [
    ((150, 190, 235), (250, 250, 245)),  # light blue lines on white
    ((120, 160, 220), (248, 248, 240)),  # blue lines
    ((170, 170, 170), (252, 252, 252)),  # gray squares
    ((200, 140, 140), (250, 248, 240)),  # red squares
]
PENS: list[Colour] = [(20, 20, 30), (30, 40, 120), (60, 60, 60)]

# EXIF Orientation -> the transpose that turns the upright picture into the
# stored pixels (the inverse of what a viewer applies to show it upright).
STORED_FOR_ORIENTATION: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
ORIENTATION_TAG = 0x0112


def noise_like(shape: tuple[int, ...], rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian sensor or scanner noise."""
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)


def ink_coverage(digit: np.ndarray, height: int) -> np.ndarray:
    """The digit's ink (0..1, float32) enlarged smoothly to ``height`` x ``height``."""
    image = Image.fromarray(digit, mode="L").resize((height, height), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def rank_filtered(coverage: np.ndarray, passes: int,
                  rank_filter: ImageFilter.RankFilter) -> np.ndarray:
    """``coverage`` after ``passes`` passes of a 3x3 minimum or maximum filter."""
    image = Image.fromarray(np.round(coverage * 255).astype(np.uint8), mode="L")
    for _ in range(passes):
        image = image.filter(rank_filter)
    return np.asarray(image, dtype=np.float32) / 255.0


def thickened(coverage: np.ndarray, radius: int) -> np.ndarray:
    """Ink grown by ``radius`` pixels on every side (a broader pen)."""
    return rank_filtered(coverage, radius, ImageFilter.MaxFilter(3))


def thinned(coverage: np.ndarray, radius: int) -> np.ndarray:
    """Ink shrunk by ``radius`` pixels on every side (a finer pen)."""
    return rank_filtered(coverage, radius, ImageFilter.MinFilter(3))


def place(coverage: np.ndarray, size: tuple[int, int], top_left: tuple[int, int]) -> np.ndarray:
    """``coverage`` pasted on an empty page of ``size`` (width, height) at ``top_left`` (x, y)."""
    width, height = size
    page = np.zeros((height, width), dtype=np.float32)
    x, y = top_left
    page[y : y + coverage.shape[0], x : x + coverage.shape[1]] = coverage
    return page


def centred(coverage: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``coverage`` in the middle of an empty page of ``size`` (width, height)."""
    width, height = size
    return place(coverage, size, ((width - coverage.shape[1]) // 2,
                                  (height - coverage.shape[0]) // 2))


def paint(coverage: np.ndarray, ink: Colour, paper: Colour) -> np.ndarray:
    """An RGB float page: ``paper`` colour with ``ink`` laid on where the coverage is."""
    paper_colour = np.asarray(paper, np.float32)
    return paper_colour + coverage[..., None] * (np.asarray(ink, np.float32) - paper_colour)


def to_image(pixels: np.ndarray) -> Image.Image:
    """Float pixels (H, W) or (H, W, 3) rounded and clipped into an 8-bit image."""
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))


def perspective_coefficients(
    source: list[tuple[float, float]], target: list[tuple[float, float]]
) -> list[float]:
    """Pillow's PERSPECTIVE data mapping output points ``target`` to input points ``source``."""
    rows, values = [], []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values.extend([u, v])
    return list(np.linalg.solve(np.array(rows, float), np.array(values, float)))


def camera_view(coverage: np.ndarray, rng: np.random.Generator, degrees: float = 6.0,
                tilt: float = 0.04) -> np.ndarray:
    """The page seen by a hand-held camera: slightly rotated, slightly in perspective."""
    height, width = coverage.shape
    angle = np.radians(rng.uniform(-degrees, degrees))
    cx, cy = width / 2, height / 2
    corners = [(0, 0), (width, 0), (width, height), (0, height)]
    moved = []
    for x, y in corners:
        dx, dy = x - cx, y - cy
        jitter = rng.uniform(-tilt, tilt, 2) * (width, height)
        moved.append((cx + dx * np.cos(angle) - dy * np.sin(angle) + jitter[0],
                      cy + dx * np.sin(angle) + dy * np.cos(angle) + jitter[1]))
    data = perspective_coefficients(corners, moved)
    image = Image.fromarray(coverage, mode="F").transform(
        (width, height), Image.Transform.PERSPECTIVE, data, Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32)


def lighting(size: tuple[int, int], rng: np.random.Generator, strength: float) -> np.ndarray:
    """A light falloff: a linear gradient in a random direction times a soft vignette."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs, ys = xs / np.float32(width) - 0.5, ys / np.float32(height) - 0.5
    direction = rng.uniform(0, 2 * np.pi)
    ramp = xs * np.cos(direction) + ys * np.sin(direction)  # -0.7 .. 0.7
    vignette = 1.0 - 0.5 * strength * (xs**2 + ys**2)
    return ((1.0 - strength * (ramp + 0.7) / 1.4) * vignette).astype(np.float32)


def paper_texture(size: tuple[int, int], rng: np.random.Generator, amount: float) -> np.ndarray:
    """Blotchy low-frequency unevenness of paper, roughly -amount..amount."""
    width, height = size
    coarse = rng.normal(0, amount / 2, (6, 8)).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32)


def defocused(coverage: np.ndarray, radius: float) -> np.ndarray:
    """Ink edges softened as by a camera slightly out of focus."""
    image = Image.fromarray(np.round(coverage * 255).astype(np.uint8), mode="L")
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def photographed(page: np.ndarray, rng: np.random.Generator, light: float = 0.4,
                 noise: float = 5.0) -> Image.Image:
    """An RGB page as a phone takes it: uneven light, blotchy paper, sensor noise."""
    height, width = page.shape[:2]
    page = page * lighting((width, height), rng, light)[..., None]
    page = page + paper_texture((width, height), rng, 6.0)[..., None]
    return to_image(page + noise_like((height, width, 1), rng, noise))


def black_on_paper(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Black ink on white paper, a scanned or drawn digit of a few hundred pixels."""
    size = int(rng.integers(90, 300))
    margin = int(rng.integers(size // 8, size // 2))
    coverage = centred(ink_coverage(digit, size), (size + 2 * margin, size + 2 * margin))
    return to_image(paint(coverage, (0, 0, 0), (255, 255, 255))[..., 0])


def pen_on_paper_view(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A dark pen digit somewhere on off-white paper, as a 640x480 camera sees it, slightly
    out of focus (RGB, before the light and the noise)."""
    width, height = 640, 480
    coverage = ink_coverage(digit, int(rng.integers(200, 340)))
    top_left = (int(rng.integers(0, width - coverage.shape[1])),
                int(rng.integers(0, height - coverage.shape[0])))
    coverage = defocused(camera_view(place(coverage, (width, height), top_left), rng), 1.2)
    paper = tuple(int(v) for v in rng.integers(215, 245, 3))
    ink = tuple(int(v) for v in rng.integers(20, 70, 3))
    return paint(coverage, ink, paper)


def phone_photo(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A dark pen digit on off-white paper, photographed in poor light (before JPEG)."""
    return photographed(pen_on_paper_view(digit, rng), rng)


def photo_on_desk(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A dark pen digit on a sheet of paper photographed on a darker desk, which shows on
    one to four sides of the sheet (before JPEG)."""
    width, height = 640, 480
    sheet_width = int(width * rng.uniform(0.5, 0.9))
    sheet_height = int(height * rng.uniform(0.55, 0.95))
    left = int(rng.integers(0, width - sheet_width + 1))
    top = int(rng.integers(0, height - sheet_height + 1))
    sheet = place(np.ones((sheet_height, sheet_width), np.float32), (width, height), (left, top))
    size = int(min(sheet_width, sheet_height) * rng.uniform(0.4, 0.7))
    margin_x, margin_y = (sheet_width - size) // 2, (sheet_height - size) // 2
    x = left + margin_x + int(rng.integers(-margin_x // 2, margin_x // 2 + 1))
    y = top + margin_y + int(rng.integers(-margin_y // 2, margin_y // 2 + 1))
    coverage = place(ink_coverage(digit, size), (width, height), (x, y))
    desk = tuple(int(v) for v in rng.integers(20, 130, 3))
    paper = tuple(int(v) for v in rng.integers(200, 245, 3))
    ink = np.asarray(rng.integers(20, 70, 3), np.float32)
    page = paint(sheet, paper, desk)
    page += coverage[..., None] * (ink - page)
    view = int(rng.integers(2**32))  # one camera for the three channels
    page = np.stack([camera_view(page[..., channel], np.random.default_rng(view))
                     for channel in range(3)], axis=-1)
    return photographed(page, rng, light=0.25)


def cast_shadow(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The light left by a shadow whose straight edge crosses a picture of ``size`` (width,
    height): 1 in the light, 0.35 to 0.7 in the shade, the edge sharp or soft."""
    width, height = size
    angle = rng.uniform(0.0, np.pi)
    x, y = rng.uniform(0.15, 0.85) * width, rng.uniform(0.2, 0.8) * height
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    shade = (cols - x) * np.cos(angle) + (rows - y) * np.sin(angle) > 0
    softness = rng.uniform(0.0, 15.0)  # the blur's radius in pixels
    if softness > 0.5:
        shade = defocused(shade.astype(np.float32), softness)
    return 1.0 - rng.uniform(0.3, 0.65) * shade


def photo_in_shadow(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A dark pen digit photographed with a shadow (a phone's, a hand's) across the page."""
    page = pen_on_paper_view(digit, rng)
    height, width = page.shape[:2]
    return photographed(page * cast_shadow((width, height), rng)[..., None], rng, light=0.25)


def blank_photo(rng: np.random.Generator) -> Image.Image:
    """A photo of empty paper: uneven light, blotches and noise but no ink."""
    paper = tuple(int(v) for v in rng.integers(200, 245, 3))
    return photographed(paint(np.zeros((480, 640), np.float32), (0, 0, 0), paper), rng)


def canvas_export(digit: np.ndarray, stroke: Colour) -> Image.Image:
    """A browser canvas export: the strokes opaque, everything else fully transparent."""
    alpha = Image.fromarray(digit, mode="L").resize((280, 280), Image.Resampling.BICUBIC)
    canvas = Image.new("RGBA", (280, 280), (*stroke, 0))
    canvas.putalpha(alpha)
    return canvas


def dark_canvas(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Black strokes on a transparent canvas."""
    return canvas_export(digit, (0, 0, 0))


def white_canvas(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """White strokes on a transparent canvas (drawn for a dark page)."""
    return canvas_export(digit, (255, 255, 255))


def coloured_ink(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Coloured ink on coloured paper, with mild noise."""
    ink, paper = INK_ON_PAPER[int(rng.integers(len(INK_ON_PAPER)))]
    size = int(rng.integers(120, 280))
    coverage = centred(ink_coverage(digit, size), (size * 3 // 2, size * 3 // 2))
    page = paint(coverage, ink, paper) + noise_like((*coverage.shape, 1), rng, 3.0)
    return to_image(page)


def small_on_big_page(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A small digit near a corner of a large scanned page with faintly blotchy paper."""
    width, height = 1600, 1200
    coverage = ink_coverage(digit, int(rng.integers(70, 110)))
    size = coverage.shape[0]
    near_left, near_top = rng.integers(20, 200), rng.integers(20, 150)
    near_right = rng.integers(width - size - 200, width - size - 20)
    near_bottom = rng.integers(height - size - 150, height - size - 20)
    x, y = int(rng.choice([near_left, near_right])), int(rng.choice([near_top, near_bottom]))
    page = 244.0 - 224.0 * place(coverage, (width, height), (x, y))
    return to_image(page + paper_texture((width, height), rng, 4.0))


def thick_marker(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A broad felt-tip: strokes grown by 3/4 to 1 MNIST pixel on every side."""
    coverage = thickened(ink_coverage(digit, 224), radius=int(rng.integers(6, 9)))
    coverage = centred(coverage, (300, 300))
    return to_image(paint(coverage, (10, 10, 10), (250, 250, 250))[..., 0])


def faint_pencil(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A hard pencil: thin grainy strokes, little darker than the paper."""
    coverage = thinned(ink_coverage(digit, 224), radius=int(rng.integers(2, 5)))
    grain = rng.uniform(0.6, 1.0, coverage.shape).astype(np.float32)
    coverage = centred(coverage * grain, (300, 300))
    paper = float(rng.integers(220, 240))
    darkness = float(rng.integers(55, 80))  # how much darker than the paper the graphite is
    page = paper - darkness * coverage + noise_like(coverage.shape, rng, 3.0)
    return to_image(page)


def ruling(size: tuple[int, int], spacing: float, rng: np.random.Generator,
           squared: bool) -> np.ndarray:
    """The coverage (0..1) of a page's ruling: lines 1 to 3 pixels wide every ``spacing``
    pixels across it, and down it too on squared paper."""
    width, height = size
    page = Image.new("F", size, 0.0)
    draw = ImageDraw.Draw(page)
    thickness = int(rng.integers(1, 4))
    for y in np.arange(rng.uniform(0, spacing), height, spacing):
        draw.line([(0, y), (width, y)], fill=1.0, width=thickness)
    if squared:
        for x in np.arange(rng.uniform(0, spacing), width, spacing):
            draw.line([(x, 0), (x, height)], fill=1.0, width=thickness)
    return np.asarray(page, dtype=np.float32)


def on_ruled_paper(digit: np.ndarray, rng: np.random.Generator, squared: bool,
                   photographed_askew: bool) -> np.ndarray:
    """An RGB float page of ruled (or squared) paper with ``digit`` written on it across the
    ruling, a fifth to a half of the page high; seen askew by a camera when asked."""
    size = int(rng.integers(300, 600))
    height = int(size * rng.uniform(0.2, 0.5))
    spacing = height / rng.uniform(0.7, 2.0)  # between the lines, or one to two squares high
    if photographed_askew:  # a larger sheet seen askew, cropped so that it fills the frame
        sheet = camera_view(ruling((size * 3 // 2,) * 2, spacing, rng, squared), rng)
        lines = sheet[size // 4:size // 4 + size, size // 4:size // 4 + size]
    else:
        lines = ruling((size, size), spacing, rng, squared)
    top_left = tuple(int(v) for v in rng.integers(height // 2, size - height * 3 // 2, 2))
    coverage = place(ink_coverage(digit, height), (size, size), top_left)
    line_colour, paper = RULING_ON_PAPER[int(rng.integers(len(RULING_ON_PAPER)))]
    page = paint(lines, line_colour, paper)
    pen = np.array(PENS[int(rng.integers(len(PENS)))], np.float32)
    return page * (1.0 - coverage[..., None]) + pen * coverage[..., None]


def ruled_notebook(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A digit written across the lines of a notebook page, scanned."""
    return to_image(on_ruled_paper(digit, rng, squared=False, photographed_askew=False))


def squared_paper(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A digit written on squared paper, scanned."""
    return to_image(on_ruled_paper(digit, rng, squared=True, photographed_askew=False))


def ruled_notebook_photo(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A notebook page photographed askew in uneven light (before JPEG)."""
    return photographed(on_ruled_paper(digit, rng, squared=False, photographed_askew=True), rng)


def squared_paper_photo(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Squared paper photographed askew in uneven light (before JPEG)."""
    return photographed(on_ruled_paper(digit, rng, squared=True, photographed_askew=True), rng)


def exif_rotated(picture: Image.Image, orientation: int) -> Image.Image:
    """The stored pixels of ``picture`` as a camera saves them with EXIF ``orientation``."""
    transpose = STORED_FOR_ORIENTATION[orientation]
    stored = picture if transpose is None else picture.transpose(transpose)
    stored.getexif()[ORIENTATION_TAG] = orientation
    return stored


def encode_upload(image: Image.Image, format: str = "PNG", **options) -> bytes:
    """The file a person would send; EXIF set on the image is written too."""
    buffer = io.BytesIO()
    exif = image.getexif()
    if len(exif):
        options.setdefault("exif", exif)
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def exif_rotated_photo(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A phone photo held sideways or upside down, stored as the camera saw it."""
    return exif_rotated(phone_photo(digit, rng), int(rng.choice([3, 6, 8])))


Maker = Callable[[np.ndarray, np.random.Generator], Image.Image]

# Every kind of upload: name -> (maker, file format, save options).
UPLOAD_KINDS: dict[str, tuple[Maker, str, dict]] = {
    "black-on-paper": (black_on_paper, "PNG", {}),
    "phone-photo": (phone_photo, "JPEG", {"quality": 80}),
    "canvas-dark-strokes": (dark_canvas, "PNG", {}),
    "canvas-white-strokes": (white_canvas, "PNG", {}),
    "coloured-ink": (coloured_ink, "PNG", {}),
    "small-on-big-page": (small_on_big_page, "JPEG", {"quality": 90}),
    "thick-marker": (thick_marker, "PNG", {}),
    "faint-pencil": (faint_pencil, "PNG", {}),
    "exif-rotated-photo": (exif_rotated_photo, "JPEG", {"quality": 85}),
}

# Digits written across the ruling of notebook and squared paper (``imaging.ruling``).
RULED_KINDS: dict[str, tuple[Maker, str, dict]] = {
    "ruled-notebook": (ruled_notebook, "PNG", {}),
    "squared-paper": (squared_paper, "PNG", {}),
    "ruled-notebook-photo": (ruled_notebook_photo, "JPEG", {"quality": 85}),
    "squared-paper-photo": (squared_paper_photo, "JPEG", {"quality": 85}),
}


# A sheet photographed with the desk around it (``imaging.sheet``), measured apart.
DESK_KINDS: dict[str, tuple[Maker, str, dict]] = {
    "photo-on-desk": (photo_on_desk, "JPEG", {"quality": 85}),
}

# A page photographed with a shadow across it (``imaging.shadow``), measured apart.
SHADOW_KINDS: dict[str, tuple[Maker, str, dict]] = {
    "photo-in-shadow": (photo_in_shadow, "JPEG", {"quality": 85}),
}


def make_upload(kind: str, digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """The file bytes of one upload of ``kind`` showing ``digit``."""
    maker, format, options = {**UPLOAD_KINDS, **RULED_KINDS, **DESK_KINDS, **SHADOW_KINDS}[kind]
    if format == "PNG":
        options = {"compress_level": 1, **options}  # quick to write; read the same
    return encode_upload(maker(digit, rng), format, **options)
