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
