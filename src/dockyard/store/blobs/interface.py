"""The blob store as the core sees it: the `BlobStore` interface, what it raises, and what
every implementation shares.

Two guarantees, whatever requests race on whichever process or node:
- A blob stored under a digest is exactly the bytes with that digest. The digest is checked over
  the bytes that are committed, never over bytes a request believes it wrote, and a blob that
  exists is never replaced (only a damaged one, of the wrong size, by verified bytes).
- An upload is one ordered stream. The metadata records, for each acknowledged append, the size
  it reached and a `writer` token naming those bytes; a store trusts a running hash only for the
  exact (size, writer) it computed it for, and `upload_lock` (where a store needs one) makes one
  request at a time the writer of an upload, from reading where it stands to recording where it
  ends (dockyard.core.registry.uploads).

Where that record lives depends on the store (`upload_states`). The filesystem store keeps
it beside the upload's bytes (an `UploadState`), since one machine's flock already makes one
request at a time the writer. The S3 store, shared by nodes with no lock between them, leaves it
to the metadata database's compare-and-set.

Implementations: dockyard.store.blobs.filesystem (the embedded default) and
dockyard.store.blobs.s3; dockyard.store.blobs.open_blob_store picks one from the settings."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

# How much of a blob one read hands back.
READ_SIZE = 256 * 1024


class DigestMismatch(Exception):
    """The uploaded bytes do not hash to the digest the client named."""


class UploadGone(Exception):
    """The upload's bytes are missing or shorter than its recorded size."""


class UploadBusy(Exception):
    """Another request is writing to the upload right now."""


def split_digest(digest: str) -> tuple[str, str]:
    algorithm, _, hexpart = digest.partition(":")
    return algorithm, hexpart


@dataclass
class RunningHash:
    """A running SHA-256 of an upload's first `offset` bytes, as written by the append `writer`."""

    offset: int
    writer: str | None = None
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)

    def matches(self, offset: int, writer: str | None) -> bool:
        return self.offset == offset and self.writer == writer


@dataclass(frozen=True)
class Appended:
    """Where an append left an upload: its size, and the token naming the bytes [0, size)."""

    size: int
    writer: str | None


def new_writer() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class UploadState:
    """Where an upload stands and whose it is, as a store that keeps it beside the bytes records it.
    The repository is named by id and creation time, so a repository deleted and created again
    (which may reuse the id) does not inherit its predecessor's uploads."""

    repository_id: int
    repository_created: float
    started_at: float
    updated_at: float
    size: int = 0
    parts: int = 0
    last_part_size: int | None = None
    writer: str | None = None


@dataclass(frozen=True)
class StoredFile:
    """A file the store holds: a blob (named by its digest) or an upload's bytes (by upload id)."""

    name: str
    size: int
    # Last status change (a rename into place counts): how garbage collection tells a fresh file.
    changed_at: float


class UploadStates(Protocol):
    """Upload states kept beside the uploads' bytes."""

    # Record where an upload stands (the caller holds its lock, or has just started it and told
    # nobody its id yet). UploadGone when its bytes went meanwhile (a cancel, an expiry).
    async def save(self, upload_id: str, state: UploadState) -> None: ...
    # The upload's state as last saved; None when it has none or its bytes are gone.
    async def load(self, upload_id: str) -> UploadState | None: ...


class BlobStore(Protocol):
    # Where this store keeps each upload's state beside its bytes; None when the metadata
    # database must record it.
    upload_states: UploadStates | None

    async def start_upload(self, upload_id: str) -> None: ...
    # Held from reading where an upload stands to recording where an append left it; UploadBusy
    # when another request holds it, UploadGone when the upload's bytes are gone.
    def upload_lock(self, upload_id: str) -> AbstractAsyncContextManager[None]: ...
    # Add `chunks` after the first `offset` bytes, as the append `writer` left them.
    async def append(
        self, upload_id: str, offset: int, writer: str | None, chunks: AsyncIterator[bytes]
    ) -> Appended: ...
    # DigestMismatch unless the upload's bytes [0, size), as `writer` left them, hash to `digest`.
    async def verify_upload(self, upload_id: str, size: int, writer: str | None, digest: str) -> None: ...
    # Make the verified bytes durable under `digest` (never replacing a sound blob); the upload's
    # bytes may be consumed.
    async def place_upload(self, upload_id: str, size: int, writer: str | None, digest: str) -> None: ...
    async def cancel_upload(self, upload_id: str) -> None: ...
    async def put(self, data: bytes) -> str: ...
    async def size(self, digest: str) -> int | None: ...
    def read(self, digest: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]: ...
    def local_path(self, digest: str) -> Path | None: ...
    # A URL the client may fetch the blob from itself (a presigned object URL), or None to stream it.
    async def download_url(self, digest: str) -> str | None: ...
    async def delete(self, digest: str) -> None: ...
    async def ping(self) -> None: ...
    def stored_blobs(self) -> AsyncIterator[StoredFile]: ...
    def stored_uploads(self) -> AsyncIterator[StoredFile]: ...
    async def close(self) -> None: ...
    # The archive tier, where blobs only archived images need are kept (an archive directory, or a
    # colder S3 storage class). Copies are durable and verified against the digest before they
    # count, and never replace a sound copy; the source copy stays: the caller deletes it once the
    # metadata says the other copy is the one (so a blob is never missing from both tiers).
    # FileNotFoundError when the source copy is missing; DigestMismatch when it is damaged.
    async def archive_blob(self, digest: str) -> None: ...
    async def restore_blob(self, digest: str) -> None: ...
    async def archived_size(self, digest: str) -> int | None: ...
    def read_archived(self, digest: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]: ...
    async def delete_archived(self, digest: str) -> None: ...
    def stored_archived_blobs(self) -> AsyncIterator[StoredFile]: ...
