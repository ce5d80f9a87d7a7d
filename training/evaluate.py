"""Measure the served weights on digits they never saw, with the uncertainty of the estimate.

    python -m training.evaluate                     # the subset's 1,000 held-out digits
    python -m training.evaluate --digits FILE.npz   # every digit in FILE (e.g. a test fixture)
    python -m training.evaluate --weights other.pt --backend onnx
    python -m training.evaluate --reliability training/results/reliability.png  # calibration, drawn
    python -m training.evaluate --nondigits         # how well "not a digit" is told

Each digit goes through ``imaging.normalise.normalise_digit``, as in training and as
uploads do. The estimate comes with a 95% Wilson score interval: with 1,000
digits, one more or one fewer mistake moves the accuracy by 0.1%, and the
interval says how far the true accuracy could plausibly be from the estimate.
The expected calibration error (15 bins) is printed before and after the
card's temperature; ``--reliability`` draws both diagrams, and
``--nondigits`` measures the "not a digit" check (``training.trust_report``).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import folder_paths
from imaging.normalise import normalise_digit, to_model_input
from model import DEFAULT_WEIGHTS, DigitClassifier, softmax
from runtime.backend_names import BACKENDS
from training.calibrate import ECE_BINS, expected_calibration_error
from training.data import default_subset, load_digits, split_subset
from training.trust_report import draw_reliability, nondigit_report

Z_95 = 1.959964  # the standard normal quantile for a two-sided 95% interval


@dataclass(frozen=True)
class Accuracy:
    """How many digits were right out of how many, with a 95% Wilson interval."""

    correct: int
    total: int

    @property
    def value(self) -> float:
        return self.correct / self.total

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.total)

    def __str__(self) -> str:
        low, high = self.interval
        return (f"{self.value:.2%} ({self.correct}/{self.total}), "
                f"95% Wilson interval {low:.2%} to {high:.2%}")


def wilson_interval(correct: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a proportion: sound near 100%, unlike the normal one."""
    if total <= 0:
        raise ValueError("an interval needs at least one trial")
    share = correct / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def measure(classifier: DigitClassifier, images: np.ndarray, labels: np.ndarray,
            batch_size: int = 500) -> Accuracy:
    """The classifier's accuracy on MNIST-style digits, centred as uploads are."""
    correct = 0
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        batch = np.stack([to_model_input(normalise_digit(image)) for image in chunk])
        predictions = classifier.predict(batch).argmax(axis=1)
        correct += int((predictions == labels[start : start + batch_size]).sum())
    return Accuracy(correct, len(images))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, default=default_subset(),
                        help="the training subset; its fixed held-out part is measured")
    source.add_argument("--digits", type=Path, help="an .npz whose every digit is measured")
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help="file name inside weights/")
    parser.add_argument("--backend", choices=BACKENDS, default="eager")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--reliability", type=Path, metavar="PNG",
                        help="draw the reliability diagrams before and after calibration here")
    parser.add_argument("--nondigits", action="store_true",
                        help="measure the not-a-digit check against generated non-digits "
                             "(needs the subset and the Liberation fonts)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Accuracy:
    args = parse_args(argv)
    if args.digits:
        images, labels = load_digits(args.digits)
    else:
        _, (images, labels) = split_subset(*load_digits(args.data))
    weights = folder_paths.get_full_path("weights", args.weights)
    classifier = DigitClassifier(weights, args.device, args.backend)
    accuracy = measure(classifier, images, labels)
    print(f"{weights.name} ({classifier.architecture}, {classifier.backend}): accuracy {accuracy}")
    recorded = classifier.card.validation_accuracy
    if recorded is not None:
        print(f"its card records a validation accuracy of {recorded:.2%}")
    logits = np.concatenate([
        classifier.run(np.stack([to_model_input(normalise_digit(image))
                                 for image in images[start : start + 500]])).logits
        for start in range(0, len(images), 500)])
    temperature = classifier.temperature
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits / temperature), labels)
    print(f"expected calibration error ({ECE_BINS} bins): {before:.4f} before, {after:.4f} "
          f"after the card's temperature {temperature:g}")
    if args.reliability:
        draw_reliability(logits, labels, temperature, args.reliability)
        print(f"wrote {args.reliability}")
    if args.nondigits:
        train, (held_images, _) = split_subset(*load_digits(args.data))
        print(nondigit_report(classifier, train, held_images))
    return accuracy


if __name__ == "__main__":
    main()
