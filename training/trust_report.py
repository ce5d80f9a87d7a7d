"""Measure how well the served weights know their limits, on sets never used to fit them.

    python -m training.evaluate --reliability training/results/reliability.png  # drawn
    python -m training.evaluate --nondigits  # the not-a-digit table

The non-digits are the "measure" sets of ``training.nondigits`` (Liberation
fonts, their own seeds, drawings never used for fitting, held-out digits side
by side) against the held-out digits as uploads make them. Each score is
measured as the area under the ROC curve (AUROC) of telling the two apart and
as the share of held-out digits flagged when 95% of the non-digits are
(FPR at 95% TPR): the served non-digit head beside the baselines, the maximum
softmax probability (MSP, Hendrycks & Gimpel 2017), the energy score (Liu et
al. 2020) and the Mahalanobis distance to the nearest digit class in the same
feature space (Lee et al. 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model import DigitClassifier, NetworkOutputs, softmax
from serving.trust import TrustPolicy, assess
from training.calibrate import ECE_BINS, reliability, run_batches, upload_inputs
from training.nondigits import REPORTED_KINDS, digit_pictures, nondigit_pictures

MEASURE_PER_KIND = 300
SCORES = ("head", "mahalanobis", "energy", "msp")


def auroc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counting half (the Mann-Whitney U)."""
    scores = np.concatenate([positives, negatives])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Average ranks (1-based) of tied values: the cumulative count before each, plus the middle.
    starts = np.cumsum(counts) - counts
    ranks = (starts + (counts + 1) / 2.0)[inverse]
    rank_sum = ranks[: len(positives)].sum()
    n_pos, n_neg = len(positives), len(negatives)
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def fpr_at_tpr(positives: np.ndarray, negatives: np.ndarray, tpr: float = 0.95) -> float:
    """The share of negatives flagged by the threshold that flags ``tpr`` of the positives."""
    threshold = np.quantile(positives, 1.0 - tpr)
    return float((negatives >= threshold).mean())


@dataclass
class Mahalanobis:
    """Class means and a shared covariance of digit features (Lee et al. 2018)."""

    means: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray) -> Mahalanobis:
        means = np.stack([features[labels == c].mean(axis=0) for c in range(10)])
        centred = features - means[labels]
        covariance = centred.T @ centred / len(features)
        covariance += 1e-3 * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
        return cls(means, np.linalg.inv(covariance))

    def scores(self, features: np.ndarray) -> np.ndarray:
        """The squared distance to the nearest class mean: higher is less like a digit."""
        gaps = features[:, None, :] - self.means[None, :, :]
        return np.einsum("nck,kl,ncl->nc", gaps, self.precision, gaps).min(axis=1)


def scores_of(outputs: NetworkOutputs, policy: TrustPolicy, temperature: float,
              mahalanobis: Mahalanobis) -> dict[str, np.ndarray]:
    """Every score per input, each oriented so that higher means "not a digit"."""
    scaled = outputs.logits.astype(np.float64) / temperature
    top = scaled.max(axis=1)
    energy = -temperature * (top + np.log(np.exp(scaled - top[:, None]).sum(axis=1)))
    return {
        "head": policy.non_digit.scores(outputs.features),
        "mahalanobis": mahalanobis.scores(outputs.features),
        "energy": energy,
        "msp": -softmax(scaled).max(axis=1),
    }


def nondigit_report(classifier: DigitClassifier, train: tuple[np.ndarray, np.ndarray],
                    held_out: np.ndarray, per_kind: int = MEASURE_PER_KIND) -> str:
    """The table of AUROC and FPR at 95% TPR per kind and score, and the flagged shares."""
    policy = TrustPolicy.from_card(classifier.card.raw)
    if policy.non_digit is None:
        raise SystemExit("the card has no non-digit head; run `make calibrate` first")
    train_images, train_labels = train
    fit_inputs, _ = upload_inputs(digit_pictures(train_images))
    mahalanobis = Mahalanobis.fit(run_batches(classifier, fit_inputs).features, train_labels)

    def measured(inputs: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        outputs = run_batches(classifier, inputs)
        reasons = np.array([str(doubt.reason) for doubt in assess(policy, outputs)])
        return scores_of(outputs, policy, classifier.temperature, mahalanobis), reasons

    digit_inputs, _ = upload_inputs(digit_pictures(held_out))
    digit_scores, digit_reasons = measured(digit_inputs)
    lines = [f"{'kind':<12} {'n':>4} {'refused':>7}  "
             + "  ".join(f"{name:>17}" for name in SCORES) + "  flagged",
             f"{'':<12} {'':>4} {'':>7}  " + "  ".join(f"{'AUROC  FPR@95':>17}" for _ in SCORES)]
    flagged_all, total_all = 0, 0
    for kind in REPORTED_KINDS:
        pictures = nondigit_pictures(kind, per_kind, "measure", held_out)
        inputs, refused = upload_inputs(pictures)
        scores, reasons = measured(inputs)
        flagged = reasons != "None"
        cells = [f"{auroc(scores[s], digit_scores[s]):.4f} "
                 f"{fpr_at_tpr(scores[s], digit_scores[s]):6.1%}" for s in SCORES]
        share = (flagged.sum() + refused) / len(pictures)
        if kind != "digit_like":
            flagged_all += int(flagged.sum()) + refused
            total_all += len(pictures)
        lines.append(f"{kind:<12} {len(pictures):>4} {refused:>7}  "
                     + "  ".join(f"{c:>17}" for c in cells) + f"  {share:6.1%}")
    lines.append(f"non-digits flagged (all kinds but digit_like, refusals counted as flagged): "
                 f"{flagged_all / total_all:.1%} of {total_all}")
    lines.append(f"held-out digits flagged: {(digit_reasons != 'None').mean():.1%} of "
                 f"{len(digit_reasons)} (not_a_digit {(digit_reasons == 'not_a_digit').sum()}, "
                 f"low_confidence {(digit_reasons == 'low_confidence').sum()})")
    return "\n".join(lines)


def draw_reliability(logits: np.ndarray, labels: np.ndarray, temperature: float,
                     path: Path) -> None:
    """The reliability diagram before and after temperature scaling, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.calibrate import expected_calibration_error

    figure, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    edges = np.linspace(0, 1, ECE_BINS + 1)
    for axis, (title, t) in zip(axes, (("before (T = 1)", 1.0),
                                       (f"after (T = {temperature:g})", temperature)), strict=True):
        probabilities = softmax(logits / t)
        confidence, accuracy, counts = reliability(probabilities, labels)
        filled = counts > 0
        axis.bar(edges[:-1][filled], accuracy[filled], width=1 / ECE_BINS, align="edge",
                 edgecolor="#1f4e79", color="#9cc3e6", label="accuracy in the bin")
        axis.plot([0, 1], [0, 1], "--", color="#888", label="perfect calibration")
        axis.plot(edges[:-1][filled] + 0.5 / ECE_BINS, confidence[filled], "_", color="#c0392b",
                  markersize=14, markeredgewidth=2.5, label="mean confidence in the bin")
        ece = expected_calibration_error(probabilities, labels)
        axis.set_title(f"{title}: ECE {ece:.4f}")
        axis.set_xlabel("confidence (15 bins)")
        for left, count in zip(edges[:-1][filled], counts[filled], strict=True):
            axis.annotate(str(count), (left + 0.5 / ECE_BINS, 0.02), ha="center", fontsize=7)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    figure.suptitle(f"Reliability on the {len(labels)} held-out digits (counts at the bottom)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)
