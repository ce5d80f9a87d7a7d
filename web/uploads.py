"""Reading uploads from a request: kept in memory, never spilled to disk."""

from __future__ import annotations

import io

from flask import request
from flask.wrappers import Request
from werkzeug.exceptions import BadRequest, HTTPException

from web.errors import ApiError

UPLOAD_FIELD = "file"  # the multipart field that carries the image


class MalformedBodyError(BadRequest):
    """The request body could not be read as framed: a broken chunk, a cut-off body."""

    description = "the request body could not be read: its framing (chunks, length) is broken"


class InMemoryRequest(Request):
    """Keeps uploaded files in memory, so no upload is ever written to disk.

    A body the server cannot read (gunicorn raises its own parse errors from the
    input stream) is a client's fault: ``MalformedBodyError``, a 400, not a 500.
    """

    def _load_form_data(self) -> None:
        self.check_length()
        try:
            super()._load_form_data()
        except HTTPException:
            raise
        except Exception as error:
            raise MalformedBodyError() from error

    def check_length(self) -> None:
        """Refuse a Content-Length that is not a whole number (Werkzeug would read no body)."""
        length = self.environ.get("CONTENT_LENGTH", "").strip()
        if length and not length.isdigit():
            raise MalformedBodyError("the Content-Length header is not a whole number of bytes")

    def get_data(self, *args, **kwargs):
        self.check_length()
        try:
            return super().get_data(*args, **kwargs)
        except HTTPException:
            raise
        except Exception as error:
            raise MalformedBodyError() from error

    def _get_file_stream(self, total_content_length, content_type, filename=None,
                         content_length=None):
        return io.BytesIO()


def read_upload() -> bytes:
    """The bytes of the multipart ``file`` part, or an ``ApiError`` saying what is missing."""
    upload = request.files.get(UPLOAD_FIELD)
    if upload is None:
        raise ApiError("missing_file")
    if not upload.filename:
        raise ApiError("empty_filename")
    return upload.read()
