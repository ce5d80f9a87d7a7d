"""The network architectures, by the name a weights card records (``ARCHITECTURES``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from imaging.normalise import INPUT_SHAPE
from model import NUM_CLASSES


class ClassicNet(nn.Module):
    """The classic two-convolution MNIST network (conv 1->10, conv 10->20, fc 320->50->10)."""

    input_shape = INPUT_SHAPE

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = torch.flatten(x, 1)
        x = F.dropout(F.relu(self.fc1(x)), training=self.training)
        return self.fc2(x)


def conv_bn_relu(inputs: int, outputs: int) -> list[nn.Module]:
    """A 3x3 convolution that keeps the image size, batch normalisation and ReLU."""
    # No bias: the batch normalisation that follows has its own.
    return [nn.Conv2d(inputs, outputs, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(outputs), nn.ReLU(inplace=True)]


class BatchNormNet(nn.Module):
    """Five 3x3 convolutions with batch normalisation, two max-pools, global average pooling.

    28x28 -> 2 convs -> 14x14 -> 2 convs -> 7x7 -> 1 conv -> average -> dropout -> linear.
    """

    input_shape = INPUT_SHAPE

    def __init__(self, widths: tuple[int, int, int, int, int] = (32, 32, 64, 64, 128),
                 dropout: float = 0.2) -> None:
        super().__init__()
        w1, w2, w3, w4, w5 = widths
        self.features = nn.Sequential(
            *conv_bn_relu(1, w1), *conv_bn_relu(w1, w2), nn.MaxPool2d(2),
            *conv_bn_relu(w2, w3), *conv_bn_relu(w3, w4), nn.MaxPool2d(2),
            *conv_bn_relu(w4, w5),
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(w5, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_parts(x)[0]

    def forward_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The logits, the averaged features the last layer reads and the last feature map
        (``network.features`` serves the last two as well)."""
        maps = self.features(x)
        # A plain mean rather than AdaptiveAvgPool2d, whose CUDA backward is not deterministic.
        pooled = maps.mean(dim=(2, 3))
        return self.fc(self.dropout(pooled)), pooled, maps


# bn-conv with three quarters of its channels: 12.4M multiply-adds against 21.9M, learnt
# from bn-conv by distillation to the same held-out accuracy (README, Training).
SLIM_WIDTHS = (24, 24, 48, 48, 96)

# Architectures by the name recorded in each weights card.
ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "classic": ClassicNet,
    "bn-conv": BatchNormNet,
    "bn-conv-slim": partial(BatchNormNet, SLIM_WIDTHS),
}


def build_network(architecture: str) -> nn.Module:
    """A fresh, untrained network of the named architecture."""
    try:
        return ARCHITECTURES[architecture]()
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {architecture!r}; known: {known}") from None
