"""The upload store: unguessable ids, TTL, quota, and nothing partial left behind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from server.errors import APIError
from server.file_store import FileStore


def test_add_get_read_delete(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=1000)
    stored = store.add(b"video-bytes", "../../room.mp4", "user_data")
    assert stored.id.startswith("file-") and len(stored.id) == 37
    assert stored.filename == "room.mp4"  # directories in a client's file name are dropped
    assert store.read(stored.id)[1] == b"video-bytes"
    assert [f.id for f in store.list()] == [stored.id]
    assert "sha256" not in stored.public()
    store.delete(stored.id)
    with pytest.raises(APIError) as caught:
        store.get(stored.id)
    assert caught.value.status == 404
    assert list(tmp_path.iterdir()) == []


def test_ids_are_unique_and_unguessable(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=1 << 20)
    ids = {store.add(b"x", "a.mp4", "user_data").id for _ in range(50)}
    assert len(ids) == 50


@pytest.mark.parametrize("file_id", ["file-../../etc/passwd", "../x", "file-", "FILE-" + "a" * 32, "file-" + "g" * 32])
def test_malformed_ids_are_404(tmp_path: Path, file_id: str) -> None:
    with pytest.raises(APIError) as caught:
        FileStore(tmp_path, ttl_s=60, quota_bytes=100).get(file_id)
    assert caught.value.status == 404


def test_expired_files_are_gone(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ttl_s=0.5, quota_bytes=100)
    stored = store.add(b"abc", "a.mp4", "user_data")
    time.sleep(1.1)
    with pytest.raises(APIError):
        store.get(stored.id)
    assert store.sweep() == 1
    assert list(tmp_path.iterdir()) == []


def test_quota_is_507_and_leaves_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=10)
    store.add(b"12345678", "a.mp4", "user_data")
    with pytest.raises(APIError) as caught:
        store.add(b"123", "b.mp4", "user_data")
    assert caught.value.status == 507
    assert len(list(tmp_path.glob("file-*.bin"))) == 1
    assert not list(tmp_path.glob(".*"))


def test_leftover_partials_are_cleared_on_start(tmp_path: Path) -> None:
    (tmp_path / ".file-abc.partial").write_bytes(b"half")
    FileStore(tmp_path, ttl_s=60, quota_bytes=100)
    assert list(tmp_path.iterdir()) == []


def test_uploads_belong_to_their_owner(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=1000)
    mine = store.add(b"video-bytes", "room.mp4", "user_data", owner="a" * 32)
    assert "owner" not in mine.public()
    assert store.read(mine.id, "a" * 32)[1] == b"video-bytes"
    for attempt in (store.get, store.read, store.delete):
        with pytest.raises(APIError) as caught:
            attempt(mine.id, "b" * 32)  # another key: the same 404 as an unknown id
        assert caught.value.status == 404 and caught.value.message == f"No such file: {mine.id!r}."
    with pytest.raises(APIError):
        store.get(mine.id)  # nor the keyless namespace
    assert [f.id for f in store.list("a" * 32)] == [mine.id]
    assert store.list("b" * 32) == [] and store.list() == []
    store.delete(mine.id, "a" * 32)
    assert list(tmp_path.iterdir()) == []
