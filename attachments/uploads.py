"""The upload size limit while the body streams: Django's parser stops at ``UPLOAD_MAX_BYTES``.

Django's own handlers (memory for small files, a temporary file past
FILE_UPLOAD_MAX_MEMORY_SIZE) still store what is allowed; this one runs first and stops
the parse as soon as the files together pass the limit, so no oversized file is written
out or kept, whatever the request's Content-Length claimed.
"""

from __future__ import annotations

from django.core.files.uploadhandler import FileUploadHandler, StopUpload


class SizeCapUploadHandler(FileUploadHandler):
    """Counts the bytes of every file in the request and stops the upload past ``limit``."""

    def __init__(self, request, *, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        """Pass the chunk on to the next handler, or stop the whole upload once over the limit."""
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        """The next handler (Django's) makes the file."""
        return None
