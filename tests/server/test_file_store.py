"""The upload store: unguessable ids, TTL, quotas, pagination, concurrent streamed uploads, and nothing partial
left behind."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.errors import APIError
from server.runtime.settings import default_uploads_dir
from server.uploads.file_store import LEASE_STALE_S, LEDGER, FileStore


def upload_files(root: Path) -> list[str]:
    """Every file in the store's directory but the ledger (the store's own bookkeeping, always there)."""
    return sorted(p.name for p in root.iterdir() if p.name != LEDGER)


def test_add_get_read_delete(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=1000)
    stored = store.add(b"video-bytes", "../../room.mp4", "user_data")
    assert stored.id.startswith("file-") and len(stored.id) == 37
    assert stored.filename == "room.mp4"  # directories in a client's file name are dropped
    assert store.read(stored.id)[1] == b"video-bytes"
    assert [f.id for f in store.list().files] == [stored.id]
    assert "sha256" not in stored.public()
    store.delete(stored.id)
    with pytest.raises(APIError) as caught:
        store.get(stored.id)
    assert caught.value.status == 404
    assert upload_files(tmp_path) == []


def test_ids_are_unique_and_unguessable(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=1 << 20)
    ids = {store.add(b"x", "a.mp4", "user_data").id for _ in range(50)}
    assert len(ids) == 50


@pytest.mark.parametrize("file_id", ["file-../../etc/passwd", "../x", "file-", "FILE-" + "a" * 32, "file-" + "g" * 32])
def test_malformed_ids_are_404(tmp_path: Path, file_id: str) -> None:
    with pytest.raises(APIError) as caught:
        FileStore(tmp_path, ttl_s=60, quota_bytes=100).get(file_id)
    assert caught.value.status == 404


def test_expired_files_are_gone_and_their_owner_hears_they_expired(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ttl_s=0, quota_bytes=100)  # every upload expires at once
    stored = store.add(b"abc", "a.mp4", "user_data", owner="a" * 32)
    with pytest.raises(APIError) as caught:
        store.get(stored.id, "a" * 32)
    assert caught.value.status == 404 and "expired at" in caught.value.message
    assert store.sweep() == 1
    assert upload_files(tmp_path) == []
    for owner in ("a" * 32, "b" * 32):  # still "expired" after the sweep, but only to its owner
        with pytest.raises(APIError) as caught:
            store.read(stored.id, owner)
        assert ("expired at" in caught.value.message) == (owner == "a" * 32)


def test_quota_is_507_and_leaves_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=10)
    store.add(b"12345678", "a.mp4", "user_data")
    with pytest.raises(APIError) as caught:
        store.add(b"123", "b.mp4", "user_data")
    assert caught.value.status == 507
    assert len(list(tmp_path.glob("file-*.bin"))) == 1
    assert not [p for p in tmp_path.glob(".*") if p.name != LEDGER]


def test_each_key_has_its_own_quota_and_the_507_says_which_was_hit(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=20, quota_per_key_bytes=8)
    other = store.add(b"12345678", "a.mp4", "user_data", owner="b" * 32)  # another key's files do not count
    mine = store.add(b"12345678", "a.mp4", "user_data", owner="a" * 32)
    with pytest.raises(APIError) as caught:
        store.add(b"1", "b.mp4", "user_data", owner="a" * 32)
    assert caught.value.status == 507 and "this API key's quota of 8 bytes" in caught.value.message
    store.delete(mine.id, "a" * 32)  # deleting what one sees frees one's quota
    store.add(b"12345678", "a.mp4", "user_data", owner="a" * 32)
    with pytest.raises(APIError) as caught:
        store.add(b"12345", "c.mp4", "user_data", owner="c" * 32)  # 8 + 8 + 5 > 20 in all
    assert caught.value.status == 507 and "all keys together" in caught.value.message
    assert store.usage("b" * 32) == (8, 16) and store.get(other.id, "b" * 32) == other


def test_start_up_clears_partials_orphans_and_expired_entries(tmp_path: Path) -> None:
    kept = FileStore(tmp_path, ttl_s=60, quota_bytes=100).add(b"live", "a.mp4", "user_data")
    expired = FileStore(tmp_path, ttl_s=0, quota_bytes=100).add(b"old", "a.mp4", "user_data")
    leftovers = [
        tmp_path / ".file-abc.partial",  # a crash mid-write
        tmp_path / f"file-{'1' * 32}.bin",  # a blob without its record
        tmp_path / f"file-{'2' * 32}.json",  # a record without its blob
        tmp_path / f"file-{'3' * 32}.json",  # a damaged record...
        tmp_path / f"file-{'3' * 32}.bin",  # ...with its blob
    ]
    for path in leftovers:
        path.write_text(json.dumps({**kept.__dict__, "id": path.stem}) if path.name.startswith("file-2") else "{x")
        stale = time.time() - LEASE_STALE_S - 1  # untouched for longer than a lease lives: nobody is writing it
        os.utime(path, (stale, stale))
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=100)
    assert upload_files(tmp_path) == sorted([f"{kept.id}.bin", f"{kept.id}.json"])
    assert [f.id for f in store.list().files] == [kept.id]
    with pytest.raises(APIError, match="expired"):
        store.get(expired.id)


def test_list_pages_by_cursor_in_either_order_with_a_purpose_filter(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=1000)
    ids = [store.add(b"v", f"{i}.mp4", "vision" if i % 3 == 0 else "user_data").id for i in range(7)]
    store.add(b"v", "theirs.mp4", "user_data", owner="b" * 32)
    for order in ("asc", "desc"):
        seen, after, pages = [], None, 0
        while True:
            page = store.list(order=order, after=after, limit=3)
            seen += page.files
            pages += 1
            if not page.has_more:
                break
            after = page.files[-1].id
        assert pages == 3 and sorted(f.id for f in seen) == sorted(ids)  # every file once
        keys = [(f.created_at, f.id) for f in seen]
        assert keys == sorted(keys, reverse=order == "desc")
    assert {f.id for f in store.list(purpose="vision").files} == {ids[0], ids[3], ids[6]}
    assert store.list(limit=7).has_more is False and store.list(limit=6).has_more is True
    with pytest.raises(APIError) as caught:
        store.list(after="file-" + "0" * 32)
    assert caught.value.status == 400 and caught.value.param == "after"


def _chunks_meeting(barrier: threading.Barrier) -> Iterator[bytes]:
    """An upload body that sends one chunk, then waits until the other upload has sent one too."""
    yield b"first chunk "
    barrier.wait()
    yield b"second chunk"


def test_two_uploads_stream_to_disk_at_the_same_time(tmp_path: Path) -> None:
    """Both uploads are mid-body at once; were receiving serialised (the old store held its one lock while
    writing), the first would wait at the barrier for a second that could not start, and the barrier breaks."""
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=1000)
    barrier = threading.Barrier(2, timeout=30)
    results: dict[str, object] = {}

    def upload(owner: str) -> None:
        try:
            pending = store.receive(_chunks_meeting(barrier), max_bytes=100)
            results[owner] = store.commit(pending, "a.mp4", "user_data", owner)
        except Exception as exc:
            results[owner] = exc

    threads = [threading.Thread(target=upload, args=(owner,)) for owner in ("a" * 32, "b" * 32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for owner in ("a" * 32, "b" * 32):
        stored = results[owner]
        assert not isinstance(stored, Exception), stored
        assert store.read(stored.id, owner)[1] == b"first chunk second chunk"
        assert stored.sha256 == hashlib.sha256(b"first chunk second chunk").hexdigest()


def test_a_stream_over_the_limit_is_413_naming_the_field_and_leaves_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=1000)
    with pytest.raises(APIError) as caught:
        store.receive(iter([b"12345", b"67890", b"x"]), max_bytes=10, param="video")
    assert (caught.value.status, caught.value.param) == (413, "video")
    with pytest.raises(APIError) as caught:
        store.receive(iter([]), max_bytes=10)
    assert (caught.value.status, caught.value.param) == (400, "file")
    assert upload_files(tmp_path) == []


def test_default_directory_is_the_xdg_state_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_uploads_dir() == tmp_path / "spatial-mllm-serve" / "uploads"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_uploads_dir() == tmp_path / ".local" / "state" / "spatial-mllm-serve" / "uploads"


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
    assert [f.id for f in store.list("a" * 32).files] == [mine.id]
    assert store.list("b" * 32).files == [] and store.list().files == []
    store.delete(mine.id, "a" * 32)
    assert upload_files(tmp_path) == []
