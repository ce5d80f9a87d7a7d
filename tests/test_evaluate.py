import json
import shutil

import numpy as np
import pytest
from PIL import Image

import folder_paths
from imaging.preprocess import normalise_digit
from model import card_path
from serving.chain import Chain
from training import evaluate, new_writers

WEIGHTS = folder_paths.get_full_path("weights", "model.pt")
ALL_HELD_OUT = folder_paths.get_full_path("tests", "fixtures/heldout_all.npz")


def test_wilson_interval_matches_known_values():
    assert evaluate.wilson_interval(50, 100) == pytest.approx((0.40383, 0.59617), abs=1e-5)
    assert evaluate.wilson_interval(993, 1000) == pytest.approx((0.98562, 0.99661), abs=1e-5)
    low, high = evaluate.wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.27753, abs=1e-5)
    with pytest.raises(ValueError):
        evaluate.wilson_interval(0, 0)


def test_the_cards_held_out_accuracy_is_reproduced(capsys):
    """All 1,000 held-out digits, exactly as training measured them for the card."""
    card = json.loads(card_path(WEIGHTS).read_text())
    accuracy = evaluate.main(["--digits", str(ALL_HELD_OUT), "--no-new-writers"])
    assert accuracy.total == card["validation_digits"] == 1000
    assert accuracy.correct == card["validation_correct"]
    assert round(accuracy.value, 4) == card["validation_accuracy"]
    assert accuracy.value >= 0.993
    low, high = accuracy.interval
    assert low < accuracy.value < high
    assert "95% Wilson interval" in capsys.readouterr().out


def test_new_writer_uploads_are_reproducible_and_unlike_the_plain_digit(heldout_digits):
    images, _ = heldout_digits
    chain = Chain(numbers=False)  # read as one digit, as training reads it
    for index in (0, 123, 321):
        data = new_writers.new_writer_upload(images[index], index)
        assert data == new_writers.new_writer_upload(images[index], index)
        assert data != new_writers.new_writer_upload(images[index], index + 1)
        picture = chain.prepare(data).candidates[0].prepared.image
        assert picture.max() >= 200
        assert not np.array_equal(picture, normalise_digit(images[index]))


def test_evaluate_compares_weights_and_draws_its_figures(monkeypatch, tmp_path, heldout_digits,
                                                         capsys):
    images, labels = heldout_digits
    digits = tmp_path / "digits.npz"
    np.savez(digits, images=images[::10], labels=labels[::10])
    (tmp_path / "weights").mkdir()
    for path in folder_paths.get_folder("weights").glob("model.*"):
        if path.suffix != ".png":
            shutil.copy(path, tmp_path / "weights" / path.name)
    monkeypatch.setenv(folder_paths.BASE_PATH_ENV, str(tmp_path))
    card_before = json.loads((tmp_path / "weights" / "model.json").read_text())
    accuracy = evaluate.main(["--digits", str(digits), "--weights", "model.pt", "model.pt",
                              "--figures", "--record"])
    out = capsys.readouterr().out
    assert accuracy.total == 50
    assert out.count("new-writer estimate") == 2 and out.count("95% Wilson interval") == 4
    for kind in ("confusion", "mistakes"):
        with Image.open(tmp_path / "weights" / f"model.{kind}.png") as figure:
            assert figure.format == "PNG" and min(figure.size) > 300
    card = json.loads((tmp_path / "weights" / "model.json").read_text())
    estimate = card.pop("new_writer_estimate")
    assert estimate["total"] == 50 and 0 <= estimate["correct"] <= 50
    low, high = card.pop("validation_wilson_95")
    assert low < accuracy.value <= high
    for field in ("new_writer_estimate", "validation_wilson_95"):
        card_before.pop(field, None)
    assert card == card_before  # every other field kept


def test_confusion_counts_every_answer_once_with_refusals_apart():
    answers = evaluate.Answers(labels=np.array([1, 1, 2, 3]), answers=np.array([1, 7, 2, -1]),
                               confidences=np.ones(4), pictures=np.zeros((4, 28, 28), np.uint8))
    matrix = evaluate.confusion(answers)
    assert matrix.sum() == 4 and matrix[1, 1] == 1 and matrix[1, 7] == 1 and matrix[3, 10] == 1
    assert answers.accuracy.correct == 2 and list(answers.wrong) == [1, 3]
