"""The classic two-convolution MNIST network and the plain preprocessing every peer shares.

The peers exist only to measure serving speed, so the network is randomly
initialised from a fixed seed rather than trained: its answers are meaningless,
its cost per image is that of the trained network.
"""

from __future__ import annotations

import io

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
SEED = 0


class ClassicNet(nn.Module):
    """Two 5x5 convolutions (10 and 20 channels) with max-pools, then 320 -> 50 -> 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the ten digits for a batch of (N, 1, 28, 28) inputs."""
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


def build_network(state_dict: dict[str, torch.Tensor] | None = None) -> ClassicNet:
    """The network in eval mode: from ``state_dict`` when given, else seeded random weights."""
    torch.manual_seed(SEED)
    network = ClassicNet()
    if state_dict is not None:
        network.load_state_dict(state_dict)
    return network.eval()


def plain_input(data: bytes) -> torch.Tensor:
    """Image bytes to a normalised (1, 1, 28, 28) tensor: grayscale, resized, nothing more."""
    image = Image.open(io.BytesIO(data)).convert("L").resize((28, 28))
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    pixels = pixels.reshape(1, 1, 28, 28).float() / 255.0
    return (pixels - MNIST_MEAN) / MNIST_STD


def answer(network: ClassicNet, inputs: torch.Tensor) -> dict[str, float | int]:
    """The JSON answer for one image: the likeliest digit and its probability."""
    with torch.inference_mode():
        probabilities = network(inputs).exp()[0]
    confidence, digit = probabilities.max(0)
    return {"prediction": int(digit), "confidence": round(float(confidence), 4)}
