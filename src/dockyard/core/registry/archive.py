"""The archive storage class: UpdateImageStorageClass, what archived images refuse, and the mover
that puts their layers on the archive tier and brings them back.

ECR's rules (API reference, "Archiving an image" in the user guide, botocore's model):

* an image is ACTIVE, ARCHIVED, or ACTIVATING while a restore is under way; UpdateImageStorageClass
  ARCHIVE archives an ACTIVE image at once, STANDARD puts an ARCHIVED one in ACTIVATING, and it
  turns ACTIVE only once its layers are back in standard storage;
* an archived (or activating) image cannot be pulled: a manifest GET answers 404, BatchGetImage
  reports it as a failure; it can still be described and listed (with the imageStatus filter);
* an image is identified by tag or digest, as in the other image operations.

Where the bytes are: a blob's `location` is "hot" (the blob store) or "archive" (the store's
archive tier: an archive directory, or a colder S3 storage class). A blob that only archived images
need moves to the archive tier; one any ACTIVE or ACTIVATING image needs stays hot, or comes back.
The mover (`move`, run under a lease by dockyard.workers.housekeeping) always copies first (durably,
verified against the digest), then flips `location` in a write transaction that re-checks the
reason, and deletes the old copy only after: a crash at any point leaves the blob readable where
`location` says, and a stray second copy that the next run's sweep removes."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import (
    ImageStorageClassUpdateNotSupportedException,
    InvalidParameterException,
    LayerInaccessibleException,
)
from dockyard.core.identity.caller import Caller
from dockyard.core.registry.repositories import Repository, open_repository
from dockyard.core.services import Services, now
from dockyard.store import fastread, schema
from dockyard.store.blobs.interface import DigestMismatch

log = logging.getLogger(__name__)
images = schema.images
refs = schema.image_references
blobs = schema.blobs

ACTIVE = "ACTIVE"
ARCHIVED = "ARCHIVED"
ACTIVATING = "ACTIVATING"
STATUSES = (ACTIVE, ARCHIVED, ACTIVATING)
HOT = "hot"
ARCHIVE = "archive"
# Seconds the mover waits between blobs, to spare a disk that serves pulls (also lets tests stop
# a server in the middle of a run).
_PACING_ENV = "DOCKYARD_ARCHIVE_MOVE_DELAY"


def status_matches(wanted: str | None) -> tuple[str, ...]:
    """The statuses an imageStatus filter selects: none given is ACTIVE only (ECR's default)."""
    if wanted is None:
        return (ACTIVE,)
    if wanted == "ANY":
        return STATUSES
    return (wanted,)


# --- UpdateImageStorageClass ------------------------------------------------------------------


async def update_image_storage_class(
    svc: Services, caller: Caller, account_id: str, repository: str, image_id: dict[str, str], target: str
) -> dict[str, Any]:
    # Imported here: image_details imports the registry's image modules, which this one must not
    # import at load time (they read `status_matches`).
    from dockyard.core.registry import image_details

    wanted = image_details.ImageId.of(image_id)
    async with svc.db.write() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:UpdateImageStorageClass")
        image, problem = await image_details.resolve_image_id(conn, repo, wanted)
        if image is None:
            image_details.raise_for_problem(repo, wanted, problem)
        assert image is not None
        status = await _transition(conn, image.id, image.status, target)
    return {
        "registryId": repo.account_id,
        "repositoryName": repo.name,
        "imageId": wanted.shape() if wanted.digest else {"imageDigest": image.digest, **wanted.shape()},
        "imageStatus": status,
    }


async def _transition(conn: AsyncConnection, image_id: int, status: str, target: str) -> str:
    """The image's status after asking for `target`: archiving is immediate, a restore starts."""
    moment = now()
    if target == "ARCHIVE":
        if status == ARCHIVED:
            return ARCHIVED
        if status == ACTIVATING:
            raise ImageStorageClassUpdateNotSupportedException(
                "The image is being restored from archive and cannot be archived until the restore completes"
            )
        await conn.execute(update(images).where(images.c.id == image_id).values(status=ARCHIVED, archived_at=moment))
        return ARCHIVED
    if target == "STANDARD":
        if status in (ACTIVE, ACTIVATING):
            return status
        await conn.execute(update(images).where(images.c.id == image_id).values(status=ACTIVATING))
        return ACTIVATING
    raise InvalidParameterException(
        f"Invalid parameter at 'targetStorageClass' failed to satisfy constraint: "
        f"'Member must satisfy enum value set: [STANDARD, ARCHIVE]' (got '{target}')"
    )


async def restore_pushed(conn: AsyncConnection, image_id: int) -> None:
    """An ARCHIVED image pushed again: ECR restores it, as UpdateImageStorageClass STANDARD does."""
    await _transition(conn, image_id, ARCHIVED, "STANDARD")


async def archive_images(conn: AsyncConnection, image_ids: list[int]) -> None:
    """Archive ACTIVE images (a lifecycle transition rule)."""
    if image_ids:
        await conn.execute(
            update(images)
            .where(images.c.id.in_(image_ids), images.c.status == ACTIVE)
            .values(status=ARCHIVED, archived_at=now())
        )


# --- serving layers ---------------------------------------------------------------------------

# Whether an image that may be pulled (ACTIVE) or is coming back (ACTIVATING) needs the blob.
_NEEDED_QUERY = (
    select(refs.c.image_id)
    .join(images, images.c.id == refs.c.image_id)
    .where(refs.c.digest == bindparam("digest"), images.c.status != ARCHIVED)
    .limit(1)
)
_LOCATION = select(blobs.c.location).where(blobs.c.digest == bindparam("digest"))


async def archived_among(conn: AsyncConnection, digests: list[str]) -> set[str]:
    """Which of `digests` are on the archive tier with no image that may be pulled needing them."""
    rows = await conn.execute(
        select(blobs.c.digest).where(
            blobs.c.digest.in_(digests), blobs.c.location == ARCHIVE, ~exists(_NOT_ARCHIVED_REF)
        )
    )
    return set(rows.scalars())


def archived_layer(repo: Repository, digest: str) -> LayerInaccessibleException:
    return LayerInaccessibleException(
        f"The layer with digest '{digest}' in the repository with name '{repo.name}' in the registry with id "
        f"'{repo.account_id}' is only used by archived images; restore an image to pull it"
    )


async def needed_hot(svc: Services, digest: str) -> bool:
    return bool(await fastread.fetch(svc.db, _NEEDED_QUERY, {"digest": digest}))


async def location_of(svc: Services, digest: str) -> str:
    rows = await fastread.fetch(svc.db, _LOCATION, {"digest": digest})
    return str(rows[0][0]) if rows else HOT


async def servable(svc: Services, digest: str, location: str | None) -> bool:
    """Whether a layer at `location` may be served. One on the archive tier is served only when an
    image that may be pulled needs it (a push reused it, or a restore is under way): its bytes are
    first copied back to the hot store, which the mover then makes official."""
    if location != ARCHIVE:
        return True
    if not await needed_hot(svc, digest):
        return False
    await svc.blobs.restore_blob(digest)
    return True


# --- the mover ----------------------------------------------------------------------------------


@dataclass
class Moves:
    archived: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    activated: int = 0
    swept: int = 0
    failed: list[str] = field(default_factory=list)


_NOT_ARCHIVED_REF = (
    select(refs.c.digest)
    .join(images, images.c.id == refs.c.image_id)
    .where(refs.c.digest == blobs.c.digest, images.c.status != ARCHIVED)
)
# Hot blobs that archived images use and no other image does.
_TO_ARCHIVE = (
    select(blobs.c.digest)
    .where(
        blobs.c.location == HOT,
        blobs.c.digest.in_(
            select(refs.c.digest)
            .join(images, images.c.id == refs.c.image_id)
            .where(schema.NOT_ACTIVE, images.c.status == ARCHIVED, refs.c.kind == "blob")
        ),
        ~exists(_NOT_ARCHIVED_REF),
    )
    .order_by(blobs.c.digest)
)
# Archived blobs an ACTIVE or ACTIVATING image needs.
_TO_RESTORE = (
    select(blobs.c.digest)
    .where(schema.NOT_HOT, blobs.c.location == ARCHIVE, exists(_NOT_ARCHIVED_REF))
    .order_by(blobs.c.digest)
)
# By the partial indexes of images that are not ACTIVE and blobs that are not hot (their
# conditions, spelled as they are, so the planner sees it may use them).
_ACTIVATING = select(images.c.id).where(schema.NOT_ACTIVE, images.c.status == ACTIVATING).limit(1)
_WORK = (_ACTIVATING, _TO_ARCHIVE.limit(1), _TO_RESTORE.limit(1))


async def has_work(svc: Services) -> bool:
    """Whether the mover has anything to do, by reads over the few images that are not ACTIVE and
    blobs that are not hot: the schedule takes no lease (a write) while there is nothing."""
    for statement in _WORK:
        if await fastread.fetch(svc.db, statement, {}):
            return True
    return False


def _pacing() -> float:
    try:
        return max(0.0, float(os.environ.get(_PACING_ENV, "0")))
    except ValueError:
        return 0.0


async def move(svc: Services, *, sweep: bool = False, keep: Callable[[], Awaitable[bool]] | None = None) -> Moves:
    """One run: archive what only archived images need, restore what others need, activate what
    is back, and (with `sweep`, after a restart) remove second copies a crash left behind.

    Runs must not overlap (a run deletes copies it believes stray): the caller holds a lease, and
    `keep` renews it before each blob; a run that lost it stops."""
    moves = Moves()
    async with svc.db.read() as conn:
        to_archive = list((await conn.execute(_TO_ARCHIVE)).scalars())
        to_restore = list((await conn.execute(_TO_RESTORE)).scalars())
    pause = _pacing()
    for digest, source in [*((d, ARCHIVE) for d in to_restore), *((d, HOT) for d in to_archive)]:
        if keep is not None and not await keep():
            return moves
        await _move_one(svc, digest, source, moves)
        if pause:
            await asyncio.sleep(pause)
    moves.activated = await _activate(svc)
    if sweep:
        moves.swept = await _sweep(svc)
    return moves


async def _move_one(svc: Services, digest: str, source: str, moves: Moves) -> None:
    try:
        if source == HOT:
            await svc.blobs.archive_blob(digest)
        else:
            await svc.blobs.restore_blob(digest)
    except (FileNotFoundError, DigestMismatch) as exc:
        # Damage storage verification reports and repairs; the blob stays where it is recorded.
        log.warning("could not move blob %s off the %s tier: %s", digest, source, exc)
        moves.failed.append(digest)
        return
    target = ARCHIVE if source == HOT else HOT
    async with svc.db.write() as conn:
        # Re-checked in the write: a push may have started needing the blob since it was chosen.
        needed = (await conn.execute(_NEEDED_QUERY, {"digest": digest})).first() is not None
        if needed != (target == HOT):
            flipped = False
        else:
            result = await conn.execute(
                update(blobs).where(blobs.c.digest == digest, blobs.c.location == source).values(location=target)
            )
            flipped = result.rowcount == 1
    if not flipped:
        # The copy just made is the stray one now.
        await (svc.blobs.delete_archived(digest) if target == ARCHIVE else _delete_hot(svc, digest))
        return
    # Only now, with the metadata pointing at the new copy, does the old one go (a hot copy
    # stays if a push started needing the blob meanwhile: the next run makes it official).
    if source == ARCHIVE:
        await svc.blobs.delete_archived(digest)
    elif not await needed_hot(svc, digest):
        await svc.blobs.delete(digest)
    (moves.archived if target == ARCHIVE else moves.restored).append(digest)


async def _delete_hot(svc: Services, digest: str) -> None:
    # A hot copy is removed only while the metadata says the blob lives on the archive tier.
    if await location_of(svc, digest) == ARCHIVE:
        await svc.blobs.delete(digest)


_ACTIVATABLE = and_(
    schema.NOT_ACTIVE,
    images.c.status == ACTIVATING,
    ~exists(
        select(refs.c.digest)
        .join(blobs, blobs.c.digest == refs.c.digest)
        .where(refs.c.image_id == images.c.id, blobs.c.location != HOT)
    ),
)


async def _activate(svc: Services) -> int:
    """ACTIVATING images whose every layer is back in the hot store become ACTIVE."""
    async with svc.db.write() as conn:
        result = await conn.execute(update(images).where(_ACTIVATABLE).values(status=ACTIVE, activated_at=now()))
        return int(result.rowcount or 0)


async def _sweep(svc: Services) -> int:
    """Remove the second copies a crash between a flip and a delete left: an archive-tier copy of
    a hot blob, a hot copy of an archived blob that nothing may pull."""
    swept = 0
    async with svc.db.read() as conn:
        archived = set((await conn.execute(select(blobs.c.digest).where(blobs.c.location == ARCHIVE))).scalars())
    async for stored in svc.blobs.stored_archived_blobs():
        stray = stored.name not in archived and await location_of(svc, stored.name) == HOT
        if stray and await svc.blobs.size(stored.name) is not None:
            await svc.blobs.delete_archived(stored.name)
            swept += 1
    for digest in archived:
        both = await svc.blobs.size(digest) is not None and await svc.blobs.archived_size(digest) is not None
        if both and not await needed_hot(svc, digest):
            await _delete_hot(svc, digest)
            swept += 1
    return swept
