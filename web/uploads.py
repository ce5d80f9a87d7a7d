"""Reading uploads from a request: kept in memory, never spilled to disk."""

from __future__ import annotations

import io

from flask import request
from flask.wrappers import Request

from web.errors import ApiError

UPLOAD_FIELD = "file"  # the multipart field that carries the image


class InMemoryRequest(Request):
    """Keeps uploaded files in memory, so no upload is ever written to disk."""

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
