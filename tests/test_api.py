import base64
import io
import json
import struct
import zipfile
import zlib

import numpy as np
import pytest
from helpers import encode_image, paper_digit, upload
from PIL import Image
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from web import multipart
from web.errors import ERROR_CODES


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"status", "code", "message"}
    assert body["error"]["status"] == status
    assert body["error"]["code"] == code
    assert ERROR_CODES[code][0] == status
    assert body["error"]["message"]
    assert "Traceback" not in response.get_data(as_text=True)


def test_predict_answers_prediction_confidence_and_probabilities(client, heldout_digits):
    images, labels = heldout_digits
    response = upload(client, encode_image(paper_digit(images[0])))
    assert response.status_code == 200
    body = response.get_json()
    assert isinstance(body["prediction"], int)
    assert body["prediction"] == labels[0]
    assert isinstance(body["confidence"], float)
    assert len(body["probabilities"]) == 10
    assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert body["confidence"] == max(body["probabilities"])
    assert "input_image" not in body


def test_an_upload_as_clients_send_it_is_cut_at_its_delimiters(client, heldout_digits,
                                                               monkeypatch):
    """The usual body never reaches python-multipart's slower parser (``web/multipart.py``)."""
    def slower_parser(*_args):
        raise AssertionError("read by python-multipart")

    monkeypatch.setattr(multipart, "parts_by_python_multipart", slower_parser)
    images, labels = heldout_digits
    response = upload(client, encode_image(paper_digit(images[1])))
    assert response.status_code == 200
    assert response.get_json()["prediction"] == labels[1]


def test_predict_can_return_the_model_input(client, heldout_digits):
    images, _ = heldout_digits
    body = upload(client, encode_image(paper_digit(images[3])), query="?input_image=1").get_json()
    prefix = "data:image/png;base64,"
    assert body["input_image"].startswith(prefix)
    picture = Image.open(io.BytesIO(base64.b64decode(body["input_image"][len(prefix):])))
    assert picture.size == (28, 28)
    assert picture.mode == "L"


@pytest.mark.parametrize("paper", [True, False], ids=["black-on-white", "white-on-black"])
def test_held_out_digits_are_recognised(client, heldout_digits, paper):
    images, labels = heldout_digits
    right = 0
    for image, label in zip(images, labels, strict=True):
        picture = paper_digit(image) if paper else Image.fromarray(image, mode="L")
        response = upload(client, encode_image(picture))
        assert response.status_code == 200
        right += response.get_json()["prediction"] == label
    assert right / len(labels) >= 0.97


def canvas_export(digit: np.ndarray, stroke: tuple[int, int, int]) -> Image.Image:
    """A transparent canvas with the digit drawn in ``stroke`` colour."""
    alpha = Image.fromarray(digit, mode="L").resize((280, 280), Image.Resampling.BICUBIC)
    canvas = Image.new("RGBA", (280, 280), (*stroke, 0))
    canvas.putalpha(alpha)
    return canvas


@pytest.mark.parametrize("stroke", [(0, 0, 0), (255, 255, 255), (20, 40, 200)],
                         ids=["dark", "white", "blue"])
def test_transparent_canvas_keeps_its_ink(client, heldout_digits, stroke):
    images, labels = heldout_digits
    right = sum(
        upload(client, encode_image(canvas_export(image, stroke))).get_json()["prediction"] == label
        for image, label in zip(images[::10], labels[::10], strict=True)
    )
    assert right / len(labels[::10]) >= 0.95


def test_missing_file_part(client):
    assert_error(client.post("/predict", data={}), 400, "missing_file")
    assert_error(client.post("/predict", data={"other": (io.BytesIO(b"x"), "a.png")},
                             content_type="multipart/form-data"), 400, "missing_file")
    assert_error(client.post("/predict", data=b"raw", content_type="image/png"), 400,
                 "missing_file")


def test_empty_filename(client):
    assert_error(upload(client, b"", filename=""), 400, "empty_filename")


@pytest.mark.parametrize("data", [b"", b"hello, I am text", b"\x89PNG\r\n\x1a\n" + b"\0" * 20])
def test_bytes_that_are_not_an_image(client, data):
    assert_error(upload(client, data), 400, "not_an_image")


@pytest.mark.parametrize("format", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_truncated_images(client, heldout_digits, format):
    data = encode_image(paper_digit(heldout_digits[0][0]), format)
    assert_error(upload(client, data[: len(data) // 2]), 400, "not_an_image")


def test_body_over_the_limit_is_413(make_app):
    client = make_app(MAX_CONTENT_LENGTH=1000).test_client()
    assert_error(upload(client, b"\0" * 5000), 413, "payload_too_large")


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels."""
    data = encode_image(Image.new("L", (1, 1)))
    header = struct.pack(">II", width, height) + data[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return data[:16] + header + crc + data[33:]


def test_decompression_bomb_is_413(client):
    assert_error(upload(client, png_claiming_size(100_000, 100_000)), 413, "image_too_large")


def test_pixel_limit_is_configurable(make_app, heldout_digits):
    client = make_app(MAX_IMAGE_PIXELS=1000).test_client()
    assert_error(upload(client, encode_image(paper_digit(heldout_digits[0][0]))), 413,
                 "image_too_large")


@pytest.mark.parametrize("shade", [0, 128, 255])
def test_blank_images_have_no_digit(client, shade):
    assert_error(upload(client, encode_image(Image.new("L", (200, 200), shade))), 422,
                 "no_digit_found")


def test_wrong_method(client):
    assert_error(client.get("/predict"), 405, "method_not_allowed")
    assert_error(client.put("/predict"), 405, "method_not_allowed")


def test_unknown_path_is_json_404(client):
    assert_error(client.get("/nowhere"), 404, "not_found")


def zip_file() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("digit.png", b"not really")
    return buffer.getvalue()


HOSTILE_FILES = {
    "text.png": b"just some text pretending to be a PNG\n",
    "vector.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                  b'<circle cx="5" cy="5" r="4"/></svg>',
    "document.pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n"
                    b"trailer << /Root 1 0 R >>\n%%EOF",
    "archive.zip": zip_file(),
    "script.png": b"<script>alert(1)</script>",
    "html.gif": b"GIF89a<html></html>",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_hostile_files_are_refused_and_the_server_still_answers(client, heldout_digits, name):
    assert_error(upload(client, HOSTILE_FILES[name], filename=name), 400, "not_an_image")
    images, labels = heldout_digits
    response = upload(client, encode_image(paper_digit(images[7])))
    assert response.status_code == 200
    assert response.get_json()["prediction"] == labels[7]


def test_model_endpoint_describes_the_loaded_model(client):
    body = client.get("/model").get_json()
    assert body["architecture"]
    assert len(body["sha256"]) == 64
    assert body["device"] == "cpu"
    assert body["accuracy"] >= 0.985
    assert "CC BY-SA 3.0" in body["data_credit"]
    assert json.dumps(body)


# Several images in one request


def post_files(client, files: list[tuple[bytes, str]], query: str = ""):
    """POST every (data, filename) as a ``file`` part of one multipart body."""
    fields = MultiDict(("file", FileStorage(io.BytesIO(data), name)) for data, name in files)
    boundary, body = encode_multipart(fields)
    return client.post(f"/predict{query}", data=body,
                       content_type=f"multipart/form-data; boundary={boundary}")


def test_several_files_answer_results_in_the_order_sent(client, heldout_digits):
    images, labels = heldout_digits
    picks = [3, 120, 260, 499]
    response = post_files(client, [(encode_image(paper_digit(images[i])), f"{i}.png")
                                   for i in picks])
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["prediction"] for r in results] == [labels[i] for i in picks]
    assert all(len(r["probabilities"]) == 10 and "input_image" not in r for r in results)


def test_one_bad_file_among_several_gets_its_own_error(client, heldout_digits):
    images, labels = heldout_digits
    blank = encode_image(Image.new("L", (40, 40), 255))
    response = post_files(client, [(encode_image(paper_digit(images[7])), "good.png"),
                                   (b"not an image", "bad.png"), (blank, "blank.png"),
                                   (encode_image(paper_digit(images[8])), "")],
                          query="?input_image=1")
    assert response.status_code == 200
    good, bad, empty, unnamed = response.get_json()["results"]
    assert good["prediction"] == labels[7] and good["input_image"].startswith("data:image/png")
    assert bad == {"error": {"status": 400, "code": "not_an_image",
                             "message": bad["error"]["message"]}}
    assert empty["error"]["code"] == "no_digit_found" and empty["error"]["status"] == 422
    assert unnamed["error"]["code"] == "empty_filename"


def test_one_file_answers_exactly_as_before(client, heldout_digits):
    images, _ = heldout_digits
    data = encode_image(paper_digit(images[9]))
    assert post_files(client, [(data, "one.png")]).get_json() == upload(client, data).get_json()


def test_more_files_than_the_limit_is_413(make_app, heldout_digits):
    client = make_app(MAX_FILES=3).test_client()
    data = encode_image(paper_digit(heldout_digits[0][0]))
    assert post_files(client, [(data, "x.png")] * 3).status_code == 200
    assert_error(post_files(client, [(data, "x.png")] * 4), 413, "too_many_files")


def test_a_full_batch_goes_through_the_network_once(app, heldout_digits, monkeypatch):
    images, labels = heldout_digits
    classifier = app.extensions["model_slot"].current
    batches = []
    run = classifier.run
    monkeypatch.setattr(classifier, "run", lambda batch: batches.append(len(batch))
                        or run(batch))
    files = [(encode_image(paper_digit(images[i])), f"{i}.png") for i in range(0, 320, 5)]
    results = post_files(app.test_client(), files).get_json()["results"]
    # Every candidate digit of every file in one run; a second, smaller one only for the
    # pieces of a lone digit the network doubted (serving.chain.Chain.read_numbers).
    assert batches[0] >= 64 and len(batches) <= 2
    assert np.mean([r["prediction"] for r in results] == labels[0:320:5]) >= 0.95
