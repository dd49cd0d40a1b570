"""Several stores (as several replicas would) on one directory: what one does, every other sees; quotas hold
across them; a live upload survives the others' cleanup, a crashed one's does not; ids never collide.

The stores run in one process here (flock excludes other open file descriptions, so two stores of one process
exclude each other as two processes do), except the quota race, which runs real processes."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.errors import APIError
from server.uploads import file_store
from server.uploads.file_store import LEDGER, FileStore, StoredSelection

A, B = "a" * 32, "b" * 32


def two_stores(root: Path, **kwargs: object) -> tuple[FileStore, FileStore]:
    options = {"ttl_s": 60, "quota_bytes": 1000, **kwargs}
    return FileStore(root, **options), FileStore(root, **options)  # type: ignore[arg-type]


def test_an_upload_on_one_store_is_read_listed_and_deleted_on_another(tmp_path: Path) -> None:
    one, two = two_stores(tmp_path)
    stored = one.add(b"video-bytes", "room.mp4", "user_data", owner=A)
    assert two.get(stored.id, A) == stored and two.read(stored.id, A)[1] == b"video-bytes"
    assert [f.id for f in two.list(A).files] == [stored.id] == [f.id for f in one.list(A).files]
    assert two.usage(A) == (11, 11)
    two.delete(stored.id, A)
    for store in (one, two):
        with pytest.raises(APIError) as caught:
            store.get(stored.id, A)
        assert caught.value.status == 404 and caught.value.message == f"No such file: {stored.id!r}."
        assert store.list(A).files == [] and store.usage(A) == (0, 0)


def test_an_expiry_swept_by_one_store_is_expired_on_every_store(tmp_path: Path) -> None:
    one, two = two_stores(tmp_path, ttl_s=0)
    stored = one.add(b"abc", "a.mp4", "user_data", owner=A)
    assert one.sweep() == 1 and not (tmp_path / f"{stored.id}.bin").exists()
    with pytest.raises(APIError) as caught:
        two.get(stored.id, A)  # two never saw it: the ledger says it expired
    assert caught.value.status == 404 and "expired at" in caught.value.message
    with pytest.raises(APIError) as caught:
        two.get(stored.id, B)
    assert "expired" not in caught.value.message  # and only to its owner


def test_quotas_per_key_and_in_total_count_every_store(tmp_path: Path) -> None:
    one, two = two_stores(tmp_path, quota_bytes=20, quota_per_key_bytes=10)
    one.add(b"12345678", "a.mp4", "user_data", owner=A)
    with pytest.raises(APIError) as caught:
        two.add(b"123", "b.mp4", "user_data", owner=A)
    assert caught.value.status == 507 and "this API key's quota of 10 bytes (8 in use)" in caught.value.message
    two.add(b"12345678", "b.mp4", "user_data", owner=B)
    with pytest.raises(APIError) as caught:
        one.add(b"12345", "c.mp4", "user_data", owner="c" * 32)
    assert caught.value.status == 507 and "all keys together" in caught.value.message
    assert one.usage(A) == two.usage(A) == (8, 16)


def _fill(root: str, owner: str, results: multiprocessing.Queue) -> None:
    store = FileStore(Path(root), ttl_s=60, quota_bytes=1000, quota_per_key_bytes=30)
    kept = 0
    for _ in range(8):
        try:
            store.add(b"x" * 4, "a.mp4", "user_data", owner=owner)
            kept += 1
        except APIError as exc:
            assert exc.status == 507
    results.put(kept)


def test_processes_racing_for_one_keys_quota_never_exceed_it(tmp_path: Path) -> None:
    """Four processes, one key, 8 uploads of 4 bytes each against a quota of 30: exactly 7 fit, whoever wins."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_fill, args=(str(tmp_path), A, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert sum(results.get(timeout=5) for _ in workers) == 7
    store = FileStore(tmp_path, ttl_s=60, quota_bytes=1000)
    assert store.usage(A) == (28, 28) and len(list(tmp_path.glob("file-*.bin"))) == 7


@pytest.fixture
def short_leases(monkeypatch: pytest.MonkeyPatch) -> float:
    """Leases renewed every 0.05 s and stale after 0.5 s, so a test can outlive several of them."""
    monkeypatch.setattr(file_store, "LEASE_RENEW_S", 0.05)
    monkeypatch.setattr(file_store, "LEASE_STALE_S", 0.5)
    return 0.5


def test_another_stores_start_and_cleanup_never_remove_a_live_upload(tmp_path: Path, short_leases: float) -> None:
    receiver = FileStore(tmp_path, ttl_s=60, quota_bytes=1000)
    resume = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield b"first half, "
        resume.wait(timeout=30)  # the client stalls for several lease lifetimes
        yield b"second half"

    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(pending=receiver.receive(slow_body(), max_bytes=100)))
    thread.start()
    deadline = time.monotonic() + 4 * short_leases
    while time.monotonic() < deadline:
        FileStore(tmp_path, ttl_s=60, quota_bytes=1000).cleanup()  # a replica (re)starting, and its sweeps
        time.sleep(0.05)
    resume.set()
    thread.join()
    pending = result["pending"]
    time.sleep(2 * short_leases)  # probing the video: no bytes arrive, the lease is still renewed
    FileStore(tmp_path, ttl_s=60, quota_bytes=1000).cleanup()
    stored = receiver.commit(pending, "a.mp4", "user_data", A)
    assert FileStore(tmp_path, ttl_s=60, quota_bytes=1000).read(stored.id, A)[1] == b"first half, second half"


def test_a_crashed_stores_leftovers_are_cleaned_by_another_later(tmp_path: Path, short_leases: float) -> None:
    survivor = FileStore(tmp_path, ttl_s=60, quota_bytes=1000)
    crashed = [tmp_path / ".0123.partial", tmp_path / f"file-{'1' * 32}.bin", tmp_path / f"file-{'2' * 32}.json"]
    for path in crashed:
        path.write_bytes(b"left by a process that died")
    assert survivor.cleanup() == 0  # young: maybe a live process's
    time.sleep(2 * short_leases)
    assert survivor.cleanup() == 3  # nobody renewed them: stale
    assert sorted(p.name for p in tmp_path.iterdir()) == [LEDGER]


def test_ids_never_collide_even_when_the_random_source_repeats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = two_stores(tmp_path)
    tokens = iter(["p1", "c" * 32, "p2", "c" * 32, "d" * 32])  # partial, id; partial, the same id, a fresh one

    class RepeatingSecrets:
        @staticmethod
        def token_hex(_: int) -> str:
            return next(tokens)

    monkeypatch.setattr(file_store, "secrets", RepeatingSecrets)
    first = one.add(b"first", "a.mp4", "user_data", owner=A)
    second = two.add(b"second", "b.mp4", "user_data", owner=A)
    assert (first.id, second.id) == ("file-" + "c" * 32, "file-" + "d" * 32)
    assert one.read(first.id, A)[1] == b"first" and one.read(second.id, A)[1] == b"second"


def test_a_selection_stored_by_one_store_is_read_by_another_and_goes_with_the_upload(tmp_path: Path) -> None:
    one, two = two_stores(tmp_path)
    stored = one.add(b"video", "a.mp4", "user_data", owner=A)
    choice = StoredSelection([0, 5, 9, 14], candidates=16)
    assert two.selection(stored.id, "k=4") is None
    one.keep_selection(stored.id, "k=4", choice)
    assert two.selection(stored.id, "k=4") == choice and two.selection(stored.id, "k=8") is None
    two.delete(stored.id, A)
    assert one.selection(stored.id, "k=4") is None
    one.keep_selection(stored.id, "k=4", choice)  # a pass finishing after the delete stores nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == [LEDGER]


def test_a_damaged_ledger_is_rebuilt_from_the_records(tmp_path: Path) -> None:
    one, _ = two_stores(tmp_path)
    stored = one.add(b"12345", "a.mp4", "user_data", owner=A)
    (tmp_path / LEDGER).write_bytes(b'{"files": {"file-')  # a crash mid-rewrite
    two = FileStore(tmp_path, ttl_s=60, quota_bytes=1000)
    assert two.usage(A) == (5, 5) and [f.id for f in two.list(A).files] == [stored.id]
    assert os.path.getsize(tmp_path / LEDGER) > 0
