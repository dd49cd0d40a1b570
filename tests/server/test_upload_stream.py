"""``POST /v1/files`` bodies go straight into the store while they arrive (a leased partial, no local spool); the
route on a minimal app (the real router, store, preparer and error handlers; no engine) answers as before."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import ClientDisconnect, Request

from server.api import files_api
from server.errors import APIError, install_error_handlers
from server.frames.video_prep import VideoPreparer
from server.runtime.settings import ServerSettings
from server.uploads.file_store import LEDGER, FileStore
from server.uploads.upload_stream import StreamedUpload, parse_into_store

BOUNDARY = "unit-test-boundary"


def multipart(video: bytes, **fields: str) -> list[bytes]:
    """A multipart body (fields, then the file) cut into small pieces, as a network would deliver it."""
    head = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    )
    head += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n\r\n'
    body = head.encode() + video + f"\r\n--{BOUNDARY}--\r\n".encode()
    return [body[i : i + 1000] for i in range(0, len(body), 1000)]


def request_of(
    pieces: list[bytes], seen: list[int] | None = None, root: Path | None = None, leave: bool = False
) -> Request:
    """A Starlette request whose body arrives piece by piece (then, with ``leave``, the client disconnects);
    ``seen`` records, before each piece, how many bytes the store's partial files already hold."""
    queue = iter(pieces)

    async def receive() -> dict:
        if seen is not None and root is not None:
            seen.append(sum(p.stat().st_size for p in root.glob(".*.partial")))
        piece = next(queue, None)
        if piece is None and leave:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": piece or b"", "more_body": piece is not None}

    headers = [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]
    return Request({"type": "http", "method": "POST", "path": "/v1/files", "headers": headers}, receive)


def test_the_video_is_in_the_store_while_the_body_is_still_arriving(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=1 << 20)
    video = bytes(range(256)) * 400  # 100 KiB: more than a file object's write buffer
    seen: list[int] = []
    request = request_of(multipart(video, purpose="vision"), seen, tmp_path)
    form = asyncio.run(parse_into_store(request, store, len(video)))
    assert form["purpose"] == "vision"
    assert 0 < seen[len(seen) // 2] < len(video)  # half-way through the body, half of it is on the store's disk
    stream = form["file"].file
    assert isinstance(stream, StreamedUpload) and form["file"].filename == "v.mp4"
    pending = stream.finish("file")
    assert pending.path.read_bytes() == video and pending.hasher.hexdigest() == hashlib.sha256(video).hexdigest()
    stored = store.commit(pending, "v.mp4", "vision")
    stream.close()  # the request ends: a committed upload stays
    assert store.read(stored.id)[1] == video


@pytest.mark.parametrize(("video", "status"), [(b"x" * 101, 413), (b"", 400)])
def test_too_large_or_empty_is_refused_naming_the_field_and_leaves_nothing(
    tmp_path: Path, video: bytes, status: int
) -> None:
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=1 << 20)
    form = asyncio.run(parse_into_store(request_of(multipart(video)), store, 100))
    with pytest.raises(APIError) as caught:
        form["file"].file.finish("file")
    assert (caught.value.status, caught.value.param) == (status, "file")
    assert [p.name for p in tmp_path.iterdir()] == [LEDGER]


def test_a_client_leaving_mid_body_leaves_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=1 << 20)
    request = request_of(multipart(b"v" * 50_000)[:20], leave=True)
    with pytest.raises(ClientDisconnect):
        asyncio.run(parse_into_store(request, store, 100_000))
    assert [p.name for p in tmp_path.iterdir()] == [LEDGER]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(files_api.router)
    install_error_handlers(app)
    settings = ServerSettings(uploads_dir=tmp_path, max_video_bytes=1 << 20, media_workers=1)
    app.state.settings, app.state.files = settings, FileStore.configured(settings)
    app.state.preparer = VideoPreparer(settings)
    try:
        with TestClient(app) as test_client:
            yield test_client
    finally:
        app.state.preparer.shutdown()


def test_the_route_stores_a_video_and_refuses_what_it_did_before(
    client: TestClient, room_video: Path, tmp_path: Path
) -> None:
    video = room_video.read_bytes()
    reply = client.post("/v1/files", files={"file": ("room.mp4", video)}, data={"purpose": "user_data"})
    assert reply.status_code == 200, reply.text
    stored = reply.json()
    assert stored["bytes"] == len(video) and stored["video"]["num_frames"] == 24
    assert client.get(f"/v1/files/{stored['id']}/content").content == video
    not_video = client.post("/v1/files", files={"file": ("a.mp4", b"not a video at all")})
    assert not_video.status_code == 415 and not_video.json()["error"]["param"] == "file"
    unknown = client.post("/v1/files", files={"file": ("a.mp4", video)}, data={"colour": "red"})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "colour"
    large = client.post("/v1/files", files={"file": ("a.mp4", b"0" * ((1 << 20) + 1))})
    assert large.status_code == 413 and large.json()["error"]["param"] == "file"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([LEDGER, f"{stored['id']}.bin", f"{stored['id']}.json"])
