"""The one chain every prediction goes through.

    decode -> preprocess -> segment -> batch -> infer -> unbatch -> read -> encode

The JSON API, the no-JavaScript page, the batch tool and the benchmarks all
call it. Each stage is a small function that can be tested alone (decode is
``imaging.decode.decode_upload``, preprocess ``imaging.ink.locate_ink``, which
finds the ink map, segment ``imaging.segment.segment``, which finds the
candidate digits in it and prepares each). ``Chain`` runs them in order and lets
its owner wrap every stage from outside (timing, metrics) through ``wrap``, so
the stages themselves only do their one job. None of it knows HTTP.

    prepare(data)                decode -> preprocess -> segment, one upload at a time
    predict(classifier, ps)      batch -> infer -> unbatch, prepared digits at once
    read_numbers(classifier, ss) every upload's candidates through predict as one batch,
                                 then read: the digits each upload's number is made of
    run(classifier, uploads)     all of it, then encode; an upload that fails keeps its
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
from imaging.ink import locate_ink
from imaging.normalise import PreparedDigit
from imaging.segment import Segmentation, choose, segment, single_digit
from model import DigitClassifier
from serving.batching import DynamicBatcher

STAGES = ("decode", "preprocess", "segment", "batch", "infer", "unbatch", "read", "encode")

# Wraps one stage: given its name and function, returns the function to call instead.
StageWrapper = Callable[[str, Callable[..., Any]], Callable[..., Any]]


@dataclass(frozen=True)
class Prediction:
    """The network's answer for one image."""

    digit: int
    confidence: float
    probabilities: list[float]


@dataclass(frozen=True)
class ReadDigit:
    """One digit of an upload's number: the network's answer, its input and its box."""

    prediction: Prediction
    prepared: PreparedDigit
    box: tuple[int, int, int, int]  # left, top, right, bottom in the upright upload's pixels


@dataclass(frozen=True)
class Reading:
    """The digits an upload was read as, left to right (at least one)."""

    digits: list[ReadDigit]

    @property
    def number(self) -> str:
        return "".join(str(digit.prediction.digit) for digit in self.digits)

    @property
    def surest(self) -> ReadDigit:
        """The digit the network is most sure of (the leftmost of equals)."""
        return max(self.digits, key=lambda digit: digit.prediction.confidence)


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


def read(segmentation: Segmentation, predictions: Sequence[Prediction]) -> Reading:
    """The digits of one upload: the candidates ``choose`` keeps, given the network's
    answer for each candidate of ``segmentation`` (in its order)."""
    confidences = [prediction.confidence for prediction in predictions]
    return Reading([
        ReadDigit(predictions[index], segmentation.candidates[index].prepared,
                  segmentation.candidates[index].box)
        for index in choose(segmentation, confidences)
    ])


def encode(reading: Reading, include_input: bool = False) -> dict[str, object]:
    """The JSON body for an upload's reading.

    ``prediction``, ``confidence`` and ``probabilities`` (and with
    ``include_input`` the 28x28 model input) describe the digit the network is
    surest of, which for one digit is the digit; ``digits`` lists every digit
    left to right with its box, and ``number`` spells them.
    """
    surest = reading.surest
    body: dict[str, object] = {
        "prediction": surest.prediction.digit,
        "confidence": round(surest.prediction.confidence, 6),
        "probabilities": surest.prediction.probabilities,
    }
    if include_input:
        body["input_image"] = png_data_url(surest.prepared.image)
    body["digits"] = [
        {"value": digit.prediction.digit, "confidence": round(digit.prediction.confidence, 6),
         "box": list(digit.box)}
        for digit in reading.digits
    ]
    body["number"] = reading.number
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
    and share one run of the network. With ``numbers=False`` the segment stage
    reads every upload as one digit (its whole ink), as the service did before
    it read numbers; the benchmarks compare the two.
    """

    def __init__(self, max_pixels: int = DEFAULT_MAX_PIXELS, wrap: StageWrapper = unwrapped,
                 limits: DecodeLimits = DEFAULT_LIMITS, batch_delay: float | None = None,
                 max_batch: int = 32, numbers: bool = True) -> None:
        if max_pixels <= 0:
            raise ValueError(f"max_pixels must be a positive pixel count, not {max_pixels}")
        self.max_pixels = max_pixels
        self.limits = limits
        self.batcher = (DynamicBatcher(self.predict_now, max_batch, batch_delay)
                        if batch_delay is not None else None)
        self.decode = wrap("decode", decode_upload)
        self.preprocess = wrap("preprocess", locate_ink)
        self.segment = wrap("segment", segment if numbers else single_digit)
        self.batch = wrap("batch", batch)
        self.infer = wrap("infer", infer)
        self.unbatch = wrap("unbatch", unbatch)
        self.read = wrap("read", read)
        self.encode = wrap("encode", encode)

    def prepare(self, data: bytes) -> Segmentation:
        """decode -> preprocess -> segment for one upload; raises its ``PreprocessError``."""
        return self.segment(self.preprocess(self.decode(data, self.max_pixels, self.limits)))

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

    def read_numbers(self, classifier: DigitClassifier,
                     segmentations: Sequence[Segmentation]) -> list[Reading]:
        """Every candidate digit of every upload through the network as one batch, then
        each upload's reading, in order."""
        prepared = [c.prepared for s in segmentations for c in s.candidates]
        predictions = self.predict(classifier, prepared)
        readings, start = [], 0
        for segmentation in segmentations:
            end = start + len(segmentation.candidates)
            readings.append(self.read(segmentation, predictions[start:end]))
            start = end
        return readings

    def run(self, classifier: DigitClassifier, uploads: Sequence[bytes],
            include_input: bool = False) -> list[Outcome]:
        """Every upload through the whole chain; each outcome in the order sent.

        An upload that cannot be read gets its ``PreprocessError`` as its outcome
        and the others are still answered.
        """
        outcomes: list[Outcome | Segmentation] = []
        for data in uploads:
            try:
                outcomes.append(self.prepare(data))
            except PreprocessError as error:
                outcomes.append(error)
        segmentations = [item for item in outcomes if isinstance(item, Segmentation)]
        readings = iter(self.read_numbers(classifier, segmentations))
        return [
            self.encode(next(readings), include_input) if isinstance(item, Segmentation)
            else item
            for item in outcomes
        ]
