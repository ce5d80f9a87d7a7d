import io
from html.parser import HTMLParser

from conftest import encode_image, paper_digit


class ElementCollector(HTMLParser):
    """Collects every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs) -> list[dict[str, str | None]]:
        return [found for name, found in self.elements
                if name == tag and all(found.get(k) == v for k, v in attrs.items())]


def parse(response) -> ElementCollector:
    collector = ElementCollector()
    collector.feed(response.get_data(as_text=True))
    return collector


def test_page_has_the_upload_form(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = parse(response)
    (form,) = page.find("form", enctype="multipart/form-data")
    assert form["method"] == "post"
    assert page.find("input", type="file", name="file")
    assert page.find("div", **{"aria-live": "polite"})
    assert not page.find("script", src=None), "no inline scripts"


def test_form_post_without_javascript_renders_the_result(client, heldout_digits):
    images, labels = heldout_digits
    data = {"file": (io.BytesIO(encode_image(paper_digit(images[12]))), "digit.png")}
    response = client.post("/", data=data, content_type="multipart/form-data")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert f'id="prediction" class="prediction">{labels[12]}</output>' in text
    assert "data:image/png;base64," in text


def test_form_post_with_a_broken_file_shows_the_error(client):
    data = {"file": (io.BytesIO(b"not an image"), "broken.png")}
    response = client.post("/", data=data, content_type="multipart/form-data")
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert 'id="error"' in response.get_data(as_text=True)


def test_page_sends_a_strict_content_security_policy(client):
    for response in (client.get("/"), client.post("/")):
        policy = response.headers["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["default-src"] == "'self'"
        assert directives["img-src"] == "'self' data: blob:"
        assert "unsafe-inline" not in policy
