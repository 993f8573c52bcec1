"""Layer uploads: started, appended to in order, completed by digest, or cancelled.

The registry door's POST/PATCH/PUT/DELETE on uploads and the ECR door's InitiateLayerUpload,
UploadLayerPart and CompleteLayerUpload are these same operations.

An upload is one ordered stream whichever worker or node a request reaches. Its state records
the repository that started it, the size every acknowledged append reached and the `writer`
token naming those bytes in the blob store. An append holds the store's upload lock from reading
the state to recording its result, so of two requests racing for the same range one is refused
(416), and the store never trusts bytes or a running hash that the state does not name.

Where the state lives is the blob store's choice (`BlobStore.upload_states`):
- beside the upload's bytes (the filesystem store, one machine): the flock is held from reading
  the state to saving the next, so starting and appending to an upload write no database row,
  and completing it writes only the blob's row and link;
- in the `uploads` table (the S3 store, shared by nodes with no lock between them): the upload's
  row is inserted when it starts, an append records its result only if the row still says what
  it read (compare and set), and the row is deleted in the transaction that links the blob."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import (
    DigestInvalid,
    EmptyUploadException,
    InvalidLayerPartException,
    LayerPartTooSmallException,
    LimitExceededException,
    RangeInvalid,
    RepositoryNotFoundException,
    UploadNotFoundException,
)
from dockyard.core.identity.caller import Caller
from dockyard.core.operations.creation_templates import open_for_push
from dockyard.core.registry.blobs import link, linked_size
from dockyard.core.registry.images import open_repository_fast
from dockyard.core.registry.repositories import Repository
from dockyard.core.services import Services, now
from dockyard.store import fastread, schema
from dockyard.store.blobs.interface import Appended, DigestMismatch, UploadBusy, UploadGone, UploadState, UploadStates
from dockyard.store.prepared import Prepared

uploads = schema.uploads

# ECR's UploadLayerPart rules (the seed's service limits).
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_SIZE = 10 * 1024 * 1024
MAX_PARTS = 1000
# Recorded as last_part_size once a part below MIN_PART_SIZE was followed by another: ECR only
# refuses such an upload at CompleteLayerUpload (LayerPartTooSmallException is modelled there).
SMALL_PART_FOLLOWED = -1


@dataclass(frozen=True)
class Upload:
    id: str
    repository: Repository
    size: int
    parts: int
    last_part_size: int | None
    writer: str | None = None
    started_at: float = 0.0


def upload_not_found(upload_id: str, repo: Repository) -> UploadNotFoundException:
    return UploadNotFoundException(
        f"The upload with id '{upload_id}' does not exist in the repository with name '{repo.name}' "
        f"in the registry with id '{repo.account_id}'"
    )


def valid_upload_id(upload_id: str) -> bool:
    try:
        return str(uuid.UUID(upload_id)) == upload_id
    except ValueError:
        return False


# The statements of every upload request, compiled once (store.prepared, store.fastread).
_INSERT = Prepared(
    insert(uploads).values(
        id=bindparam("id"),
        repository_id=bindparam("repository_id"),
        size=0,
        parts=0,
        started_at=bindparam("moment"),
        updated_at=bindparam("moment"),
    )
)
_DELETE = Prepared(delete(uploads).where(uploads.c.id == bindparam("id")))
_ROW = select(uploads.c.size, uploads.c.parts, uploads.c.last_part_size, uploads.c.writer).where(
    uploads.c.id == bindparam("id"), uploads.c.repository_id == bindparam("repository_id")
)


async def start_upload(svc: Services, caller: Caller, account_id: str, repository: str) -> Upload:
    upload_id = str(uuid.uuid4())  # canonical form, as ECR hands out upload ids
    states = svc.blobs.upload_states
    if states is None:
        async with svc.db.write() as conn:
            repo = await open_for_push(svc, conn, caller, account_id, repository, "ecr:InitiateLayerUpload")
            await svc.blobs.start_upload(upload_id)
            await _INSERT.execute(conn, {"id": upload_id, "repository_id": repo.id, "moment": now()})
        return Upload(upload_id, repo, 0, 0, None)
    repo = await _pushable(svc, caller, account_id, repository)
    moment = now()
    await svc.blobs.start_upload(upload_id)
    await states.save(upload_id, UploadState(repo.id, repo.created_at, moment, moment))
    return Upload(upload_id, repo, 0, 0, None, started_at=moment)


async def _pushable(svc: Services, caller: Caller, account_id: str, repository: str) -> Repository:
    """The repository an upload starts in, once `caller` may InitiateLayerUpload: read without a
    write transaction when it exists; when it does not, as open_for_push decides (a creation
    template may create it, in a write transaction)."""
    try:
        return await open_repository_fast(svc, caller, account_id, repository, "ecr:InitiateLayerUpload")
    except RepositoryNotFoundException:
        async with svc.db.write() as conn:
            return await open_for_push(svc, conn, caller, account_id, repository, "ecr:InitiateLayerUpload")


async def _authorised(
    svc: Services, caller: Caller, account_id: str, repository: str, upload_id: str, action: str
) -> Repository:
    """The upload's repository once `caller` may `action` it; an upload id that is not one of ours
    is not found (and never reaches the blob store as a name)."""
    repo = await open_repository_fast(svc, caller, account_id, repository, action)
    if not valid_upload_id(upload_id):
        raise upload_not_found(upload_id, repo)
    return repo


def _upload_of(repo: Repository, upload_id: str, row: Any) -> Upload:
    if row is None:
        raise upload_not_found(upload_id, repo)
    size, parts, last_part_size, writer = row
    return Upload(upload_id, repo, size, parts, last_part_size, writer)


async def _load(conn: AsyncConnection, repo: Repository, upload_id: str) -> Upload:
    row = (await conn.execute(_ROW, {"id": upload_id, "repository_id": repo.id})).first()
    return _upload_of(repo, upload_id, row)


async def _standing_at(
    svc: Services, repo: Repository, upload_id: str, start: int | None, part_rules: bool = False
) -> Upload:
    """The upload as its state records it (the caller holds its lock), refused when a chunk that
    says where it starts does not start there."""
    upload = await _current(svc, repo, upload_id)
    if start is not None and start != upload.size:
        if part_rules:
            raise invalid_part(upload)
        raise RangeInvalid(f"chunk starts at byte {start} but the upload stands at {upload.size}")
    return upload


async def _current(svc: Services, repo: Repository, upload_id: str) -> Upload:
    """The upload as its state records it; not found unless `repo` started it."""
    states = svc.blobs.upload_states
    if states is None:
        rows = await fastread.fetch(svc.db, _ROW, {"id": upload_id, "repository_id": repo.id})
        return _upload_of(repo, upload_id, rows[0] if rows else None)
    state = await states.load(upload_id)
    if state is None or (state.repository_id, state.repository_created) != (repo.id, repo.created_at):
        raise upload_not_found(upload_id, repo)
    return Upload(upload_id, repo, state.size, state.parts, state.last_part_size, state.writer, state.started_at)


async def find_upload(
    svc: Services, caller: Caller, account_id: str, repository: str, upload_id: str, action: str
) -> Upload:
    repo = await _authorised(svc, caller, account_id, repository, upload_id, action)
    return await _standing_at(svc, repo, upload_id, None)


async def append(
    svc: Services,
    caller: Caller,
    account_id: str,
    repository: str,
    upload_id: str,
    chunks: AsyncIterator[bytes],
    *,
    start: int | None = None,
    last_byte: int | None = None,
    part_rules: bool = False,
) -> Upload:
    """Append a chunk. `start` (when the client said where the chunk begins) must be where the
    upload stands; `part_rules` applies UploadLayerPart's part-size limits."""
    repo = await _authorised(svc, caller, account_id, repository, upload_id, "ecr:UploadLayerPart")
    try:
        async with svc.blobs.upload_lock(upload_id):
            upload = await _standing_at(svc, repo, upload_id, start, part_rules)
            if part_rules:
                _check_part_rules(upload, start, last_byte)
            appended = await svc.blobs.append(upload_id, upload.size, upload.writer, chunks)
            part = appended.size - upload.size
            # Not recording the new size leaves the upload where it stood: the next append overwrites.
            if last_byte is not None and part != last_byte - upload.size + 1:
                if part_rules:
                    raise invalid_part(upload)
                raise RangeInvalid(f"the chunk has {part} bytes but its range ends at byte {last_byte}")
            recorded = part
            if part_rules and upload.last_part_size is not None and upload.last_part_size < MIN_PART_SIZE:
                recorded = SMALL_PART_FOLLOWED
            await _record(svc, upload, appended, recorded, part_rules)
    except UploadBusy:
        if part_rules:
            busy = await find_upload(svc, caller, account_id, repository, upload_id, "ecr:UploadLayerPart")
            raise invalid_part(busy) from None
        raise RangeInvalid("another request is writing to this upload") from None
    except UploadGone as exc:
        raise upload_not_found(upload_id, repo) from exc
    return Upload(upload_id, repo, appended.size, upload.parts + 1, recorded, appended.writer, upload.started_at)


async def _record(svc: Services, upload: Upload, appended: Appended, recorded: int, part_rules: bool) -> None:
    """Record where the append left the upload, if its state still says where it started."""
    states = svc.blobs.upload_states
    if states is not None:
        await _save(states, upload, appended, recorded)
        return
    async with svc.db.write() as conn:
        changed = await conn.execute(
            update(uploads)
            .where(
                uploads.c.id == upload.id,
                uploads.c.size == upload.size,
                uploads.c.writer.is_not_distinct_from(upload.writer),
            )
            .values(
                size=appended.size,
                parts=upload.parts + 1,
                last_part_size=recorded,
                writer=appended.writer,
                updated_at=now(),
            )
        )
        if changed.rowcount == 1:
            return
        current = await _load(conn, upload.repository, upload.id)  # upload_not_found when it is gone
    if part_rules:
        raise invalid_part(current)
    raise RangeInvalid(f"the upload moved on to byte {current.size} while this chunk was written")


async def _save(states: UploadStates, upload: Upload, appended: Appended, recorded: int) -> None:
    """Save the state the append left (no compare needed: the upload's lock has been held since
    its state was read, and only a holder of that lock saves one)."""
    repo = upload.repository
    state = UploadState(
        repo.id, repo.created_at, upload.started_at, now(), appended.size, upload.parts + 1, recorded, appended.writer
    )
    await states.save(upload.id, state)


# The API reference's wording for InvalidLayerPartException and EmptyUploadException.
INVALID_PART = (
    "The layer part size is not valid, or the first byte specified is not consecutive to the last byte of a "
    "previous layer part upload."
)
EMPTY_UPLOAD = "The specified layer upload does not contain any layer parts."


def invalid_part(upload: Upload) -> InvalidLayerPartException:
    """ECR's InvalidLayerPartException, with the members it models (where the upload stands)."""
    return InvalidLayerPartException(
        INVALID_PART,
        fields={
            "registryId": upload.repository.account_id,
            "repositoryName": upload.repository.name,
            "uploadId": upload.id,
            "lastValidByteReceived": max(upload.size - 1, 0),
        },
    )


def _check_part_rules(upload: Upload, start: int | None, last_byte: int | None) -> None:
    if start is None or last_byte is None or last_byte < start or last_byte - start + 1 > MAX_PART_SIZE:
        raise invalid_part(upload)
    if upload.parts >= MAX_PARTS:
        raise LimitExceededException(
            "The operation did not succeed because it would have exceeded a service limit for your account. "
            f"Layer parts per upload: {MAX_PARTS}"
        )


def check_part_sizes(upload: Upload) -> None:
    """CompleteLayerUpload's rule: every part but the last has at least MIN_PART_SIZE bytes."""
    if upload.last_part_size == SMALL_PART_FOLLOWED:
        raise LayerPartTooSmallException("All layer parts except the last part should be at least 5MB")


async def complete(
    svc: Services,
    caller: Caller,
    account_id: str,
    repository: str,
    upload_id: str,
    digest: str,
    chunks: AsyncIterator[bytes] | None = None,
    *,
    refuse_empty: bool = False,
    start: int | None = None,
    last_byte: int | None = None,
) -> tuple[Repository, int]:
    """Finish an upload: the bytes must hash to `digest`; then the blob is durable, in place and
    linked to the repository, in that order. A final chunk in `chunks` may say where it starts
    and ends (`start`, `last_byte`), as for `append`."""
    repo = await _authorised(svc, caller, account_id, repository, upload_id, "ecr:CompleteLayerUpload")
    try:
        async with svc.blobs.upload_lock(upload_id):
            upload = await _standing_at(svc, repo, upload_id, start)
            # Even without a final chunk: this cuts off bytes a refused chunk left past the recorded size.
            appended = await svc.blobs.append(upload_id, upload.size, upload.writer, chunks or _nothing())
            size = appended.size
            if last_byte is not None and size != last_byte + 1:
                raise RangeInvalid(
                    f"the final chunk ends at byte {size - 1}, not at byte {last_byte} as its range says"
                )
            if refuse_empty and size == 0:
                raise EmptyUploadException(EMPTY_UPLOAD)
            try:
                await svc.blobs.verify_upload(upload_id, size, appended.writer, digest)
            except DigestMismatch as exc:
                raise DigestInvalid(f"The digest of the uploaded bytes is {exc}, not {digest}") from exc
            await svc.blobs.place_upload(upload_id, size, appended.writer, digest)
            async with svc.db.write() as conn:
                # Garbage collection deletes a blob's row and bytes in one write transaction, so
                # bytes found in place here stay there with the row and link committed beside them.
                if await svc.blobs.size(digest) != size:
                    raise UploadGone(upload_id)
                await link(conn, repo.id, digest, size)
                if svc.blobs.upload_states is None:
                    await _DELETE.execute(conn, {"id": upload_id})
    except UploadBusy:
        raise RangeInvalid("another request is writing to this upload") from None
    except UploadGone as exc:
        raise upload_not_found(upload_id, repo) from exc
    await svc.blobs.cancel_upload(upload_id)
    return repo, size


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield


async def cancel(svc: Services, caller: Caller, account_id: str, repository: str, upload_id: str) -> None:
    upload = await find_upload(svc, caller, account_id, repository, upload_id, "ecr:UploadLayerPart")
    if svc.blobs.upload_states is None:
        async with svc.db.write() as conn:
            await _DELETE.execute(conn, {"id": upload.id})
    await svc.blobs.cancel_upload(upload.id)


async def blob_exists_in(svc: Services, repo: Repository, digest: str) -> bool:
    async with svc.db.read() as conn:
        return await linked_size(conn, repo, digest) is not None
