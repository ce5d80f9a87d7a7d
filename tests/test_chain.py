"""The request chain's stages, each alone, and the chain that runs them."""

import numpy as np
import pytest
from helpers import encode_image, paper_digit

import folder_paths
from imaging.errors import NoDigitError, NotAnImageError
from imaging.normalise import INPUT_SHAPE, PreparedDigit, to_model_input
from imaging.preprocess import normalise_digit
from model import DigitClassifier
from serving import chain
from serving.chain import STAGES, Chain, Prediction

WEIGHTS = folder_paths.get_full_path("weights", "model.pt")


@pytest.fixture(scope="module")
def classifier():
    return DigitClassifier(WEIGHTS, "cpu", "eager")


@pytest.fixture(scope="module")
def prepared(heldout_digits):
    images, _ = heldout_digits
    return [Chain().prepare(encode_image(paper_digit(image))) for image in images[:3]]


def test_batch_stacks_prepared_inputs_in_order(prepared):
    inputs = chain.batch(prepared)
    assert inputs.shape == (3, *INPUT_SHAPE)
    assert np.array_equal(inputs[2], prepared[2].model_input)


def test_unbatch_gives_one_prediction_per_row():
    rows = np.array([[0.1] * 9 + [0.1], [0.0] * 3 + [1.0] + [0.0] * 6], dtype=np.float32)
    first, second = chain.unbatch(rows)
    one_hot = [0.0] * 3 + [1.0] + [0.0] * 6
    assert second == Prediction(digit=3, confidence=1.0, probabilities=one_hot)
    assert first.digit == 0 and len(first.probabilities) == 10


def test_encode_adds_the_model_input_only_when_asked(prepared):
    prediction = Prediction(digit=7, confidence=0.9876543, probabilities=[0.1] * 10)
    assert chain.encode(prediction) == {"prediction": 7, "confidence": 0.987654,
                                        "probabilities": [0.1] * 10}
    with_input = chain.encode(prediction, prepared[0])
    assert with_input["input_image"].startswith("data:image/png;base64,")


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
