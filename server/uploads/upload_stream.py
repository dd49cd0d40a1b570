"""``POST /v1/files`` bodies parsed as they arrive, the video written straight into the upload store.

Starlette's form parser spools a file part to a local temporary file first, so the store would see an upload only
once the whole body had arrived, and would then copy it. Here the file part's bytes go into a leased partial file
of the store (:meth:`server.uploads.file_store.FileStore.open_upload`) while the client sends them: one write, no local
copy, and on a shared uploads directory the lease tells every other replica that the upload is alive for as long
as it lasts. The parser is python-multipart's (what Starlette itself uses); the form handed to FastAPI is
Starlette's ``FormData`` of ``UploadFile``\\ s and strings, so the route declares its fields as usual.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import FormData, Headers, UploadFile

from server.errors import APIError
from server.uploads.file_store import FileStore, PendingUpload

MAX_FIELD_BYTES = 64 << 10  # a text field of this route is a purpose or a number


class StreamedUpload:
    """The file object behind the route's ``UploadFile``: bytes go to the store's partial file, up to one past
    ``max_bytes`` (the route answers 413 from :meth:`finish`, where its field is known)."""

    def __init__(self, pending: PendingUpload, max_bytes: int) -> None:
        self.pending = pending
        self.max_bytes = max_bytes
        self.received = 0

    def write(self, data: bytes) -> int:
        self.received += len(data)
        room = self.max_bytes + 1 - self.pending.size
        if room > 0:
            self.pending.write(data[:room])
        return len(data)

    def finish(self, param: str) -> PendingUpload:
        """The received upload, ready to probe and commit; 413 past the limit, 400 when empty (nothing kept)."""
        try:
            self.pending.close_output()
            if self.received > self.max_bytes:
                raise APIError(413, f"The video exceeds the limit of {self.max_bytes} bytes.", param)
            if self.received == 0:
                raise APIError(400, "The uploaded file is empty.", param)
        except BaseException:
            self.pending.discard()
            raise
        return self.pending

    def close(self) -> None:
        """Called when the request ends: the partial goes unless it was committed."""
        self.pending.discard()


class _Part:
    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.name = ""
        self.upload: UploadFile | None = None
        self.data = bytearray()


async def parse_into_store(request: Request, files: FileStore, max_bytes: int) -> FormData:
    """The multipart form of ``request``, each file part streamed into a new partial upload of ``files``."""
    _, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if not boundary:
        raise APIError(400, "The multipart body has no boundary.", "file")
    charset = _charset(params.get(b"charset", b"utf-8"))
    items: list[tuple[str, UploadFile | str]] = []
    uploads: list[StreamedUpload] = []
    to_write: list[tuple[StreamedUpload, bytes]] = []
    part = _Part()
    header = [b"", b""]

    def on_part_begin() -> None:
        nonlocal part
        part = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        part.headers.append((header[0].lower(), header[1]))
        header[0] = header[1] = b""

    def on_headers_finished() -> None:
        disposition = next((value for name, value in part.headers if name == b"content-disposition"), b"")
        _, options = parse_options_header(disposition)
        if b"name" not in options:
            raise APIError(400, 'A multipart part has no Content-Disposition "name".', "file")
        part.name = options[b"name"].decode(charset, errors="replace")
        if b"filename" in options:
            stream = StreamedUpload(files.open_upload(), max_bytes)
            uploads.append(stream)
            filename = options[b"filename"].decode(charset, errors="replace")
            part.upload = UploadFile(stream, size=0, filename=filename, headers=Headers(raw=part.headers))  # type: ignore[arg-type]

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part.upload is not None:
            to_write.append((part.upload.file, data[start:end]))  # type: ignore[arg-type]
            part.upload.size = (part.upload.size or 0) + end - start
        elif len(part.data) + end - start > MAX_FIELD_BYTES:
            raise APIError(400, f"The form field {part.name[:64]!r} is too large.", part.name[:64])
        else:
            part.data += data[start:end]

    def on_part_end() -> None:
        items.append((part.name, part.upload if part.upload is not None else part.data.decode(charset, "replace")))

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if to_write:
                batch = list(to_write)
                to_write.clear()
                await asyncio.to_thread(_write_all, batch)
        parser.finalize()
    except BaseException as exc:
        for upload in uploads:
            await asyncio.to_thread(upload.close)
        if isinstance(exc, FormParserError):
            raise APIError(400, "The multipart body is malformed.", "file") from exc
        raise
    return FormData(items)


def _write_all(batch: list[tuple[StreamedUpload, bytes]]) -> None:
    for stream, data in batch:
        stream.write(data)


def _charset(name: bytes | str) -> str:
    try:
        return codecs.lookup(name.decode("latin-1") if isinstance(name, bytes) else name).name
    except LookupError:
        return "latin-1"


class UploadRequest(Request):
    """A request whose multipart form is parsed by :func:`parse_into_store` (once; later calls get the same).
    Starlette's ``Request.form()`` caches the form in ``_form`` through ``_get_form``; this fills the same cache, so
    FastAPI's body reading and our dependencies (``strict_form``) all see the one form (Starlette is pinned in
    uv.lock; tests/server/test_upload_stream.py fails if that contract changes)."""

    async def _get_form(self, **kwargs: Any) -> FormData:
        if self._form is None and self.headers.get("content-type", "").startswith("multipart/form-data"):
            state = self.app.state
            self._form = await parse_into_store(self, state.files, state.settings.max_video_bytes)
        return await super()._get_form(**kwargs)


class UploadRoute(APIRoute):
    """FastAPI's route, reading its form with :class:`UploadRequest` (FastAPI's documented custom-route hook)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def upload_handler(request: Request) -> Response:
            request = UploadRequest(request.scope, request.receive)
            await request.form()  # here, so that our errors (413, 507, 400 naming the field) reach the client as
            return await handler(request)  # they are; FastAPI turns any error while it reads a body into one 400

        return upload_handler
