"""OpenAI's Files API for videos: upload once, ask many questions by ``file_id``.

``POST /v1/files`` takes multipart ``file`` and ``purpose`` like OpenAI's endpoint (so ``client.files.create``
works unmodified); the content must decode as a video before an id is handed out. Ids are 128-bit random, and
each upload belongs to the API key that made it (:func:`server.middleware.file_owner`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile

from server.errors import APIError
from server.metrics import UPLOAD_BYTES
from server.middleware import file_owner
from server.protocol import FileDeleted, FileList, FileObject, VideoSampling
from server.video_prep import SamplingSpec

router = APIRouter()


async def read_upload(upload: UploadFile, max_bytes: int, param: str) -> bytes:
    """The uploaded bytes, refusing past ``max_bytes`` (the body cap stops larger requests earlier)."""
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise APIError(413, f"The video exceeds the limit of {max_bytes} bytes.", param)
    if not data:
        raise APIError(400, "The uploaded file is empty.", param)
    return data


@router.post("/v1/files", response_model=FileObject)
async def create_file(
    raw_request: Request,
    file: Annotated[UploadFile, File()],
    purpose: Annotated[str, Form()] = "user_data",
    sampling_strategy: Annotated[Literal["uniform", "space_aware"] | None, Form()] = None,
    sampling_num_frames: Annotated[int | None, Form(ge=1)] = None,
) -> FileObject:
    """Store a video for later chat requests; 415 when it is not a decodable video. With ``sampling_strategy``
    and/or ``sampling_num_frames``, sampling starts in the background (see :func:`sampling_on_upload`)."""
    state = raw_request.app.state
    prepare = sampling_on_upload(state, sampling_strategy, sampling_num_frames)
    data = await read_upload(file, state.settings.max_video_bytes, "file")
    await state.preparer.probe(data, "file")
    owner = file_owner(raw_request)
    stored = await asyncio.to_thread(state.files.add, data, file.filename or "upload", purpose[:64], owner)
    UPLOAD_BYTES.labels("upload").inc(len(data))
    if prepare is not None:
        state.preparer.prepare_in_background(data, stored.sha256, prepare)
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
async def list_files(raw_request: Request) -> FileList:
    files = await asyncio.to_thread(raw_request.app.state.files.list, file_owner(raw_request))
    return FileList(data=[FileObject(**f.public()) for f in files])


@router.get("/v1/files/{file_id}", response_model=FileObject)
async def retrieve_file(file_id: str, raw_request: Request) -> FileObject:
    stored = await asyncio.to_thread(raw_request.app.state.files.get, file_id, file_owner(raw_request))
    return FileObject(**stored.public())


@router.delete("/v1/files/{file_id}", response_model=FileDeleted)
async def delete_file(file_id: str, raw_request: Request) -> FileDeleted:
    stored = await asyncio.to_thread(raw_request.app.state.files.delete, file_id, file_owner(raw_request))
    return FileDeleted(id=stored.id)
