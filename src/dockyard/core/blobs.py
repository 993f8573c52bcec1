"""Blobs as a repository sees them: a repository serves a blob once it was pushed or mounted into it."""

from __future__ import annotations

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.caller import Caller
from dockyard.core.creation_templates import open_for_push
from dockyard.core.images import open_repository_fast
from dockyard.core.repositories import Repository, open_repository
from dockyard.core.services import Services, now
from dockyard.errors import BlobUnknown
from dockyard.store import fastread, schema

rb = schema.repository_blobs
# A blob GET or HEAD: its size and link, if the repository has it (run through store.fastread).
_LINK = (
    select(schema.blobs.c.size, rb.c.linked_at)
    .join(rb, rb.c.digest == schema.blobs.c.digest)
    .where(rb.c.repository_id == bindparam("repository_id"), rb.c.digest == bindparam("digest"))
)


def blob_unknown(repo: Repository, digest: str) -> BlobUnknown:
    return BlobUnknown(
        f"The layer with digest '{digest}' does not exist in the repository with name '{repo.name}' "
        f"in the registry with id '{repo.account_id}'"
    )


async def linked_size(conn: AsyncConnection, repo: Repository, digest: str) -> int | None:
    return (
        await conn.execute(
            select(schema.blobs.c.size)
            .join(rb, rb.c.digest == schema.blobs.c.digest)
            .where(rb.c.repository_id == repo.id, rb.c.digest == digest)
        )
    ).scalar()


async def linked_sizes(conn: AsyncConnection, repo: Repository, digests: list[str]) -> dict[str, int]:
    rows = await conn.execute(
        select(schema.blobs.c.digest, schema.blobs.c.size)
        .join(rb, rb.c.digest == schema.blobs.c.digest)
        .where(rb.c.repository_id == repo.id, rb.c.digest.in_(digests))
    )
    return {row.digest: row.size for row in rows}


async def link(conn: AsyncConnection, repository_id: int, digest: str, size: int) -> None:
    """Record that the blob exists (its bytes are durable already, `size` verified) and that the
    repository has it. An existing link is refreshed: garbage collection counts a link's grace
    period from its last use, so a push that relies on it is never cut short."""
    known = (await conn.execute(select(schema.blobs.c.size).where(schema.blobs.c.digest == digest))).first()
    if known is None:
        await conn.execute(insert(schema.blobs).values(digest=digest, size=size, created_at=now()))
    elif known.size != size:
        # A claim (below) records the size an upload announced before its digest was verified.
        await conn.execute(update(schema.blobs).where(schema.blobs.c.digest == digest).values(size=size))
    try:
        async with conn.begin_nested():
            await conn.execute(insert(rb).values(repository_id=repository_id, digest=digest, linked_at=now()))
    except IntegrityError:
        await conn.execute(
            update(rb).where(rb.c.repository_id == repository_id, rb.c.digest == digest).values(linked_at=now())
        )


async def claim(svc: Services, digest: str, size: int) -> None:
    """Before an upload moves bytes into place under `digest`, in a transaction of its own.

    Garbage collection deletes an unreferenced blob's row and file within one write transaction,
    and spares blobs claimed within its grace period. So either it finished with this digest
    before the claim (the upload then writes the file anew) or it leaves the digest alone: it can
    never delete a file an upload has just put in place."""
    blobs = schema.blobs
    async with svc.db.write() as conn:
        moment = now()
        claimed = await conn.execute(update(blobs).where(blobs.c.digest == digest).values(touched_at=moment))
        if claimed.rowcount == 0:
            await conn.execute(insert(blobs).values(digest=digest, size=size, created_at=moment, touched_at=moment))


async def keep_link(svc: Services, repo: Repository, digest: str, linked_at: float | None) -> None:
    """A HEAD of a layer the repository has (a push checking what it may skip): refresh the link's
    linked_at once it is older than half the grace period, so the push has at least that long to
    put its manifest before garbage collection may drop an unreferenced link."""
    half_grace = svc.settings.operations.gc_grace_seconds / 2
    if linked_at is not None and now() - linked_at > half_grace:
        async with svc.db.write() as conn:
            await conn.execute(
                update(rb).where(rb.c.repository_id == repo.id, rb.c.digest == digest).values(linked_at=now())
            )


async def stat_blob(
    svc: Services, caller: Caller, account_id: str, repository: str, digest: str, action: str
) -> tuple[Repository, int]:
    """The size of a blob the repository has, once `caller` may `action` it; two indexed reads."""
    repo = await open_repository_fast(svc, caller, account_id, repository, action)
    rows = await fastread.fetch(svc.db, _LINK, {"repository_id": repo.id, "digest": digest})
    if not rows:
        raise blob_unknown(repo, digest)
    size, linked_at = rows[0]
    if action == "ecr:BatchCheckLayerAvailability":
        await keep_link(svc, repo, digest, linked_at)
    return repo, int(size)


async def mount_blob(
    svc: Services, caller: Caller, account_id: str, repository: str, digest: str, source: str
) -> int | None:
    """Link `digest` from repository `source` into `repository`; None when it can't be mounted,
    so the caller falls back to an ordinary upload as the distribution spec says."""
    async with svc.db.write() as conn:
        target = await open_for_push(svc, conn, caller, account_id, repository, "ecr:InitiateLayerUpload")
        try:
            origin = await open_repository(conn, caller, account_id, source, "ecr:GetDownloadUrlForLayer")
        except Exception:  # noqa: BLE001 - an unreadable or missing source means "upload instead"
            return None
        size = await linked_size(conn, origin, digest)
        if size is None:
            return None
        await link(conn, target.id, digest, size)
        return size


async def unlink_blob(svc: Services, caller: Caller, account_id: str, repository: str, digest: str) -> None:
    """The registry door's blob DELETE: the repository stops serving it; garbage collection frees
    the bytes once nothing refers to them."""
    async with svc.db.write() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:BatchDeleteImage")
        result = await conn.execute(delete(rb).where(rb.c.repository_id == repo.id, rb.c.digest == digest))
        if result.rowcount == 0:
            raise blob_unknown(repo, digest)
