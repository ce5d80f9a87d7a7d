"""The HTML page as the server sends it: the form, the policy, the result without JavaScript."""

import io
from collections.abc import Iterator
from html.parser import HTMLParser

import numpy as np
import pytest
from helpers import encode_image, paper_digit, post_file_over_http, served_in_thread, upload
from PIL import Image

from serving.trust import REASONS
from training.nondigits import nondigit_pictures
from web.page import PAGE_POLICY

# Elements without an end tag.
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class PageParser(HTMLParser):
    """Collects every start tag with its attributes and the text of each element with an id.

    The contents of <template> elements are skipped: they are blank copies for the script.
    """

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.texts: dict[str, list[str]] = {}
        self.open_ids: list[str | None] = []
        self.template_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag == "template" or self.template_depth:
            self.template_depth += tag == "template"
            return
        found = dict(attrs)
        self.elements.append((tag, found))
        if tag not in VOID:
            self.open_ids.append(found.get("id"))
            if found.get("id"):
                self.texts[found["id"]] = []

    def handle_endtag(self, tag):
        if tag == "template":
            self.template_depth -= 1
        elif not self.template_depth and tag not in VOID:
            self.open_ids.pop()

    def handle_data(self, data):
        if not self.template_depth:
            for element_id in filter(None, self.open_ids):
                self.texts[element_id].append(data)

    def find(self, tag: str, **attrs) -> list[dict[str, str | None]]:
        return [found for name, found in self.elements
                if name == tag and all(found.get(k) == v for k, v in attrs.items())]

    def text(self, element_id: str) -> str:
        """The element's text with runs of white space collapsed."""
        return " ".join("".join(self.texts[element_id]).split())


def parse(response) -> PageParser:
    collector = PageParser()
    collector.feed(response.get_data(as_text=True))
    return collector


def post_page(client, data: bytes, filename: str = "digit.png"):
    return client.post("/", data={"file": (io.BytesIO(data), filename)},
                       content_type="multipart/form-data")


def test_page_has_the_upload_form(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = parse(response)
    (form,) = page.find("form", id="upload-form", enctype="multipart/form-data")
    assert form["method"] == "post"
    assert form["action"] == "/"
    assert page.find("input", type="file", name="file", id="file")
    assert page.find("label", **{"for": "file"})
    assert page.find("div", id="status", role="status", **{"aria-live": "polite"})
    assert page.text("placeholder") == "No digit yet."


def test_page_has_a_drawing_pad_for_the_script_to_reveal(client):
    page = parse(client.get("/"))
    (panel,) = page.find("section", id="draw-panel")
    assert "hidden" in panel, "drawing needs JavaScript"
    (pad,) = page.find("canvas", id="pad")
    assert pad["aria-label"] and pad["tabindex"] == "0"
    for button in ("undo", "clear", "predict"):
        assert page.find("button", id=button, type="button")


def test_page_loads_only_its_own_files_and_no_inline_script(client):
    page = parse(client.get("/"))
    scripts = page.find("script")
    assert scripts and all(script.get("src", "").startswith("/static/") for script in scripts)
    links = [link["href"] for link in page.find("link")]
    assert links and all(href.startswith("/static/") for href in links)
    handlers = [(tag, name) for tag, attrs in page.elements for name in attrs
                if name.startswith("on")]
    assert handlers == []
    assert not [attrs for _, attrs in page.elements if "style" in attrs]
    for href in links + [script["src"] for script in scripts]:
        with client.get(href) as asset:
            assert asset.status_code == 200, href


@pytest.mark.parametrize("method", ["get", "post"])
def test_page_sends_a_strict_content_security_policy(client, method):
    response = getattr(client, method)("/")
    policy = response.headers["Content-Security-Policy"]
    assert policy == PAGE_POLICY
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["img-src"] == "'self' data: blob:"
    assert "unsafe-inline" not in policy


def test_form_post_without_javascript_renders_the_result(client, heldout_digits):
    images, labels = heldout_digits
    label = int(labels[12])
    response = post_page(client, encode_image(paper_digit(images[12])))
    assert response.status_code == 200
    page = parse(response)
    assert page.text("prediction") == str(label)
    values = [float(meter["value"]) for meter in page.find("meter")]
    assert len(values) == 10
    assert sum(values) == pytest.approx(1.0, abs=1e-3)
    assert max(values) == values[label]
    assert page.text("confidence") == f"Confidence {shown_percent(values[label])}"
    assert page.text("probabilities") == " ".join(
        f"{digit} {shown_percent(value)}" for digit, value in enumerate(values))
    assert page.text("verdict-label") == "The digit is"
    assert "hidden" in page.find("p", id="doubt")[0]
    assert "hidden" in page.find("img", id="explanation")[0]
    rows = page.find("li")
    assert [digit for digit, row in enumerate(rows) if row.get("class") == "top"] == [label]
    (image,) = page.find("img", id="input-image")
    assert image["src"].startswith("data:image/png;base64,")
    assert image["alt"]


def shown_percent(value: float) -> str:
    """How the page shows a probability: one decimal, never 100.0% below 1."""
    tenths = round(value * 1000)
    return f"{(999 if tenths >= 1000 and value < 1 else tenths) / 10:.1f}%"


@pytest.mark.parametrize(("value", "shown"), [(1.0, "100.0%"), (0.9996, "99.9%"),
                                              (0.99949, "99.9%"), (0.5, "50.0%"),
                                              (0.00004, "0.0%")])
def test_percentages_never_round_up_to_certainty(app, value, shown):
    with app.app_context():
        macros = app.jinja_env.get_template("_result.html").module
        assert str(macros.percent(value)).strip() == shown
    assert shown_percent(value) == shown


def test_a_non_digit_is_answered_as_a_guess_in_plain_words(client):
    """The page says in words what the API flags (tests/test_trust.py measures the flagging)."""
    flagged = [data for data in map(encode_image, nondigit_pictures("objects", 5, "measure"))
               if upload(client, data).get_json().get("reason") == "not_a_digit"]
    page = parse(post_page(client, flagged[0]))
    assert page.text("verdict-label") == "Best guess"
    assert page.text("doubt") == f"Not sure: {REASONS['not_a_digit']}."


def test_show_why_adds_the_heatmap_and_its_legend(client, heldout_digits):
    data = encode_image(paper_digit(heldout_digits[0][3]))
    response = client.post("/", data={"file": (io.BytesIO(data), "d.png"), "explain": "on"},
                           content_type="multipart/form-data")
    page = parse(response)
    (heatmap,) = page.find("img", id="explanation")
    assert heatmap["src"].startswith("data:image/png;base64,") and "hidden" not in heatmap
    assert "pushed towards the answer" in page.text("legend")
    assert "checked" in page.find("input", id="explain")[0]


def test_form_post_of_a_number_shows_the_number_and_each_digit(client, heldout_digits):
    images, labels = heldout_digits
    chosen = [int(np.flatnonzero(labels == digit)[0]) for digit in (2, 9)]
    sheet = Image.new("L", (300, 140), 255)
    for place, index in enumerate(chosen):
        ink = Image.fromarray(images[index], mode="L").resize((100, 100))
        sheet.paste(Image.new("L", ink.size, 0), (20 + 140 * place, 20), ink)
    page = parse(post_page(client, encode_image(sheet)))
    assert page.text("verdict-label") == "The number is"
    assert page.text("prediction") == "29"
    assert page.text("confidence").startswith("Least sure digit ")
    assert page.text("digits").split()[::2] == ["2", "9"]


def test_form_post_with_a_broken_file_shows_the_error(client):
    response = post_page(client, b"not an image", "broken.png")
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    page = parse(response)
    message = client.post("/predict", data={"file": (io.BytesIO(b"not an image"), "x.png")},
                          content_type="multipart/form-data").get_json()["error"]["message"]
    assert page.text("error") == message[0].upper() + message[1:] + "."
    assert "prediction" not in page.texts


@pytest.fixture
def dev_server(make_app) -> Iterator[str]:
    """The app under Werkzeug's development server, with small limits, on a free port."""
    app = make_app(MAX_IMAGE_PIXELS=1000, MAX_CONTENT_LENGTH=100_000)
    with served_in_thread(app) as url:
        yield url


@pytest.mark.parametrize("path", ["/", "/predict"])
def test_limits_are_answered_promptly_by_the_development_server(dev_server, heldout_digits, path):
    # The image is read in full before its size is known, so nothing is left to drain;
    # the body over the limit is refused unread and must be drained before answering.
    picture = encode_image(paper_digit(heldout_digits[0][0]))
    status, _, text = post_file_over_http(dev_server, path, picture)
    assert status == 413
    assert "image_too_large" in text or "the limit is 1,000 pixels" in text
    status, _, text = post_file_over_http(dev_server, path, b"\0" * 200_000)
    assert status == 413
