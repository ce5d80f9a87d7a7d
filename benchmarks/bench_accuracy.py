"""Accuracy and preprocessing time per upload kind, measured together in one run.

    python benchmarks/bench_accuracy.py                  # 500 held-out digits per kind
    python benchmarks/bench_accuracy.py --per-kind 100   # quicker
    python benchmarks/bench_accuracy.py --json out.json  # also as JSON, to compare two trees

Every upload kind of ``tests/synthetic_uploads.py``, plus the held-out digits
as plain 28x28 PNGs (and, totalled apart, the digits on ruled paper, the
sheets photographed on a desk and the pages photographed in shadow), is made
from the held-out test fixture and goes through the service's own chain
(``Chain.prepare`` then ``Chain.read_numbers``): an upload is right when the
number read is its digit. Preprocessing (decode to
the candidate digits, segmentation included) is timed per upload (median and
90th percentile). Run it in two checkouts, the
baseline and the change, one after the other on the same machine: speed and
accuracy of a preprocessing change are judged together.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from synthetic_uploads import (  # noqa: E402
    DESK_KINDS,
    RULED_KINDS,
    SHADOW_KINDS,
    UPLOAD_KINDS,
    make_upload,
)

import folder_paths  # noqa: E402
from imaging.errors import PreprocessError  # noqa: E402
from model import DEFAULT_WEIGHTS, DigitClassifier  # noqa: E402
from runtime.backend_names import BACKENDS, DEFAULT_BACKEND  # noqa: E402
from serving.chain import Chain  # noqa: E402

FIXTURE = "fixtures/heldout_digits.npz"


def mnist_png(digit: np.ndarray) -> bytes:
    """A held-out digit as it is: a 28x28 grayscale PNG, white on black."""
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG")
    return buffer.getvalue()


def uploads_of(kind: str, images: np.ndarray) -> list[bytes]:
    """The upload files of ``kind`` for every digit, seeded by the digit's index."""
    if kind == "mnist-28-png":
        return [mnist_png(image) for image in images]
    return [make_upload(kind, image, np.random.default_rng(index))
            for index, image in enumerate(images)]


def measure_kind(chain: Chain, classifier: DigitClassifier, uploads: list[bytes],
                 labels: np.ndarray) -> dict[str, float]:
    """Accuracy, refusals and preprocessing time (ms) over one kind's uploads."""
    prepared, times, refused = [], [], 0
    kept_labels = []
    for data, label in zip(uploads, labels, strict=True):
        started = time.perf_counter()
        try:
            prepared.append(chain.prepare(data))
        except PreprocessError:
            refused += 1
            continue
        finally:
            times.append((time.perf_counter() - started) * 1000)
        kept_labels.append(label)
    numbers = [reading.number for reading in chain.read_numbers(classifier, prepared)]
    correct = sum(number == str(label) for number, label in zip(numbers, kept_labels,
                                                                strict=True))
    return {
        "count": len(uploads),
        "correct": correct,
        "accuracy": correct / len(uploads),
        "refused": refused,
        "preprocess_ms_median": statistics.median(times),
        "preprocess_ms_p90": float(np.percentile(times, 90)),
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=500, help="digits per kind (max 500)")
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS)
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    with np.load(folder_paths.get_full_path("tests", FIXTURE)) as data:
        step = max(1, len(data["images"]) // args.per_kind)
        images, labels = data["images"][::step][: args.per_kind], data["labels"][::step]
    labels = labels[: len(images)].astype(int)
    classifier = DigitClassifier(folder_paths.get_full_path("weights", args.weights), "cpu",
                                 args.backend, threads=1)
    print(f"{args.weights}, backend {classifier.backend}")
    chain = Chain()
    results = {}
    print(f"{'kind':24s} {'right':>9s} {'accuracy':>9s} {'refused':>8s} "
          f"{'prep median ms':>15s} {'prep p90 ms':>12s}")
    for kinds, name in ((["mnist-28-png", *UPLOAD_KINDS], "all upload kinds"),
                        (list(RULED_KINDS), "ruled paper kinds"),
                        (list(DESK_KINDS), "sheets on a desk"),
                        (list(SHADOW_KINDS), "pages in shadow")):
        for kind in kinds:
            result = measure_kind(chain, classifier, uploads_of(kind, images), labels)
            results[kind] = result
            print(f"{kind:24s} {result['correct']:>4d}/{result['count']:<4d} "
                  f"{result['accuracy']:9.2%} {result['refused']:8d} "
                  f"{result['preprocess_ms_median']:15.2f} {result['preprocess_ms_p90']:12.2f}")
        right = sum(results[k]["correct"] for k in kinds if k != "mnist-28-png")
        total = sum(results[k]["count"] for k in kinds if k != "mnist-28-png")
        print(f"{name:24s} {right:>4d}/{total:<4d} {right / total:9.2%}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
