"""The pair reader served: its ONNX file, checked against its card, run by ONNX Runtime on
NumPy arrays (no torch), answering each head's probabilities."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imaging.pairs import PAIR_SHAPE
from model import WeightsCard, WeightsError, onnx_path, read_checked, softmax
from runtime.onnx_session import onnx_session, session_runner

PAIR_WEIGHTS = "pairs.pt"  # the pair reader's weights inside weights/ (training.pairs writes it)


class PairReader:
    """Reads groups of ink as two digits: for a batch of ``imaging.pairs`` inputs, the left
    and the right head's probabilities, each (N, 11): the ten digits, then no pair."""

    def __init__(self, weights: str | os.PathLike[str], threads: int = 1) -> None:
        self.weights = Path(weights)
        if not self.weights.is_file():
            raise WeightsError(f"pair reader {self.weights} does not exist; "
                               "python -m training.pairs writes it")
        self.card = WeightsCard.read(self.weights)
        if not self.card.onnx_sha256:
            raise WeightsError(f"the card of {self.weights} records no ONNX export")
        model = read_checked(onnx_path(self.weights), self.card.onnx_sha256)
        self.runner = session_runner(onnx_session(model, threads))

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each head's probabilities (float64) for a batch shaped (N, *PAIR_SHAPE)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if tuple(batch.shape[1:]) != PAIR_SHAPE:
            raise ValueError(f"expected a batch shaped (N, {PAIR_SHAPE}), got {batch.shape}")
        left, right = self.runner(batch)
        return softmax(left.astype(np.float64)), softmax(right.astype(np.float64))
