"""web/multipart.py: multipart bodies read as Werkzeug's own parser reads them, only faster."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib3 import encode_multipart_formdata
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import MultiPartParser
from werkzeug.test import encode_multipart

from web import multipart
from web.multipart import MultipartError, read_multipart


class TrickleStream(io.BytesIO):
    """A stream that gives at most ``size`` bytes a read, as a slow network would."""

    def __init__(self, data: bytes, size: int) -> None:
        super().__init__(data)
        self.size = size

    def read(self, size: int | None = -1) -> bytes:
        return super().read(self.size)


def werkzeug_parse(body: bytes, boundary: str):
    parser = MultiPartParser(stream_factory=lambda *args, **kwargs: io.BytesIO())
    return parser.parse(io.BytesIO(body), boundary.encode(), len(body))


def as_plain(form, files):
    return (sorted(form.items(multi=True)),
            sorted((name, file.filename, file.content_type, file.read())
                   for name, file in files.items(multi=True)))


field_names = st.text(st.characters(codec="utf-8", exclude_characters='"\r\n\\'), min_size=1,
                      max_size=12)


@settings(max_examples=60, deadline=None)
@given(fields=st.lists(st.tuples(field_names, st.text(max_size=40)), max_size=3),
       files=st.lists(st.tuples(field_names, st.binary(max_size=3000)), min_size=1, max_size=3),
       read_size=st.sampled_from([1, 7, 100, 1 << 16]))
def test_it_reads_what_werkzeug_reads(fields, files, read_size):
    data = {name: value for name, value in fields}
    data.update({f"f{index}{name}": FileStorage(io.BytesIO(content), filename=f"{name}.png")
                 for index, (name, content) in enumerate(files)})
    boundary, body = encode_multipart(data, boundary="---hypothesis-boundary")
    ours = read_multipart(TrickleStream(body, read_size), boundary.encode())
    assert as_plain(*ours) == as_plain(*werkzeug_parse(body, boundary))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.lists(st.tuples(field_names, st.text(max_size=40)), max_size=3),
       files=st.lists(st.tuples(field_names, st.binary(max_size=3000)), min_size=1, max_size=3),
       read_size=st.sampled_from([1, 7, 100, 1 << 16]))
def test_bodies_as_http_clients_write_them_take_the_fast_path(monkeypatch, fields, files,
                                                              read_size):
    """urllib3 (and so requests) writes what browsers and curl write: cut at its delimiters,
    never handed to python-multipart or Werkzeug's parser."""
    def no_fallback(*_args):
        raise AssertionError("read by a slower parser")

    monkeypatch.setattr(multipart, "_read_with_werkzeug", no_fallback)
    monkeypatch.setattr(multipart, "parts_by_python_multipart", no_fallback)
    pairs = [(name, value) for name, value in fields]
    pairs += [(f"f{index}{name}", (f"{name}.png", content, "image/png"))
              for index, (name, content) in enumerate(files)]
    body, content_type = encode_multipart_formdata(pairs, boundary="c1ient-b0undary")
    ours = read_multipart(TrickleStream(body, read_size), b"c1ient-b0undary")
    assert as_plain(*ours) == as_plain(*werkzeug_parse(body, "c1ient-b0undary"))


def body_with(*parts: bytes, boundary: bytes = b"b0undary", end: bool = True) -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return body + (b"--" + boundary + b"--\r\n" if end else b"")


FILE = b'Content-Disposition: form-data; name="file"; filename="d.png"\r\n\r\nPNGDATA'


def test_a_file_part_keeps_its_name_even_an_empty_one():
    empty = b'Content-Disposition: form-data; name="file"; filename=""\r\n\r\n'
    _form, files = read_multipart(io.BytesIO(body_with(FILE, empty)), b"b0undary")
    assert [(f.filename, f.read()) for f in files.getlist("file")] == [("d.png", b"PNGDATA"),
                                                                      ("", b"")]


def test_parts_without_a_name_are_dropped_and_fields_use_their_charset():
    nameless = b"Content-Disposition: form-data\r\n\r\nlost"
    latin = (b'Content-Disposition: form-data; name="note"\r\n'
             b"Content-Type: text/plain; charset=latin-1\r\n\r\ncaf\xe9")
    form, files = read_multipart(io.BytesIO(body_with(nameless, latin)), b"b0undary")
    assert form.to_dict() == {"note": "café"} and not files


def test_a_body_cut_before_its_closing_boundary_is_an_error():
    with pytest.raises(MultipartError):
        read_multipart(io.BytesIO(body_with(FILE, end=False)), b"b0undary")
    with pytest.raises(MultipartError):
        read_multipart(io.BytesIO(body_with(FILE)[:30]), b"b0undary")


def test_too_many_parts_and_too_large_fields_are_413():
    with pytest.raises(RequestEntityTooLarge):
        read_multipart(io.BytesIO(body_with(FILE, FILE, FILE)), b"b0undary", max_parts=2)
    field = b'Content-Disposition: form-data; name="note"\r\n\r\n' + b"x" * 100
    with pytest.raises(RequestEntityTooLarge):
        read_multipart(io.BytesIO(body_with(field)), b"b0undary", max_field_bytes=99)
    form, _files = read_multipart(io.BytesIO(body_with(field)), b"b0undary", max_field_bytes=100)
    assert form["note"] == "x" * 100


def as_read(parts):
    return [(list(part.headers.items()), bytes(part.data)) for part in parts]


BOUNDARY = b"b0undary"
usual_headers = st.sampled_from([
    b'Content-Disposition: form-data; name="file"; filename="d.png"',
    b'Content-Disposition: form-data; name="note"', b"Content-Type: image/png",
    b"Content-Type: text/plain; charset=latin-1", b"X-Spaces:   three", b"X-Tab:\tvalue",
    b"X-Empty:", b"X-Utf8: caf\xc3\xa9", b"X-Latin: caf\xe9"])
odd_headers = st.one_of(st.sampled_from([b" folded", b"no colon", b"Bad Name: x", b"X-Cr: a\rb",
                                         b"X-Lf: a\nb", b":empty name", b""]),
                        st.binary(max_size=24))
# mostly headers as clients write them, so that many bodies are read both ways
header_lines = st.integers(0, 9).flatmap(lambda pick: odd_headers if pick == 0 else usual_headers)
part_data = st.one_of(st.binary(max_size=120), st.binary(max_size=120), st.sampled_from(
    [b"", b"\r\n", b"--", b"\r\n--" + BOUNDARY, b"\r\n--" + BOUNDARY + b"x", b"--" + BOUNDARY,
     b"\r\n\r\n", b"\r\n--" + BOUNDARY + b"--"]))
padding = st.sampled_from([b""] * 12 + [b" ", b"\t", b"x"])


@settings(max_examples=600, deadline=None)
@given(preamble=st.sampled_from([b"", b"", b"preamble\r\n", b"\r\n"]),
       parts=st.lists(st.tuples(padding, st.lists(header_lines, min_size=1, max_size=4), part_data),
                      max_size=4),
       closing=st.sampled_from([b"--\r\n", b"--\r\n", b"--", b"--  \r\n", b"--\r\nepilogue",
                                b"\r\n", b""]))
def test_the_plain_reading_reads_what_python_multipart_reads(preamble, parts, closing):
    """Whatever body ``plain_parts`` reads, python-multipart reads into the same parts."""
    body = preamble + b"".join(
        b"--" + BOUNDARY + pad + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + data + b"\r\n"
        for pad, headers, data in parts) + b"--" + BOUNDARY + closing
    plain = multipart.plain_parts(body, BOUNDARY)
    if plain is not None:
        full = multipart.parts_by_python_multipart(body, BOUNDARY)
        assert full is not None and as_read(plain) == as_read(full)


def test_bodies_as_browsers_curl_and_werkzeug_write_them_are_read_plainly():
    image = b"\x89PNG\r\n\x1a\n\r\n--almost a delimiter\r\n"
    chrome = (b"------WebKitFormBoundaryq3C0bN2t\r\n"
              b'Content-Disposition: form-data; name="file"; filename="blob"\r\n'
              b"Content-Type: image/png\r\n\r\n" + image + b"\r\n"
              b"------WebKitFormBoundaryq3C0bN2t--\r\n")
    curl = (b"--------------------------d74496d66958873e\r\n"
            b'Content-Disposition: form-data; name="file"; filename="digit.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + image + b"\r\n"
            b"--------------------------d74496d66958873e--\r\n")
    boundary, werkzeug_body = encode_multipart(
        {"file": FileStorage(io.BytesIO(image), filename="d.png"), "note": "x"})
    for body, bound in ((chrome, b"----WebKitFormBoundaryq3C0bN2t"),
                        (curl, b"------------------------d74496d66958873e"),
                        (werkzeug_body, boundary.encode())):
        parts = multipart.plain_parts(body, bound)
        assert parts is not None
        assert as_read(parts) == as_read(multipart.parts_by_python_multipart(body, bound))
    assert bytes(multipart.plain_parts(chrome, b"----WebKitFormBoundaryq3C0bN2t")[0].data) == image


def test_bodies_laid_out_otherwise_are_left_to_python_multipart():
    plain = body_with(FILE)
    assert multipart.plain_parts(plain, b"b0undary") is not None
    for odd in (b"preamble\r\n" + plain, b"\r\n\r\n" + plain,  # text before the first delimiter
                plain.replace(b"--b0undary\r\n", b"--b0undary  \r\n"),  # padding
                plain + b"epilogue",  # text after the closing delimiter
                plain.replace(b"Content-Disposition:", b" Content-Disposition:"),  # folded
                body_with(FILE, end=False)):  # cut short
        assert multipart.plain_parts(odd, b"b0undary") is None


def test_a_plain_body_of_too_many_parts_is_413_before_its_parts_are_read(monkeypatch):
    def unread(*_args):
        raise AssertionError("a part was read")

    monkeypatch.setattr(multipart, "_Part", unread)
    with pytest.raises(RequestEntityTooLarge):
        multipart.plain_parts(body_with(*[FILE] * 1000), b"b0undary", max_parts=64)
