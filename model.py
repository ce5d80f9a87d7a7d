"""The digit classifier: network architectures and a wrapper that serves one.

The wrapper loads a ``state_dict`` once (``torch.load(weights_only=True)``,
so no pickled code ever runs), checks it against the JSON card written beside
it by ``save_weights``, moves it to the chosen device and predicts whole batches.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from imaging.normalise import INPUT_SHAPE
from runtime.backends import build_runner_or_eager
from runtime.devices import DEFAULT_DEVICE, resolve_device
from runtime.files import file_sha256, write_atomically

DATA_CREDIT = "MNIST (Yann LeCun, Corinna Cortes, Christopher J.C. Burges), CC BY-SA 3.0"
NUM_CLASSES = 10  # the digits 0-9; the network's output has one logit each
DEFAULT_WEIGHTS = "model.pt"  # the weights file served and written unless told otherwise


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
        # A plain mean rather than AdaptiveAvgPool2d, whose CUDA backward is not deterministic.
        x = self.features(x).mean(dim=(2, 3))
        return self.fc(self.dropout(x))


# Architectures by the name recorded in each weights card.
ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "classic": ClassicNet,
    "bn-conv": BatchNormNet,
}


def build_network(architecture: str) -> nn.Module:
    """A fresh, untrained network of the named architecture."""
    try:
        return ARCHITECTURES[architecture]()
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {architecture!r}; known: {known}") from None


class WeightsError(RuntimeError):
    """A weights file that is missing, corrupt or does not match its card."""


def card_path(weights: Path) -> Path:
    """The JSON card that describes a weights file (``model.pt`` -> ``model.json``)."""
    return weights.with_suffix(".json")


@dataclass(frozen=True)
class WeightsCard:
    """What ``save_weights`` records beside a weights file."""

    architecture: str
    sha256: str
    validation_accuracy: float | None
    raw: dict

    @classmethod
    def read(cls, weights: Path) -> WeightsCard:
        path = card_path(weights)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                architecture=str(raw["architecture"]),
                sha256=str(raw["sha256"]),
                validation_accuracy=raw.get("validation_accuracy"),
                raw=raw,
            )
        except FileNotFoundError:
            raise WeightsError(f"weights card {path} is missing; train.py writes it") from None
        except (ValueError, KeyError, TypeError) as error:
            raise WeightsError(f"weights card {path} is not valid: {error}") from None


def save_weights(network: nn.Module, path: Path, card: dict) -> None:
    """Save the ``state_dict`` and its JSON card (with the file's sha256) beside it, atomically."""
    state = {name: tensor.detach().cpu() for name, tensor in network.state_dict().items()}
    # Saved through memory: torch.save names the archive inside after the file it writes
    # to, and a temporary file's random name would make equal weights hash differently.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomically(path, buffer.getvalue())
    card = {**card, "weights": path.name, "sha256": file_sha256(path)}
    write_atomically(card_path(path), json.dumps(card, indent=2) + "\n")


def load_network(weights: Path, device: torch.device,
                 expected_sha256: str | None = None) -> tuple[nn.Module, WeightsCard]:
    """Load, verify and return a network in eval mode on ``device`` with its card.

    The file is read once and its bytes are both hashed and loaded, so a file
    replaced between the check and the load cannot slip through. With
    ``expected_sha256`` the file must also be exactly that one.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise WeightsError(f"weights file {weights} does not exist; run train.py to create it")
    card = WeightsCard.read(weights)
    data = weights.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != card.sha256:
        raise WeightsError(
            f"weights file {weights} has sha256 {actual}, but its card records {card.sha256}"
        )
    if expected_sha256 is not None and actual != expected_sha256:
        raise WeightsError(
            f"weights file {weights} has sha256 {actual}, not the expected {expected_sha256}"
        )
    try:
        network = build_network(card.architecture)
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    except Exception as error:  # torch raises many types for a corrupt or mismatched file
        raise WeightsError(f"weights file {weights} cannot be loaded: {error}") from None
    return network.to(device).eval(), card


class DigitClassifier:
    """A loaded network that predicts digit probabilities for batches of images.

    Inputs are normalised tensors shaped ``(N, *INPUT_SHAPE)`` as made by
    ``imaging``; outputs are ``(N, NUM_CLASSES)`` probabilities on the CPU.
    ``backend`` picks how the network runs (see ``runtime/backends.py``); when that
    backend cannot be built here the classifier runs in eager mode, and
    ``backend`` tells which one is in use. ``threads`` is the CPU thread count
    for backends with their own thread pool (torch's current count if None).
    """

    def __init__(self, weights: str | os.PathLike[str], device: str = DEFAULT_DEVICE,
                 backend: str = "eager", threads: int | None = None,
                 expected_sha256: str | None = None) -> None:
        self.weights = Path(weights)
        self.device = resolve_device(device)
        self.network, self.card = load_network(self.weights, self.device, expected_sha256)
        self.runner, self.backend = build_runner_or_eager(self.network, backend, self.device,
                                                          threads)
        self.loaded_at = datetime.now(UTC)

    @property
    def architecture(self) -> str:
        return self.card.architecture

    @property
    def sha256(self) -> str:
        return self.card.sha256

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities for a batch of normalised images."""
        if batch.ndim != 1 + len(INPUT_SHAPE) or tuple(batch.shape[1:]) != INPUT_SHAPE:
            expected = ", ".join(map(str, ("N", *INPUT_SHAPE)))
            raise ValueError(f"expected a batch shaped ({expected}), got {tuple(batch.shape)}")
        with torch.inference_mode():
            logits = self.runner(batch.to(self.device, dtype=torch.float32))
            return F.softmax(logits.float(), dim=1).cpu()

    def release(self) -> None:
        """Free the network's memory, including cached CUDA blocks."""
        del self.network, self.runner
        release_memory(self.device)


def release_memory(device: torch.device) -> None:
    """Collect what was dropped (compiled forms hold reference cycles) and return CUDA's cache."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
