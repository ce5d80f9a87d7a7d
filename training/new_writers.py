"""Held-out digits as new writers might send them: what the plain held-out digits cannot tell.

The held-out digits share writers with the training digits, so their accuracy
flatters the network. Here each held-out digit is varied harder than any
training digit was (``HARSH``: stronger elastic distortion, more slant and
rotation, thicker and thinner strokes, more blur, lower resolutions, flatter
pens), with random numbers of their own (``NEW_WRITER_SEED``), and sent as an
upload: dark ink on paper of a random shade and size, with a little noise, as
a PNG file. The service's own chain reads it (``Chain.prepare``), as
``/predict`` would.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from training.augment import AugmentationRanges, vary_digit

# Harsher than training's AugmentationRanges in every respect.
HARSH = AugmentationRanges(
    degrees=18.0, shift=2.0, scale=(0.75, 1.2), shear=24.0, stroke=0.9,
    elastic_alpha=45.0, elastic_sigma=4.0, blur=1.4, blur_share=0.35,
    low_resolution=(8, 14), low_resolution_share=0.25, flat_pen=4.0, flat_pen_share=0.3,
)
# Training seeds its variations with (seed, epoch, digit); these are drawn apart.
NEW_WRITER_SEED = 2003
# Uploads are this many pixels on a side, at random.
UPLOAD_SIZES = (28, 240)


def generator_for(index: int, seed: int = NEW_WRITER_SEED) -> torch.Generator:
    """The random numbers of held-out digit ``index``'s variation."""
    entropy = np.random.SeedSequence([seed, 0xBEEF, index])
    return torch.Generator().manual_seed(int(entropy.generate_state(1, np.uint64)[0]))


def as_upload(varied: np.ndarray, rng: np.random.Generator) -> bytes:
    """A varied digit (white on black, 28x28) as a PNG of dark ink on paper."""
    size = int(rng.integers(*UPLOAD_SIZES))
    ink = Image.fromarray(varied).resize((size, size), Image.Resampling.BICUBIC)
    coverage = np.asarray(ink, dtype=np.float32) / 255.0
    paper, pen = float(rng.integers(200, 256)), float(rng.integers(0, 90))
    page = paper + coverage * (pen - paper)
    page += rng.standard_normal(page.shape).astype(np.float32) * float(rng.uniform(0.0, 3.0))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.round(page), 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def new_writer_upload(digit: np.ndarray, index: int, seed: int = NEW_WRITER_SEED) -> bytes:
    """Held-out digit ``index`` varied harshly and rendered as an upload's bytes."""
    varied = vary_digit(digit, generator_for(index, seed), HARSH)
    return as_upload(varied, np.random.default_rng([seed, index]))
