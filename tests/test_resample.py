"""``lanczos_resize`` against Pillow's own LANCZOS resize, whose weights it reproduces."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from imaging.normalise import MATRIX_MAX_SIDE, REDUCING_GAP, fit_to_box, reduces_first
from imaging.resample import lanczos_resize, lanczos_weights


def pillow_lanczos(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    source = Image.fromarray(image.astype(np.float32), mode="F")
    return np.asarray(source.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP))


def ink_like(seed: int, height: int, width: int) -> np.ndarray:
    """Values of 0 to 255, half of them paper (0), as an ink map has."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 255, (height, width)).astype(np.float32)
    values[rng.random((height, width)) < 0.5] = 0.0
    return values


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(1, MATRIX_MAX_SIDE),
       width=st.integers(1, MATRIX_MAX_SIDE), new_height=st.integers(1, 96),
       new_width=st.integers(1, 96))
def test_lanczos_resize_gives_pillows_values(seed, height, width, new_height, new_width):
    image = ink_like(seed, height, width)
    size = (new_width, new_height)
    if reduces_first(image.shape, size):
        return  # Pillow averages down by a whole factor first; fit_to_box leaves those to it
    ours, pillows = lanczos_resize(image, size), pillow_lanczos(image, size)
    assert ours.shape == pillows.shape and ours.dtype == np.float32
    # The same weights, added in another order: float32's last place at 255.
    np.testing.assert_allclose(ours, pillows, rtol=0, atol=1e-4)


def test_fit_to_box_gives_the_same_model_pixels_as_pillow_on_small_ink():
    for seed in range(200):
        rng = np.random.default_rng(seed)
        height, width = (int(side) for side in rng.integers(1, MATRIX_MAX_SIDE + 1, 2))
        image = ink_like(seed, height, width)
        for box in (20, 80):
            scale = box / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            expected = np.clip(pillow_lanczos(image, size), 0, 255)
            np.testing.assert_array_equal(np.round(fit_to_box(image, box)), np.round(expected))


def test_an_unchanged_axis_is_left_alone_and_weights_sum_to_one():
    image = ink_like(1, 20, 16)
    np.testing.assert_array_equal(lanczos_resize(image, (16, 20)), image)
    for in_size, out_size in ((20, 80), (80, 20), (7, 20), (33, 12)):
        weights = lanczos_weights(in_size, out_size)
        assert weights.shape == (out_size, in_size)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0)
