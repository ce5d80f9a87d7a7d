"""Which pixels of the 28x28 model input pushed the answer: occlusion on the served network.

Each 4x4 patch of the input (every 2 pixels, 169 of them) is blanked to the
background in its own copy, all copies go through the network as one batch,
and each pixel gets the mean fall, over the patches covering it, of the
answer's margin: its logit less the largest other logit (the probability
itself hardly moves when the network is sure, the margin does). Positive
where the ink supported the answer, negative where it spoke against it; the
picture scales the strongest pixel to full colour. It runs on whatever backend serves (the int8 ONNX
file by default), so it explains exactly the network that answered, without
torch (integrated gradients would need torch's gradients in every worker).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from imaging.normalise import FIELD_SIZE, MNIST_MEAN, MNIST_STD
from model import DigitClassifier

PATCH = 4  # side of the blanked square, in input pixels
STRIDE = 2  # patches start every STRIDE pixels, so neighbours overlap
BACKGROUND = np.float32(-MNIST_MEAN / MNIST_STD)  # an empty pixel, normalised
STARTS = range(0, FIELD_SIZE - PATCH + 1, STRIDE)


def occlusion_map(classifier: DigitClassifier, model_input: np.ndarray, digit: int) -> np.ndarray:
    """(28, 28) float: per pixel, how much the margin of ``digit`` falls without it."""
    corners = [(top, left) for top in STARTS for left in STARTS]
    copies = np.repeat(model_input[None], len(corners) + 1, axis=0)
    for index, (top, left) in enumerate(corners, start=1):
        copies[index, 0, top : top + PATCH, left : left + PATCH] = BACKGROUND
    logits = classifier.run(copies).logits.astype(np.float64)
    others = np.delete(logits, digit, axis=1).max(axis=1)
    margin = logits[:, digit] - others
    change = margin[0] - margin[1:]
    total = np.zeros((FIELD_SIZE, FIELD_SIZE), dtype=np.float32)
    covered = np.zeros_like(total)
    for value, (top, left) in zip(change, corners, strict=True):
        total[top : top + PATCH, left : left + PATCH] += value
        covered[top : top + PATCH, left : left + PATCH] += 1.0
    return total / covered


def heatmap_image(change: np.ndarray) -> Image.Image:
    """The map as a 28x28 RGBA picture: red where a pixel pushed towards the answer, blue
    where it pushed away, more opaque the more it mattered (the strongest fully)."""
    strength = np.abs(change) / max(float(np.abs(change).max()), 1e-12)
    rgba = np.zeros((*change.shape, 4), dtype=np.uint8)
    rgba[..., 0] = np.where(change > 0, 230, 30)
    rgba[..., 1] = np.where(change > 0, 40, 110)
    rgba[..., 2] = np.where(change > 0, 40, 230)
    rgba[..., 3] = np.round(255 * np.sqrt(strength)).astype(np.uint8)
    return Image.fromarray(rgba, mode="RGBA")
