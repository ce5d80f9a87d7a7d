"""Measure the served weights on digits they never saw, with the uncertainty of the estimate.

    python -m training.evaluate                     # the subset's 1,000 held-out digits
    python -m training.evaluate --digits FILE.npz   # every digit in FILE (e.g. a test fixture)
    python -m training.evaluate --weights model.pt other.pt --backend onnx-int8
    python -m training.evaluate --figures           # also draw the confusion matrix and mistakes
    python -m training.evaluate --record            # and write the figures into the card
    python -m training.evaluate --reliability training/results/reliability.png  # calibration, drawn
    python -m training.evaluate --nondigits         # how well "not a digit" is told

Two figures per weights file, each with a 95% Wilson score interval:

- the held-out digits, each through ``imaging.preprocess.normalise_digit``
  (exactly what a 28x28 upload of it becomes, as in training). They share
  writers with the training digits, so this figure flatters;
- the new-writer estimate (``training.new_writers``): every held-out digit
  varied harder than any training digit was and sent as an upload through the
  service's chain. A refused upload counts as wrong.

With 1,000 digits one more or one fewer mistake moves the accuracy by 0.1%;
the interval says how far the true accuracy could plausibly be from the
estimate. ``--figures`` draws (with matplotlib) the confusion matrices and a
gallery of the digits it gets wrong, each as the 28x28 input the network saw
with the true digit and the answer, beside the weights as
``<name>.confusion.png`` and ``<name>.mistakes.png``.
The expected calibration error (15 bins) on the held-out digits is printed
before and after the card's temperature; ``--reliability`` draws both
diagrams, and ``--nondigits`` measures the "not a digit" check
(``training.trust_report``).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import folder_paths
from imaging.errors import PreprocessError
from imaging.normalise import to_model_input
from imaging.preprocess import normalise_digit
from model import DEFAULT_WEIGHTS, NUM_CLASSES, DigitClassifier, card_path, softmax
from runtime.backend_names import BACKENDS
from runtime.files import write_atomically
from serving.chain import Chain
from training.calibrate import ECE_BINS, expected_calibration_error
from training.data import default_subset, load_digits, split_subset
from training.new_writers import NEW_WRITER_SEED, new_writer_upload
from training.trust_report import draw_reliability, nondigit_report

Z_95 = 1.959964  # the standard normal quantile for a two-sided 95% interval
REFUSED = -1  # the answer recorded for an upload the chain refused
GALLERY_COLUMNS = 12
GALLERY_MOST = 96  # mistakes drawn per gallery


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


@dataclass
class Answers:
    """What the network answered for each digit, and the 28x28 picture it saw."""

    labels: np.ndarray
    answers: np.ndarray  # REFUSED where the chain found no digit
    confidences: np.ndarray
    pictures: np.ndarray  # (N, 28, 28) uint8
    accuracy: Accuracy = field(init=False)

    def __post_init__(self) -> None:
        self.accuracy = Accuracy(int((self.answers == self.labels).sum()), len(self.labels))

    @property
    def wrong(self) -> np.ndarray:
        """Indices of the digits answered wrong (or refused)."""
        return np.flatnonzero(self.answers != self.labels)


def wilson_interval(correct: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a proportion: sound near 100%, unlike the normal one."""
    if total <= 0:
        raise ValueError("an interval needs at least one trial")
    share = correct / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def answer(classifier: DigitClassifier, pictures: np.ndarray, labels: np.ndarray) -> Answers:
    """The classifier's answers for 28x28 pictures already prepared as the service prepares them."""
    probabilities = probabilities_of(classifier, pictures)
    return Answers(labels, probabilities.argmax(axis=1), probabilities.max(axis=1), pictures)


def probabilities_of(classifier: DigitClassifier, pictures: np.ndarray,
                     batch_size: int = 500) -> np.ndarray:
    """The classifier's probabilities for 28x28 uint8 pictures, in batches of ``batch_size``."""
    return np.concatenate([
        classifier.predict(np.stack([to_model_input(p) for p in pictures[i : i + batch_size]]))
        for i in range(0, len(pictures), batch_size)
    ])


def held_out_pictures(images: np.ndarray) -> np.ndarray:
    """Each MNIST-style digit as the service reads it uploaded as a 28x28 file."""
    return np.stack([normalise_digit(image) for image in images])


def new_writer_pictures(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each digit varied harshly, uploaded and read by the chain; and which were refused."""
    chain = Chain(numbers=False)  # each upload read as the one digit it is
    pictures = np.zeros((len(images), 28, 28), dtype=np.uint8)
    refused = np.zeros(len(images), dtype=bool)
    for index, image in enumerate(images):
        try:
            segmentation = chain.prepare(new_writer_upload(image, index))
            pictures[index] = segmentation.candidates[0].prepared.image
        except PreprocessError:
            refused[index] = True
    return pictures, refused


def measure(classifier: DigitClassifier, images: np.ndarray, labels: np.ndarray) -> Accuracy:
    """The classifier's accuracy on MNIST-style digits, read as 28x28 uploads are."""
    return answer(classifier, held_out_pictures(images), labels).accuracy


def measure_new_writers(classifier: DigitClassifier, pictures: np.ndarray,
                        refused: np.ndarray, labels: np.ndarray) -> Answers:
    """Answers on the new-writer uploads; a refused upload is a wrong answer."""
    answers = answer(classifier, pictures, labels)
    answers.answers[refused] = REFUSED
    answers.confidences[refused] = 0.0
    answers.__post_init__()
    return answers


def confusion(answers: Answers) -> np.ndarray:
    """Counts of (true digit, answer); the last column counts refusals."""
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES + 1), dtype=int)
    for label, given in zip(answers.labels, answers.answers, strict=True):
        matrix[label, NUM_CLASSES if given == REFUSED else given] += 1
    return matrix


def draw_confusion(named: dict[str, Answers], path: Path) -> None:
    """One confusion matrix per set of answers, side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, len(named), figsize=(6.2 * len(named), 5.6))
    for axis, (title, answers) in zip(np.atleast_1d(axes), named.items(), strict=True):
        matrix = confusion(answers)
        shown = matrix if matrix[:, -1].any() else matrix[:, :-1]
        # A logarithmic scale, so that the few mistakes show beside the many right answers.
        axis.imshow(np.log1p(shown), cmap="Blues")
        for (row, col), count in np.ndenumerate(shown):
            if count:
                axis.text(col, row, str(count), ha="center", va="center", fontsize=8,
                          color="white" if row == col else "black")
        columns = [str(d) for d in range(NUM_CLASSES)] + (["none"] if shown is matrix else [])
        axis.set_xticks(range(len(columns)), columns)
        axis.set_yticks(range(NUM_CLASSES), [str(d) for d in range(NUM_CLASSES)])
        axis.set_xlabel("answer")
        axis.set_ylabel("true digit")
        axis.set_title(f"{title}\n{answers.accuracy}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def draw_mistakes(named: dict[str, Answers], path: Path) -> None:
    """A gallery of the digits answered wrong: the 28x28 input, the true digit and the answer."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows_of = {title: max(1, math.ceil(min(len(a.wrong), GALLERY_MOST) / GALLERY_COLUMNS))
               for title, a in named.items()}
    figure = plt.figure(figsize=(GALLERY_COLUMNS * 0.95, sum(rows_of.values()) * 1.15
                                 + 0.5 * len(named)))
    grid = figure.add_gridspec(sum(rows_of.values()) + len(named), GALLERY_COLUMNS)
    row = 0
    for title, answers in named.items():
        heading = figure.add_subplot(grid[row, :])
        heading.axis("off")
        shown = answers.wrong[:GALLERY_MOST]
        heading.text(0, 0.2, f"{title}: {len(answers.wrong)} wrong of {answers.accuracy.total}"
                     + (f" (the first {len(shown)})" if len(shown) < len(answers.wrong) else ""),
                     fontsize=10, weight="bold")
        row += 1
        for position, index in enumerate(shown):
            axis = figure.add_subplot(grid[row + position // GALLERY_COLUMNS,
                                           position % GALLERY_COLUMNS])
            axis.imshow(answers.pictures[index], cmap="gray", vmin=0, vmax=255)
            given = answers.answers[index]
            said = "no digit" if given == REFUSED else f"{given} ({answers.confidences[index]:.0%})"
            axis.set_title(f"{answers.labels[index]} -> {said}", fontsize=7)
            axis.axis("off")
        row += rows_of[title]
    figure.savefig(path, dpi=100)
    plt.close(figure)


def as_record(accuracy: Accuracy) -> dict[str, object]:
    """An accuracy as the weights card holds it."""
    low, high = accuracy.interval
    return {"accuracy": round(accuracy.value, 4), "correct": accuracy.correct,
            "total": accuracy.total, "wilson_95": [round(low, 4), round(high, 4)]}


def record(weights: Path, named: dict[str, Answers], backend: str) -> None:
    """Add the held-out interval and the new-writer estimate to ``weights``' card.

    Every other field of the card is kept as it is.
    """
    path = card_path(weights)
    card = json.loads(path.read_text(encoding="utf-8"))
    held_out, *rest = named.values()
    card["validation_wilson_95"] = as_record(held_out.accuracy)["wilson_95"]
    if rest:
        card["new_writer_estimate"] = {
            **as_record(rest[0].accuracy), "backend": backend,
            "how": ("every held-out digit varied harder than any training digit "
                    "(training.new_writers.HARSH, seed "
                    f"{NEW_WRITER_SEED}), sent as a PNG upload through the service's chain; "
                    "a refused upload counts as wrong"),
        }
    write_atomically(path, json.dumps(card, indent=2) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, default=default_subset(),
                        help="the training subset; its fixed held-out part is measured")
    source.add_argument("--digits", type=Path, help="an .npz whose every digit is measured")
    parser.add_argument("--weights", nargs="+", default=[DEFAULT_WEIGHTS],
                        help="file names inside weights/, each measured in this one run")
    parser.add_argument("--backend", choices=BACKENDS, default="eager")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-new-writers", dest="new_writers", action="store_false",
                        help="skip the new-writer estimate (quicker)")
    parser.add_argument("--figures", action="store_true",
                        help="draw the confusion matrices and the mistakes of each weights file")
    parser.add_argument("--record", action="store_true",
                        help="write the figures into the first weights file's card")
    parser.add_argument("--reliability", type=Path, metavar="PNG",
                        help="draw the first weights file's reliability diagrams before and "
                             "after calibration here")
    parser.add_argument("--nondigits", action="store_true",
                        help="measure the first weights file's not-a-digit check against "
                             "generated non-digits (needs the subset and the Liberation fonts)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Accuracy:
    """Print every figure for every weights file; the held-out accuracy of the first."""
    args = parse_args(argv)
    if args.digits:
        images, labels = load_digits(args.digits)
    else:
        _, (images, labels) = split_subset(*load_digits(args.data))
    held_out = held_out_pictures(images)
    if args.new_writers:
        harsh, refused = new_writer_pictures(images)
    first = None
    for name in args.weights:
        weights = folder_paths.get_full_path("weights", name)
        classifier = DigitClassifier(weights, args.device, args.backend)
        named = {"held-out digits (same writers as training)": answer(classifier, held_out,
                                                                      labels)}
        accuracy = named["held-out digits (same writers as training)"].accuracy
        first = first or accuracy
        print(f"{weights.name} ({classifier.architecture}, {classifier.backend}): "
              f"accuracy {accuracy}")
        if args.new_writers:
            named["new-writer estimate (harsher variations, as uploads)"] = new = (
                measure_new_writers(classifier, harsh, refused, labels))
            print(f"{weights.name}: new-writer estimate {new.accuracy} "
                  f"({int(refused.sum())} refused)")
        recorded = classifier.card.validation_accuracy
        if recorded is not None:
            print(f"its card records a validation accuracy of {recorded:.2%}")
        print_calibration(classifier, held_out, labels)
        if name == args.weights[0]:
            if args.reliability:
                draw_reliability(held_out_logits(classifier, held_out), labels,
                                 classifier.temperature, args.reliability)
                print(f"wrote {args.reliability}")
            if args.nondigits:
                train, (held_images, _) = split_subset(*load_digits(args.data))
                print(nondigit_report(classifier, train, held_images))
        if args.record and name == args.weights[0]:
            record(weights, named, classifier.backend)
            print(f"recorded in {card_path(weights).name}")
        if args.figures:
            for kind, draw in (("confusion", draw_confusion), ("mistakes", draw_mistakes)):
                path = weights.with_name(f"{weights.stem}.{kind}.png")
                draw(named, path)
                print(f"wrote {path}")
    return first


def held_out_logits(classifier: DigitClassifier, held_out: np.ndarray) -> np.ndarray:
    """The network's logits for the held-out pictures, in batches of 500."""
    return np.concatenate([
        classifier.run(np.stack([to_model_input(picture)
                                 for picture in held_out[start:start + 500]])).logits
        for start in range(0, len(held_out), 500)])


def print_calibration(classifier: DigitClassifier, held_out: np.ndarray,
                      labels: np.ndarray) -> None:
    """The expected calibration error before and after the card's temperature."""
    logits = held_out_logits(classifier, held_out)
    temperature = classifier.temperature
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits / temperature), labels)
    print(f"expected calibration error ({ECE_BINS} bins): {before:.4f} before, {after:.4f} "
          f"after the card's temperature {temperature:g}")


if __name__ == "__main__":
    main()
