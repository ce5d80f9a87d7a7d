"""The one chain every prediction goes through.

    decode -> preprocess -> batch -> infer -> assess -> unbatch -> [explain] -> encode

The JSON API, the no-JavaScript page, the batch tool and the benchmarks all
call it. Each stage is a small function that can be tested alone (decode is
``imaging.decode.decode_upload``, preprocess is
``imaging.preprocess.preprocess_image``, assess is ``serving.trust.assess``,
explain, run only when asked for, is ``serving.explain``). ``Chain`` runs them in order and lets
its owner wrap every stage from outside (timing, metrics) through ``wrap``, so
the stages themselves only do their one job. None of it knows HTTP.

    prepare(data)            decode -> preprocess, one upload at a time
    predict(classifier, ps)  batch -> infer -> assess -> unbatch, all prepared uploads at once
    run(classifier, uploads) both, then (explain and) encode; an upload that fails keeps its
                             own error
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from imaging.decode import DEFAULT_LIMITS, DEFAULT_MAX_PIXELS, DecodeLimits, decode_upload
from imaging.errors import PreprocessError
from imaging.normalise import PreparedDigit
from imaging.preprocess import preprocess_image
from model import DigitClassifier, NetworkOutputs
from serving.batching import DynamicBatcher
from serving.explain import heatmap_image, occlusion_map
from serving.trust import SURE, Doubt, assess_outputs

# The stages every prediction goes through, in order; "explain" runs before "encode" when asked.
STAGES = ("decode", "preprocess", "batch", "infer", "assess", "unbatch", "encode")

# Wraps one stage: given its name and function, returns the function to call instead.
StageWrapper = Callable[[str, Callable[..., Any]], Callable[..., Any]]


@dataclass(frozen=True)
class Prediction:
    """The network's answer for one image."""

    digit: int
    confidence: float  # calibrated: the softmax of the logits over the card's temperature
    probabilities: list[float]
    uncertain: bool = False
    reason: str | None = None  # one of serving.trust.REASONS when uncertain


def batch(prepared: Sequence[PreparedDigit]) -> np.ndarray:
    """Prepared uploads -> one input batch, in their order."""
    return np.stack([item.model_input for item in prepared])


def infer(classifier: DigitClassifier, inputs: np.ndarray) -> NetworkOutputs:
    """One run of the network over a batch: logits, calibrated probabilities and features."""
    return classifier.run(inputs)


def assess(classifier: DigitClassifier, outputs: NetworkOutputs) -> list[Doubt]:
    """Whether each answer of a batch is uncertain, and why (``serving.trust``)."""
    return assess_outputs(classifier, outputs)


def unbatch(outputs: NetworkOutputs, doubts: Sequence[Doubt] | None = None) -> list[Prediction]:
    """A batch's outputs -> one ``Prediction`` per input, in order."""
    doubts = doubts or [SURE] * len(outputs.probabilities)
    return [prediction_from(row, doubt)
            for row, doubt in zip(outputs.probabilities, doubts, strict=True)]


def prediction_from(probabilities: np.ndarray, doubt: Doubt = SURE) -> Prediction:
    """The digit, its confidence, all ten probabilities and any doubt from one output row."""
    digit = int(probabilities.argmax())
    return Prediction(
        digit=digit,
        confidence=float(probabilities[digit]),
        probabilities=[honestly_rounded(float(p)) for p in probabilities],
        uncertain=doubt.uncertain,
        reason=doubt.reason,
    )


DECIMALS = 6  # probabilities are answered to six decimals
BELOW_ONE = 1 - 10**-DECIMALS


def honestly_rounded(probability: float) -> float:
    """``probability`` to ``DECIMALS`` decimals, but never rounded up to a certainty it is not:
    anything below 1 stays below 1."""
    rounded = round(probability, DECIMALS)
    return BELOW_ONE if rounded >= 1.0 and probability < 1.0 else rounded


def explain(classifier: DigitClassifier, prepared: PreparedDigit,
            prediction: Prediction) -> str:
    """Which input pixels pushed the answer, as a PNG data URL (``serving.explain``)."""
    change = occlusion_map(classifier, prepared.model_input, prediction.digit)
    return png_data_url(heatmap_image(change))


def encode(prediction: Prediction, prepared: PreparedDigit | None = None,
           explanation: str | None = None) -> dict[str, object]:
    """The JSON body for a prediction; with ``prepared``, also the 28x28 model input, and with
    ``explanation``, the heatmap of what pushed the answer."""
    body: dict[str, object] = {
        "prediction": prediction.digit,
        "confidence": honestly_rounded(prediction.confidence),
        "probabilities": prediction.probabilities,
        "uncertain": prediction.uncertain,
    }
    if prediction.uncertain:
        body["reason"] = prediction.reason
    if prepared is not None:
        body["input_image"] = png_data_url(prepared.image)
    if explanation is not None:
        body["explanation"] = explanation
    return body


def png_data_url(image: np.ndarray | Image.Image) -> str:
    """A uint8 grayscale array (or a Pillow image) as a ``data:image/png;base64,...`` URL."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image, mode="L")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def unwrapped(name: str, stage: Callable[..., Any]) -> Callable[..., Any]:
    """The ``StageWrapper`` that changes nothing."""
    return stage


# What ``Chain.run`` gives for each upload: its JSON body, or the error it failed with.
Outcome = dict[str, object] | PreprocessError


class Chain:
    """The stages in order, each wrapped once by ``wrap``, with the limits they need.

    With ``batch_delay`` (seconds) concurrent calls of ``predict`` are gathered
    by a ``DynamicBatcher`` for at most that long, up to ``max_batch`` inputs,
    and share one run of the network.
    """

    def __init__(self, max_pixels: int = DEFAULT_MAX_PIXELS, wrap: StageWrapper = unwrapped,
                 limits: DecodeLimits = DEFAULT_LIMITS, batch_delay: float | None = None,
                 max_batch: int = 32) -> None:
        if max_pixels <= 0:
            raise ValueError(f"max_pixels must be a positive pixel count, not {max_pixels}")
        self.max_pixels = max_pixels
        self.limits = limits
        self.batcher = (DynamicBatcher(self.predict_now, max_batch, batch_delay)
                        if batch_delay is not None else None)
        self.decode = wrap("decode", decode_upload)
        self.preprocess = wrap("preprocess", preprocess_image)
        self.batch = wrap("batch", batch)
        self.infer = wrap("infer", infer)
        self.assess = wrap("assess", assess)
        self.unbatch = wrap("unbatch", unbatch)
        self.explain = wrap("explain", explain)
        self.encode = wrap("encode", encode)

    def prepare(self, data: bytes) -> PreparedDigit:
        """decode -> preprocess for one upload; raises its ``PreprocessError``."""
        return self.preprocess(self.decode(data, self.max_pixels, self.limits))

    def predict(self, classifier: DigitClassifier,
                prepared: Sequence[PreparedDigit]) -> list[Prediction]:
        """batch -> infer -> assess -> unbatch for prepared uploads, through the network as
        one batch (with other requests' inputs too, when dynamic batching is on)."""
        if not prepared:
            return []
        if self.batcher is not None:
            return self.batcher.submit(classifier, prepared)
        return self.predict_now(classifier, prepared)

    def predict_now(self, classifier: DigitClassifier,
                    prepared: Sequence[PreparedDigit]) -> list[Prediction]:
        """batch -> infer -> assess -> unbatch, at once, for exactly these inputs."""
        outputs = self.infer(classifier, self.batch(prepared))
        return self.unbatch(outputs, self.assess(classifier, outputs))

    def run(self, classifier: DigitClassifier, uploads: Sequence[bytes],
            include_input: bool = False, explained: bool = False) -> list[Outcome]:
        """Every upload through the whole chain; each outcome in the order sent.

        An upload that cannot be read gets its ``PreprocessError`` as its outcome
        and the others are still answered. ``explained`` adds each answer's heatmap.
        """
        outcomes: list[Outcome | PreparedDigit] = []
        for data in uploads:
            try:
                outcomes.append(self.prepare(data))
            except PreprocessError as error:
                outcomes.append(error)
        prepared = [item for item in outcomes if isinstance(item, PreparedDigit)]
        predictions = iter(self.predict(classifier, prepared))
        answers: list[Outcome] = []
        for item in outcomes:
            if not isinstance(item, PreparedDigit):
                answers.append(item)
                continue
            prediction = next(predictions)
            explanation = self.explain(classifier, item, prediction) if explained else None
            answers.append(self.encode(prediction, item if include_input else None,
                                       explanation))
        return answers
