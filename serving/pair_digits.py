"""The pair reader for the chain: loaded once, on first need, from its file in ``weights/``;
its answers as each digit's ten probabilities.

A service whose pair reader cannot be loaded still reads numbers, by cutting
alone: the failure is logged once and no pair is read.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

import folder_paths
from model import WeightsError
from runtime.pair_reader import PAIR_WEIGHTS, PairReader

log = logging.getLogger(__name__)


class PairDigits:
    """The pair reader of ``weights`` (a file inside ``weights/``, or a path), loaded on
    first use; ``enabled=False``: none."""

    def __init__(self, weights: str | Path = PAIR_WEIGHTS, enabled: bool = True) -> None:
        self.weights = weights
        self.enabled = enabled
        self.reader: PairReader | None = None
        self.lock = threading.Lock()

    def __getstate__(self) -> dict:
        """What a copy in another process needs (a DataLoader worker's chain): the file
        and whether it is read, not the session or the lock; the copy loads its own."""
        return {"weights": self.weights, "enabled": self.enabled}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["weights"], state["enabled"])

    def get(self) -> PairReader | None:
        """The loaded reader, or None where it is disabled or cannot be loaded."""
        if not self.enabled:
            return None
        with self.lock:
            if self.reader is None and self.enabled:
                try:
                    self.reader = PairReader(folder_paths.get_full_path("weights", self.weights))
                except (WeightsError, OSError) as error:
                    log.warning("reading numbers without the pair reader: %s", error)
                    self.enabled = False
            return self.reader

    def read(self, inputs: list[np.ndarray]) -> np.ndarray | None:
        """For each input, its left and right digit's probabilities over the ten digits,
        shaped (N, 2, 10); None without a reader.

        The heads' "no pair" class is left out, not spread over the digits: each digit's
        ten sum to the reader's belief that the ink is a pair, so ink that is none
        scores low on every digit, and so low in ``choose``.
        """
        reader = self.get()
        if reader is None:
            return None
        left, right = reader.run(np.stack(inputs))
        return np.stack([left[:, :10], right[:, :10]], axis=1)
