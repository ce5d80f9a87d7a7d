"""What erasing the ruling (``imaging.ruling``) costs and gives, per upload kind, in one run.

    python benchmarks/bench_ruling.py                 # 200 held-out digits per kind
    python benchmarks/bench_ruling.py --per-kind 500

Every upload of every kind (the plain 28x28 PNGs, ``UPLOAD_KINDS`` and
``RULED_KINDS`` of ``tests/synthetic_uploads.py``) goes through ``Chain.prepare``
twice, in turn: as served, and with the ruling step left out (the ink map
passed on as it is). Per kind it prints how often each reads the digit right,
the median preprocessing time of each and of their difference upload by upload,
and the time the ruling step itself took per upload (it runs on the survey and
on the region read). Taking the two in turn on each upload keeps the machine's
drift out of the difference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_accuracy import FIXTURE, uploads_of  # noqa: E402
from synthetic_uploads import RULED_KINDS, UPLOAD_KINDS  # noqa: E402

import folder_paths  # noqa: E402
import imaging.ink  # noqa: E402
from imaging.errors import PreprocessError  # noqa: E402
from model import DEFAULT_WEIGHTS, DigitClassifier  # noqa: E402
from serving.chain import Chain  # noqa: E402

SERVED = imaging.ink.without_ruling


def left_out(ink: np.ndarray, ruled: bool = False) -> tuple[np.ndarray, bool]:
    """The ruling step as if there were none."""
    return ink, ruled


class StepClock:
    """The served ruling step, adding up the time it takes."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, ink: np.ndarray, ruled: bool = False) -> tuple[np.ndarray, bool]:
        started = time.perf_counter()
        try:
            return SERVED(ink, ruled)
        finally:
            self.seconds += time.perf_counter() - started


def prepared(chain: Chain, data: bytes, step: Callable) -> tuple[object, float]:
    """``Chain.prepare`` of ``data`` with ``step`` as the ruling step: its segmentation (or
    None when refused) and its time in ms."""
    imaging.ink.without_ruling = step
    started = time.perf_counter()
    try:
        return chain.prepare(data), (time.perf_counter() - started) * 1000
    except PreprocessError:
        return None, (time.perf_counter() - started) * 1000
    finally:
        imaging.ink.without_ruling = SERVED


def right(chain: Chain, classifier: DigitClassifier, segmentations: list, labels) -> int:
    kept = [(s, label) for s, label in zip(segmentations, labels, strict=True) if s is not None]
    readings = chain.read_numbers(classifier, [s for s, _ in kept])
    return sum(r.number == str(label) for r, (_, label) in zip(readings, kept, strict=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=200, help="digits per kind (max 500)")
    args = parser.parse_args(argv)
    with np.load(folder_paths.get_full_path("tests", FIXTURE)) as data:
        step = max(1, len(data["images"]) // args.per_kind)
        images = data["images"][::step][: args.per_kind]
        labels = data["labels"][::step][: len(images)].astype(int)
    classifier = DigitClassifier(folder_paths.get_full_path("weights", DEFAULT_WEIGHTS), "cpu",
                                 threads=1)
    chain = Chain()
    print(f"{len(images)} held-out digits a kind; preprocessing ms, medians")
    print(f"{'kind':22s} {'right without':>14s} {'right with':>11s} {'ms without':>11s} "
          f"{'ms with':>8s} {'difference':>11s} {'ruling step':>12s}")
    for kind in ["mnist-28-png", *UPLOAD_KINDS, *RULED_KINDS]:
        clock = StepClock()
        without, with_, times_without, times_with = [], [], [], []
        for data in uploads_of(kind, images):
            segmentation, took = prepared(chain, data, left_out)
            without.append(segmentation)
            times_without.append(took)
            segmentation, took = prepared(chain, data, clock)
            with_.append(segmentation)
            times_with.append(took)
        difference = [b - a for a, b in zip(times_without, times_with, strict=True)]
        print(f"{kind:22s} {right(chain, classifier, without, labels):>14d} "
              f"{right(chain, classifier, with_, labels):>11d} "
              f"{statistics.median(times_without):11.2f} {statistics.median(times_with):8.2f} "
              f"{statistics.median(difference):+11.3f} "
              f"{clock.seconds * 1000 / len(images):12.3f}")


if __name__ == "__main__":
    main()
