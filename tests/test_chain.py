"""The request chain's stages, each alone, and the chain that runs them."""

import numpy as np
import pytest
from helpers import encode_image, paper_digit

import folder_paths
from imaging.errors import NoDigitError, NotAnImageError
from imaging.normalise import INPUT_SHAPE, PreparedDigit, to_model_input
from imaging.preprocess import normalise_digit
from model import DigitClassifier, NetworkOutputs
from serving import chain
from serving.chain import STAGES, Chain, Prediction, ReadDigit, Reading
from serving.trust import Doubt

WEIGHTS = folder_paths.get_full_path("weights", "model.pt")


@pytest.fixture(scope="module")
def classifier():
    return DigitClassifier(WEIGHTS, "cpu", "eager")


@pytest.fixture(scope="module")
def prepared(heldout_digits):
    images, _ = heldout_digits
    segmentations = [Chain().prepare(encode_image(paper_digit(image))) for image in images[:3]]
    assert all(len(s.candidates) == 1 for s in segmentations)  # one digit: one candidate
    return [s.candidates[0].prepared for s in segmentations]


def test_batch_stacks_prepared_inputs_in_order(prepared):
    inputs = chain.batch(prepared)
    assert inputs.shape == (3, *INPUT_SHAPE)
    assert np.array_equal(inputs[2], prepared[2].model_input)


def test_unbatch_gives_one_prediction_per_row_with_its_doubt():
    rows = np.array([[0.1] * 9 + [0.1], [0.0] * 3 + [1.0] + [0.0] * 6], dtype=np.float32)
    outputs = NetworkOutputs(logits=rows, probabilities=rows, features=None)
    first, second = chain.unbatch(outputs, [Doubt(True, "low_confidence"), Doubt(False)])
    one_hot = [0.0] * 3 + [1.0] + [0.0] * 6
    assert second == Prediction(digit=3, confidence=1.0, probabilities=one_hot)
    assert first.digit == 0 and len(first.probabilities) == 10
    assert first.uncertain and first.reason == "low_confidence"


def test_encode_adds_the_model_input_only_when_asked(prepared):
    prediction = Prediction(digit=7, confidence=0.9876543, probabilities=[0.1] * 10)
    reading = Reading([ReadDigit(prediction, prepared[0], (3, 4, 50, 60))])
    assert chain.encode(reading) == {"prediction": 7, "confidence": 0.987654,
                                     "probabilities": [0.1] * 10, "uncertain": False,
                                     "number": "7",
                                     "digits": [{"value": 7, "confidence": 0.987654,
                                                 "box": [3, 4, 50, 60], "uncertain": False}]}
    with_input = chain.encode(reading, include_input=True)
    assert with_input["input_image"].startswith("data:image/png;base64,")


def test_encode_gives_the_reason_only_when_uncertain(prepared):
    doubtful = Prediction(digit=1, confidence=0.4, probabilities=[0.1] * 10, uncertain=True,
                          reason="not_a_digit")
    body = chain.encode(Reading([ReadDigit(doubtful, prepared[0], (0, 0, 5, 5))]))
    assert body["uncertain"] is True and body["reason"] == "not_a_digit"
    assert body["digits"][0]["reason"] == "not_a_digit"
    sure = chain.encode(Reading([ReadDigit(Prediction(7, 0.99, [0.1] * 10), prepared[0],
                                           (0, 0, 5, 5))]))
    assert "reason" not in sure and "reason" not in sure["digits"][0]


def test_a_number_is_uncertain_when_any_of_its_digits_is(prepared):
    sure = Prediction(digit=1, confidence=0.99, probabilities=[0.001] * 10)
    doubtful = Prediction(digit=4, confidence=0.45, probabilities=[0.04] * 10, uncertain=True,
                          reason="low_confidence")
    body = chain.encode(Reading([ReadDigit(sure, prepared[0], (0, 0, 10, 20)),
                                 ReadDigit(doubtful, prepared[1], (12, 0, 20, 20))]))
    assert (body["prediction"], body["uncertain"], body["reason"]) == (1, True, "low_confidence")
    assert [d["uncertain"] for d in body["digits"]] == [False, True]


def test_encode_describes_the_surest_digit_at_the_top(prepared):
    unsure = Prediction(digit=4, confidence=0.6, probabilities=[0.04] * 10)
    sure = Prediction(digit=1, confidence=0.99, probabilities=[0.001] * 10)
    reading = Reading([ReadDigit(unsure, prepared[0], (0, 0, 10, 20)),
                       ReadDigit(sure, prepared[1], (12, 0, 20, 20))])
    body = chain.encode(reading, include_input=True)
    assert (body["prediction"], body["confidence"]) == (1, 0.99)
    assert body["input_image"] == chain.png_data_url(prepared[1].image)
    assert body["number"] == "41"
    assert [d["box"] for d in body["digits"]] == [[0, 0, 10, 20], [12, 0, 20, 20]]


def test_predict_answers_what_the_network_answers_on_the_same_batch(classifier, heldout_digits):
    images, labels = heldout_digits
    digits = [normalise_digit(image) for image in images[:20]]
    prepared = [PreparedDigit(model_input=to_model_input(d), image=d) for d in digits]
    predictions = Chain().predict(classifier, prepared)
    expected = classifier.predict(np.stack([p.model_input for p in prepared])).argmax(axis=1)
    assert [p.digit for p in predictions] == expected.tolist()
    assert np.mean([p.digit for p in predictions] == labels[:20]) >= 0.95


def test_run_keeps_the_order_and_gives_a_failed_upload_its_own_error(classifier, heldout_digits):
    images, labels = heldout_digits
    blank = encode_image(paper_digit(np.zeros((28, 28), dtype=np.uint8)))
    uploads = [encode_image(paper_digit(images[0])), b"not an image", blank,
               encode_image(paper_digit(images[1]))]
    first, broken, empty, last = Chain().run(classifier, uploads)
    assert first["prediction"] == labels[0] and last["prediction"] == labels[1]
    assert isinstance(broken, NotAnImageError)
    assert isinstance(empty, NoDigitError)


def test_run_of_nothing_but_failures_never_calls_the_network():
    class NoNetwork:
        def predict(self, batch):
            raise AssertionError("the network ran on an empty batch")

    (outcome,) = Chain().run(NoNetwork(), [b"junk"])
    assert isinstance(outcome, NotAnImageError)


def test_every_stage_is_wrapped_from_outside(classifier, heldout_digits):
    calls: list[str] = []

    def record(name, stage):
        def wrapped(*args, **kwargs):
            calls.append(name)
            return stage(*args, **kwargs)
        return wrapped

    images, _ = heldout_digits
    Chain(wrap=record).run(classifier, [encode_image(paper_digit(images[0]))])
    assert calls == list(STAGES)


def test_chain_refuses_a_pixel_limit_that_is_not_positive():
    with pytest.raises(ValueError, match="positive"):
        Chain(max_pixels=0)
