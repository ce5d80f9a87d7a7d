"""Uploads as people send them, read through /predict the way MNIST digits were made.

Every kind in ``synthetic_uploads.UPLOAD_KINDS`` is made from held-out digits
and sent to ``/predict?input_image=1``: the answer must name the digit, and
the 28x28 picture the model saw must look like an MNIST digit.
"""

import base64
import io
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from helpers import encode_image, paper_digit, upload
from PIL import Image
from synthetic_uploads import (
    UPLOAD_KINDS,
    blank_photo,
    canvas_export,
    coloured_ink,
    encode_upload,
    make_upload,
    phone_photo,
)

from app import create_app

# Kind k reads the held-out digits k % SUBSETS, + SUBSETS, + 2 * SUBSETS, ...:
# 100 digits, ten of each class, a different hundred for neighbouring kinds.
SUBSETS = 5
KIND_ACCURACY = 0.95
OVERALL_ACCURACY = 0.98
DATA_URL_PREFIX = "data:image/png;base64,"


@dataclass(frozen=True)
class Answer:
    index: int  # of the digit in the held-out fixture
    label: int
    prediction: int
    picture: np.ndarray  # the 28x28 model input, from the answer's input_image


@pytest.fixture(scope="module")
def upload_client():
    threads = torch.get_num_threads()
    # One image at a time runs fastest on one thread; more only contend for the cores.
    yield create_app({"TESTING": True, "DEVICE": "cpu", "TORCH_THREADS": 1}).test_client()
    torch.set_num_threads(threads)


def picture_from(data_url: str) -> np.ndarray:
    assert data_url.startswith(DATA_URL_PREFIX)
    picture = Image.open(io.BytesIO(base64.b64decode(data_url[len(DATA_URL_PREFIX):])))
    assert picture.mode == "L"
    return np.asarray(picture)


def ask(client, data: bytes, index: int, label: int) -> Answer:
    response = upload(client, data, query="?input_image=1")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    return Answer(index, label, body["prediction"], picture_from(body["input_image"]))


@pytest.fixture(scope="module")
def answers(upload_client, heldout_digits) -> dict[str, list[Answer]]:
    images, labels = heldout_digits
    found: dict[str, list[Answer]] = {}
    for number, kind in enumerate(UPLOAD_KINDS):
        rng = np.random.default_rng(number)
        found[kind] = [
            ask(upload_client, make_upload(kind, images[index], rng), index, labels[index])
            for index in range(number % SUBSETS, len(images), SUBSETS)
        ]
    return found


def accuracy(answers: list[Answer]) -> float:
    return sum(answer.prediction == answer.label for answer in answers) / len(answers)


def misread(answers: list[Answer]) -> list[tuple[int, int, int]]:
    """(fixture index, label, prediction) of every digit read wrong."""
    return [(a.index, a.label, a.prediction) for a in answers if a.prediction != a.label]


def assert_mnist_shaped(picture: np.ndarray) -> None:
    """White ink on black, the digit's box at most 20x20, its mass on pixel (14, 14)."""
    assert picture.shape == (28, 28) and picture.dtype == np.uint8
    assert np.median(picture) == 0 and picture.max() >= 200
    rows, cols = np.flatnonzero(picture.any(axis=1)), np.flatnonzero(picture.any(axis=0))
    assert rows[-1] - rows[0] < 20 + 1 and cols[-1] - cols[0] < 20 + 1
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 >= 18  # and nearly fills it
    row_of, col_of = np.indices(picture.shape)
    mass = picture.astype(float) / picture.sum()
    assert abs((row_of * mass).sum() - 14) <= 1 and abs((col_of * mass).sum() - 14) <= 1


@pytest.mark.parametrize("kind", sorted(UPLOAD_KINDS))
def test_each_kind_of_upload_is_read_right(answers, kind):
    assert accuracy(answers[kind]) >= KIND_ACCURACY, misread(answers[kind])


def test_all_kinds_together_are_read_right(answers):
    together = [answer for kind_answers in answers.values() for answer in kind_answers]
    assert len(together) == len(UPLOAD_KINDS) * 100
    assert accuracy(together) >= OVERALL_ACCURACY, {k: misread(a) for k, a in answers.items()}


@pytest.mark.parametrize("kind", sorted(UPLOAD_KINDS))
def test_each_kind_becomes_an_mnist_shaped_picture(answers, kind):
    for answer in answers[kind]:
        assert_mnist_shaped(answer.picture)


@pytest.mark.parametrize("seed", range(10, 13))
def test_a_photo_of_blank_paper_is_answered_422(upload_client, seed):
    photo = blank_photo(np.random.default_rng(seed))
    response = upload(upload_client, encode_upload(photo, "JPEG", quality=80), "paper.jpg")
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "no_digit_found"
    assert "no digit" in response.get_json()["error"]["message"]


def test_a_full_size_phone_photo_is_read(upload_client, heldout_digits):
    images, labels = heldout_digits
    for index in (0, 350):
        photo = phone_photo(images[index], np.random.default_rng(index))
        photo = photo.resize((4000, 3000), Image.Resampling.BICUBIC)
        answer = ask(upload_client, encode_upload(photo, "JPEG", quality=90), index, labels[index])
        assert answer.prediction == answer.label
        assert_mnist_shaped(answer.picture)


# Every mode and format: the first held-out digit of each class, stored as a
# person's file would hold it in that mode.


def one_bit(digit: np.ndarray) -> Image.Image:
    return paper_digit(digit).convert("1", dither=Image.Dither.NONE)


def paletted_with_transparency(digit: np.ndarray) -> Image.Image:
    """Dark strokes in 16 shades; palette entry 0 is the transparent background."""
    shades = np.asarray(canvas_export(digit, (0, 0, 0)).getchannel("A")) // 16
    image = Image.fromarray(shades.astype(np.uint8), mode="L").convert("P")
    image.putpalette([channel for shade in range(16) for channel in (255 - 17 * shade,) * 3])
    image.info["transparency"] = 0
    return image


def sixteen_bit(digit: np.ndarray) -> Image.Image:
    return Image.fromarray(np.asarray(paper_digit(digit), np.uint16) * 257)


def thirty_two_bit(digit: np.ndarray) -> Image.Image:
    return Image.fromarray(np.asarray(paper_digit(digit), np.int32) * 257)


def floating(digit: np.ndarray) -> Image.Image:
    return Image.fromarray(np.asarray(paper_digit(digit), np.float32) / 255)


def coloured(digit: np.ndarray) -> Image.Image:
    return coloured_ink(digit, np.random.default_rng(int(digit.sum())))


MODE_MAKERS = {
    "1": one_bit,
    "L": paper_digit,
    "LA": lambda digit: canvas_export(digit, (0, 0, 0)).convert("LA"),
    "P": paletted_with_transparency,
    "P-opaque": lambda digit: coloured(digit).quantize(32),
    "RGB": coloured,
    "RGBA": lambda digit: canvas_export(digit, (20, 40, 200)),
    "RGBA-white": lambda digit: canvas_export(digit, (255, 255, 255)),
    "CMYK": lambda digit: coloured(digit).convert("CMYK"),
    "I;16": sixteen_bit,
    "I": thirty_two_bit,
    "F": floating,
}

MODES_BY_FORMAT = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "RGBA-white", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "GIF": ["P"],
    "BMP": ["1", "L", "P-opaque", "RGB"],
    "TIFF": ["1", "L", "LA", "P-opaque", "RGB", "RGBA", "CMYK", "I;16", "I", "F"],
    "WEBP": ["RGB", "RGBA", "RGBA-white"],
}


@pytest.mark.parametrize(("format", "mode"), [(format, mode) for format, modes in
                                              MODES_BY_FORMAT.items() for mode in modes])
def test_every_mode_in_every_format_is_read_right(upload_client, heldout_digits, format, mode):
    images, labels = heldout_digits
    read = []
    for index in range(0, len(images), len(images) // 10):
        data = encode_image(MODE_MAKERS[mode](images[index]), format)
        assert Image.open(io.BytesIO(data)).mode == mode.split("-")[0]
        answer = ask(upload_client, data, index, labels[index])
        assert_mnist_shaped(answer.picture)
        read.append(answer)
    assert accuracy(read) >= 0.9, misread(read)
