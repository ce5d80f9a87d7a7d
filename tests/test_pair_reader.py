"""The pair reader: its files checked against its card, and two touching digits read whole."""

import json
import shutil

import numpy as np
import pytest
from helpers import encode_image
from synthetic_numbers import INK_LEVEL, NUMBER_KINDS, make_number

import folder_paths
from app import create_app
from imaging.normalise import prepare_ink
from imaging.pairs import PAIR_SHAPE, pair_input, pair_picture
from imaging.segment import Candidate, Pair, Segmentation, Shape, choose
from model import DigitClassifier, WeightsError, card_path, onnx_path
from runtime.files import file_sha256
from runtime.pair_reader import PAIR_WEIGHTS, PairReader
from serving.chain import Chain, prediction_from, read
from serving.pair_digits import PairDigits
from training import pairs
from training.nondigits import nondigit_pictures
from training.touching import coverage_of, first_touch

WEIGHTS = folder_paths.get_full_path("weights", PAIR_WEIGHTS)
# Numbers of two to four digits with a touching pair, per kind, and how many of the
# 16 must be read entirely right (below what the benchmark measures; see the README).
TOUCHING_PER_KIND = 4
TOUCHING_RIGHT = 12
# Drawings per kind, and how many more of them may be read as a number with the reader.
DRAWINGS = 20
DRAWINGS_SLACK = 1


@pytest.fixture(scope="module")
def reader():
    return PairReader(WEIGHTS)


def touching_pair(first: np.ndarray, second: np.ndarray, height: int = 50) -> np.ndarray:
    """Two held-out digits side by side, their strokes just touching, as an ink map."""
    left, right = coverage_of(first, height), coverage_of(second, height)
    step = first_touch(left, right, 0, 0)
    width = max(left.shape[1], left.shape[1] + step + right.shape[1])
    line = np.zeros((height, width + max(0, -step)), dtype=np.float32)
    line[:, : left.shape[1]] = left
    start = left.shape[1] + step
    np.maximum(line[:, start : start + right.shape[1]], right,
               out=line[:, start : start + right.shape[1]])
    return np.where(line >= INK_LEVEL, line, 0) * 255


def test_the_card_records_both_files(reader):
    card = json.loads(card_path(WEIGHTS).read_text())
    assert card["sha256"] == file_sha256(WEIGHTS)
    assert card["onnx_sha256"] == file_sha256(onnx_path(WEIGHTS))
    assert reader.card.onnx_sha256 == card["onnx_sha256"]


def test_a_changed_onnx_file_is_refused(tmp_path):
    for path in (WEIGHTS, onnx_path(WEIGHTS), card_path(WEIGHTS)):
        shutil.copy(path, tmp_path / path.name)
    changed = tmp_path / onnx_path(WEIGHTS).name
    changed.write_bytes(changed.read_bytes() + b"\0")
    with pytest.raises(WeightsError, match="sha256"):
        PairReader(tmp_path / WEIGHTS.name)


def test_a_missing_reader_leaves_numbers_to_cutting(tmp_path, caplog):
    assert PairDigits("no-such-reader.pt").read([np.zeros(PAIR_SHAPE, np.float32)]) is None
    assert "without the pair reader" in caplog.text


def test_the_service_loads_its_pair_reader_before_the_first_request():
    app = create_app({"TESTING": True, "DEVICE": "cpu", "TORCH_THREADS": 1})
    assert app.extensions["chain"].pair_digits.reader is not None


def test_the_input_is_the_pair_fitted_and_centred(heldout_all):
    images, _ = heldout_all
    ink = touching_pair(images[0], images[500])
    picture = pair_picture(ink)
    rows, cols = np.flatnonzero(picture.any(axis=1)), np.flatnonzero(picture.any(axis=0))
    assert picture.shape == PAIR_SHAPE[1:]
    assert rows[-1] - rows[0] + 1 <= 21 and cols[-1] - cols[0] + 1 <= 49
    assert abs((rows[0] + rows[-1]) / 2 - 13.5) <= 1 and abs((cols[0] + cols[-1]) / 2 - 27.5) <= 1
    assert pair_input(ink).shape == PAIR_SHAPE


def test_touching_held_out_pairs_are_read(reader, heldout_all):
    # Digits the reader never saw, in pairs composed otherwise than its training pairs.
    images, labels = heldout_all
    rng = np.random.default_rng(5)
    chosen = rng.choice(len(images), size=(60, 2))
    inputs = np.stack([pair_input(touching_pair(images[a], images[b])) for a, b in chosen])
    left, right = reader.run(inputs)
    both = (left.argmax(1) == labels[chosen[:, 0]]) & (right.argmax(1) == labels[chosen[:, 1]])
    assert both.mean() >= 0.85


def test_single_digits_are_mostly_no_pair(reader, heldout_all):
    images, _ = heldout_all
    inputs = np.stack([pair_input(coverage_of(images[i], 50) * 255)
                       for i in range(3, 1000, 25)])
    left, right = reader.run(inputs)
    assert ((left.argmax(1) == 10) & (right.argmax(1) == 10)).mean() >= 0.8


def two_slices_and_a_pair() -> Segmentation:
    """A group cut into two slices: each slice, the whole and the pair as candidates."""
    prepared = prepare_ink(np.full((8, 6), 255.0, dtype=np.float32))
    candidates = [Candidate(prepared, (0, 0, 5, 10), 0, 1, Shape(0.5, 1.0)),
                  Candidate(prepared, (5, 0, 10, 10), 1, 2, Shape(0.5, 1.0)),
                  Candidate(prepared, (0, 0, 10, 10), 0, 2, Shape(1.0, 1.0))]
    ink = np.full((10, 10), 255.0, dtype=np.float32)
    return Segmentation(candidates, 2, pairs=(Pair(ink, (0, 0, 10, 10), 0, 2),))


def test_a_pair_read_surely_beats_slices_read_doubtfully():
    segmentation = two_slices_and_a_pair()
    assert choose(segmentation, [0.6, 0.6, 0.3], pair_confidences=[(0.99, 0.98)]) == [3]
    assert choose(segmentation, [0.6, 0.6, 0.3], pair_confidences=[(0.3, 0.2)]) == [0, 1]
    assert choose(segmentation, [0.6, 0.6, 0.3]) == [0, 1]


def test_a_chosen_pair_is_two_digits_with_boxes_side_by_side():
    segmentation = two_slices_and_a_pair()
    row = np.zeros(10)
    left, right = row.copy(), row.copy()
    left[3], right[8] = 0.99, 0.97
    pair = tuple(prediction_from(r) for r in (left, right))
    reading = read(segmentation, [prediction_from(np.eye(10)[1] * 0.5)] * 3, [pair])
    assert reading.number == "38"
    (l0, t0, r0, b0), (l1, t1, r1, b1) = (d.box for d in reading.digits)
    assert (l0, t0, b0) == (0, 0, 10) and r0 == l1 and (r1, t1, b1) == (10, 0, 10)


@pytest.fixture(scope="module")
def onnx_classifier():
    return DigitClassifier(folder_paths.get_full_path("weights", "model.pt"), "cpu", "onnx")


def test_numbers_with_a_touching_pair_are_read_better_with_the_reader(onnx_classifier,
                                                                     heldout_all):
    images, labels = heldout_all
    rng = np.random.default_rng(77)
    numbers = [make_number(kind, images, labels, rng, length=int(rng.integers(2, 5)),
                           touching=True) for kind in [*NUMBER_KINDS] * TOUCHING_PER_KIND]
    uploads = [n.data for n in numbers]
    paired = [b["number"] for b in Chain().run(onnx_classifier, uploads)]
    cut = [b["number"] for b in Chain(pair_digits=PairDigits(enabled=False)).run(
        onnx_classifier, uploads)]
    right = sum(r == n.number for r, n in zip(paired, numbers, strict=True))
    before = sum(r == n.number for r, n in zip(cut, numbers, strict=True))
    assert right >= TOUCHING_RIGHT and right > before, (right, before)


@pytest.mark.parametrize("kind", ["textures", "objects", "scribbles"])
def test_drawings_are_not_made_numbers_by_the_reader(onnx_classifier, kind):
    uploads = [encode_image(p) for p in nondigit_pictures(kind, DRAWINGS, "measure")]
    paired = Chain().run(onnx_classifier, uploads)
    cut = Chain(pair_digits=PairDigits(enabled=False)).run(onnx_classifier, uploads)
    numbers = sum(len(b["number"]) > 1 for b in paired)
    assert numbers <= sum(len(b["number"]) > 1 for b in cut) + DRAWINGS_SLACK


@pytest.mark.slow  # training runs
def test_training_writes_a_reader_the_service_loads_the_same_every_time(monkeypatch, tmp_path):
    fixture = folder_paths.get_full_path("tests", "fixtures/heldout_digits.npz")
    monkeypatch.setenv(folder_paths.BASE_PATH_ENV, str(tmp_path))
    for name in ("a.pt", "b.pt"):
        pairs.main(["--data", str(fixture), "--pairs", "96", "--validation-pairs", "16",
                    "--epochs", "1", "--out", name])
    first, second = (folder_paths.get_full_path("weights", n) for n in ("a.pt", "b.pt"))
    assert file_sha256(first) == file_sha256(second)
    card = json.loads(card_path(first).read_text())
    assert card["training_examples"] == 96 and card["architecture"] == "pair-conv"
    left, right = PairReader(first).run(np.zeros((2, *PAIR_SHAPE), dtype=np.float32))
    assert left.shape == right.shape == (2, 11)
