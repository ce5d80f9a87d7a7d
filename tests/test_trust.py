"""Calibrated confidence, "not sure" / "not a digit", and explanations, through the API."""

import base64
import io
import json

import numpy as np
import pytest
from helpers import encode_image, paper_digit, upload
from PIL import Image

import folder_paths
from imaging.normalise import to_model_input
from imaging.preprocess import normalise_digit
from model import DigitClassifier, card_path, softmax
from serving.explain import occlusion_map
from serving.trust import REASONS, NonDigitHead, TrustPolicy, packed, unpacked
from training.calibrate import expected_calibration_error, fit_temperature
from training.nondigits import KINDS, nondigit_pictures
from training.trust_report import auroc, fpr_at_tpr

WEIGHTS = folder_paths.get_full_path("weights", "model.pt")
# Kinds drawn without fonts, from the sets never used to fit the head.
DRAWN = ("shapes", "scribbles", "textures", "objects")


@pytest.fixture(scope="module")
def classifier():
    return DigitClassifier(WEIGHTS, "cpu", "onnx-int8")


def png_of(data_url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix):])))


def test_the_card_records_the_temperature_and_the_probabilities_use_it(classifier,
                                                                      heldout_digits):
    card = json.loads(card_path(WEIGHTS).read_text())
    assert classifier.temperature == card["temperature"] != 1.0
    # fitted to the held-out digits' likelihood, it leaves confidence meaning what it says to
    # within a percent (15-bin ECE)
    assert card["ece_15_bins"]["after"] < 0.01
    images, _ = heldout_digits
    batch = np.stack([to_model_input(normalise_digit(image)) for image in images[:50]])
    outputs = classifier.run(batch)
    np.testing.assert_allclose(outputs.probabilities,
                               softmax(outputs.logits / card["temperature"]), atol=1e-6)
    np.testing.assert_allclose(classifier.predict(batch), outputs.probabilities)


def test_fit_temperature_finds_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (4000, 10))
    true_temperature = 2.5
    labels = np.array([rng.choice(10, p=p) for p in softmax(logits / true_temperature)])
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.1)
    scaled = softmax(logits / fit_temperature(logits, labels))
    assert expected_calibration_error(scaled, labels) < expected_calibration_error(
        softmax(logits), labels)


def test_expected_calibration_error_of_known_cases():
    always_right = np.eye(10)[[1, 2, 3]]
    assert expected_calibration_error(always_right, np.array([1, 2, 3])) == 0.0
    half_sure = np.full((4, 10), 0.5 / 9)
    half_sure[:, 0] = 0.5
    assert expected_calibration_error(half_sure, np.array([0, 0, 1, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(half_sure, np.array([1, 1, 1, 1])) == pytest.approx(0.5)


def test_auroc_and_fpr_at_tpr_of_known_cases():
    assert auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auroc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert auroc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5
    positives, negatives = np.arange(100, 200.0), np.arange(0, 150.0)
    assert fpr_at_tpr(positives, negatives) == pytest.approx(45 / 150)


def test_packed_arrays_come_back_exactly():
    values = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float32)
    assert np.array_equal(unpacked(json.loads(json.dumps(packed(values)))), values)


def test_a_card_without_trust_is_never_uncertain_and_a_broken_head_is_refused():
    assert TrustPolicy.from_card({}) == TrustPolicy()
    card = json.loads(card_path(WEIGHTS).read_text())
    head = card["trust"]["non_digit"]
    assert isinstance(NonDigitHead.from_card(head), NonDigitHead)
    with pytest.raises(ValueError, match="fit together"):
        NonDigitHead.from_card({**head, "output_weights": packed(np.zeros(3))})


def test_held_out_digits_are_answered_without_doubt(client, heldout_digits):
    images, labels = heldout_digits
    # All of them: the head is set to flag about 1% of digits, which a few dozen cannot show.
    bodies = [upload(client, encode_image(paper_digit(image))).get_json() for image in images]
    right = sum(b["prediction"] == label for b, label in zip(bodies, labels, strict=True))
    assert right >= 0.99 * len(bodies)
    assert sum(b["uncertain"] for b in bodies) <= 0.01 * len(bodies)
    assert all("reason" not in b for b in bodies if not b["uncertain"])


@pytest.mark.parametrize("kind", DRAWN)
def test_drawn_non_digits_are_answered_not_a_digit(client, kind):
    pictures = nondigit_pictures(kind, 10, "measure")
    bodies = [upload(client, encode_image(picture)).get_json() for picture in pictures]
    flagged = [b["reason"] for b in bodies if b["uncertain"]]
    assert len(flagged) >= 7, bodies
    assert set(flagged) <= set(REASONS)
    assert flagged.count("not_a_digit") >= 7


def test_the_fitting_and_measuring_sets_share_no_picture():
    fit = nondigit_pictures("shapes", 5, "fit")
    measure = nondigit_pictures("shapes", 5, "measure")
    assert not any(np.array_equal(np.asarray(a), np.asarray(b)) for a in fit for b in measure)
    assert set(KINDS) >= set(DRAWN)


def test_explain_adds_a_heatmap_over_the_ink_only_when_asked(client, heldout_digits):
    data = encode_image(paper_digit(heldout_digits[0][7]))
    plain = upload(client, data, query="?input_image=1").get_json()
    explained = upload(client, data, query="?input_image=1&explain=1").get_json()
    assert "explanation" not in plain
    assert {k: v for k, v in explained.items() if k != "explanation"} == plain
    heatmap = png_of(explained["explanation"])
    assert heatmap.size == (28, 28) and heatmap.mode == "RGBA"
    alpha = np.asarray(heatmap)[..., 3]
    ink = np.asarray(png_of(plain["input_image"])) > 0
    assert alpha[ink].mean() > 4 * max(alpha[~ink].mean(), 1.0)


def test_occlusion_finds_the_pixels_that_carry_the_answer(classifier, heldout_digits):
    images, labels = heldout_digits
    digit = normalise_digit(images[5])
    change = occlusion_map(classifier, to_model_input(digit), int(labels[5]))
    assert change.shape == (28, 28)
    assert np.abs(change[digit == 0]).mean() < np.abs(change[digit > 0]).mean()
    assert change.max() > 0.0
