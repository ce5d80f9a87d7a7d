"""Pictures that are not one digit, drawn in code, to teach and to test "not a digit".

Each kind is drawn as ink coverage (0..1, ink bright) on a square canvas and
then put on white paper in black ink, as a photographed or drawn upload would
be; ``training.calibrate`` sends them through the service's own preprocessing.

    letters        letters from TrueType fonts, warped to look handwritten (those that
                   look like digits left out: O, I, S, Z, B, G and others)
    digit_like     those left-out letters: reported apart, since an O *is* a 0 to a reader
    shapes         polygons, stars, crosses, filled blobs
    scribbles      long smooth random strokes that cross themselves
    noise          random dots, blobs and speckle
    textures       stripes, checks, grids, dots, waves, cross-hatching
    objects        faces, houses, trees, suns, cars, stick figures, flowers
    two_digits     two digits side by side (a single-digit reading must refuse them)

The sets used to FIT (``role="fit"``) and to MEASURE (``role="measure"``) never
share anything but the drawing code: fitting renders DejaVu fonts, measuring
Liberation fonts; each role has its own seeds; two digits come from training
digits when fitting and from held-out digits when measuring; and some
shapes, textures and objects are drawn only for measuring (``MEASURE_ONLY``),
so the measurement also says how far the check reaches beyond what it saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

CANVAS = 112  # drawing size in pixels; preprocessing scales every picture to 20x20
KINDS = ("letters", "shapes", "scribbles", "noise", "textures", "objects", "two_digits")
REPORTED_KINDS = (*KINDS, "digit_like")
# Letters a reader takes for digits (O/o 0, I/l/i/j 1, Z/z 2, S/s 5, b/G 6, T 7, B 8, g/q 9 ...).
DIGIT_LIKE_LETTERS = "OoDQIlijZzSsbGTBgqAy"
LETTERS = "".join(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                  if c not in DIGIT_LIKE_LETTERS)
FONT_FOLDERS = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/opentype"))
# Which font families each role renders: never the same.
FONT_FAMILIES = {"fit": ("DejaVu",), "measure": ("Liberation",)}
SEEDS = {"fit": 1_000, "measure": 2_000}

Draw = Callable[[ImageDraw.ImageDraw, np.random.Generator, float], None]


class FontsMissing(RuntimeError):
    """No font of the family a role renders is installed."""


def fonts_for(role: str) -> list[Path]:
    """The TrueType fonts a role renders letters with, sorted (Debian's fonts-dejavu-core and
    fonts-liberation packages)."""
    families = FONT_FAMILIES[role]
    found = sorted(path for folder in FONT_FOLDERS if folder.is_dir()
                   for path in folder.rglob("*.ttf")
                   if path.name.startswith(families) and "Mono" not in path.name)
    if not found:
        raise FontsMissing(f"no {' or '.join(families)} fonts in /usr/share/fonts; install "
                           "fonts-dejavu-core and fonts-liberation (apt-get install -y ...)")
    return found


MARGIN = 16  # paper around the drawing, in pixels


def on_paper(coverage: np.ndarray) -> Image.Image:
    """Ink coverage (0..1, bright ink) as black ink on white paper, with a margin."""
    padded = np.pad(np.clip(coverage, 0.0, 1.0), MARGIN)
    return Image.fromarray(np.round(255.0 * (1.0 - padded)).astype(np.uint8), mode="L")


def enlarged(coverage: np.ndarray, scale: int = 4) -> np.ndarray:
    """MNIST-sized coverage enlarged ``scale`` times, as a photo or a drawing pad would show it."""
    height, width = coverage.shape
    image = Image.fromarray(coverage.astype(np.float32), mode="F")
    return np.asarray(image.resize((width * scale, height * scale), Image.Resampling.BICUBIC))


def coverage_of(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / 255.0


def smooth_field(rng: np.random.Generator, size: int, cells: int, amount: float) -> np.ndarray:
    """A smooth random displacement field (pixels), upsampled from a coarse grid of cells."""
    coarse = rng.normal(0.0, amount, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((size, size),
                                                                 Image.Resampling.BICUBIC))


def handwritten(coverage: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A rendered shape warped as a hand would draw it: slanted, turned, wobbly, pen varied."""
    size = coverage.shape[0]
    image = Image.fromarray((coverage * 255).astype(np.uint8), mode="L")
    shear, angle = rng.uniform(-0.3, 0.3), rng.uniform(-15.0, 15.0)
    image = image.transform(image.size, Image.Transform.AFFINE,
                            (1.0, shear, -shear * size / 2, 0.0, 1.0, 0.0),
                            resample=Image.Resampling.BILINEAR)
    image = image.rotate(angle, resample=Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    dx, dy = (smooth_field(rng, size, 4, size * 0.025) for _ in range(2))
    rows, cols = np.indices(pixels.shape, dtype=np.float32)
    r = np.clip(np.round(rows + dy), 0, size - 1).astype(int)
    c = np.clip(np.round(cols + dx), 0, size - 1).astype(int)
    warped = Image.fromarray((pixels[r, c] * 255).astype(np.uint8), mode="L")
    width = int(rng.integers(-1, 3))
    for _ in range(abs(width)):
        warped = warped.filter(ImageFilter.MaxFilter(3) if width > 0 else ImageFilter.MinFilter(3))
    return coverage_of(warped.filter(ImageFilter.GaussianBlur(0.8)))


def letter(rng: np.random.Generator, fonts: Sequence[Path], alphabet: str) -> np.ndarray:
    """One letter of ``alphabet`` in a random font and size, warped to look handwritten."""
    character = alphabet[int(rng.integers(len(alphabet)))]
    font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]),
                              int(rng.integers(60, 90)))
    image = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(image).text((CANVAS / 2, CANVAS / 2), character, fill=255, font=font,
                               anchor="mm")
    return handwritten(coverage_of(image), rng)


def pen(rng: np.random.Generator) -> int:
    return int(rng.integers(4, 11))


def point(rng: np.random.Generator, margin: float = 12.0) -> tuple[float, float]:
    return float(rng.uniform(margin, CANVAS - margin)), float(rng.uniform(margin, CANVAS - margin))


def regular_polygon(centre: tuple[float, float], radius: float, sides: int, turn: float,
                    inner: float | None = None) -> list[tuple[float, float]]:
    """Corners of a regular polygon (a star when ``inner``, the inner radius, is given)."""
    corners = []
    steps = sides * 2 if inner else sides
    for i in range(steps):
        r = inner if inner and i % 2 else radius
        a = turn + 2 * math.pi * i / steps
        corners.append((centre[0] + r * math.cos(a), centre[1] + r * math.sin(a)))
    return corners


def outline(draw: ImageDraw.ImageDraw, corners: list[tuple[float, float]], width: int,
            filled: bool) -> None:
    if filled:
        draw.polygon(corners, fill=255)
    else:
        draw.line([*corners, corners[0]], fill=255, width=width, joint="curve")


def shape_triangle(draw, rng, size):
    outline(draw, regular_polygon((56, 56), size, 3, rng.uniform(0, 6.3)), pen(rng),
            rng.random() < 0.3)


def shape_square(draw, rng, size):
    outline(draw, regular_polygon((56, 56), size, 4, rng.uniform(0, 6.3)), pen(rng),
            rng.random() < 0.3)


def shape_star(draw, rng, size):
    outline(draw, regular_polygon((56, 56), size, int(rng.integers(5, 8)), rng.uniform(0, 6.3),
                                  inner=size * rng.uniform(0.35, 0.55)), pen(rng),
            rng.random() < 0.5)


def shape_blob(draw, rng, size):
    half = size * rng.uniform(0.6, 1.0)
    draw.ellipse((56 - size, 56 - half, 56 + size, 56 + half), fill=255)


def shape_hexagon(draw, rng, size):
    outline(draw, regular_polygon((56, 56), size, int(rng.integers(5, 9)), rng.uniform(0, 6.3)),
            pen(rng), rng.random() < 0.3)


def shape_cross(draw, rng, size):
    width = int(rng.integers(8, 20))
    draw.line((56 - size, 56, 56 + size, 56), fill=255, width=width)
    draw.line((56, 56 - size, 56, 56 + size), fill=255, width=width)


def shape_arrow(draw, rng, size):
    width = pen(rng)
    draw.line((56 - size, 56, 56 + size, 56), fill=255, width=width)
    head = size * 0.5
    draw.line((56 + size - head, 56 - head, 56 + size, 56, 56 + size - head, 56 + head),
              fill=255, width=width, joint="curve")


def scribble(draw, rng, size):
    """A long smooth stroke through random points, crossing itself."""
    anchors = np.array([point(rng) for _ in range(int(rng.integers(6, 12)))])
    t = np.linspace(0, 1, len(anchors))
    fine = np.linspace(0, 1, 200)
    path = np.stack([np.interp(fine, t, anchors[:, 0]), np.interp(fine, t, anchors[:, 1])], 1)
    kernel = np.ones(15) / 15  # rounds the corners into curves
    path = np.stack([np.convolve(np.pad(path[:, i], 7, mode="edge"), kernel, "valid")
                     for i in range(2)], 1)
    draw.line([tuple(p) for p in path], fill=255, width=pen(rng), joint="curve")


def zigzag(draw, rng, size):
    """A scribble of short straight strokes going back and forth."""
    x, y = point(rng, 30)
    points = [(x, y)]
    for _ in range(int(rng.integers(8, 16))):
        x = float(np.clip(x + rng.normal(0, 30), 8, CANVAS - 8))
        y = float(np.clip(y + rng.normal(0, 30), 8, CANVAS - 8))
        points.append((x, y))
    draw.line(points, fill=255, width=pen(rng), joint="curve")


def noise_blobs(draw, rng, size):
    for _ in range(int(rng.integers(5, 25))):
        x, y = point(rng, 4)
        r = float(rng.uniform(2, 9))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=int(rng.integers(120, 256)))


def noise_speckle(draw, rng, size):
    for _ in range(int(rng.integers(80, 400))):
        x, y = point(rng, 2)
        r = float(rng.uniform(0.5, 2.5))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)


def texture_stripes(draw, rng, size):
    step, width, turn = int(rng.integers(10, 22)), int(rng.integers(3, 8)), rng.uniform(0, math.pi)
    dx, dy = math.cos(turn), math.sin(turn)
    for offset in range(-CANVAS, CANVAS, step):
        cx, cy = 56 - dy * offset, 56 + dx * offset
        draw.line((cx - dx * 90, cy - dy * 90, cx + dx * 90, cy + dy * 90), fill=255, width=width)


def texture_checks(draw, rng, size):
    step = int(rng.integers(10, 24))
    for row in range(0, CANVAS, step):
        for col in range(0, CANVAS, step):
            if (row // step + col // step) % 2 == 0:
                draw.rectangle((col, row, col + step - 1, row + step - 1), fill=255)


def texture_grid(draw, rng, size):
    step, width = int(rng.integers(12, 24)), int(rng.integers(2, 6))
    for at in range(int(rng.integers(0, step)), CANVAS, step):
        draw.line((at, 0, at, CANVAS), fill=255, width=width)
        draw.line((0, at, CANVAS, at), fill=255, width=width)


def texture_dots(draw, rng, size):
    step, r = int(rng.integers(10, 20)), float(rng.uniform(2, 5))
    for row in range(step // 2, CANVAS, step):
        for col in range(step // 2, CANVAS, step):
            draw.ellipse((col - r, row - r, col + r, row + r), fill=255)


def texture_waves(draw, rng, size):
    step, amplitude, period = int(rng.integers(12, 22)), rng.uniform(4, 10), rng.uniform(15, 40)
    xs = np.arange(0, CANVAS, 2)
    for base in range(step // 2, CANVAS, step):
        ys = base + amplitude * np.sin(2 * math.pi * xs / period)
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=255,
                  width=int(rng.integers(2, 6)))


def texture_hatching(draw, rng, size):
    texture_stripes(draw, rng, size)
    texture_stripes(draw, rng, size)


def face(draw, rng, size):
    width = pen(rng)
    draw.ellipse((56 - size, 56 - size, 56 + size, 56 + size), outline=255, width=width)
    for side in (-1, 1):
        x, r = 56 + side * size * 0.4, size * 0.12
        draw.ellipse((x - r, 56 - size * 0.35 - r, x + r, 56 - size * 0.35 + r), fill=255)
    mood = 1 if rng.random() < 0.7 else -1
    draw.arc((56 - size * 0.55, 56 - size * (0.3 if mood > 0 else -0.25),
              56 + size * 0.55, 56 + size * (0.6 if mood > 0 else 1.0)),
             20 if mood > 0 else 200, 160 if mood > 0 else 340, fill=255, width=width)


def house(draw, rng, size):
    width = pen(rng)
    draw.rectangle((56 - size * 0.8, 56 - size * 0.1, 56 + size * 0.8, 56 + size),
                   outline=255, width=width)
    draw.line((56 - size, 56 - size * 0.05, 56, 56 - size, 56 + size, 56 - size * 0.05),
              fill=255, width=width, joint="curve")
    draw.rectangle((56 - size * 0.2, 56 + size * 0.4, 56 + size * 0.2, 56 + size),
                   outline=255, width=max(2, width // 2))


def tree(draw, rng, size):
    draw.rectangle((56 - size * 0.15, 56 + size * 0.2, 56 + size * 0.15, 56 + size), fill=255)
    crown = size * rng.uniform(0.55, 0.8)
    draw.ellipse((56 - crown, 56 - size, 56 + crown, 56 + size * 0.3), outline=255,
                 width=pen(rng), fill=255 if rng.random() < 0.4 else None)


def sun(draw, rng, size):
    width, r = pen(rng), size * 0.45
    draw.ellipse((56 - r, 56 - r, 56 + r, 56 + r), outline=255, width=width)
    for i in range(int(rng.integers(6, 12))):
        a = 2 * math.pi * i / 8 + rng.uniform(-0.1, 0.1)
        draw.line((56 + r * 1.3 * math.cos(a), 56 + r * 1.3 * math.sin(a),
                   56 + size * math.cos(a), 56 + size * math.sin(a)), fill=255, width=width)


def car(draw, rng, size):
    width = pen(rng)
    draw.rectangle((56 - size, 56 - size * 0.2, 56 + size, 56 + size * 0.35), outline=255,
                   width=width)
    draw.line((56 - size * 0.6, 56 - size * 0.2, 56 - size * 0.3, 56 - size * 0.65,
               56 + size * 0.4, 56 - size * 0.65, 56 + size * 0.7, 56 - size * 0.2),
              fill=255, width=width, joint="curve")
    for x in (56 - size * 0.55, 56 + size * 0.55):
        r = size * 0.22
        draw.ellipse((x - r, 56 + size * 0.35 - r, x + r, 56 + size * 0.35 + r), fill=255)


def stick_figure(draw, rng, size):
    width, r = pen(rng), size * 0.25
    draw.ellipse((56 - r, 56 - size, 56 + r, 56 - size + 2 * r), outline=255, width=width)
    neck, hip = 56 - size + 2 * r, 56 + size * 0.3
    draw.line((56, neck, 56, hip), fill=255, width=width)
    draw.line((56 - size * 0.6, neck + size * 0.3, 56 + size * 0.6, neck + size * 0.3),
              fill=255, width=width)
    draw.line((56 - size * 0.5, 56 + size, 56, hip, 56 + size * 0.5, 56 + size), fill=255,
              width=width, joint="curve")


def flower(draw, rng, size):
    width, petals = pen(rng), int(rng.integers(5, 9))
    for i in range(petals):
        a = 2 * math.pi * i / petals
        x, y, r = 56 + size * 0.55 * math.cos(a), 56 + size * 0.55 * math.sin(a), size * 0.35
        draw.ellipse((x - r, y - r, x + r, y + r), outline=255, width=width)
    r = size * 0.2
    draw.ellipse((56 - r, 56 - r, 56 + r, 56 + r), fill=255)


# Drawing functions of each kind, by role: those in MEASURE_ONLY are never drawn for fitting.
DRAWINGS: dict[str, tuple[Draw, ...]] = {
    "shapes": (shape_triangle, shape_square, shape_star, shape_blob,
               shape_hexagon, shape_cross, shape_arrow),
    "scribbles": (scribble, zigzag),
    "noise": (noise_blobs, noise_speckle),
    "textures": (texture_stripes, texture_checks, texture_grid, texture_dots, texture_waves,
                 texture_hatching),
    "objects": (face, house, tree, sun, car, stick_figure, flower),
}
MEASURE_ONLY = {shape_hexagon, shape_cross, shape_arrow, zigzag, noise_speckle, texture_dots,
                texture_waves, texture_hatching, car, stick_figure, flower}


def drawings_for(kind: str, role: str) -> tuple[Draw, ...]:
    drawings = DRAWINGS[kind]
    return drawings if role == "measure" else tuple(d for d in drawings if d not in MEASURE_ONLY)


def drawn(kind: str, role: str, rng: np.random.Generator) -> np.ndarray:
    """One picture of a drawn kind, made by a randomly chosen drawing of the role."""
    choices = drawings_for(kind, role)
    image = Image.new("L", (CANVAS, CANVAS), 0)
    choices[int(rng.integers(len(choices)))](ImageDraw.Draw(image), rng,
                                             float(rng.uniform(28, 46)))
    coverage = coverage_of(image)
    return handwritten(coverage, rng) if kind in ("shapes", "objects") else coverage


def two_digits(rng: np.random.Generator, digits: np.ndarray) -> np.ndarray:
    """Two digits (28x28, white on black) side by side with a small random gap."""
    first, second = (digits[int(rng.integers(len(digits)))] for _ in range(2))
    gap = int(rng.integers(-2, 6))
    height = 28 + abs(shift := int(rng.integers(-3, 4)))
    canvas = np.zeros((height, 56 + gap), dtype=np.float32)
    canvas[max(0, -shift):max(0, -shift) + 28, :28] = first
    left = 28 + gap
    canvas[max(0, shift):max(0, shift) + 28, left:left + 28] = np.maximum(
        canvas[max(0, shift):max(0, shift) + 28, left:left + 28], second)
    return canvas / 255.0


def nondigit_pictures(kind: str, count: int, role: str, digits: np.ndarray | None = None
                      ) -> list[Image.Image]:
    """``count`` pictures of ``kind`` for ``role`` ("fit" or "measure"), the same every time.

    ``two_digits`` needs ``digits`` (uint8 MNIST digits): training digits when
    fitting, held-out ones when measuring.
    """
    if role not in SEEDS:
        raise ValueError(f"role must be 'fit' or 'measure', not {role!r}")
    if kind not in REPORTED_KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(REPORTED_KINDS)}")
    rng = np.random.default_rng([SEEDS[role], REPORTED_KINDS.index(kind)])
    if kind in ("letters", "digit_like"):
        fonts = fonts_for(role)
        alphabet = LETTERS if kind == "letters" else DIGIT_LIKE_LETTERS
        return [on_paper(letter(rng, fonts, alphabet)) for _ in range(count)]
    if kind == "two_digits":
        if digits is None:
            raise ValueError("two_digits needs digits to put side by side")
        return [on_paper(enlarged(two_digits(rng, digits))) for _ in range(count)]
    return [on_paper(drawn(kind, role, rng)) for _ in range(count)]


def digit_pictures(digits: np.ndarray) -> list[Image.Image]:
    """MNIST digits (uint8, white on black) as black ink on white paper, enlarged, as uploads."""
    return [on_paper(enlarged(d.astype(np.float32) / 255.0)) for d in digits]
