"""How far to trust an answer: the chain's ``assess`` stage and the scores it rests on.

Every answer says ``uncertain`` (true or false) and, when true, a ``reason``
from ``REASONS``. Both come from numbers ``training.calibrate`` fits for each
weights file and records on its card (``trust``), on the network's own
outputs (``model.NetworkOutputs``), so the check costs some 160,000
multiply-adds per image and no second run of the network:

- ``not_a_digit``: a small head (one hidden layer) on the network's served
  features (``network.features``: what its last layer reads, and its last
  feature map averaged over each quarter) says the picture is not a digit. It
  is fitted on the frozen network's features of training digits against
  generated non-digits (``training.nondigits``); the network itself is not
  retrained.
- ``low_confidence``: the calibrated confidence is below the card's bound.

NumPy only: serving workers never import torch.
"""

from __future__ import annotations

import base64
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from model import DigitClassifier, NetworkOutputs

# Why an answer is uncertain, by the code the API answers with, in plain words.
REASONS = {
    "not_a_digit": "this does not look like a digit",
    "low_confidence": "the network is not sure which digit this is",
}


@dataclass(frozen=True)
class NonDigitHead:
    """A small network on standardised features (one hidden ReLU layer, one output): above
    ``threshold``, not a digit."""

    mean: np.ndarray  # (K,) feature means of the fitting digits
    scale: np.ndarray  # (K,) their standard deviations
    hidden_weights: np.ndarray  # (K, H)
    hidden_bias: np.ndarray  # (H,)
    output_weights: np.ndarray  # (H,)
    output_bias: float
    threshold: float  # on the output logit

    def scores(self, features: np.ndarray) -> np.ndarray:
        """The head's logit per row of features: higher is less like a digit."""
        hidden = ((features - self.mean) / self.scale) @ self.hidden_weights + self.hidden_bias
        return np.maximum(hidden, 0.0) @ self.output_weights + self.output_bias

    def as_card(self) -> dict[str, object]:
        arrays = {name: packed(getattr(self, name)) for name in ARRAYS}
        return {**arrays, "output_bias": float(self.output_bias),
                "threshold": float(self.threshold)}

    @classmethod
    def from_card(cls, raw: Mapping[str, object]) -> NonDigitHead:
        def array(name: str) -> np.ndarray:
            return unpacked(raw[name])

        head = cls(array("mean"), array("scale"), array("hidden_weights"), array("hidden_bias"),
                   array("output_weights"), float(raw["output_bias"]), float(raw["threshold"]))
        features, hidden = head.hidden_weights.shape
        if (head.mean.shape != (features,) or head.scale.shape != (features,)
                or head.hidden_bias.shape != (hidden,) or head.output_weights.shape != (hidden,)):
            raise ValueError("the non-digit head's arrays do not fit together")
        if not (head.scale > 0).all():
            raise ValueError("the non-digit head's scales must be positive")
        return head


ARRAYS = ("mean", "scale", "hidden_weights", "hidden_bias", "output_weights")


def packed(values: np.ndarray) -> dict[str, object]:
    """A float32 array for the JSON card: its shape and its little-endian bytes in base64
    (exact, and one line however many numbers)."""
    values = np.asarray(values, dtype="<f4")
    return {"shape": list(values.shape), "float32_base64":
            base64.b64encode(values.tobytes()).decode("ascii")}


def unpacked(raw: object) -> np.ndarray:
    """The array ``packed`` wrote."""
    if not isinstance(raw, Mapping):
        raise ValueError("a packed array must be an object with shape and float32_base64")
    data = np.frombuffer(base64.b64decode(str(raw["float32_base64"]), validate=True), dtype="<f4")
    return data.reshape([int(n) for n in raw["shape"]]).astype(np.float32)


@dataclass(frozen=True)
class TrustPolicy:
    """When an answer is uncertain, for one weights file."""

    low_confidence_below: float = 0.0  # 0: never low confidence
    non_digit: NonDigitHead | None = None

    @classmethod
    def from_card(cls, card: Mapping[str, object]) -> TrustPolicy:
        """The policy a weights card records (``trust``); none recorded: never uncertain."""
        raw = card.get("trust")
        if not raw:
            return cls()
        head = raw.get("non_digit")
        return cls(low_confidence_below=float(raw.get("low_confidence_below", 0.0)),
                   non_digit=NonDigitHead.from_card(head) if head else None)


@dataclass(frozen=True)
class Doubt:
    """Whether one answer is uncertain, and why; and the non-digit head's margin (its score
    less its threshold: above 0 it calls the picture no digit), None without a head."""

    uncertain: bool
    reason: str | None = None
    non_digit: float | None = None


SURE = Doubt(False)


def non_digit_scores(policy: TrustPolicy, outputs: NetworkOutputs) -> np.ndarray | None:
    """The head's score per input, or None where the policy has no head."""
    if policy.non_digit is None:
        return None
    if outputs.features is None:
        raise ValueError("the card has a non-digit head but the network gives no features; "
                         "run `python -m training.calibrate` to export them")
    return policy.non_digit.scores(outputs.features)


_policies: weakref.WeakKeyDictionary[DigitClassifier, TrustPolicy] = weakref.WeakKeyDictionary()


def policy_of(classifier: DigitClassifier) -> TrustPolicy:
    """The policy of a loaded classifier's card, read once per classifier."""
    policy = _policies.get(classifier)
    if policy is None:
        policy = _policies[classifier] = TrustPolicy.from_card(classifier.card.raw)
    return policy


def assess_outputs(classifier: DigitClassifier, outputs: NetworkOutputs) -> list[Doubt]:
    """``assess`` with the classifier's own policy."""
    return assess(policy_of(classifier), outputs)


def assess(policy: TrustPolicy, outputs: NetworkOutputs) -> list[Doubt]:
    """One ``Doubt`` per input of a batch: ``not_a_digit`` first, then ``low_confidence``."""
    scores = non_digit_scores(policy, outputs)
    confidence = outputs.probabilities.max(axis=1)
    doubts = []
    for row, top in enumerate(confidence):
        margin = (float(scores[row] - policy.non_digit.threshold) if scores is not None
                  else None)
        if margin is not None and margin > 0:
            doubts.append(Doubt(True, "not_a_digit", margin))
        elif top < policy.low_confidence_below:
            doubts.append(Doubt(True, "low_confidence", margin))
        else:
            doubts.append(Doubt(False, None, margin))
    return doubts
