"""Uploaded videos on disk, in a directory any number of server processes may share (one replica's local disk, or
one ReadWriteMany volume mounted by every replica: NFS, CephFS, EFS, Filestore): unguessable ids, a time to live,
per-key and total quotas that hold across every process, nothing partial left behind, nothing lost.

Layout of the directory (everything a process knows about uploads is read from here, never from its memory):

* ``file-<id>.bin`` and ``file-<id>.json``: the video and its record (OpenAI's file object, the content hash, the
  video's facts and the owner: a digest of the uploading API key, so one key never sees, reads or deletes another
  key's uploads). A record never changes once written; ids are 128-bit random and created with ``O_EXCL``.
* ``file-<id>.<digest>.selection``: a space-aware selection computed for that upload (frame indices per sampling
  key), so another process asked the same question runs no VGGT pass. Removed with the upload.
* ``.<token>.partial``: an upload being received. Its modification time is its **lease**: the receiving process
  touches it every :data:`LEASE_RENEW_S` seconds (and every write touches it), and cleanup removes only partials
  whose lease is older than :data:`LEASE_STALE_S`, so a process that starts (or sweeps) never removes an upload
  another live process is receiving, while a crashed process's partials still go, whoever cleans next.
* ``.ledger``: the quota ledger, the one source of truth for which uploads exist, whose they are, how large and
  until when, plus the ids that expired recently (so their owner hears "expired" from every process). Read and
  rewritten only while holding ``flock`` on it; every commit, delete, expiry and cleanup happens under that lock.

Locking semantics relied on (docs/DEPLOY.md): ``flock`` excludes other open file descriptions, so other threads,
other stores and other processes; on a Linux NFS client it is emulated with whole-file byte-range locks (since
2.6.12), forwarded to the server (NFSv4 LOCK, or NLM for NFSv3), and taking a lock revalidates the client's cached
data of that file, releasing it flushes: the ledger read under the lock is the latest one written. Renames and
``O_EXCL`` creates are atomic; ``open`` revalidates a file against the server (close-to-open), so a record
another process deleted is gone here too. Times of leases are the volume's clock (``utime`` with no time asks the
server for its own), compared with the volume's clock, so clocks of replicas need not agree.

All of it is synchronous (plain file I/O); the routes call it from worker threads.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, NamedTuple

from server.errors import APIError

if TYPE_CHECKING:  # settings import this module for the default directory
    from server.runtime.settings import ServerSettings

FILE_ID = re.compile(r"^file-[0-9a-f]{32}$")
MAX_REMEMBERED_EXPIRIES = 10_000  # expired ids whose owner still gets "expired" rather than "no such file"
LEASE_RENEW_S = 5.0  # how often a receiving process touches its partial uploads
LEASE_STALE_S = 60.0  # a partial (or orphan) untouched this long belongs to nobody alive: twelve missed renewals
LEDGER = ".ledger"


@dataclass(frozen=True)
class StoredFile:
    """OpenAI's file object, plus what we keep for caches, quotas and clients (``video``: what the video is)."""

    id: str
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    sha256: str
    object: str = "file"
    status: str = "processed"
    owner: str = ""  # digest of the uploader's API key ("" when the server has no keys)
    video: dict[str, Any] | None = None  # sampling.decode.VideoInfo as a dict

    def public(self) -> dict[str, object]:
        """The object as our API returns it: OpenAI's fields plus the ``video`` extension."""
        data = asdict(self)
        data.pop("sha256")
        data.pop("owner")
        return data


@dataclass(frozen=True)
class StoredSelection:
    """A space-aware choice made for one upload under one sampling key: the chosen frame indices of the video,
    and how many candidates they were chosen from."""

    indices: list[int]
    candidates: int


class FilePage(NamedTuple):
    """One page of a listing, and whether more files follow it."""

    files: list[StoredFile]
    has_more: bool


@dataclass
class PendingUpload:
    """One upload being received: its bytes go to a hidden partial file as they arrive, hashed on the way."""

    path: Path
    out: BinaryIO | None = None  # open while bytes arrive
    size: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)
    committed: bool = False

    def write(self, chunk: bytes) -> None:
        """Append ``chunk`` (a full disk is a 507)."""
        assert self.out is not None, "the upload was already closed"
        self.size += len(chunk)
        self.hasher.update(chunk)
        try:
            self.out.write(chunk)
        except OSError as exc:
            _raise_out_of_disk(exc)
            raise

    def close_output(self) -> None:
        if self.out is not None:
            out, self.out = self.out, None
            try:
                out.close()
            except OSError as exc:
                _raise_out_of_disk(exc)
                raise

    def discard(self) -> None:
        """Remove the partial file unless it became a stored upload (safe to call more than once)."""
        if not self.committed:
            with contextlib.suppress(OSError):
                self.close_output()
            self.path.unlink(missing_ok=True)


@dataclass
class Ledger:
    """What the ledger file holds: id -> (owner, bytes, expires_at) for live uploads, id -> (owner, expires_at)
    for recently expired ones (oldest first)."""

    files: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    expired: dict[str, tuple[str, int]] = field(default_factory=dict)

    def usage(self, owner: str) -> tuple[int, int]:
        total = mine = 0
        for who, size, _ in self.files.values():
            total += size
            mine += size if who == owner else 0
        return mine, total

    def to_json(self) -> bytes:
        return json.dumps({"files": self.files, "expired": self.expired}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Ledger:
        data = json.loads(raw)
        files = {k: (str(o), int(b), int(e)) for k, (o, b, e) in data["files"].items() if FILE_ID.match(k)}
        expired = {k: (str(o), int(e)) for k, (o, e) in data["expired"].items() if FILE_ID.match(k)}
        return cls(files, expired)


def _raise_out_of_disk(exc: OSError) -> None:
    """A full disk is the server's condition (507), not a server bug; other OS errors propagate."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise APIError(507, "The server is out of disk space for uploads.", "file") from exc


def selection_digest(key: str) -> str:
    """A sampling key as a file-name part (keys hold ':' and floats)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class FileStore:
    """Uploaded videos under ``root``, each kept ``ttl_s`` seconds; every API key may keep ``quota_per_key_bytes``
    and all keys together ``quota_bytes`` (the disk's share for uploads), counted over every process sharing
    ``root``."""

    def __init__(self, root: Path, ttl_s: float, quota_bytes: int, quota_per_key_bytes: int | None = None) -> None:
        self.root = root
        self.ttl_s = ttl_s
        self.quota_bytes = quota_bytes
        self.quota_per_key_bytes = quota_bytes if quota_per_key_bytes is None else quota_per_key_bytes
        self._records: dict[str, StoredFile] = {}  # parsed records (immutable on disk); membership from the ledger
        self._records_lock = threading.Lock()
        self._leases: set[Path] = set()  # this process's partial uploads, touched by the renewer
        self._leases_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._closed = threading.Event()
        # uploads read whole (:meth:`read`), counted: a question about frames already prepared reads none
        self.reads = self.bytes_read = 0
        self._reads_lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        self.cleanup()

    @classmethod
    def configured(cls, settings: ServerSettings) -> FileStore:
        """The store the server's settings describe."""
        s = settings
        return cls(s.uploads_dir, s.upload_ttl_s, s.uploads_quota_bytes, s.uploads_quota_bytes_per_key)

    def close(self) -> None:
        """Stop renewing leases (the process is stopping; its partials will be cleaned as stale)."""
        self._closed.set()
        if self._renewer is not None:
            self._renewer.join(timeout=LEASE_RENEW_S * 2)

    # --- the ledger -----------------------------------------------------------------------------------------

    def _paths(self, file_id: str) -> tuple[Path, Path]:
        return self.root / f"{file_id}.bin", self.root / f"{file_id}.json"

    @contextlib.contextmanager
    def _ledger(self, exclusive: bool = True) -> Iterator[tuple[Ledger, int]]:
        """The ledger, read under ``flock`` (exclusive: rewritten on exit unless an exception leaves). Yields the
        ledger and the open descriptor (for the volume's clock). A fresh descriptor per use: flock is held by an
        open file description, so this excludes other threads and stores of this process as well as others."""
        fd = os.open(self.root / LEDGER, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            ledger = _parse(_read_all(fd))
            if ledger is None and not exclusive:  # rebuilding is a write: take the lock exclusively, read again
                fcntl.flock(fd, fcntl.LOCK_EX)
                ledger = _parse(_read_all(fd))
            if ledger is None:  # a new directory, an older version's, or a crash mid-rewrite
                ledger = self._rebuild()
                _write_all(fd, ledger.to_json())
            try:
                yield ledger, fd
            finally:  # also after a refusal: what was expired meanwhile is gone from disk
                if exclusive:
                    _write_all(fd, ledger.to_json())
        finally:
            os.close(fd)  # releases the lock (after the write above was flushed by fsync)

    def _rebuild(self) -> Ledger:
        """A ledger from the records on disk (a new directory, one written by an older version, or a damaged
        ledger): every complete record with its blob counts."""
        ledger = Ledger()
        for meta_path in self.root.glob("file-*.json"):
            stored = _load(meta_path)
            if stored is not None and stored.id == meta_path.stem and self._paths(stored.id)[0].is_file():
                ledger.files[stored.id] = (stored.owner, stored.bytes, stored.expires_at)
        return ledger

    def _volume_now(self, fd: int) -> float:
        """The shared volume's clock: touch the ledger (``utime`` with no time: the server's time) and read it."""
        os.utime(fd)
        return os.fstat(fd).st_mtime

    def _expire(self, ledger: Ledger, now: float) -> int:
        """Under the lock: delete expired uploads, remembering for a while that they existed."""
        gone = [(file_id, entry) for file_id, entry in ledger.files.items() if entry[2] <= now]
        for file_id, (owner, _, expires_at) in gone:
            del ledger.files[file_id]
            ledger.expired[file_id] = (owner, expires_at)
            self._remove(file_id)
        while len(ledger.expired) > MAX_REMEMBERED_EXPIRIES:
            del ledger.expired[next(iter(ledger.expired))]
        return len(gone)

    def _remove(self, file_id: str) -> None:
        """Record first (the upload is gone for every reader at once), then the blob and its selections."""
        with self._records_lock:
            self._records.pop(file_id, None)
        blob, meta = self._paths(file_id)
        meta.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        for selection in self.root.glob(f"{file_id}.*.selection"):
            selection.unlink(missing_ok=True)

    # --- housekeeping ---------------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Delete expired uploads (any process's); returns how many went."""
        with self._ledger() as (ledger, _):
            return self._expire(ledger, time.time())

    def cleanup(self) -> int:
        """Sweep, then remove what crashed processes left: partial uploads whose lease is stale, and files of
        uploads the ledger does not hold (a crash mid-commit or mid-delete, a damaged record) once as old as a
        stale lease. Safe while other processes receive uploads. Runs at start and periodically; returns how
        many files went."""
        removed = 0
        with self._ledger() as (ledger, fd):
            self._expire(ledger, time.time())
            stale_before = self._volume_now(fd) - LEASE_STALE_S
            seen: set[str] = set()
            for entry in os.scandir(self.root):
                name = entry.name
                seen.add(name)
                if name.endswith(".partial"):
                    owned = False
                elif name.startswith("file-"):
                    owned = name.partition(".")[0] in ledger.files
                else:
                    continue
                try:
                    if not owned and entry.stat().st_mtime < stale_before:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    pass
            for file_id in list(ledger.files):
                if {f"{file_id}.bin", f"{file_id}.json"} <= seen or all(p.exists() for p in self._paths(file_id)):
                    continue  # (a listing may lag on NFS: a missing name is confirmed by a lookup)
                del ledger.files[file_id]  # a record or blob removed behind our back: it no longer counts
                self._remove(file_id)
        return removed

    def _renew_leases(self) -> None:
        """Touch this process's partial uploads every :data:`LEASE_RENEW_S` until they are done or we close."""
        while not self._closed.wait(LEASE_RENEW_S):
            with self._leases_lock:
                paths = list(self._leases)
            for path in paths:
                try:
                    os.utime(path)
                except FileNotFoundError:  # committed (renamed) or discarded
                    with self._leases_lock:
                        self._leases.discard(path)

    def _hold_lease(self, path: Path) -> None:
        with self._leases_lock:
            self._leases.add(path)
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_leases, name="upload-leases", daemon=True)
                self._renewer.start()

    # --- reading --------------------------------------------------------------------------------------------

    def _record(self, file_id: str) -> StoredFile | None:
        """The record on disk (opened each time: a delete or expiry by any process is seen at once)."""
        if not FILE_ID.match(file_id):
            return None
        stored = _load(self._paths(file_id)[1])
        return stored if stored is not None and stored.id == file_id else None

    def list(
        self,
        owner: str = "",
        *,
        purpose: str | None = None,
        order: Literal["asc", "desc"] = "desc",
        after: str | None = None,
        limit: int | None = None,
    ) -> FilePage:
        """One page of the owner's live uploads (OpenAI's cursor pagination) and whether more follow.

        Sorted by ``created_at`` (ties by id, so the order is total and a cursor is exact); ``after`` is the id
        of the previous page's last file and must be one of the owner's live files (else 400 naming ``after``).
        """
        now = time.time()
        with self._ledger(exclusive=False) as (ledger, _):
            ids = [i for i, (who, _, expires_at) in ledger.files.items() if who == owner and expires_at > now]
        with self._records_lock:
            self._records = {i: f for i, f in self._records.items() if i in ledger.files}
            cached = dict(self._records)
        mine = []
        for file_id in ids:
            stored = cached.get(file_id) or self._record(file_id)
            if stored is None:
                continue  # deleted since the ledger was read
            with self._records_lock:
                self._records[file_id] = stored
            if purpose is None or stored.purpose == purpose:
                mine.append(stored)
        mine.sort(key=lambda f: (f.created_at, f.id), reverse=order == "desc")
        start = 0
        if after is not None:
            position = next((i for i, f in enumerate(mine) if f.id == after), None)
            if position is None:
                raise APIError(400, f"after: no such file {after[:64]!r} among the listed files.", "after")
            start = position + 1
        end = len(mine) if limit is None else start + limit
        return FilePage(mine[start:end], end < len(mine))

    def usage(self, owner: str) -> tuple[int, int]:
        """Bytes stored by ``owner`` and by everyone (every process sharing the directory)."""
        with self._ledger(exclusive=False) as (ledger, _):
            return ledger.usage(owner)

    def get(self, file_id: str, owner: str = "") -> StoredFile:
        """The file's record; 404 for ids that are malformed, unknown or another key's (all indistinguishable on
        purpose: an id seen by one key tells another key nothing); the owner of an expired one hears so."""
        stored = self._record(file_id)
        expired: tuple[str, int] | None = None
        if stored is not None and stored.expires_at <= time.time():
            expired, stored = (stored.owner, stored.expires_at), None
        elif stored is None and FILE_ID.match(file_id):
            with self._ledger(exclusive=False) as (ledger, _):
                expired = ledger.expired.get(file_id)
        if stored is not None and stored.owner == owner:
            return stored
        if expired is not None and expired[0] == owner:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expired[1]))
            message = f"The file {file_id!r} expired at {when} (uploads are kept {self.ttl_s:g} s); upload it again."
            raise APIError(404, message, "file_id")
        raise APIError(404, f"No such file: {file_id[:64]!r}.", "file_id")

    def open(self, file_id: str, owner: str = "") -> tuple[StoredFile, BinaryIO]:
        """The record and the blob opened for reading (open, so a delete meanwhile cannot cut a download short)."""
        stored = self.get(file_id, owner)
        try:
            return stored, self._paths(file_id)[0].open("rb")
        except FileNotFoundError as exc:
            raise APIError(404, f"No such file: {file_id!r}.", "file_id") from exc

    def read(self, file_id: str, owner: str = "") -> tuple[StoredFile, bytes]:
        stored = self.get(file_id, owner)
        try:
            data = self._paths(file_id)[0].read_bytes()
        except FileNotFoundError as exc:
            raise APIError(404, f"No such file: {file_id!r}.", "file_id") from exc
        with self._reads_lock:
            self.reads += 1
            self.bytes_read += len(data)
        return stored, data

    def delete(self, file_id: str, owner: str = "") -> StoredFile:
        stored = self.get(file_id, owner)
        with self._ledger() as (ledger, _):
            ledger.files.pop(file_id, None)
            self._remove(file_id)
        return stored

    # --- space-aware selections stored with an upload ---------------------------------------------------------

    def selection(self, file_id: str, key: str) -> StoredSelection | None:
        """The selection some process stored for this upload under ``key``, if any."""
        try:
            data = json.loads((self.root / f"{file_id}.{selection_digest(key)}.selection").read_text())
            if data["key"] != key:
                return None
            return StoredSelection([int(i) for i in data["indices"]], int(data["candidates"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def keep_selection(self, file_id: str, key: str, selection: StoredSelection) -> None:
        """Store a selection beside the upload (written whole, then renamed: readers never see half of one). A
        no-op when the upload is gone meanwhile (cleanup removes a selection written just after a delete)."""
        if self._record(file_id) is None:
            return
        path = self.root / f"{file_id}.{selection_digest(key)}.selection"
        partial = self.root / f".{secrets.token_hex(16)}.partial"
        try:
            partial.write_text(json.dumps({"key": key, **asdict(selection)}))
            partial.rename(path)
        except OSError:
            partial.unlink(missing_ok=True)  # only a cache: the next asker computes it again

    # --- writing --------------------------------------------------------------------------------------------

    def receive(self, chunks: Iterable[bytes], max_bytes: int, param: str = "file") -> PendingUpload:
        """Write ``chunks`` to a new partial file under a lease, hashing as they come; 413 naming ``param`` past
        ``max_bytes``, 400 when empty. The caller probes the result, then :meth:`commit`\\ s or discards it."""
        pending = self.open_upload()
        try:
            for chunk in chunks:
                if pending.size + len(chunk) > max_bytes:
                    raise APIError(413, f"The video exceeds the limit of {max_bytes} bytes.", param)
                pending.write(chunk)
            pending.close_output()
            if pending.size == 0:
                raise APIError(400, "The uploaded file is empty.", param)
        except BaseException:
            pending.discard()
            raise
        return pending

    def open_upload(self) -> PendingUpload:
        """A new partial file, open for writing, under this process's lease until committed or discarded."""
        path = self.root / f".{secrets.token_hex(16)}.partial"
        try:
            out = path.open("xb")
        except OSError as exc:
            _raise_out_of_disk(exc)
            raise
        self._hold_lease(path)
        return PendingUpload(path, out)

    def commit(
        self, pending: PendingUpload, filename: str, purpose: str, owner: str = "", video: dict[str, Any] | None = None
    ) -> StoredFile:
        """Turn a received upload into a stored file under a fresh unguessable id, visible to ``owner`` only;
        507 (saying which quota) when the key's quota or the store's total would be exceeded, counting every
        process's uploads (checked and recorded under the ledger's lock)."""
        now = int(time.time())
        with self._ledger() as (ledger, _):
            self._expire(ledger, now)
            mine, total = ledger.usage(owner)
            if mine + pending.size > self.quota_per_key_bytes:
                message = (
                    f"Your uploads would exceed this API key's quota of {self.quota_per_key_bytes} bytes "
                    f"({mine} in use); delete some of your files or wait for them to expire."
                )
                raise APIError(507, message, "file")
            if total + pending.size > self.quota_bytes:
                raise APIError(507, "The server's upload store is full (all keys together); try again later.", "file")
            if shutil.disk_usage(self.root).free < pending.size:
                raise APIError(507, "The server is out of disk space for uploads.", "file")
            pending.close_output()
            stored, meta_fd = self._new_record(pending, filename, purpose, owner, video, now)
            blob, meta = self._paths(stored.id)
            try:
                with os.fdopen(meta_fd, "w") as out:
                    out.write(json.dumps(asdict(stored)))
                pending.path.rename(blob)
                pending.committed = True
            except OSError as exc:
                meta.unlink(missing_ok=True)
                if pending.committed:
                    blob.unlink(missing_ok=True)
                    pending.committed = False
                _raise_out_of_disk(exc)
                raise
            ledger.files[stored.id] = (owner, stored.bytes, stored.expires_at)
        return stored

    def _new_record(
        self, pending: PendingUpload, filename: str, purpose: str, owner: str, video: dict[str, Any] | None, now: int
    ) -> tuple[StoredFile, int]:
        """A record under a fresh id, its file created with ``O_EXCL`` (so an id is never handed out twice)."""
        while True:
            stored = StoredFile(
                id="file-" + secrets.token_hex(16),
                bytes=pending.size,
                created_at=now,
                expires_at=now + int(self.ttl_s),
                filename=Path(filename or "upload").name[:255],
                purpose=purpose,
                sha256=pending.hasher.hexdigest(),
                owner=owner,
                video=video,
            )
            try:
                return stored, os.open(self._paths(stored.id)[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue  # 2^-128 per pair of ids; or an id the test suite forced
            except OSError as exc:
                _raise_out_of_disk(exc)
                raise

    def add(
        self, data: bytes, filename: str, purpose: str, owner: str = "", video: dict[str, Any] | None = None
    ) -> StoredFile:
        """Store ``data`` (already checked to be a video) in one call: :meth:`receive` then :meth:`commit`."""
        pending = self.receive([data], max_bytes=len(data))
        try:
            return self.commit(pending, filename, purpose, owner, video)
        finally:
            pending.discard()


def _load(meta_path: Path) -> StoredFile | None:
    try:
        return StoredFile(**json.loads(meta_path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _parse(raw: bytes) -> Ledger | None:
    try:
        return Ledger.from_json(raw) if raw else None
    except (ValueError, KeyError, TypeError):
        return None


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


def _write_all(fd: int, data: bytes) -> None:
    """Rewrite the ledger in place and make it durable before the lock is released."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)
