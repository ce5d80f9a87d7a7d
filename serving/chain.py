"""The one chain every prediction goes through.

    decode -> preprocess -> batch -> infer -> unbatch -> encode

The JSON API, the no-JavaScript page, the batch tool and the benchmarks all
call it. Each stage is a small function that can be tested alone (decode is
``imaging.decode.decode_upload``, preprocess is
``imaging.preprocess.preprocess_image``). ``Chain`` runs them in order and lets
its owner wrap every stage from outside (timing, metrics) through ``wrap``, so
the stages themselves only do their one job. None of it knows HTTP.

    prepare(data)            decode -> preprocess, one upload at a time
    predict(classifier, ps)  batch -> infer -> unbatch, all prepared uploads at once
    run(classifier, uploads) both, then encode; an upload that fails keeps its own error
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
from model import DigitClassifier
from serving.batching import DynamicBatcher

STAGES = ("decode", "preprocess", "batch", "infer", "unbatch", "encode")

# Wraps one stage: given its name and function, returns the function to call instead.
StageWrapper = Callable[[str, Callable[..., Any]], Callable[..., Any]]


@dataclass(frozen=True)
class Prediction:
    """The network's answer for one image."""

    digit: int
    confidence: float
    probabilities: list[float]


def batch(prepared: Sequence[PreparedDigit]) -> np.ndarray:
    """Prepared uploads -> one input batch, in their order."""
    return np.stack([item.model_input for item in prepared])


def infer(classifier: DigitClassifier, inputs: np.ndarray) -> np.ndarray:
    """One run of the network over a batch: class probabilities, a row per input."""
    return classifier.predict(inputs)


def unbatch(probabilities: np.ndarray) -> list[Prediction]:
    """A batch's probabilities -> one ``Prediction`` per input, in order."""
    return [prediction_from(row) for row in probabilities]


def prediction_from(probabilities: np.ndarray) -> Prediction:
    """The digit, its confidence and all ten probabilities from one output row."""
    digit = int(probabilities.argmax())
    return Prediction(
        digit=digit,
        confidence=float(probabilities[digit]),
        probabilities=[round(float(p), 6) for p in probabilities],
    )


def encode(prediction: Prediction, prepared: PreparedDigit | None = None) -> dict[str, object]:
    """The JSON body for a prediction; with ``prepared``, also the 28x28 model input."""
    body: dict[str, object] = {
        "prediction": prediction.digit,
        "confidence": round(prediction.confidence, 6),
        "probabilities": prediction.probabilities,
    }
    if prepared is not None:
        body["input_image"] = png_data_url(prepared.image)
    return body


def png_data_url(image: np.ndarray) -> str:
    """A uint8 grayscale array as a ``data:image/png;base64,...`` URL."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG")
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
        self.unbatch = wrap("unbatch", unbatch)
        self.encode = wrap("encode", encode)

    def prepare(self, data: bytes) -> PreparedDigit:
        """decode -> preprocess for one upload; raises its ``PreprocessError``."""
        return self.preprocess(self.decode(data, self.max_pixels, self.limits))

    def predict(self, classifier: DigitClassifier,
                prepared: Sequence[PreparedDigit]) -> list[Prediction]:
        """batch -> infer -> unbatch for prepared uploads, through the network as one batch
        (with other requests' inputs too, when dynamic batching is on)."""
        if not prepared:
            return []
        if self.batcher is not None:
            return self.batcher.submit(classifier, prepared)
        return self.predict_now(classifier, prepared)

    def predict_now(self, classifier: DigitClassifier,
                    prepared: Sequence[PreparedDigit]) -> list[Prediction]:
        """batch -> infer -> unbatch, at once, for exactly these inputs."""
        return self.unbatch(self.infer(classifier, self.batch(prepared)))

    def run(self, classifier: DigitClassifier, uploads: Sequence[bytes],
            include_input: bool = False) -> list[Outcome]:
        """Every upload through the whole chain; each outcome in the order sent.

        An upload that cannot be read gets its ``PreprocessError`` as its outcome
        and the others are still answered.
        """
        outcomes: list[Outcome | PreparedDigit] = []
        for data in uploads:
            try:
                outcomes.append(self.prepare(data))
            except PreprocessError as error:
                outcomes.append(error)
        prepared = [item for item in outcomes if isinstance(item, PreparedDigit)]
        predictions = iter(self.predict(classifier, prepared))
        return [
            self.encode(next(predictions), item if include_input else None)
            if isinstance(item, PreparedDigit) else item
            for item in outcomes
        ]
