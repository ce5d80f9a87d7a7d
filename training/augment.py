"""Random variations of MNIST digits for training, reproducible digit by digit.

Each training digit is rotated, shifted, scaled and sheared with torchvision's
affine transform, and its strokes are made thicker or thinner by blending in a
dilation or an erosion (a 3x3 max-pool of the image or of its negative). The
result then goes through ``imaging.normalise.normalise_digit``, the same centring
and scaling that uploads get, so an augmented digit looks like an upload.

Every random number comes from a generator seeded by (seed, epoch, digit),
so an epoch's augmented digits are the same whatever the number of DataLoader
workers and whichever worker draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from imaging.normalise import normalise_digit, to_model_input


@dataclass(frozen=True)
class AugmentationRanges:
    """How far each random change may go (the defaults suit MNIST digits)."""

    degrees: float = 12.0  # rotation, either way
    shift: float = 2.0  # pixels, in x and in y
    scale: tuple[float, float] = (0.85, 1.15)
    shear: float = 12.0  # degrees, in x and in y
    stroke: float = 0.6  # largest blend of the dilated or eroded image

    def describe(self) -> str:
        """One line for the weights card."""
        return (f"rotation +-{self.degrees:g} deg, shift +-{self.shift:g} px, "
                f"scale {self.scale[0]:g}-{self.scale[1]:g}, shear +-{self.shear:g} deg, "
                f"stroke width by 3x3 dilation/erosion blended up to {self.stroke:g}, "
                "then preprocess.normalise_digit")


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


def augment_digit(digit: np.ndarray, generator: torch.Generator,
                  ranges: AugmentationRanges | None = None) -> np.ndarray:
    """A randomly varied copy of a uint8 28x28 digit, re-centred as uploads are."""
    ranges = ranges or AugmentationRanges()
    image = torch.from_numpy(digit).to(torch.float32).div_(255.0).unsqueeze(0)
    image = random_stroke_width(random_affine(image, ranges, generator), ranges, generator)
    varied = image.squeeze(0).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).numpy()
    return normalise_digit(varied)


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

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        # SeedSequence mixes the three numbers into a well-spread seed, stable across versions.
        entropy = np.random.SeedSequence([self.seed, self.epoch, index])
        generator = torch.Generator().manual_seed(int(entropy.generate_state(1, np.uint64)[0]))
        digit = augment_digit(self.images[index], generator, self.ranges)
        return torch.from_numpy(to_model_input(digit)), self.labels[index]
