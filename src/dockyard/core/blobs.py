"""Blobs as a repository sees them: a repository serves a blob once it was pushed or mounted into it."""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.caller import Caller
from dockyard.core.repositories import Repository, open_repository
from dockyard.core.services import Services, now
from dockyard.errors import BlobUnknown
from dockyard.store import schema

rb = schema.repository_blobs


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
    """Record that the blob exists (its bytes are durable already) and that the repository has it."""
    if (
        await conn.execute(select(schema.blobs.c.size).where(schema.blobs.c.digest == digest))
    ).first() is None:
        await conn.execute(insert(schema.blobs).values(digest=digest, size=size, created_at=now()))
    try:
        async with conn.begin_nested():
            await conn.execute(insert(rb).values(repository_id=repository_id, digest=digest, linked_at=now()))
    except IntegrityError:
        pass  # already linked


async def stat_blob(
    svc: Services, caller: Caller, account_id: str, repository: str, digest: str, action: str
) -> tuple[Repository, int]:
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, account_id, repository, action)
        size = await linked_size(conn, repo, digest)
    if size is None:
        raise blob_unknown(repo, digest)
    return repo, size


async def mount_blob(
    svc: Services, caller: Caller, account_id: str, repository: str, digest: str, source: str
) -> int | None:
    """Link `digest` from repository `source` into `repository`; None when it can't be mounted,
    so the caller falls back to an ordinary upload as the distribution spec says."""
    async with svc.db.write() as conn:
        target = await open_repository(conn, caller, account_id, repository, "ecr:InitiateLayerUpload")
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
