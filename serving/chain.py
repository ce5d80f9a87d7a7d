"""The one chain every prediction goes through.

    decode -> preprocess -> segment -> batch -> infer -> assess -> unbatch -> read
           -> [explain] -> encode

The JSON API, the no-JavaScript page, the batch tool and the benchmarks all
call it. Each stage is a small function that can be tested alone (decode is
``imaging.decode.decode_upload``, preprocess ``imaging.ink.locate_ink``, which
finds the ink map, segment ``imaging.segment.segment``, which finds the
candidate digits in it and prepares each, assess ``serving.trust.assess``;
explain, run only when asked for, is ``serving.explain``). ``Chain`` runs them
in order and lets its owner wrap every stage from outside (timing, metrics)
through ``wrap``, so the stages themselves only do their one job. None of it
knows HTTP.

    prepare(data)                decode -> preprocess -> segment, one upload at a time
    predict(classifier, ps)      batch -> infer -> assess -> unbatch, prepared digits at once
    read_numbers(classifier, ss) every upload's candidates through predict as one batch,
                                 then read: the digits each upload's number is made of
    run(classifier, uploads)     all of it, then (explain and) encode; an upload that fails
                                 keeps its own error
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
from imaging.segment import (
    Segmentation,
    choose,
    cut_lone,
    pairs_to_read,
    segment,
    single_digit,
)
from model import DigitClassifier, NetworkOutputs
from serving.batching import DynamicBatcher
from serving.explain import heatmap_image, occlusion_map
from serving.pair_digits import PairDigits
from serving.trust import SURE, Doubt, assess_outputs, policy_of

# The stages every prediction goes through, in order; "explain" runs before "encode" when asked.
STAGES = ("decode", "preprocess", "segment", "batch", "infer", "assess", "unbatch", "read",
          "encode")

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
    non_digit: float | None = None  # the non-digit head's margin (serving.trust.Doubt)


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
        non_digit=doubt.non_digit,
    )


DECIMALS = 6  # probabilities are answered to six decimals
BELOW_ONE = 1 - 10**-DECIMALS


def honestly_rounded(probability: float) -> float:
    """``probability`` to ``DECIMALS`` decimals, but never rounded up to a certainty it is not:
    anything below 1 stays below 1."""
    rounded = round(probability, DECIMALS)
    return BELOW_ONE if rounded >= 1.0 and probability < 1.0 else rounded


def read(segmentation: Segmentation, predictions: Sequence[Prediction],
         pairs: Sequence[tuple[Prediction, Prediction]] | None = None) -> Reading:
    """The digits of one upload: the candidates ``choose`` keeps, given the network's
    answer for each candidate of ``segmentation`` (in its order): its confidence and how
    much the non-digit head doubts it is a digit at all; and the pair reader's answers
    for its ``pairs``, where read."""
    confidences = [prediction.confidence for prediction in predictions]
    non_digit = [prediction.non_digit for prediction in predictions]
    doubted = [prediction.uncertain for prediction in predictions]
    pair_confidences = (None if pairs is None else
                        [(left.confidence, right.confidence) for left, right in pairs])
    digits = []
    count = len(segmentation.candidates)
    for index in choose(segmentation, confidences, non_digit, doubted, pair_confidences):
        if index < count:
            candidate = segmentation.candidates[index]
            digits.append(ReadDigit(predictions[index], candidate.prepared, candidate.box))
            continue
        assert pairs is not None
        halves = segmentation.pairs[index - count].halves()
        digits += [ReadDigit(prediction, prepared, box) for prediction, (prepared, box)
                   in zip(pairs[index - count], halves, strict=True)]
    return Reading(digits)


def pair_predictions(classifier: DigitClassifier, probabilities: np.ndarray
                     ) -> list[tuple[Prediction, Prediction]]:
    """The pair reader's two digits per pair (``serving.pair_digits``), each doubted, as the
    network's are, when its confidence is below the network's card's bound."""
    bound = policy_of(classifier).low_confidence_below
    low = Doubt(True, "low_confidence")
    return [tuple(prediction_from(row, low if row.max() < bound else SURE) for row in pair)
            for pair in probabilities]


def explain(classifier: DigitClassifier, prepared: PreparedDigit,
            prediction: Prediction) -> str:
    """Which input pixels pushed the answer, as a PNG data URL (``serving.explain``)."""
    change = occlusion_map(classifier, prepared.model_input, prediction.digit)
    return png_data_url(heatmap_image(change))


def encode(reading: Reading, include_input: bool = False,
           explanation: str | None = None) -> dict[str, object]:
    """The JSON body for an upload's reading.

    ``prediction``, ``confidence`` and ``probabilities`` (and with
    ``include_input`` the 28x28 model input, with ``explanation`` the heatmap of
    what pushed the answer) describe the digit the network is surest of, which
    for one digit is the digit; ``uncertain`` (and ``reason``) says whether any
    digit read is in doubt. ``digits`` lists every digit left to right with its
    box and its own doubt, and ``number`` spells them.
    """
    surest = reading.surest.prediction
    doubted = next((digit.prediction for digit in reading.digits
                    if digit.prediction.uncertain), None)
    body: dict[str, object] = {
        "prediction": surest.digit,
        "confidence": honestly_rounded(surest.confidence),
        "probabilities": surest.probabilities,
        "uncertain": doubted is not None,
    }
    if doubted is not None:
        body["reason"] = doubted.reason
    if include_input:
        body["input_image"] = png_data_url(reading.surest.prepared.image)
    if explanation is not None:
        body["explanation"] = explanation
    body["digits"] = [digit_body(digit) for digit in reading.digits]
    body["number"] = reading.number
    return body


def digit_body(digit: ReadDigit) -> dict[str, object]:
    """One digit of a number: its value, confidence, box and (when in doubt) why."""
    body: dict[str, object] = {"value": digit.prediction.digit,
                               "confidence": honestly_rounded(digit.prediction.confidence),
                               "box": list(digit.box), "uncertain": digit.prediction.uncertain}
    if digit.prediction.uncertain:
        body["reason"] = digit.prediction.reason
    return body


def png_data_url(image: np.ndarray | Image.Image) -> str:
    """A uint8 grayscale array (or a Pillow image) as a ``data:image/png;base64,...`` URL."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image, mode="L")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def split_by(items: Sequence[Any], counts: Sequence[int]) -> list[list[Any]]:
    """``items`` in consecutive runs of ``counts[0]``, ``counts[1]``, ... items, in order:
    one batch's answers handed back to the uploads whose inputs it held."""
    runs, start = [], 0
    for count in counts:
        runs.append(list(items[start:start + count]))
        start += count
    return runs


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
                 max_batch: int = 32, numbers: bool = True,
                 pair_digits: PairDigits | None = None) -> None:
        if max_pixels <= 0:
            raise ValueError(f"max_pixels must be a positive pixel count, not {max_pixels}")
        self.max_pixels = max_pixels
        self.limits = limits
        self.batcher = (DynamicBatcher(self.predict_now, max_batch, batch_delay)
                        if batch_delay is not None else None)
        self.pair_digits = pair_digits or PairDigits()
        self.decode = wrap("decode", decode_upload)
        self.preprocess = wrap("preprocess", locate_ink)
        self.segment = wrap("segment", segment if numbers else single_digit)
        self.cut_lone = wrap("segment", cut_lone)
        self.batch = wrap("batch", batch)
        self.infer = wrap("infer", infer)
        self.assess = wrap("assess", assess)
        self.unbatch = wrap("unbatch", unbatch)
        self.explain = wrap("explain", explain)
        self.read = wrap("read", read)
        self.encode = wrap("encode", encode)

    def prepare(self, data: bytes) -> Segmentation:
        """decode -> preprocess -> segment for one upload; raises its ``PreprocessError``."""
        return self.segment(self.preprocess(self.decode(data, self.max_pixels, self.limits)))

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

    def read_numbers(self, classifier: DigitClassifier,
                     segmentations: Sequence[Segmentation]) -> list[Reading]:
        """Every candidate digit of every upload through the network as one batch, then
        each upload's reading, in order.

        Ink read whole whose reading the network doubts, and that is wide enough for two
        digits, is cut after all (``cut_lone``) and its pieces read in a second batch:
        the digits read without doubt, most uploads, cost nothing more.
        """
        prepared = [c.prepared for s in segmentations for c in s.candidates]
        predictions = self.predict(classifier, prepared)
        answers = list(zip(segmentations, split_by(
            predictions, [len(s.candidates) for s in segmentations]), strict=True))
        doubted = [index for index, (segmentation, (whole, *_)) in enumerate(answers)
                   if segmentation.uncut is not None and whole.uncertain]
        if doubted:
            finer = [self.cut_lone(answers[index][0]) for index in doubted]
            pieces = self.predict(classifier, [c.prepared for s in finer
                                               for c in s.candidates[1:]])
            # the first candidate of each is the whole ink, already read
            for index, segmentation, more in zip(
                    doubted, finer, split_by(pieces, [len(s.candidates) - 1 for s in finer]),
                    strict=True):
                answers[index] = (segmentation, [answers[index][1][0], *more])
        pairs = self.read_pairs(classifier, answers)
        return [self.read(segmentation, found, paired)
                for (segmentation, found), paired in zip(answers, pairs, strict=True)]

    def read_pairs(self, classifier: DigitClassifier,
                   answers: Sequence[tuple[Segmentation, Sequence[Prediction]]]
                   ) -> list[list[tuple[Prediction, Prediction]] | None]:
        """The pair reader's two digits for every pair of every upload worth reading
        (``pairs_to_read``, given the network's answers), as one batch; None for an
        upload with none, or where there is no pair reader."""
        wanted = [pairs_to_read(segmentation, found[0].non_digit)
                  for segmentation, found in answers]
        to_read = [segmentation for (segmentation, _), want in zip(answers, wanted, strict=True)
                   if want]
        inputs = [pair.model_input for segmentation in to_read for pair in segmentation.pairs]
        probabilities = self.pair_digits.read(inputs) if inputs else None
        if probabilities is None:
            return [None] * len(answers)
        runs = iter(split_by(pair_predictions(classifier, probabilities),
                             [len(segmentation.pairs) for segmentation in to_read]))
        return [next(runs) if want else None for want in wanted]

    def run(self, classifier: DigitClassifier, uploads: Sequence[bytes],
            include_input: bool = False, explained: bool = False) -> list[Outcome]:
        """Every upload through the whole chain; each outcome in the order sent.

        An upload that cannot be read gets its ``PreprocessError`` as its outcome
        and the others are still answered. ``explained`` adds each answer's heatmap.
        """
        outcomes: list[Outcome | Segmentation] = []
        for data in uploads:
            try:
                outcomes.append(self.prepare(data))
            except PreprocessError as error:
                outcomes.append(error)
        segmentations = [item for item in outcomes if isinstance(item, Segmentation)]
        readings = iter(self.read_numbers(classifier, segmentations))
        answers: list[Outcome] = []
        for item in outcomes:
            if not isinstance(item, Segmentation):
                answers.append(item)
                continue
            reading = next(readings)
            explanation = (self.explain(classifier, reading.surest.prepared,
                                        reading.surest.prediction) if explained else None)
            answers.append(self.encode(reading, include_input, explanation))
        return answers
