"""Random variations of MNIST digits for training, reproducible digit by digit.

Each training digit is bent by an elastic distortion (a smoothed random
displacement field, as Simard, Steinkraus and Platt did in 2003), rotated,
shifted, scaled and sheared (slant) with torchvision's affine transform, and
its strokes are made thicker or thinner by blending in a dilation or an
erosion (a 3x3 max-pool of the image or of its negative). Some digits are
then blurred, some scanned at a low resolution and enlarged again, and some
drawn with a pen that lays ink at full strength (a marker's flat strokes).
The result then goes through ``imaging.preprocess.normalise_digit``: exactly
the chain a 28x28 upload goes through, so the network learns from what it is
served.

Every random number comes from a generator seeded by (seed, epoch, digit),
so an epoch's augmented digits are the same whatever the number of DataLoader
workers and whichever worker draws them. ``make_copies`` makes a few epochs'
worth beforehand, which training then cycles through (``CopiedDigits``): the
served chain costs a few milliseconds a digit, too much to pay every epoch on
two shared cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from imaging.normalise import to_model_input
from imaging.preprocess import normalise_digit


@dataclass(frozen=True)
class AugmentationRanges:
    """How far each random change may go (the defaults suit MNIST digits)."""

    degrees: float = 12.0  # rotation, either way
    shift: float = 2.0  # pixels, in x and in y
    scale: tuple[float, float] = (0.85, 1.15)
    shear: float = 12.0  # degrees, in x and in y
    stroke: float = 0.6  # largest blend of the dilated or eroded image
    elastic_alpha: float = 34.0  # largest strength of the elastic distortion (Simard's alpha)
    elastic_sigma: float = 4.0  # smoothness of its displacement field, in pixels
    blur: float = 1.0  # largest Gaussian blur, in pixels (standard deviation) ...
    blur_share: float = 0.25  # ... given to this share of the digits
    low_resolution: tuple[int, int] = (10, 18)  # scanned at this many pixels, then enlarged ...
    low_resolution_share: float = 0.15  # ... for this share of the digits
    flat_pen: float = 3.0  # largest gain of a pen that saturates the ink ...
    flat_pen_share: float = 0.2  # ... for this share of the digits

    def describe(self) -> str:
        """One line for the weights card."""
        return (f"elastic distortion alpha 0-{self.elastic_alpha:g} sigma {self.elastic_sigma:g}, "
                f"rotation +-{self.degrees:g} deg, shift +-{self.shift:g} px, "
                f"scale {self.scale[0]:g}-{self.scale[1]:g}, shear +-{self.shear:g} deg, "
                f"stroke width by 3x3 dilation/erosion blended up to {self.stroke:g}, "
                f"blur sigma up to {self.blur:g} px ({self.blur_share:.0%}), "
                f"low resolution {self.low_resolution[0]}-{self.low_resolution[1]} px "
                f"({self.low_resolution_share:.0%}), saturating pen gain up to "
                f"{self.flat_pen:g} ({self.flat_pen_share:.0%}), "
                "then imaging.preprocess.normalise_digit (the served chain)")


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One number drawn uniformly from [low, high)."""
    return low + (high - low) * float(torch.rand((), generator=generator))


def random_affine(image: torch.Tensor, ranges: AugmentationRanges,
                  generator: torch.Generator) -> torch.Tensor:
    """Rotate, shift, scale and shear a (1, 28, 28) float image by random amounts."""
    return TF.affine(
        image,
        angle=uniform(generator, -ranges.degrees, ranges.degrees),
        translate=[uniform(generator, -ranges.shift, ranges.shift) for _ in range(2)],
        scale=uniform(generator, *ranges.scale),
        shear=[uniform(generator, -ranges.shear, ranges.shear) for _ in range(2)],
        interpolation=InterpolationMode.BILINEAR,
        fill=0.0,
    )


def elastic_distortion(image: torch.Tensor, alpha: float, sigma: float,
                       generator: torch.Generator) -> torch.Tensor:
    """Bend a (1, H, W) image along a random displacement field smoothed by a Gaussian.

    Each pixel's displacement is drawn uniformly from -1..1 in x and y, the
    field is smoothed with a Gaussian of ``sigma`` pixels and scaled by
    ``alpha`` pixels: the local, rubber-sheet changes of one writer's hand.
    """
    height, width = image.shape[-2:]
    field = torch.rand((2, 1, height, width), generator=generator) * 2 - 1
    field = smoothed(field, sigma).squeeze(1) * alpha
    # elastic() takes displacements in normalised coordinates (-1..1 across the image).
    scale = torch.tensor([2.0 / width, 2.0 / height]).view(2, 1, 1)
    displacement = (field * scale).permute(1, 2, 0).unsqueeze(0)
    return TF.elastic(image, displacement, interpolation=InterpolationMode.BILINEAR, fill=0.0)


def smoothed(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, 1, H, W) images smoothed by a Gaussian of ``sigma`` pixels, zero beyond the edges.

    The Gaussian is separable: one pass along the rows, one down the columns.
    """
    radius = math.ceil(3 * sigma)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    rows = F.conv2d(images, kernel.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(rows, kernel.view(1, 1, -1, 1), padding=(radius, 0))


def blurred(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian blur of ``sigma`` pixels, as by a camera slightly out of focus."""
    size = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(image, [size, size], [sigma, sigma])


def low_resolution(image: torch.Tensor, pixels: int) -> torch.Tensor:
    """The image scanned at ``pixels`` x ``pixels`` and enlarged back, smoothly."""
    size = list(image.shape[-2:])
    small = TF.resize(image, [pixels, pixels], InterpolationMode.BILINEAR, antialias=True)
    return TF.resize(small, size, InterpolationMode.BILINEAR, antialias=False)


def random_pen(image: torch.Tensor, ranges: AugmentationRanges,
               generator: torch.Generator) -> torch.Tensor:
    """Sometimes blurred, sometimes scanned at a low resolution, sometimes a flat marker."""
    if float(torch.rand((), generator=generator)) < ranges.blur_share:
        image = blurred(image, uniform(generator, 0.3, ranges.blur))
    if float(torch.rand((), generator=generator)) < ranges.low_resolution_share:
        low, high = ranges.low_resolution
        image = low_resolution(image, int(low + (high - low + 1) * float(
            torch.rand((), generator=generator))))
    if float(torch.rand((), generator=generator)) < ranges.flat_pen_share:
        image = (image * uniform(generator, 1.5, ranges.flat_pen)).clamp_(0.0, 1.0)
    return image


def dilate(image: torch.Tensor) -> torch.Tensor:
    """Each pixel becomes the brightest of its 3x3 neighbourhood: strokes grow by a pixel."""
    return F.max_pool2d(image.unsqueeze(0), 3, stride=1, padding=1).squeeze(0)


def erode(image: torch.Tensor) -> torch.Tensor:
    """Each pixel becomes the darkest of its 3x3 neighbourhood: strokes shrink by a pixel."""
    return -dilate(-image)


def random_stroke_width(image: torch.Tensor, ranges: AugmentationRanges,
                        generator: torch.Generator) -> torch.Tensor:
    """Thicker strokes, thinner strokes or unchanged, a third of the time each.

    Blending a partial amount of the dilated or eroded image changes the width
    by a fraction of a pixel, which a 28x28 digit needs: a full erosion wipes
    out thin strokes.
    """
    choice = float(torch.rand((), generator=generator))
    amount = uniform(generator, 0.0, ranges.stroke)
    if choice < 1 / 3:
        return image + amount * (dilate(image) - image)
    if choice < 2 / 3:
        eroded = image + amount * (erode(image) - image)
        # An eroded thin digit can lose its ink altogether; keep such digits as they are.
        return eroded if float(eroded.max()) >= 0.5 * float(image.max()) else image
    return image


def vary_digit(digit: np.ndarray, generator: torch.Generator,
               ranges: AugmentationRanges | None = None) -> np.ndarray:
    """A randomly varied copy of a uint8 28x28 digit (white on black), not yet centred."""
    ranges = ranges or AugmentationRanges()
    image = torch.from_numpy(digit).to(torch.float32).div_(255.0).unsqueeze(0)
    alpha = uniform(generator, 0.0, ranges.elastic_alpha)
    image = elastic_distortion(image, alpha, ranges.elastic_sigma, generator)
    image = random_stroke_width(random_affine(image, ranges, generator), ranges, generator)
    image = random_pen(image, ranges, generator)
    return image.squeeze(0).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).numpy()


def augment_digit(digit: np.ndarray, generator: torch.Generator,
                  ranges: AugmentationRanges | None = None) -> np.ndarray:
    """A randomly varied copy of a uint8 28x28 digit, read as the service reads a 28x28 upload."""
    return normalise_digit(vary_digit(digit, generator, ranges))


class AugmentedDigits(Dataset):
    """Training digits, freshly varied in every epoch, as normalised model inputs.

    Set ``epoch`` before each pass; the variation of digit ``i`` in epoch ``e``
    depends only on ``(seed, e, i)``.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, seed: int,
                 ranges: AugmentationRanges | None = None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.seed = seed
        self.ranges = ranges or AugmentationRanges()
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.images)

    def picture(self, index: int, epoch: int | None = None) -> np.ndarray:
        """The 28x28 picture the network is shown for digit ``index`` in ``epoch`` (this
        epoch when None)."""
        epoch = self.epoch if epoch is None else epoch
        # SeedSequence mixes the three numbers into a well-spread seed, stable across versions.
        entropy = np.random.SeedSequence([self.seed, epoch, index])
        generator = torch.Generator().manual_seed(int(entropy.generate_state(1, np.uint64)[0]))
        return augment_digit(self.images[index], generator, self.ranges)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(to_model_input(self.picture(index))), self.labels[index]


class _Copies(Dataset):
    """``copies`` epochs of an ``AugmentedDigits``' pictures, one after the other, for
    DataLoader workers to make."""

    def __init__(self, digits: AugmentedDigits, copies: int) -> None:
        self.digits, self.copies = digits, copies

    def __len__(self) -> int:
        return self.copies * len(self.digits)

    def __getitem__(self, item: int) -> torch.Tensor:
        copy, index = divmod(item, len(self.digits))
        return torch.from_numpy(self.digits.picture(index, epoch=copy + 1))


def make_copies(digits: AugmentedDigits, copies: int, workers: int = 0,
                worker_init_fn=None) -> np.ndarray:
    """``copies`` varied copies of every digit, (copies, N, 28, 28) uint8: epochs 1, 2, ...

    Copy ``c`` is exactly what ``digits`` gives in epoch ``c + 1``, made once
    (in ``workers`` processes) instead of in every epoch.
    """
    # Workers start in fresh interpreters, once for all the copies: one forked from a
    # process with threads (a test run's servers, a reload watcher) can inherit a lock
    # another thread held and wait on it for ever, as one did in a test run.
    loader = DataLoader(_Copies(digits, copies), batch_size=256, num_workers=workers,
                        worker_init_fn=worker_init_fn,
                        multiprocessing_context="spawn" if workers else None)
    made = torch.cat(list(loader)).numpy()
    return made.reshape(copies, len(digits), *made.shape[1:])


class CopiedDigits(Dataset):
    """Training digits from varied copies made beforehand: epoch ``e`` reads copy ``(e-1) % K``."""

    def __init__(self, pictures: np.ndarray, labels: np.ndarray) -> None:
        if pictures.shape[1] != len(labels):
            raise ValueError(f"{pictures.shape[1]} pictures per copy but {len(labels)} labels")
        self.pictures = pictures
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.epoch = 1

    def __len__(self) -> int:
        return self.pictures.shape[1]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        picture = self.pictures[(self.epoch - 1) % len(self.pictures), index]
        return torch.from_numpy(to_model_input(picture)), self.labels[index]
