"""Whole numbers: each digit found, read in one batch, boxed in the upload's pixels."""

import io

import numpy as np
import pytest
from helpers import encode_image, paper_digit, upload
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from synthetic_numbers import NUMBER_KINDS, edit_distance, make_number
from synthetic_uploads import encode_upload, exif_rotated
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

import folder_paths
from app import create_app
from imaging.decode import decode_upload
from imaging.ink import InkMap, locate_ink
from imaging.normalise import ink_bounds, prepare_ink
from imaging.preprocess import preprocess_image
from imaging.segment import (
    Candidate,
    Segmentation,
    Shape,
    choose,
    cut_lone,
    frame_of,
    label_components,
    segment,
    underline_of,
)
from model import DigitClassifier
from serving.chain import Chain

# Numbers per kind in the small set the tests read (the benchmark reads hundreds).
PER_KIND = 10
# Floors for that small set, below what the benchmark measures on its large one
# (see the README) so that retrained weights do not trip them by chance.
NUMBER_ACCURACY = 0.8
DIGIT_ACCURACY = 0.95


@pytest.fixture(scope="module")
def number_client():
    return create_app({"TESTING": True, "DEVICE": "cpu", "TORCH_THREADS": 1}).test_client()


def page_with(digits: list[np.ndarray], lefts: list[int], top: int = 40,
              scale: int = 3) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """Black digits on white paper at the given left edges, and each digit's ink box."""
    page = Image.new("L", (max(lefts) + 28 * scale + 60, 28 * scale + 2 * top), 255)
    boxes = []
    for digit, left in zip(digits, lefts, strict=True):
        ink = Image.fromarray(digit, mode="L").resize((28 * scale, 28 * scale),
                                                       Image.Resampling.BICUBIC)
        page.paste(Image.new("L", ink.size, 0), (left, top), ink)
        x0, y0, x1, y1 = ink.getbbox()
        boxes.append((left + x0, top + y0, left + x1, top + y1))
    return page, boxes


def assert_near(found, expected, slack: int) -> None:
    """Boxes alike within ``slack`` pixels: the ink map drops the faintest antialiased edge."""
    assert all(abs(a - b) <= slack for a, b in zip(found, expected, strict=True)), (found,
                                                                                     expected)


def test_one_digit_is_prepared_exactly_as_before(heldout_digits):
    images, _ = heldout_digits
    alone = strays = 0
    for image in images[::25]:
        decoded = decode_upload(encode_image(paper_digit(image)))
        ink_map = locate_ink(decoded)
        segmentation = segment(ink_map)
        # The candidate that covers the whole line is the whole ink, as one digit was read,
        # less any speck of MNIST's dust far from it (which narrows its box).
        (whole,) = [c for c in segmentation.candidates
                    if c.start == 0 and c.end == segmentation.segments]
        if whole.box == ink_map.box_in_upload(ink_bounds(ink_map.ink)):
            assert np.array_equal(whole.prepared.model_input,
                                  preprocess_image(decoded).model_input)
        else:
            strays += 1
        alone += len(segmentation.candidates) == 1
    assert alone >= 15  # of 20: most digits are one piece of ink, with nothing else to try
    assert strays <= 1


def test_separate_digits_are_found_left_to_right(heldout_all):
    images, labels = heldout_all
    chosen = [int(np.flatnonzero(labels == d)[0]) for d in (3, 0, 8)]
    page, boxes = page_with([images[i] for i in chosen], [20, 130, 240])
    segmentation = segment(locate_ink(decode_upload(encode_image(page))))
    for expected in boxes:  # each digit whole is one of the candidates
        assert any(all(abs(a - b) <= 2 for a, b in zip(c.box, expected, strict=True))
                   for c in segmentation.candidates), expected
    starts = [c.start for c in segmentation.candidates]
    lefts = [c.box[0] for c in segmentation.candidates]
    assert starts == sorted(starts)
    assert min(lefts) == min(b[0] for b in boxes)


def test_choose_keeps_the_cover_the_network_is_surest_of():
    def candidate(start, end, cuts=0):
        prepared = prepare_ink(np.ones((5, 5), np.float32))
        return Candidate(prepared, (0, 0, 1, 1), start, end, Shape(0.6, 1.0, 0, cuts))

    # Three segments: read as one digit over 0..2 then one over 2..3, or three alone.
    segmentation = Segmentation([candidate(0, 1, 1), candidate(1, 2, 2), candidate(0, 2, 1),
                                 candidate(2, 3)], 3)
    assert choose(segmentation, [0.9, 0.9, 0.99, 0.95]) == [2, 3]
    assert choose(segmentation, [0.99, 0.99, 0.2, 0.95]) == [0, 1, 3]


def test_choose_weighs_what_the_non_digit_head_says():
    def candidate(start, end):
        prepared = prepare_ink(np.ones((5, 5), np.float32))
        return Candidate(prepared, (0, 0, 1, 1), start, end, Shape(0.8, 1.0, 0, 1))

    # Read whole with the higher confidence, or as two halves.
    segmentation = Segmentation([candidate(0, 2), candidate(0, 1), candidate(1, 2)], 2)
    confidences = [0.99, 0.95, 0.95]
    assert choose(segmentation, confidences) == [0]
    # The head is sure the whole is no digit (two touching ones) and the halves are digits.
    assert choose(segmentation, confidences, [4.0, -3.0, -3.0]) == [1, 2]
    assert choose(segmentation, confidences, [-3.0, -3.0, -3.0]) == [0]


def test_a_broken_stroke_is_joined_into_one_digit():
    # A 5 drawn in two strokes: the flag does not touch the body.
    page = Image.new("L", (200, 200), 255)
    draw = ImageDraw.Draw(page)
    draw.line([(80, 50), (78, 100)], fill=0, width=9)
    draw.arc([60, 85, 130, 155], start=-100, end=150, fill=0, width=9)
    draw.line([(90, 48), (135, 48)], fill=0, width=9)
    segmentation = segment(locate_ink(decode_upload(encode_image(page))))
    order = choose(segmentation, [1.0] * len(segmentation.candidates))
    assert len(order) == 1


# A speck of dust, a mark too low for a digit, and a mark right below the digit (in its
# columns, so grouped with it).
@pytest.mark.parametrize(("dot", "left", "top"), [(4, 165, 140), (10, 165, 140), (10, 80, 150)])
def test_a_lone_digit_is_read_without_a_stray_dot_far_from_it(heldout_all, dot, left, top):
    images, _ = heldout_all
    for index in range(0, 200, 20):
        page, (box,) = page_with([images[index]], [40])
        clean = segment(locate_ink(decode_upload(encode_image(page))))
        ImageDraw.Draw(page).ellipse([left, top, left + dot, top + dot], fill=0)
        dotted = segment(locate_ink(decode_upload(encode_image(page))))
        (whole,) = [c for c in dotted.candidates if c.start == 0 and c.end == dotted.segments]
        assert_near(whole.box, box, slack=2)
        # The dot moves the ink map's levels a little, never where the digit lies.
        difference = whole.prepared.image.astype(int) - clean.candidates[0].prepared.image
        assert np.abs(difference).max() <= 8


@pytest.mark.parametrize("under", [0, 1, 2])
def test_a_scrap_below_the_line_is_no_digit(number_client, heldout_all, under):
    # A blot well below one digit of a number (a shadow's corner, a smudge): neither a
    # digit of its own nor a part of the digit above it.
    images, labels = heldout_all
    chosen = [int(np.flatnonzero(labels == d)[0]) for d in (3, 0, 8)]
    page, boxes = page_with([images[i] for i in chosen], [20, 130, 240], top=60)
    middle = (boxes[under][0] + boxes[under][2]) // 2
    ImageDraw.Draw(page).ellipse([middle - 6, boxes[under][3] + 30, middle + 6,
                                  boxes[under][3] + 46], fill=0)
    response = upload(number_client, encode_image(page))
    assert response.status_code == 200
    assert response.get_json()["number"] == "308"


def test_two_digits_one_above_the_other_are_both_read(heldout_all):
    # The line's band lies between them: neither may be dropped as off the line.
    images, labels = heldout_all
    page = Image.new("L", (160, 320), 255)
    for top, digit in ((20, 3), (180, 7)):
        image = images[int(np.flatnonzero(labels == digit)[0])]
        ink = Image.fromarray(image, mode="L").resize((112, 112), Image.Resampling.BICUBIC)
        page.paste(Image.new("L", ink.size, 0), (24, top), ink)
    segmentation = segment(locate_ink(decode_upload(encode_image(page))))
    assert segmentation.candidates


def underlined(digits: list[np.ndarray]) -> Image.Image:
    """``digits`` written in a row on paper with a line drawn under the whole number."""
    page, boxes = page_with(digits, [20 + 100 * i for i in range(len(digits))])
    y = max(box[3] for box in boxes) + 10
    ImageDraw.Draw(page).line([(10, y), (page.width - 10, y)], fill=60, width=3)
    return page


def boxed(digits: list[np.ndarray], margin: int = 20) -> Image.Image:
    """``digits`` written in a row inside a printed box, ``margin`` pixels in from the page,
    with room around them as on a form."""
    page, _ = page_with(digits, [90 + 130 * i for i in range(len(digits))], top=90, scale=4)
    ImageDraw.Draw(page).rectangle(
        [margin, margin, page.width - 1 - margin, page.height - 1 - margin], outline=40, width=3)
    return page


def share_read_right(client, heldout_all, make_page, count: int, first: int) -> float:
    """The share of 20 numbers of ``count`` held-out digits, drawn by ``make_page``, whose
    number /predict reads right."""
    images, labels = heldout_all
    right = 0
    for start in range(first, first + 60, 3):
        indices = [start + 7 * i for i in range(count)]
        response = upload(client, encode_image(make_page([images[i] for i in indices])))
        assert response.status_code == 200
        right += response.get_json()["number"] == "".join(str(labels[i]) for i in indices)
    return right / 20


@pytest.mark.parametrize("count", [1, 3])
def test_an_underlined_number_is_read_without_its_line(number_client, heldout_all, count):
    assert share_read_right(number_client, heldout_all, underlined, count, 0) >= 0.9


@pytest.mark.parametrize("count", [1, 3])
def test_a_number_in_a_printed_box_is_read_without_the_box(number_client, heldout_all, count):
    assert share_read_right(number_client, heldout_all, boxed, count, 1) >= 0.95


def test_a_zero_is_no_frame(heldout_all):
    # a 0 encloses nothing, and a 0 drawn around a speck of dust still frames no digit
    images, labels = heldout_all
    zero = images[int(np.flatnonzero(labels == 0)[0])]
    page, _ = page_with([zero], [40])
    ImageDraw.Draw(page).ellipse([80, 80, 82, 82], fill=0)
    labels_, stats = label_components(locate_ink(decode_upload(encode_image(page))).ink,
                                      whole=True)
    assert frame_of(labels_, stats) is None


def test_a_detached_bar_or_flag_is_no_underline():
    # A 5's flag lies above the body, a 2's detached base is no wider than the 2: both stay.
    page = Image.new("L", (200, 200), 255)
    draw = ImageDraw.Draw(page)
    draw.arc([60, 40, 130, 110], start=180, end=20, fill=0, width=7)
    draw.line([(125, 60), (65, 140)], fill=0, width=7)
    draw.line([(65, 152), (130, 152)], fill=0, width=7)  # the base, apart from the stroke
    ink_map = locate_ink(decode_upload(encode_image(page)))
    labels, stats = label_components(ink_map.ink, whole=True)
    assert underline_of(stats) is None
    # the same base drawn wider than the whole 2 does underline it
    draw.line([(30, 175), (170, 175)], fill=0, width=3)
    labels, stats = label_components(locate_ink(decode_upload(encode_image(page))).ink, whole=True)
    assert underline_of(stats) is not None


def test_one_digit_answers_as_before_plus_its_digit_and_number(number_client, heldout_digits):
    images, labels = heldout_digits
    body = upload(number_client, encode_image(paper_digit(images[0])),
                  query="?input_image=1").get_json()
    assert set(body) == {"prediction", "confidence", "probabilities", "uncertain", "input_image",
                         "digits", "number"}
    (digit,) = body["digits"]
    assert digit["value"] == body["prediction"] == labels[0]
    assert digit["confidence"] == body["confidence"]
    assert body["number"] == str(labels[0])
    left, top, right, bottom = digit["box"]
    assert 0 <= left < right <= 160 and 0 <= top < bottom <= 160


def test_a_number_is_read_with_boxes_in_the_upright_upload(number_client, heldout_all):
    images, labels = heldout_all
    chosen = [int(np.flatnonzero(labels == d)[1]) for d in (4, 7, 2)]
    page, boxes = page_with([images[i] for i in chosen], [30, 140, 250])
    body = upload(number_client, encode_image(page)).get_json()
    assert body["number"] == "472"
    assert [d["value"] for d in body["digits"]] == [4, 7, 2]
    for digit, expected in zip(body["digits"], boxes, strict=True):
        assert_near(digit["box"], expected, slack=4)
    # the top-level fields are the surest digit's (answered confidences may tie at 0.999999)
    assert body["confidence"] == max(d["confidence"] for d in body["digits"])
    assert (body["prediction"], body["confidence"]) in {(d["value"], d["confidence"])
                                                        for d in body["digits"]}
    # Photographed sideways: the boxes are still in the upright picture's pixels.
    rotated = exif_rotated(page.convert("RGB"), 6)
    body = upload(number_client, encode_upload(rotated, "JPEG", quality=95)).get_json()
    assert body["number"] == "472"
    for digit, expected in zip(body["digits"], boxes, strict=True):
        assert_near(digit["box"], expected, slack=6)


def test_boxes_of_a_large_photo_are_in_its_own_pixels(number_client, heldout_all):
    images, labels = heldout_all
    chosen = [int(np.flatnonzero(labels == d)[2]) for d in (6, 1)]
    page, boxes = page_with([images[i] for i in chosen], [300, 700], top=400, scale=12)
    page = page.resize((page.width * 2, page.height * 2))  # decoded at a reduced scale
    body = upload(number_client, encode_image(page.convert("RGB"), "JPEG", quality=90)).get_json()
    assert body["number"] == "61"
    for digit, expected in zip(body["digits"], boxes, strict=True):
        assert_near(digit["box"], [2 * v for v in expected], slack=24)


def test_several_files_each_get_their_number(number_client, heldout_all):
    images, labels = heldout_all
    uploads = [make_number("paper-png", images, labels, np.random.default_rng(seed), length=3)
               for seed in (1, 2)]
    fields = MultiDict(("file", FileStorage(io.BytesIO(u.data), f"{i}.png"))
                       for i, u in enumerate(uploads))
    boundary, body = encode_multipart(fields)
    response = number_client.post("/predict", data=body,
                                  content_type=f"multipart/form-data; boundary={boundary}")
    results = response.get_json()["results"]
    assert [r["number"] for r in results] == [u.number for u in uploads]


@pytest.mark.parametrize("kind", NUMBER_KINDS)
def test_generated_numbers_are_read(number_client, heldout_all, kind):
    images, labels = heldout_all
    rng = np.random.default_rng(sorted(NUMBER_KINDS).index(kind))
    numbers = [make_number(kind, images, labels, rng) for _ in range(PER_KIND)]
    read = [upload(number_client, n.data).get_json()["number"] for n in numbers]
    right = np.mean([r == n.number for r, n in zip(read, numbers, strict=True)])
    digits = sum(len(n.number) for n in numbers)
    wrong = sum(edit_distance(r, n.number) for r, n in zip(read, numbers, strict=True))
    assert right >= NUMBER_ACCURACY, list(zip(read, [n.number for n in numbers], strict=True))
    assert 1 - wrong / digits >= DIGIT_ACCURACY


def test_touching_digits_within_a_number_are_split(number_client, heldout_all):
    images, labels = heldout_all
    rng = np.random.default_rng(40)
    numbers = [make_number("paper-png", images, labels, rng, length=4, touching=True)
               for _ in range(8)]
    read = [upload(number_client, n.data).get_json()["number"] for n in numbers]
    assert sum(len(r) == len(n.number) for r, n in zip(read, numbers, strict=True)) >= 6


@pytest.fixture(scope="module")
def onnx_classifier():
    return DigitClassifier(folder_paths.get_full_path("weights", "model.pt"), "cpu", "onnx")


@pytest.mark.parametrize(("length", "seed", "floor"), [(2, 41, 3), (3, 42, 5)])
def test_numbers_whose_digits_touch_are_read(onnx_classifier, heldout_all, length, seed, floor):
    # Two or three digits, two of them touching, on paper and in photos: a two-digit
    # number is one piece of ink, which used to be read as one digit.
    images, labels = heldout_all
    rng = np.random.default_rng(seed)
    numbers = [make_number(kind, images, labels, rng, length=length, touching=True)
               for kind in [*NUMBER_KINDS, *NUMBER_KINDS]]
    read = [body["number"] for body in Chain().run(onnx_classifier, [n.data for n in numbers])]
    right = sum(r == n.number for r, n in zip(read, numbers, strict=True))
    assert right >= floor, list(zip(read, [n.number for n in numbers], strict=True))


def test_a_doubted_lone_piece_is_cut_and_its_whole_reading_kept(heldout_all):
    images, labels = heldout_all
    number = make_number("paper-png", images, labels, np.random.default_rng(41), length=2,
                         touching=True)
    segmentation = segment(locate_ink(decode_upload(number.data)))
    # Read whole first, as one digit always was, but kept to be cut should that be doubted.
    assert len(segmentation.candidates) == 1 and segmentation.uncut is not None
    cut = cut_lone(segmentation)
    assert cut.lone and cut.segments >= 2 and len(cut.candidates) >= 3
    whole = cut.candidates[0]
    assert whole is not segmentation.candidates[0]
    assert whole.prepared is segmentation.candidates[0].prepared
    assert (whole.start, whole.end) == (0, cut.segments)


def test_wide_single_digits_are_not_split(onnx_classifier, heldout_all):
    # The widest held-out digits (0s, 2s, 5s, 7s up to 1.7 times as wide as tall) are
    # read as one digit, exactly as without the segment stage.
    images, labels = heldout_all
    rows, cols = images.max(axis=2) > 0, images.max(axis=1) > 0
    aspect = [np.ptp(np.flatnonzero(c)) / np.ptp(np.flatnonzero(r))
              for r, c in zip(rows, cols, strict=True)]
    widest = np.argsort(aspect)[::-1][:12]
    uploads = [encode_image(paper_digit(images[i])) for i in widest]
    read = [body["number"] for body in Chain().run(onnx_classifier, uploads)]
    before = [body["number"] for body in Chain(numbers=False).run(onnx_classifier, uploads)]
    assert read == before
    assert sum(r == str(labels[i]) for r, i in zip(read, widest, strict=True)) >= 11


def test_without_the_segment_stage_an_image_is_read_as_one_digit(heldout_all):
    images, labels = heldout_all
    number = make_number("paper-png", images, labels, np.random.default_rng(3), length=4)
    classifier = DigitClassifier(folder_paths.get_full_path("weights", "model.pt"), "cpu", "onnx")
    (whole,) = Chain(numbers=False).run(classifier, [number.data])
    (read,) = Chain().run(classifier, [number.data])
    assert len(whole["number"]) == 1 and len(whole["digits"]) == 1
    assert read["number"] == number.number


@settings(max_examples=40, deadline=None)
@given(strokes=st.lists(st.tuples(st.integers(0, 230), st.integers(0, 70), st.integers(0, 230),
                                  st.integers(0, 70), st.integers(1, 6)), min_size=1, max_size=8),
       seed=st.integers(0, 2**16))
def test_any_ink_is_covered_once_left_to_right(strokes, seed):
    page = Image.new("L", (240, 80), 0)
    draw = ImageDraw.Draw(page)
    for x0, y0, x1, y1, width in strokes:
        draw.line([(x0, y0), (x1, y1)], fill=255, width=width)
    ink = np.asarray(page, dtype=np.float32)
    segmentation = segment(InkMap(ink, (0.0, 0.0, 240.0, 80.0)))
    confidences = np.random.default_rng(seed).uniform(0.01, 1.0, len(segmentation.candidates))
    chosen = [segmentation.candidates[i] for i in choose(segmentation, list(confidences))]
    assert chosen[0].start == 0 and chosen[-1].end == segmentation.segments
    assert all(a.end == b.start for a, b in zip(chosen, chosen[1:], strict=False))
    for candidate in chosen:
        left, top, right, bottom = candidate.box
        assert 0 <= left < right <= 240 and 0 <= top < bottom <= 80
