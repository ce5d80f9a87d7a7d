"""The model's side of a prediction request: infer -> encode.

A request reads as decode -> preprocess -> infer -> encode: ``preprocess.py``
turns upload bytes into the model's input (``preprocess.preprocess``), and the
functions here run the network and shape its answer. None of them knows
HTTP, so the web app, the batch tool and the tests all share them.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from model import DigitClassifier
from preprocess import PreparedDigit


@dataclass(frozen=True)
class Prediction:
    """The network's answer for one image."""

    digit: int
    confidence: float
    probabilities: list[float]


def infer(classifier: DigitClassifier, inputs: list[torch.Tensor]) -> list[Prediction]:
    """Run the network once on a batch of prepared inputs."""
    probabilities = classifier.predict(torch.stack(inputs))
    return [prediction_from(row) for row in probabilities]


def prediction_from(probabilities: torch.Tensor) -> Prediction:
    """The digit, its confidence and all ten probabilities from one output row."""
    digit = int(probabilities.argmax())
    return Prediction(
        digit=digit,
        confidence=float(probabilities[digit]),
        probabilities=[round(float(p), 6) for p in probabilities],
    )


def png_data_url(image: np.ndarray) -> str:
    """A uint8 grayscale array as a ``data:image/png;base64,...`` URL."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def encode_prediction(
    prediction: Prediction, prepared: PreparedDigit | None = None
) -> dict[str, object]:
    """The JSON body for a prediction; with ``prepared``, also the 28x28 model input."""
    body: dict[str, object] = {
        "prediction": prediction.digit,
        "confidence": round(prediction.confidence, 6),
        "probabilities": prediction.probabilities,
    }
    if prepared is not None:
        body["input_image"] = png_data_url(prepared.image)
    return body
