"""Reading ``multipart/form-data`` bodies, the way uploads arrive, with python-multipart.

Werkzeug's own parser compiles two regular expressions for each boundary, and
browsers, curl and requests send a fresh random boundary with every request, so
every upload paid for two compilations (about 0.9 ms here) before its bytes were
looked at; its parsing was slow too (0.2 ms for a 1 KB body, 0.7 ms for 20 KB,
with the expressions already compiled). python-multipart's streaming parser
took 0.04 and 0.06 ms for the same bodies. The parts come out as Werkzeug's own
``MultiDict`` of form fields and of ``FileStorage`` files, kept in memory, so
the rest of the app cannot tell the difference.

python-multipart holds to RFC 2046: a delimiter follows a line break. Werkzeug
also reads bodies without that line break after an empty part (its own test
client writes them); such a body, or one python-multipart cannot read, is
read again by Werkzeug's parser, so that both accept the same bodies.

Most bodies are laid out exactly as browsers, curl and requests write them:
no preamble (Werkzeug's test client starts with a line break), no padding
after a delimiter, ``Name: value`` headers, nothing after the closing
delimiter. Such a body is cut at its delimiters with ``bytes.split``
(``plain_parts``) into the same parts python-multipart would give; every
other body goes through python-multipart as above. For a 28x28 PNG this took
the multipart reading from about 40 to 10 µs. A part's ``Content-Disposition``
and ``Content-Type`` are parsed by Werkzeug once per distinct value: clients
send the same few over and over.
"""

from __future__ import annotations

import io
import re
from functools import lru_cache
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import (
    DEFAULT_MAX_HEADER_COUNT,
    DEFAULT_MAX_HEADER_SIZE,
    MAX_BOUNDARY_LENGTH,
    MultipartParser,
    MultipartState,
)
from werkzeug.datastructures import FileStorage, Headers, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

READ_SIZE = 64 * 1024
# ``plain_parts`` leaves a body beyond python-multipart's own limits (DEFAULT_MAX_HEADER_COUNT
# headers a part, DEFAULT_MAX_HEADER_SIZE bytes a header line, MAX_BOUNDARY_LENGTH bytes of
# boundary) to python-multipart, which refuses it.

# A header name as python-multipart accepts it: RFC 9110 token characters.
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# Werkzeug's parser of ``value; key="option"`` headers, once per distinct header value.
options_of = lru_cache(maxsize=512)(parse_options_header)


class MultipartError(ValueError):
    """The body is not the multipart form its Content-Type says it is."""


class _Part:
    """One part as it is read: its headers and its bytes."""

    __slots__ = ("data", "headers")

    def __init__(self, data: bytes | bytearray | None = None) -> None:
        self.headers = Headers()
        self.data = bytearray() if data is None else data


def read_multipart(stream: IO[bytes], boundary: bytes, *, max_parts: int | None = None,
                   max_field_bytes: int | None = None) -> tuple[MultiDict, MultiDict]:
    """The form fields and the files of a multipart body read from ``stream``.

    More than ``max_parts`` parts, or a field (not a file) over
    ``max_field_bytes``, is ``RequestEntityTooLarge`` (413), as with Werkzeug;
    a body that neither parser can read (one cut before its closing boundary)
    is ``MultipartError``.
    """
    body = b"".join(iter(lambda: stream.read(READ_SIZE), b""))
    parts = plain_parts(body, boundary, max_parts)
    if parts is None:
        parts = parts_by_python_multipart(body, boundary, max_parts)
    if parts is None:
        return _read_with_werkzeug(body, boundary, max_parts, max_field_bytes)
    return _sorted_parts(parts, max_field_bytes)


def parts_by_python_multipart(body: bytes, boundary: bytes,
                              max_parts: int | None = None) -> list[_Part] | None:
    """The parts of a body as python-multipart reads it; None where it cannot, or where an
    empty part runs into a delimiter without a line break (Werkzeug's to read)."""
    parts: list[_Part] = []
    field = bytearray()
    value = bytearray()

    def begin_part() -> None:
        refuse_beyond(max_parts, len(parts) + 1)
        parts.append(_Part())

    def end_header() -> None:
        parts[-1].headers.add(field.decode("latin-1"), value.decode("utf-8", "replace"))
        field.clear()
        value.clear()

    parser = MultipartParser(boundary, callbacks={
        "on_part_begin": begin_part,
        "on_part_data": lambda data, start, end: parts[-1].data.extend(data[start:end]),
        "on_header_field": lambda data, start, end: field.extend(data[start:end]),
        "on_header_value": lambda data, start, end: value.extend(data[start:end]),
        "on_header_end": end_header,
    })
    delimiter = b"--" + boundary
    try:
        parser.write(body)
        parser.finalize()
        read_whole = parser.state == MultipartState.END
    except MultipartParseError:
        read_whole = False
    if not read_whole or any(part.data.startswith(delimiter) for part in parts):
        return None
    return parts


def refuse_beyond(max_parts: int | None, count: int) -> None:
    """``RequestEntityTooLarge`` (413) for a form of ``count`` parts, over ``max_parts``."""
    if max_parts is not None and count > max_parts:
        raise RequestEntityTooLarge(f"the form has more than {max_parts} parts")


def plain_parts(body: bytes, boundary: bytes,
                max_parts: int | None = None) -> list[_Part] | None:
    """The parts of a body laid out exactly as browsers, curl and requests write it, as
    python-multipart would read them; None for any other body. More than ``max_parts``
    parts is ``RequestEntityTooLarge``, before any is looked at."""
    opening = b"--" + boundary + b"\r\n"
    # Werkzeug's test client starts with a line break, which python-multipart skips
    start = 2 if body.startswith(b"\r\n") else 0
    if len(boundary) > MAX_BOUNDARY_LENGTH or not body.startswith(opening, start):
        return None
    *raw_parts, last = body[start + len(opening):].split(b"\r\n--" + boundary)
    if not raw_parts or last not in (b"--", b"--\r\n"):
        return None
    refuse_beyond(max_parts, len(raw_parts))
    parts = []
    for index, raw in enumerate(raw_parts):
        if index and not raw.startswith(b"\r\n"):
            return None
        head, blank_line, data = raw.partition(b"\r\n\r\n")
        lines = head[2:].split(b"\r\n") if index else head.split(b"\r\n")
        # an empty part running into a delimiter without a line break is Werkzeug's to read
        if (not blank_line or len(lines) > DEFAULT_MAX_HEADER_COUNT
                or data.startswith(b"--" + boundary)):
            return None
        part = _Part(data)
        for line in lines:
            name, colon, value = line.partition(b":")
            value = value.lstrip(b" ")
            if (not colon or len(line) > DEFAULT_MAX_HEADER_SIZE
                    or not _HEADER_NAME.fullmatch(name) or b"\r" in value or b"\n" in value):
                return None
            part.headers.add(name.decode("latin-1"), value.decode("utf-8", "replace"))
        parts.append(part)
    return parts


def _read_with_werkzeug(body: bytes, boundary: bytes, max_parts: int | None,
                        max_field_bytes: int | None) -> tuple[MultiDict, MultiDict]:
    """The odd bodies: Werkzeug's parser, files in memory; one it cannot read either is an error."""
    parser = FormDataParser(stream_factory=lambda *_args, **_kwargs: io.BytesIO(),
                            max_form_memory_size=max_field_bytes, max_form_parts=max_parts,
                            silent=False)
    try:
        _stream, form, files = parser.parse(io.BytesIO(body), "multipart/form-data", len(body),
                                            {"boundary": boundary.decode("ascii")})
    except ValueError as error:
        raise MultipartError(f"the multipart body cannot be read: {error}") from error
    return form, files


def _sorted_parts(parts: list[_Part], max_field_bytes: int | None) -> tuple[MultiDict, MultiDict]:
    """Parts with a file name are files, the others form fields; parts with no name are dropped."""
    form: MultiDict = MultiDict()
    files: MultiDict = MultiDict()
    for part in parts:
        _disposition, options = options_of(part.headers.get("Content-Disposition"))
        name = options.get("name")
        if name is None:
            continue
        if "filename" in options:
            files.add(name, FileStorage(io.BytesIO(part.data), filename=options["filename"],
                                        name=name, headers=part.headers))
        elif max_field_bytes is not None and len(part.data) > max_field_bytes:
            raise RequestEntityTooLarge(f"the form field {name!r} is over {max_field_bytes} bytes")
        else:
            charset = options_of(part.headers.get("Content-Type"))[1].get("charset")
            form.add(name, part.data.decode(charset or "utf-8", "replace"))
    return form, files
