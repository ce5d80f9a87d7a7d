"""Test-time augmentation: the network's answers averaged over turned, shifted or scaled copies
of each 28x28 input, against its answer on the input alone, in one run.

    python benchmarks/bench_tta.py                           # served weights and backend
    python benchmarks/bench_tta.py --backend eager

On the 1,000 held-out digits and on the new-writer uploads of ``make evaluate``
(each held-out digit varied harder than any training digit, read by the
chain; a refused one counts as wrong), each set of views averages the
probabilities of its copies. The ensemble of the three ``bn-conv`` teachers
(three networks' time) is printed beside them for scale. Each view costs one
more run of the network per request.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import folder_paths  # noqa: E402
from model import DEFAULT_WEIGHTS, DigitClassifier  # noqa: E402
from runtime.backend_names import BACKENDS, DEFAULT_BACKEND  # noqa: E402
from training.data import default_subset, load_digits, split_subset  # noqa: E402
from training.evaluate import (  # noqa: E402
    held_out_pictures,
    new_writer_pictures,
    probabilities_of,
)

TEACHERS = ("bn-conv.pt", "bn-conv-s2.pt", "bn-conv-s3.pt")


def warped(angle: float = 0.0, shift: tuple[float, float] = (0.0, 0.0),
           scale: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
    """A view: the 28x28 picture turned by ``angle`` degrees about its centre, scaled and
    shifted by (x, y) pixels."""
    matrix = cv2.getRotationMatrix2D((13.5, 13.5), angle, scale)
    matrix[:, 2] += shift

    def view(picture: np.ndarray) -> np.ndarray:
        moved = cv2.warpAffine(picture.astype(np.float32), matrix, (28, 28),
                               flags=cv2.INTER_LINEAR)
        return np.clip(np.round(moved), 0, 255).astype(np.uint8)

    return view


VIEWS = {
    "turned +7": warped(7.0), "turned -7": warped(-7.0),
    "right 1": warped(shift=(1.0, 0.0)), "left 1": warped(shift=(-1.0, 0.0)),
    "down 1": warped(shift=(0.0, 1.0)), "up 1": warped(shift=(0.0, -1.0)),
    "scaled 0.9": warped(scale=0.9), "scaled 1.1": warped(scale=1.1),
}
VIEW_SETS = {
    "the input alone": [],
    "+ turned +-7 degrees": ["turned +7", "turned -7"],
    "+ shifted +-1 px across": ["right 1", "left 1"],
    "+ scaled 0.9 and 1.1": ["scaled 0.9", "scaled 1.1"],
    "+ turned and shifted both ways": ["turned +7", "turned -7", "right 1", "left 1", "down 1",
                                       "up 1"],
    "+ all eight": list(VIEWS),
}


def probabilities(classifier: DigitClassifier, pictures: np.ndarray,
                  view: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """The classifier's probabilities for each picture (seen through ``view``)."""
    return probabilities_of(classifier, np.stack([view(p) for p in pictures]) if view
                            else pictures)


def right(probs: np.ndarray, labels: np.ndarray, refused: np.ndarray | None = None) -> int:
    correct = probs.argmax(axis=1) == labels
    return int((correct & ~refused).sum() if refused is not None else correct.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_subset())
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS)
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND)
    args = parser.parse_args()
    _, (images, labels) = split_subset(*load_digits(args.data))
    held_out = held_out_pictures(images)
    harsh, refused = new_writer_pictures(images)
    classifier = DigitClassifier(folder_paths.get_full_path("weights", args.weights), "cpu",
                                 args.backend)
    alone = (probabilities(classifier, held_out), probabilities(classifier, harsh))
    seen = {name: (probabilities(classifier, held_out, view),
                   probabilities(classifier, harsh, view)) for name, view in VIEWS.items()}
    print(f"{args.weights} ({args.backend}), {len(labels)} digits each; "
          f"{int(refused.sum())} new-writer upload(s) refused")
    print(f"{'views':34s} {'held-out':>9s} {'new writers':>12s} {'network runs':>13s}")
    for name, views in VIEW_SETS.items():
        held = np.mean([alone[0], *(seen[v][0] for v in views)], axis=0)
        new = np.mean([alone[1], *(seen[v][1] for v in views)], axis=0)
        print(f"{name:34s} {right(held, labels):9d} {right(new, labels, refused):12d} "
              f"{1 + len(views):13d}")
    teachers = [DigitClassifier(folder_paths.get_full_path("weights", name), "cpu", args.backend)
                for name in TEACHERS]
    held = np.mean([probabilities(t, held_out) for t in teachers], axis=0)
    new = np.mean([probabilities(t, harsh) for t in teachers], axis=0)
    print(f"{'the three bn-conv teachers':34s} {right(held, labels):9d} "
          f"{right(new, labels, refused):12d} {len(teachers):13d}")


if __name__ == "__main__":
    main()
