"""The pair reader's network: two touching digits in, each one's digit (or that the ink is
no pair) out."""

from __future__ import annotations

import torch
from torch import nn

from imaging.pairs import PAIR_SHAPE
from network.architectures import conv_bn_relu

# Each head answers one of the ten digits or this class: the ink is not two digits.
NOT_A_PAIR = 10
PAIR_CLASSES = NOT_A_PAIR + 1


class PairNet(nn.Module):
    """Four 3x3 convolutions with batch normalisation and two max-pools over the 28x56 pair,
    then one hidden layer and two heads: the left digit and the right one.

    28x56 -> 2 convs -> 14x28 -> 2 convs -> 7x14 -> linear 128 -> left, right (11 each).
    The heads read the whole flattened map, not each a half of it: touching digits rarely
    meet in the middle.
    """

    input_shape = PAIR_SHAPE

    def __init__(self, widths: tuple[int, int, int, int] = (8, 16, 32, 32),
                 hidden: int = 128, dropout: float = 0.2) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.features = nn.Sequential(
            *conv_bn_relu(1, w1), *conv_bn_relu(w1, w2), nn.MaxPool2d(2),
            *conv_bn_relu(w2, w3), *conv_bn_relu(w3, w4), nn.MaxPool2d(2),
        )
        rows, cols = PAIR_SHAPE[1] // 4, PAIR_SHAPE[2] // 4
        self.hidden = nn.Sequential(nn.Flatten(), nn.Dropout(dropout),
                                    nn.Linear(w4 * rows * cols, hidden), nn.ReLU(inplace=True),
                                    nn.Dropout(dropout))
        self.left = nn.Linear(hidden, PAIR_CLASSES)
        self.right = nn.Linear(hidden, PAIR_CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The left head's logits and the right head's, each (N, ``PAIR_CLASSES``)."""
        hidden = self.hidden(self.features(x))
        return self.left(hidden), self.right(hidden)
