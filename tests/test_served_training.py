"""Training feeds the network exactly what the service makes of an upload.

``imaging.preprocess.normalise_digit`` (training, evaluation) must give, pixel
for pixel, the 28x28 picture that a held-out digit uploaded as a 28x28
grayscale PNG becomes in the request chain and in ``/predict``'s answer.
"""

import base64
import io

import numpy as np
from helpers import encode_image, upload
from PIL import Image

from imaging.preprocess import normalise_digit
from serving.chain import Chain

DATA_URL_PREFIX = "data:image/png;base64,"


def test_normalise_digit_is_the_chains_picture_of_a_28x28_upload(heldout_digits):
    images, _ = heldout_digits
    chain = Chain(numbers=False)  # read as one digit, as training reads it
    for digit in images:
        served = chain.prepare(encode_image(Image.fromarray(digit))).candidates[0].prepared.image
        assert np.array_equal(normalise_digit(digit), served)


def test_normalise_digit_is_what_predict_shows_it_saw(client, heldout_digits):
    images, _ = heldout_digits
    for digit in images[::50]:
        body = upload(client, encode_image(Image.fromarray(digit)), query="?input_image=1")
        url = body.get_json()["input_image"]
        assert url.startswith(DATA_URL_PREFIX)
        seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(url[len(DATA_URL_PREFIX):]))))
        assert np.array_equal(normalise_digit(digit), seen)
