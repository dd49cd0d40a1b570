"""OpenAI's Files API for videos: upload once, ask many questions by ``file_id``.

``POST /v1/files`` takes multipart ``file`` and ``purpose`` like OpenAI's endpoint (so ``client.files.create``
works unmodified); the content must decode as a video before an id is handed out, and the file object carries
what the video is (``video``: frames, fps, duration, size). ``GET /v1/files`` is OpenAI's cursor-paginated list
(``after``, ``limit``, ``order``, ``purpose``), so the SDK's auto-pagination ends. Ids are 128-bit random, and
each upload belongs to the API key that made it (:func:`server.api.middleware.file_owner`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections import Counter
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.dependencies.utils import get_flat_dependant
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from server.api.middleware import file_owner
from server.api.protocol import FileDeleted, FileList, FileObject, VideoSampling
from server.api.request_fields import strict_query
from server.errors import APIError, unrecognized_field
from server.frames.video_prep import SamplingSpec
from server.metrics import UPLOAD_BYTES
from server.uploads.file_store import StoredFile
from server.uploads.upload_stream import StreamedUpload, UploadRoute

# OpenAI's purposes that fit a video; the others (batch, fine-tune, assistants, evals) name features we lack.
PURPOSES = ("user_data", "vision")
CHUNK_BYTES = 1 << 20
MAX_LIST_LIMIT = 10_000


async def strict_form(request: Request) -> None:
    """400 naming the field for a multipart field the route does not declare or one sent twice (FastAPI would
    silently ignore the one and keep only one of the other). Declared fields come from the route itself, so a
    form field added to a route is accepted without touching this check."""
    route = request.scope["route"]
    declared = {param.alias for param in get_flat_dependant(route.dependant).body_params}
    counts = Counter(name for name, _ in (await request.form()).multi_items())
    for name, count in counts.items():
        if name not in declared:
            raise unrecognized_field(name[:64], f"This endpoint takes: {', '.join(sorted(declared))}.")
        if count > 1:
            raise APIError(400, f"The form field {name!r} was sent {count} times; send it once.", name)


async def read_upload(upload: UploadFile, max_bytes: int, param: str) -> bytes:
    """The uploaded bytes, refusing past ``max_bytes`` (the body cap stops larger requests earlier)."""
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise APIError(413, f"The video exceeds the limit of {max_bytes} bytes.", param)
    if not data:
        raise APIError(400, "The uploaded file is empty.", param)
    return data


async def store_upload(raw_request: Request, upload: UploadFile, purpose: str) -> StoredFile:
    """Take ``upload`` into the store (streamed there as it arrived, see :mod:`server.uploads.upload_stream`, or copied
    from wherever the form parser put it; hashed on the way, no lock held), check that it is a video, keep it."""
    state = raw_request.app.state
    if isinstance(upload.file, StreamedUpload):
        pending = await asyncio.to_thread(upload.file.finish, "file")
    else:
        chunks = iter(functools.partial(upload.file.read, CHUNK_BYTES), b"")
        pending = await asyncio.to_thread(state.files.receive, chunks, state.settings.max_video_bytes, "file")
    try:
        info = await state.preparer.probe(pending.path, "file")
        owner = file_owner(raw_request)
        filename = upload.filename or "upload"
        video = dataclasses.asdict(info)
        stored = await asyncio.to_thread(state.files.commit, pending, filename, purpose, owner, video)
    finally:
        pending.discard()
    UPLOAD_BYTES.labels("upload").inc(stored.bytes)
    return stored


router = APIRouter(dependencies=[Depends(strict_query)])  # unknown query parameters: 400
# the upload's bytes go straight into the store as they arrive
uploads = APIRouter(route_class=UploadRoute, dependencies=[Depends(strict_query)])


@uploads.post("/v1/files", response_model=FileObject, dependencies=[Depends(strict_form)])
async def create_file(
    raw_request: Request,
    file: Annotated[UploadFile, File()],
    purpose: Annotated[str, Form()] = "user_data",
    sampling_strategy: Annotated[Literal["uniform", "space_aware"] | None, Form()] = None,
    sampling_num_frames: Annotated[int | None, Form(ge=1)] = None,
) -> FileObject:
    """Store a video for later chat requests; 415 when it is not a decodable video. With ``sampling_strategy``
    and/or ``sampling_num_frames``, sampling starts in the background (see :func:`sampling_on_upload`)."""
    if purpose not in PURPOSES:
        raise APIError(
            400, f"purpose must be one of {', '.join(PURPOSES)} for a video, not {purpose[:64]!r}.", "purpose"
        )
    state = raw_request.app.state
    prepare = sampling_on_upload(state, sampling_strategy, sampling_num_frames)
    stored = await store_upload(raw_request, file, purpose)
    if prepare is not None:
        _, data = await asyncio.to_thread(state.files.read, stored.id, stored.owner)
        state.preparer.prepare_in_background(data, stored.sha256, prepare, stored.id)
    return FileObject(**stored.public())


def sampling_on_upload(state: Any, strategy: str | None, num_frames: int | None) -> SamplingSpec | None:
    """What to prepare in the background once the upload is stored: the sampling a chat request with
    ``video_sampling: {strategy, num_frames}`` gets (server defaults for what is unset), so the first question
    finds the frames ready or joins the work; None when the upload asks for nothing. Checked before storing."""
    if strategy is None and num_frames is None:
        return None
    if num_frames is not None and num_frames > state.settings.max_num_frames:
        message = f"sampling_num_frames may be at most {state.settings.max_num_frames}."
        raise APIError(400, message, "sampling_num_frames")
    return state.media.sampling_spec(VideoSampling(strategy=strategy, num_frames=num_frames))


@router.get("/v1/files", response_model=FileList)
async def list_files(
    raw_request: Request,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = MAX_LIST_LIMIT,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    purpose: Annotated[str | None, Query(max_length=64)] = None,
) -> FileList:
    """The caller's files, newest first by default, one page of ``limit`` after the id ``after``."""
    owner = file_owner(raw_request)
    listing = functools.partial(
        raw_request.app.state.files.list, owner, purpose=purpose, order=order, after=after, limit=limit
    )
    files, has_more = await asyncio.to_thread(listing)
    data = [FileObject(**f.public()) for f in files]
    return FileList(
        data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None, has_more=has_more
    )


@router.get("/v1/files/{file_id}", response_model=FileObject)
async def retrieve_file(file_id: str, raw_request: Request) -> FileObject:
    stored = await asyncio.to_thread(raw_request.app.state.files.get, file_id, file_owner(raw_request))
    return FileObject(**stored.public())


@router.get("/v1/files/{file_id}/content", response_class=StreamingResponse)
async def file_content(file_id: str, raw_request: Request) -> StreamingResponse:
    """The uploaded bytes, streamed from disk (the owner's files only)."""
    stored, handle = await asyncio.to_thread(raw_request.app.state.files.open, file_id, file_owner(raw_request))
    headers = {
        "Content-Length": str(stored.bytes),
        "Content-Disposition": f"attachment; filename*=utf-8''{quote(stored.filename)}",
    }
    chunks = iter(functools.partial(handle.read, CHUNK_BYTES), b"")  # read in a worker thread by Starlette
    return StreamingResponse(
        chunks, media_type="application/octet-stream", headers=headers, background=BackgroundTask(handle.close)
    )


@router.delete("/v1/files/{file_id}", response_model=FileDeleted)
async def delete_file(file_id: str, raw_request: Request) -> FileDeleted:
    stored = await asyncio.to_thread(raw_request.app.state.files.delete, file_id, file_owner(raw_request))
    return FileDeleted(id=stored.id)


router.include_router(uploads)
