"""Make the served weights say how sure they are, and when a picture is not a digit.

    python -m training.calibrate                   # the weights in weights/ (make calibrate)
    python -m training.calibrate --weights other.pt

One deterministic command, run by ``training.train`` after every training and
by hand after new weights arrive; it needs only the MNIST subset and Debian's
DejaVu fonts, and takes five to six minutes on two busy shared cores (most of
it varying the digits). It never changes the network's weights. It:

1. exports the network's served form (logits and features, ``network.features``)
   to ONNX and int8 again where the files beside the weights predate it;
2. fits a temperature on the held-out digits (minimising their negative log
   likelihood; a single number, so it cannot learn them by heart) and reports
   the expected calibration error (15 bins) before and after;
3. fits the non-digit head (``serving.trust``) on the served backend's features
   of the training digits (as they are and freshly varied) against generated non-digits
   (``training.nondigits``, the "fit" sets: DejaVu fonts, their own seeds and
   drawings), its threshold set so that ``DIGIT_FLAG_SHARE`` of the varied
   digits are flagged;
4. records the temperature, the head and the low-confidence bound on the card.

``python -m training.evaluate --nondigits`` measures the result on sets it never
saw (held-out digits, Liberation fonts, other seeds and drawings).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import folder_paths
from imaging.errors import PreprocessError
from imaging.normalise import to_model_input
from imaging.preprocess import normalise_digit, preprocess_image
from model import DEFAULT_WEIGHTS, DigitClassifier, NetworkOutputs, card_path, softmax
from runtime.backend_names import DEFAULT_BACKEND
from runtime.files import write_atomically
from serving.trust import NonDigitHead, TrustPolicy
from training.augment import augment_digit
from training.data import Split, default_subset, load_digits, split_subset
from training.nondigits import KINDS, FontsMissing, digit_pictures, nondigit_pictures

ECE_BINS = 15
FIT_PER_KIND = 700  # generated non-digits of each kind to fit the head on
FIT_SEED = 7  # seeds the variation of the fitting digits
# The share of the varied training digits the head may call non-digits: its threshold
# (1%: with the served weights it flags 0.6% of the held-out digits; see the README).
DIGIT_FLAG_SHARE = 0.01
# Below this calibrated confidence an answer is "low_confidence".
LOW_CONFIDENCE_BELOW = 0.5
HEAD_HIDDEN = 256  # hidden units of the non-digit head
HEAD_STEPS = 600  # full-batch Adam steps fitting it
HEAD_WEIGHT_DECAY = 1e-3
# Card fields save_weights writes, dropped before it writes them again.
FILE_FIELDS = ("weights", "sha256", "onnx", "onnx_sha256", "onnx_int8", "onnx_int8_sha256",
               "int8_calibration_digits")


# ---- Calibration ----------------------------------------------------------

def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = logits / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_total = np.log(np.exp(scaled - top).sum(axis=1)) + top[:, 0]
    return float((log_total - scaled[np.arange(len(labels)), labels]).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the negative log likelihood: a coarse grid over its
    logarithm, then golden-section search around the best point (the loss is convex in 1/T)."""
    logits = logits.astype(np.float64)
    grid = np.linspace(math.log(0.05), math.log(20.0), 121)
    losses = [negative_log_likelihood(logits, labels, math.exp(g)) for g in grid]
    best = int(np.argmin(losses))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if (negative_log_likelihood(logits, labels, math.exp(a))
                < negative_log_likelihood(logits, labels, math.exp(b))):
            high = b
        else:
            low = a
    return round(math.exp((low + high) / 2), 4)


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per confidence bin (equal widths over 0..1): mean confidence, accuracy, count."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, bins) / counts
        accuracy = np.bincount(index, correct.astype(float), bins) / counts
    return mean_confidence, accuracy, counts


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """The count-weighted mean gap between confidence and accuracy over the bins."""
    confidence, accuracy, counts = reliability(probabilities, labels, bins)
    filled = counts > 0
    gaps = np.abs(confidence[filled] - accuracy[filled])
    return float((gaps * counts[filled]).sum() / counts.sum())


# ---- Inputs as uploads make them --------------------------------------------

def upload_inputs(pictures: Sequence[Image.Image]) -> tuple[np.ndarray, int]:
    """Pictures through the service's preprocessing: model inputs, and how many it refused
    (no ink found: the service answers those ``no_digit_found`` and never guesses)."""
    inputs, refused = [], 0
    for picture in pictures:
        try:
            inputs.append(preprocess_image(picture).model_input)
        except PreprocessError:
            refused += 1
    return np.stack(inputs), refused


def varied_digits(images: np.ndarray, seed: int = FIT_SEED) -> np.ndarray:
    """Each digit varied once (``training.augment``), reproducibly."""
    generator = torch.Generator().manual_seed(seed)
    return np.stack([augment_digit(image, generator) for image in images])


def run_batches(classifier: DigitClassifier, inputs: np.ndarray,
                batch_size: int = 500) -> NetworkOutputs:
    """The network's outputs for many inputs, run in batches."""
    parts = [classifier.run(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]
    features = None if parts[0].features is None else np.concatenate([p.features for p in parts])
    return NetworkOutputs(np.concatenate([p.logits for p in parts]),
                          np.concatenate([p.probabilities for p in parts]), features)


# ---- The non-digit head ---------------------------------------------------------

def fit_head(digit_features: np.ndarray, other_features: np.ndarray,
             flag_share: float = DIGIT_FLAG_SHARE, hidden: int = HEAD_HIDDEN,
             seed: int = FIT_SEED, threshold_features: np.ndarray | None = None) -> NonDigitHead:
    """The head on standardised features (full-batch Adam, each class weighted equally, fixed
    seed), its threshold flagging ``flag_share`` of ``threshold_features`` (digits; by default
    the fitting digits)."""
    mean = digit_features.mean(axis=0)
    scale = digit_features.std(axis=0) + 1e-3
    inputs = torch.from_numpy(((np.vstack([digit_features, other_features]) - mean) / scale)
                              .astype(np.float32))
    targets = torch.cat([torch.zeros(len(digit_features)), torch.ones(len(other_features))])
    weights = torch.where(targets > 0, 0.5 / len(other_features), 0.5 / len(digit_features))
    torch.manual_seed(seed)
    head = torch.nn.Sequential(torch.nn.Linear(inputs.shape[1], hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, 1))
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3, weight_decay=HEAD_WEIGHT_DECAY)
    for _ in range(HEAD_STEPS):
        optimizer.zero_grad()
        losses = F.binary_cross_entropy_with_logits(head(inputs)[:, 0], targets, reduction="none")
        (losses * weights).sum().backward()
        optimizer.step()
    first, last = head[0], head[2]
    fitted = NonDigitHead(
        mean.astype(np.float32), scale.astype(np.float32),
        first.weight.detach().numpy().T.copy(), first.bias.detach().numpy().copy(),
        last.weight.detach().numpy()[0].copy(), float(last.bias.detach()[0]), threshold=0.0)
    if threshold_features is None:
        threshold_features = digit_features
    threshold = float(np.quantile(fitted.scores(threshold_features), 1.0 - flag_share))
    return NonDigitHead(fitted.mean, fitted.scale, fitted.hidden_weights, fitted.hidden_bias,
                        fitted.output_weights, fitted.output_bias, round(threshold, 4))


# ---- The served files and the card ------------------------------------------------

def ensure_feature_exports(weights: Path, train_images: np.ndarray) -> bool:
    """Export the served form (logits and features) again where the ONNX files beside the
    weights give logits only, or other features than ``network.features`` serves now; True
    when it did. The weights themselves are unchanged."""
    from network.features import with_features
    from network.weights import load_network, save_weights
    from runtime.onnx_session import onnx_session
    from training.train import calibration_inputs

    card = json.loads(card_path(weights).read_text(encoding="utf-8"))
    network = load_network(weights.read_bytes(), card["architecture"], "cpu", str(weights))
    wanted = with_features(network).feature_count
    onnx_file = weights.with_suffix(".onnx")
    if onnx_file.is_file():
        outputs = onnx_session(onnx_file.read_bytes(), 1).get_outputs()
        if len(outputs) >= 2 and outputs[1].shape[-1] == wanted:
            return False
    kept = {key: value for key, value in card.items() if key not in FILE_FIELDS}
    save_weights(network, weights, kept, calibration=calibration_inputs(train_images))
    return True


def fitting_nondigits(train_images: np.ndarray, per_kind: int) -> tuple[np.ndarray, list[str]]:
    """Model inputs of the "fit" non-digits of every kind, and the kinds drawn. Without the
    DejaVu fonts, letters are left out (and the card says so)."""
    inputs, kinds = [], []
    for kind in KINDS:
        try:
            pictures = nondigit_pictures(kind, per_kind, "fit", train_images)
        except FontsMissing as error:
            print(f"letters left out of the fitting: {error}")
            continue
        inputs.append(upload_inputs(pictures)[0])
        kinds.append(kind)
    return np.concatenate(inputs), kinds


def calibrate_weights(weights: Path, train: Split, held_out: Split,
                      backend: str = DEFAULT_BACKEND,
                      per_kind: int | None = None) -> dict[str, object]:
    """Fit and record the temperature and the trust policy of ``weights``; a summary.

    ``train`` and ``held_out`` are the digits the weights were trained and validated on;
    ``per_kind`` non-digits of each kind are drawn (by default as many as there are
    training digits over the kinds, at most ``FIT_PER_KIND``).
    """
    started = time.monotonic()
    (train_images, _), (held_images, held_labels) = train, held_out
    per_kind = per_kind or min(FIT_PER_KIND, max(10, len(train_images) // len(KINDS)))
    exported = ensure_feature_exports(weights, train_images)
    classifier = DigitClassifier(weights, "cpu", backend)  # logits do not depend on the card

    # The temperature, on held-out digits centred as evaluate.py and training centre them.
    held = np.stack([to_model_input(normalise_digit(image)) for image in held_images])
    logits = run_batches(classifier, held).logits
    temperature = fit_temperature(logits, held_labels)
    ece_before = expected_calibration_error(softmax(logits), held_labels)
    ece_after = expected_calibration_error(softmax(logits / temperature), held_labels)

    # The head, on uploads made from the training digits, each as it is and varied once, and
    # from the "fit" non-digits. The plain digits keep the head from flagging the tidy ones.
    # The threshold is set on the varied ones alone: the network knows the plain ones too well.
    plain_inputs, _ = upload_inputs(digit_pictures(train_images))
    varied_inputs, _ = upload_inputs(digit_pictures(varied_digits(train_images)))
    digit_inputs = np.concatenate([plain_inputs, varied_inputs])
    other_inputs, kinds = fitting_nondigits(train_images, per_kind)
    digit_features = run_batches(classifier, digit_inputs).features
    other_features = run_batches(classifier, other_inputs).features
    head = fit_head(digit_features, other_features,
                    threshold_features=digit_features[len(plain_inputs):])

    trust = {
        "score": ("non-digit head: one hidden layer on the penultimate layer's features and "
                  "the last feature map averaged over each quarter"),
        "fitted_on": (f"{len(digit_inputs)} training digits (as they are and varied) against "
                      f"{len(other_inputs)} generated non-digits "
                      f"({', '.join(kinds)}; DejaVu fonts), on the {classifier.backend} backend"),
        "digit_flag_share": DIGIT_FLAG_SHARE,
        "low_confidence_below": LOW_CONFIDENCE_BELOW,
        "non_digit": head.as_card(),
    }
    earlier = json.loads(card_path(weights).read_text(encoding="utf-8"))
    card = {**earlier, "temperature": temperature,
            "ece_15_bins": {"before": round(ece_before, 5), "after": round(ece_after, 5)},
            "trust": trust}
    TrustPolicy.from_card(card)  # what the server will read must read
    write_atomically(card_path(weights), json.dumps(card, indent=2) + "\n")
    return {"weights": weights.name, "exported_again": exported, "temperature": temperature,
            "ece_before": ece_before, "ece_after": ece_after,
            "head_threshold": head.threshold, "fitting_digits": len(digit_inputs),
            "fitting_nondigits": len(other_inputs),
            "seconds": round(time.monotonic() - started, 1)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help="file name inside weights/")
    parser.add_argument("--data", type=Path, default=default_subset(), help="the subset .npz")
    parser.add_argument("--per-kind", type=int,
                        help=f"generated non-digits of each kind to fit on (at most "
                             f"{FIT_PER_KIND} by default)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    weights = folder_paths.get_full_path("weights", args.weights)
    summary = calibrate_weights(weights, *split_subset(*load_digits(args.data)),
                                per_kind=args.per_kind)
    print(f"{summary['weights']}: temperature {summary['temperature']}, expected calibration "
          f"error ({ECE_BINS} bins) on the held-out digits {summary['ece_before']:.4f} before, "
          f"{summary['ece_after']:.4f} after")
    print(f"non-digit head fitted on {summary['fitting_digits']} training digits (as they are "
          f"and varied) and "
          f"{summary['fitting_nondigits']} generated non-digits; threshold "
          f"{summary['head_threshold']}"
          + ("; ONNX files exported again with features" if summary["exported_again"] else "")
          + f" ({summary['seconds']} s)")
    return summary


if __name__ == "__main__":
    main()
