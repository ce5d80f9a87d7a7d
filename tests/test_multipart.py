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
    """urllib3 (and so requests) writes what browsers and curl write: no second parse."""
    def no_fallback(*_args):
        raise AssertionError("read again by Werkzeug's parser")

    monkeypatch.setattr(multipart, "_read_with_werkzeug", no_fallback)
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
