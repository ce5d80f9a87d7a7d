"""The served model: its weights card, the checks a weights file must pass, and the
``DigitClassifier`` wrapper that predicts batches.

Each weights file (``model.pt``, a ``state_dict``) has a JSON card beside it
(``model.json``) naming its architecture and the sha256 of the file, and of the
ONNX export training writes with it (``model.onnx``). The wrapper reads the
files once, checks them against the card, and runs the network: through ONNX
Runtime on NumPy arrays for the ``onnx`` backend on the CPU, which needs no
torch at all, and through PyTorch (``network``, ``runtime/backends.py``) for
the others. The architectures themselves are in ``network/architectures.py``;
``model.ARCHITECTURES``, ``model.build_network`` and the network classes
reach them, importing torch only when asked for.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from imaging.normalise import INPUT_SHAPE
from runtime.backend_names import ONNX_FILE_BACKENDS, check_backend_name
from runtime.devices import DEFAULT_DEVICE, resolve_device
from runtime.onnx_session import onnx_session, session_runner
from runtime.threads import available_cores, serial_blas

DATA_CREDIT = "MNIST (Yann LeCun, Corinna Cortes, Christopher J.C. Burges), CC BY-SA 3.0"
NUM_CLASSES = 10  # the digits 0-9; the network's output has one logit each
DEFAULT_WEIGHTS = "model.pt"  # the weights file served and written unless told otherwise

log = logging.getLogger(__name__)

# What ``model`` offers from the torch side, loaded on first use (PEP 562).
_TORCH_SIDE = {
    "ARCHITECTURES": "network.architectures",
    "BatchNormNet": "network.architectures",
    "ClassicNet": "network.architectures",
    "build_network": "network.architectures",
    "save_weights": "network.weights",
}


def __getattr__(name: str) -> Any:
    if name in _TORCH_SIDE:
        module = __import__(_TORCH_SIDE[name], fromlist=[name])
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class WeightsError(RuntimeError):
    """A weights file that is missing, corrupt or does not match its card."""


def card_path(weights: Path) -> Path:
    """The JSON card that describes a weights file (``model.pt`` -> ``model.json``)."""
    return Path(weights).with_suffix(".json")


def onnx_path(weights: Path) -> Path:
    """The ONNX export written beside a weights file (``model.pt`` -> ``model.onnx``)."""
    return Path(weights).with_suffix(".onnx")


def int8_path(weights: Path) -> Path:
    """Its int8 quantized form (``model.pt`` -> ``model.int8.onnx``)."""
    return Path(weights).with_suffix(".int8.onnx")


@dataclass(frozen=True)
class WeightsCard:
    """What ``save_weights`` records beside a weights file."""

    architecture: str
    sha256: str
    validation_accuracy: float | None
    raw: dict
    onnx_sha256: str | None = None  # of the ONNX export beside the weights, when there is one
    int8_sha256: str | None = None  # of its int8 quantized form, when there is one
    # Divides the logits before the softmax so that confidence means what it says; fitted on
    # held-out digits by ``training.calibrate`` (1: not calibrated).
    temperature: float = 1.0

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
                onnx_sha256=raw.get("onnx_sha256"),
                int8_sha256=raw.get("onnx_int8_sha256"),
                temperature=positive(raw.get("temperature", 1.0), "temperature"),
            )
        except FileNotFoundError:
            raise WeightsError(f"weights card {path} is missing; training writes it") from None
        except (ValueError, KeyError, TypeError) as error:
            raise WeightsError(f"weights card {path} is not valid: {error}") from None


def positive(value: object, name: str) -> float:
    """``value`` as a positive finite float; ``ValueError`` otherwise."""
    number = float(value)  # type: ignore[arg-type]
    if not np.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive number, not {value!r}")
    return number


@dataclass(frozen=True)
class NetworkOutputs:
    """One run of the network over a batch: a row per input."""

    logits: np.ndarray  # (N, NUM_CLASSES)
    probabilities: np.ndarray  # (N, NUM_CLASSES) float64: softmax of logits / temperature
    features: np.ndarray | None  # (N, K): what the last layer read; None for older exports


def read_checked(path: Path, recorded: str, expected: str | None = None) -> bytes:
    """The bytes of ``path`` once their sha256 is the one ``recorded`` (and ``expected``, if given).

    The file is read once and those bytes are both hashed and used, so a file
    replaced between the check and the load cannot slip through.
    """
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; run training to create it")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != recorded:
        raise WeightsError(f"weights file {path} has sha256 {actual}, "
                           f"but its card records {recorded}")
    if expected is not None and actual != expected:
        raise WeightsError(f"weights file {path} has sha256 {actual}, not the expected {expected}")
    return data


class DigitClassifier:
    """A loaded network that predicts digit probabilities for batches of images.

    Inputs are normalised float32 arrays shaped ``(N, *INPUT_SHAPE)`` as made by
    ``imaging``; outputs are ``(N, NUM_CLASSES)`` probabilities. ``backend``
    picks how the network runs: ``onnx`` and ``onnx-int8`` on the CPU run the
    checked ONNX file beside the weights (float, or int8 quantized) with ONNX
    Runtime, without torch; the others (and those two where there is no such
    file, or on CUDA) load the ``state_dict``
    into PyTorch (see ``runtime/backends.py``), falling back to eager mode
    where a backend cannot be built; ``backend`` tells which one is in use.
    ``threads`` is the CPU thread count (all cores if None).
    """

    def __init__(self, weights: str | os.PathLike[str], device: str = DEFAULT_DEVICE,
                 backend: str = "eager", threads: int | None = None,
                 expected_sha256: str | None = None) -> None:
        self.weights = Path(weights)
        self.device = resolve_device(device)
        self.threads = threads or available_cores()
        serial_blas()  # the network has the threads; numpy's small products need none
        if not self.weights.is_file():
            raise WeightsError(f"weights file {self.weights} does not exist; "
                               "run training to create it")
        self.card = WeightsCard.read(self.weights)
        data = read_checked(self.weights, self.card.sha256, expected_sha256)
        self.backend = check_backend_name(backend)
        if self.backend == "onnx-int8" and not self.card.int8_sha256:
            log.warning("%s has no int8 form; serving its float ONNX export", self.weights.name)
            self.backend = "onnx"
        self.network = None
        exported = {"onnx": (onnx_path(self.weights), self.card.onnx_sha256),
                    "onnx-int8": (int8_path(self.weights), self.card.int8_sha256)}
        path, recorded = exported.get(self.backend, (None, None))
        if path is not None and recorded and self.device == "cpu":
            model = read_checked(path, recorded)
            self.runner = session_runner(onnx_session(model, self.threads))
        else:
            from network.weights import load_network, torch_runner

            self.network = load_network(data, self.card.architecture, self.device,
                                        f"weights file {self.weights}")
            # Without the files beside the weights, ONNX Runtime runs a fresh float export.
            wanted = "onnx" if self.backend in ONNX_FILE_BACKENDS else self.backend
            self.runner, self.backend = torch_runner(self.network, wanted, self.device,
                                                     threads or 0)
        self.loaded_at = datetime.now(UTC)

    @property
    def architecture(self) -> str:
        return self.card.architecture

    @property
    def sha256(self) -> str:
        return self.card.sha256

    @property
    def temperature(self) -> float:
        return self.card.temperature

    def run(self, batch: np.ndarray) -> NetworkOutputs:
        """Logits, calibrated probabilities and features for a batch of normalised images."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 1 + len(INPUT_SHAPE) or tuple(batch.shape[1:]) != INPUT_SHAPE:
            expected = ", ".join(map(str, ("N", *INPUT_SHAPE)))
            raise ValueError(f"expected a batch shaped ({expected}), got {tuple(batch.shape)}")
        logits, *rest = self.runner(batch)
        logits = logits.astype(np.float32, copy=False)
        features = rest[0].astype(np.float32, copy=False) if rest else None
        # In float64, so that a probability just below 1 is not rounded to exactly 1.
        probabilities = softmax(logits.astype(np.float64) / self.temperature)
        return NetworkOutputs(logits, probabilities, features)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of normalised images: the softmax of the logits
        divided by the card's temperature, so that a confidence of 0.9 is right nine times
        in ten."""
        return self.run(batch).probabilities

    def release(self) -> None:
        """Free the network's memory, including cached CUDA blocks."""
        del self.network, self.runner
        release_memory(self.device)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Each row of logits as probabilities that sum to 1."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def release_memory(device: str) -> None:
    """Collect what was dropped (compiled forms hold reference cycles) and return CUDA's cache."""
    gc.collect()
    if device.startswith("cuda") and "torch" in sys.modules:
        sys.modules["torch"].cuda.empty_cache()
