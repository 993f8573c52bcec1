"""Blobs on the local file system: the embedded default.

Blobs live under <root>/blobs/<algorithm>/<2 hex>/<hex>, uploads under <root>/uploads/<id> with
their state beside them in <root>/uploads/<id>.state (see UploadStateFiles), and blobs in the
archive tier under <archive root>/blobs/<algorithm>/<2 hex>/<hex> (another disk,
as the operator names it). An
upload's lock is an flock on its file, which every process on the machine sees and the kernel
releases when a process dies; its verified bytes are flushed, then hard-linked into place (never
over a sound blob) and the upload's name removed. The guarantees are the interface's
(dockyard.store.blobs.interface)."""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import BinaryIO

from dockyard.store.blobs.interface import (
    READ_SIZE,
    Appended,
    DigestMismatch,
    RunningHash,
    StoredFile,
    UploadBusy,
    UploadGone,
    UploadState,
    new_writer,
    split_digest,
)

# Big enough that hashing and writing run off the event loop in few hops, small enough that
# memory stays flat whatever the blob size.
BUFFER_SIZE = 1024 * 1024
# How much of an upload is written between early writeback requests.
FLUSH_EVERY = 16 * 1024 * 1024
# An upload's state file, and the name a new state is written under before it replaces it.
STATE_SUFFIX = ".state"
NEW_STATE_SUFFIX = ".state-new"


class UploadStateFiles:
    """Each upload's state in <uploads>/<id>.state, beside its bytes in <uploads>/<id>.

    One machine's processes share the directory, and the upload's flock makes one request at a
    time its writer from reading the state to saving the next one, so no database row has to
    decide between racing appends. A state is written whole under another name and renamed over
    the old one, so a reader (or a process killed mid-write) sees one state or the next, never a
    mix. States are not fsync'd: a PATCH acknowledges no stored data (the upload's bytes are not
    flushed before its 202 either); what a kill leaves in the page cache survives, and only a
    power loss can cost an upload in progress, which the client then starts again. An upload
    exists while both files do: the bytes' name goes first when it is completed or cancelled,
    so a state a racing append saves afterwards names nothing."""

    def __init__(self, uploads: Path) -> None:
        self._uploads = uploads

    async def save(self, upload_id: str, state: UploadState) -> None:
        data = self._uploads / upload_id
        new = self._uploads / f"{upload_id}{NEW_STATE_SUFFIX}"
        new.write_bytes(json.dumps(dataclasses.asdict(state)).encode())
        current = self._uploads / f"{upload_id}{STATE_SUFFIX}"
        os.replace(new, current)
        if not data.exists():
            current.unlink(missing_ok=True)
            raise UploadGone(upload_id)

    async def load(self, upload_id: str) -> UploadState | None:
        try:
            text = (self._uploads / f"{upload_id}{STATE_SUFFIX}").read_bytes()
        except FileNotFoundError:
            return None
        if not (self._uploads / upload_id).exists():
            return None
        return UploadState(**json.loads(text))

    def remove(self, upload_id: str) -> None:
        for suffix in (STATE_SUFFIX, NEW_STATE_SUFFIX):
            (self._uploads / f"{upload_id}{suffix}").unlink(missing_ok=True)


class FilesystemBlobStore:
    """Blobs under <root>/blobs/<algorithm>/<2 hex>/<hex>, uploads under <root>/uploads/<id>."""

    def __init__(self, root: Path, archive_root: Path | None = None) -> None:
        self.root = root
        self._blobs = root / "blobs"
        self.archive_root = archive_root if archive_root is not None else root.parent / "archive"
        self._archived = self.archive_root / "blobs"
        self._uploads = root / "uploads"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._uploads.mkdir(parents=True, exist_ok=True)
        self.upload_states = UploadStateFiles(self._uploads)
        # Hash state of uploads in progress on this node; another node (or a restart)
        # re-reads the file instead.
        self._hashing: dict[str, RunningHash] = {}

    def blob_path(self, digest: str) -> Path:
        algorithm, hexpart = split_digest(digest)
        return self._blobs / algorithm / hexpart[:2] / hexpart

    def _upload_path(self, upload_id: str) -> Path:
        return self._uploads / upload_id

    def local_path(self, digest: str) -> Path | None:
        return self.blob_path(digest)

    async def download_url(self, digest: str) -> str | None:
        return None

    async def ping(self) -> None:
        await asyncio.to_thread(os.statvfs, self.root)

    async def close(self) -> None:
        return None

    async def start_upload(self, upload_id: str) -> None:
        self._upload_path(upload_id).touch(exist_ok=False)
        self._hashing[upload_id] = RunningHash(0)

    @asynccontextmanager
    async def upload_lock(self, upload_id: str) -> AsyncIterator[None]:
        try:
            fd = os.open(self._upload_path(upload_id), os.O_RDWR)
        except FileNotFoundError as exc:
            raise UploadGone(upload_id) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise UploadBusy(upload_id) from exc
            yield
        finally:
            os.close(fd)

    async def append(self, upload_id: str, offset: int, writer: str | None, chunks: AsyncIterator[bytes]) -> Appended:
        """Write `chunks` at `offset` (the caller holds the upload's lock); bytes past `offset` that
        an interrupted or refused append left behind are discarded first."""
        path = self._upload_path(upload_id)
        try:
            handle = open(path, "r+b")  # noqa: SIM115 - closed in finally, across awaits
        except FileNotFoundError as exc:
            raise UploadGone(upload_id) from exc
        try:
            length = os.fstat(handle.fileno()).st_size
            if length < offset:
                raise UploadGone(upload_id)
            if length > offset:
                handle.truncate(offset)
            handle.seek(offset)
            # Taken out: the bytes it goes on to hash may be refused.
            state = self._hashing.pop(upload_id, None)
            if state is None or not state.matches(offset, writer):
                state = RunningHash(0) if offset == 0 else None
            size = await _copy(chunks, handle, offset, state)
            appended = Appended(size, writer if size == offset else new_writer())
            if state is not None:
                state.offset, state.writer = appended.size, appended.writer
                self._hashing[upload_id] = state
            return appended
        finally:
            handle.close()

    async def verify_upload(self, upload_id: str, size: int, writer: str | None, digest: str) -> None:
        path = self._upload_path(upload_id)
        algorithm, expected = split_digest(digest)
        state = self._hashing.get(upload_id)
        try:
            length = path.stat().st_size
        except FileNotFoundError as exc:
            raise UploadGone(upload_id) from exc
        if length != size:
            raise UploadGone(upload_id)
        if state is not None and state.matches(size, writer) and algorithm == "sha256":
            actual = state.hasher.copy().hexdigest()
        else:
            actual = await asyncio.to_thread(_hash_file, path, algorithm)
        if actual != expected:
            raise DigestMismatch(f"{algorithm}:{actual}")

    async def place_upload(self, upload_id: str, size: int, writer: str | None, digest: str) -> None:
        """Move the verified upload into place: flushed, then linked under its digest, never over
        a sound blob. The upload's name goes at once: a hard link shares the blob's inode, and a
        later append to the upload must not be able to write into a stored blob."""
        self._hashing.pop(upload_id, None)
        await asyncio.to_thread(self._place, self._upload_path(upload_id), digest, size)

    def _place(self, source: Path, digest: str, size: int) -> None:
        target = self.blob_path(digest)
        try:
            with open(source, "rb") as handle:
                os.fsync(handle.fileno())
        except FileNotFoundError as exc:
            raise UploadGone(source.name) from exc
        target.parent.mkdir(parents=True, exist_ok=True)
        _link_into_place(source, target, size)
        source.unlink(missing_ok=True)
        _fsync_dir(target.parent)

    async def cancel_upload(self, upload_id: str) -> None:
        self._hashing.pop(upload_id, None)
        # The bytes' name first: without it the upload is gone, whatever state is left.
        self._upload_path(upload_id).unlink(missing_ok=True)
        self.upload_states.remove(upload_id)

    async def put(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if await self.size(digest) != len(data):
            temp = self._uploads / f"put-{uuid.uuid4().hex}"
            await asyncio.to_thread(_write_file, temp, data)
            await asyncio.to_thread(self._place, temp, digest, len(data))
        return digest

    async def size(self, digest: str) -> int | None:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    async def read(self, digest: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yield bytes [start, end) of the blob."""
        async for data in _read_file(self.blob_path(digest), start, end):
            yield data

    async def delete(self, digest: str) -> None:
        self.blob_path(digest).unlink(missing_ok=True)

    async def stored_blobs(self) -> AsyncIterator[StoredFile]:
        for algorithm in _subdirectories(self._blobs):
            for prefix in _subdirectories(algorithm):
                for entry in _files(prefix):
                    yield StoredFile(f"{algorithm.name}:{entry.name}", *_size_and_change(entry))

    async def stored_uploads(self) -> AsyncIterator[StoredFile]:
        """One entry per upload: the size of its bytes, changed when its bytes or state last were
        (a state left without bytes counts, at size 0, so that it is removed too)."""
        found: dict[str, tuple[int, float]] = {}
        for entry in _files(self._uploads):
            name, _, suffix = entry.name.partition(".")
            size, changed = _size_and_change(entry)
            known_size, known_changed = found.get(name, (0, 0.0))
            found[name] = (known_size if suffix else size, max(known_changed, changed))
        for name, (size, changed) in found.items():
            yield StoredFile(name, size, changed)

    # -- the archive tier ---------------------------------------------------------------------

    def archived_path(self, digest: str) -> Path:
        algorithm, hexpart = split_digest(digest)
        return self._archived / algorithm / hexpart[:2] / hexpart

    async def archive_blob(self, digest: str) -> None:
        await asyncio.to_thread(_copy_verified, self.blob_path(digest), self.archived_path(digest), digest)

    async def restore_blob(self, digest: str) -> None:
        await asyncio.to_thread(_copy_verified, self.archived_path(digest), self.blob_path(digest), digest)

    async def archived_size(self, digest: str) -> int | None:
        try:
            return self.archived_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    async def read_archived(self, digest: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        async for data in _read_file(self.archived_path(digest), start, end):
            yield data

    async def delete_archived(self, digest: str) -> None:
        self.archived_path(digest).unlink(missing_ok=True)

    async def stored_archived_blobs(self) -> AsyncIterator[StoredFile]:
        for algorithm in _subdirectories(self._archived):
            for prefix in _subdirectories(algorithm):
                for entry in _files(prefix):
                    if not entry.name.startswith("."):
                        yield StoredFile(f"{algorithm.name}:{entry.name}", *_size_and_change(entry))


async def _read_file(path: Path, start: int, end: int | None) -> AsyncIterator[bytes]:
    """Bytes [start, end) of the file at `path`."""
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining = None if end is None else end - start
        while remaining is None or remaining > 0:
            want = READ_SIZE if remaining is None else min(READ_SIZE, remaining)
            data = await asyncio.to_thread(handle.read, want)
            if not data:
                return
            if remaining is not None:
                remaining -= len(data)
            yield data


def _copy_verified(source: Path, target: Path, digest: str) -> None:
    """Copy the blob at `source` to `target` (possibly another file system), durably: into a
    temporary name, hashed on the way and flushed, then linked into place (never over a sound
    copy). A crash leaves at most a stray temporary name, which `stored_archived_blobs` skips."""
    algorithm, expected = split_digest(digest)
    size = source.stat().st_size
    try:
        if target.stat().st_size == size:
            return
    except FileNotFoundError:
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    hasher = hashlib.new(algorithm)
    try:
        with open(source, "rb") as reader, open(temp, "wb") as writer:
            while data := reader.read(BUFFER_SIZE):
                hasher.update(data)
                writer.write(data)
            writer.flush()
            os.fsync(writer.fileno())
        if hasher.hexdigest() != expected:
            raise DigestMismatch(f"{algorithm}:{hasher.hexdigest()}")
        _link_into_place(temp, target, size)
        _fsync_dir(target.parent)
    finally:
        temp.unlink(missing_ok=True)


async def _copy(chunks: AsyncIterator[bytes], handle: BinaryIO, offset: int, state: RunningHash | None) -> int:
    """Write and hash `chunks` in a thread while the next buffer arrives: one buffer in flight,
    so memory stays at two buffers. Writeback to disk starts as the bytes come (`_Flusher`),
    which leaves little for the fsync that makes the blob durable."""
    size = offset
    buffer: list[bytes] = []
    buffered = 0
    writing: asyncio.Future[None] | None = None
    flusher = _Flusher(handle.fileno())
    try:
        async for chunk in chunks:
            buffer.append(chunk)
            buffered += len(chunk)
            if buffered >= BUFFER_SIZE:
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(asyncio.to_thread(_write, handle, buffer, state))
                flusher.wrote(buffered)
                size += buffered
                buffer, buffered = [], 0
    finally:
        # Never leave a thread writing to a handle the caller is about to close.
        if writing is not None:
            await writing
        await flusher.wait()
    if buffer:
        await asyncio.to_thread(_write, handle, buffer, state)
        size += buffered
    return size


class _Flusher:
    """Starts writeback of what was written (fdatasync in a thread, one at a time, every
    FLUSH_EVERY bytes) so the disk works while the upload is still arriving."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = 0
        self.task: asyncio.Future[None] | None = None

    def wrote(self, count: int) -> None:
        self.pending += count
        if self.pending >= FLUSH_EVERY and (self.task is None or self.task.done()):
            self.pending = 0
            self.task = asyncio.ensure_future(asyncio.to_thread(os.fdatasync, self.fd))

    async def wait(self) -> None:
        if self.task is not None:
            await self.task


def _write(handle: BinaryIO, chunks: list[bytes], state: RunningHash | None) -> None:
    handle.writelines(chunks)
    if state is not None:
        for chunk in chunks:
            state.hasher.update(chunk)


def _link_into_place(source: Path, target: Path, size: int) -> None:
    """Link `source` (verified bytes of `target`'s digest) at `target` unless a blob of the right
    size is there already; one of the wrong size is damaged, and is replaced atomically."""
    try:
        os.link(source, target)
        return
    except FileExistsError:
        pass
    try:
        if target.stat().st_size == size:
            return
    except FileNotFoundError:
        pass
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    os.link(source, temp)
    os.replace(temp, target)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


def _hash_file(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while data := handle.read(BUFFER_SIZE):
            hasher.update(data)
    return hasher.hexdigest()


def _subdirectories(path: Path) -> Iterator[Path]:
    try:
        with os.scandir(path) as entries:
            found = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return
    yield from found


def _files(path: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            found = [e for e in entries if e.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return
    yield from found


def _size_and_change(entry: os.DirEntry[str]) -> tuple[int, float]:
    try:
        info = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return 0, 0.0
    return info.st_size, max(info.st_ctime, info.st_mtime)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
