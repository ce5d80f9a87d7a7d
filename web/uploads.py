"""Reading uploads from a request: kept in memory, never spilled to disk."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app, request
from flask.wrappers import Request
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge, RequestTimeout

from web.errors import ApiError
from web.multipart import read_multipart

UPLOAD_FIELD = "file"  # the multipart field that carries the image


class MalformedBodyError(BadRequest):
    """The request body could not be read as framed: a broken chunk, a cut-off body."""

    description = "the request body could not be read: its framing (chunks, length) is broken"


class BodyTimeoutError(RequestTimeout):
    """The client stopped sending its body for longer than ``BODY_TIMEOUT`` seconds."""

    description = "the request body stopped arriving; send it whole and promptly"


class InMemoryRequest(Request):
    """Keeps uploaded files in memory, so no upload is ever written to disk.

    A body the server cannot read (gunicorn raises its own parse errors from the
    input stream) is a client's fault: ``MalformedBodyError``, a 400, not a 500.
    """

    def _load_form_data(self) -> None:
        with self.reading_body():
            if "form" not in self.__dict__ and self.mimetype == "multipart/form-data":
                self.load_multipart()
            else:
                super()._load_form_data()

    def load_multipart(self) -> None:
        """Read a multipart body with python-multipart (``web/multipart.py`` says why)."""
        length = self.content_length
        if self.max_content_length is not None and length and length > self.max_content_length:
            raise RequestEntityTooLarge()
        boundary = self.mimetype_params.get("boundary", "")
        if not boundary or not boundary.isascii():
            raise MalformedBodyError("the multipart Content-Type names no usable boundary")
        stream = self._get_stream_for_parsing()
        form, files = read_multipart(stream, boundary.encode("ascii"),
                                     max_parts=self.max_form_parts,
                                     max_field_bytes=self.max_form_memory_size)
        # set as Werkzeug's own parsing does, past the cached properties
        self.__dict__.update(stream=stream, form=form, files=files)

    def get_data(self, *args, **kwargs):
        with self.reading_body():
            return super().get_data(*args, **kwargs)

    @contextmanager
    def reading_body(self) -> Iterator[None]:
        """Read the body within ``BODY_TIMEOUT`` seconds a read; a broken one is a 4xx.

        Under gunicorn the connection's socket waits at most that long for each
        piece of the body, so a stalled upload frees its worker instead of holding it.
        """
        self.check_length()
        sock = self.environ.get("gunicorn.socket")
        previous = sock.gettimeout() if sock is not None else None
        if sock is not None:
            sock.settimeout(float(current_app.config["BODY_TIMEOUT"]))
        try:
            yield
        except HTTPException as error:
            # Werkzeug reports a failed read as a disconnect; a timed-out one is a 408
            if isinstance(error.__cause__ or error.__context__, TimeoutError):
                raise BodyTimeoutError() from error
            raise
        except TimeoutError as error:
            raise BodyTimeoutError() from error
        except Exception as error:
            raise MalformedBodyError() from error
        finally:
            if sock is not None:
                sock.settimeout(previous)

    def check_length(self) -> None:
        """Refuse a Content-Length that is not a whole number (Werkzeug would read no body)."""
        length = self.environ.get("CONTENT_LENGTH", "").strip()
        if length and not length.isdigit():
            raise MalformedBodyError("the Content-Length header is not a whole number of bytes")

    def _get_file_stream(self, total_content_length, content_type, filename=None,
                         content_length=None):
        return io.BytesIO()


def read_uploads(max_files: int) -> list[bytes | ApiError]:
    """Every multipart ``file`` part in the order sent: its bytes, or the error it is answered with.

    No ``file`` part at all, or more than ``max_files``, fails the whole request.
    """
    uploads = request.files.getlist(UPLOAD_FIELD)
    if not uploads:
        raise ApiError("missing_file")
    if len(uploads) > max_files:
        raise ApiError("too_many_files", f"the request has {len(uploads)} file parts; "
                                         f"the limit is {max_files}")
    return [upload.read() if upload.filename else ApiError("empty_filename")
            for upload in uploads]
