"""Garbage collection, online: what no image needs any more is removed while pushes go on.

What goes, in this order:
1. upload sessions untouched for longer than the upload expiry (row, then bytes);
2. layer links (a repository "has" a blob) older than the grace period that no image of that
   repository refers to: what abandoned pushes, blob DELETEs and deleted images leave behind;
3. blobs no repository has and no image refers to, recorded or touched longer ago than the grace
   period: row and file go in one write transaction;
4. files no row accounts for (a crash between writing bytes and recording them), once older than
   the grace period.

Why an upload, a mount or a manifest put in flight never loses a blob it relies on:
- Every step marks candidates from a read, then deletes in a write transaction that re-checks the
  same conditions. Write transactions are serialised (SQLite's write lock; on PostgreSQL the
  advisory lock every write transaction takes, see store.database), so no link or image can
  appear between the check and the delete.
- An upload moves its verified bytes into place, then, in one write transaction, checks that they
  are still there and records the blob's row and the repository's link (core.uploads.complete).
  A blob's row and its file are deleted inside one write transaction too, so either the deletion
  came first (the upload finds its bytes gone and answers BLOB_UPLOAD_UNKNOWN, acknowledging
  nothing) or the link keeps the blob.
- An upload being written or finished holds its lock (the blob store's upload_lock); expiry
  passes it by, whatever the expiry, and takes only idle uploads.
- A link is made, mounted or refreshed (a HEAD of the layer) with linked_at = now, and a manifest
  PUT checks its layers and records its references in one write transaction: a push has at least
  half the grace period between its last layer check and its manifest PUT.
An image that was acknowledged is therefore never affected: its references keep its links, and
its links keep its blobs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from sqlalchemy import and_, delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.services import Services
from dockyard.store import schema
from dockyard.store.blobs import UploadBusy, UploadGone

log = logging.getLogger("dockyard.gc")

BATCH = 500
blobs = schema.blobs
links = schema.repository_blobs
refs = schema.image_references
images = schema.images
uploads = schema.uploads
repos = schema.repositories


@dataclass(frozen=True)
class RepositoryStorage:
    account_id: str
    region: str
    name: str
    bytes: int
    layers: int
    images: int


@dataclass
class StorageReport:
    total_bytes: int = 0
    blobs: int = 0
    upload_sessions: int = 0
    upload_bytes: int = 0
    repositories: list[RepositoryStorage] = field(default_factory=list)


@dataclass
class Collection:
    """What a run removed (or, dry, would remove)."""

    dry_run: bool
    blobs: list[tuple[str, int]] = field(default_factory=list)
    links: int = 0
    uploads: list[tuple[str, int]] = field(default_factory=list)
    orphan_blob_files: list[tuple[str, int]] = field(default_factory=list)
    orphan_upload_files: list[tuple[str, int]] = field(default_factory=list)

    @property
    def freed_bytes(self) -> int:
        return sum(
            size
            for group in (self.blobs, self.uploads, self.orphan_blob_files, self.orphan_upload_files)
            for _, size in group
        )


def _unreferenced(cutoff: float):  # type: ignore[no-untyped-def]
    """Blobs no repository has, no image refers to, and nobody claimed since `cutoff`."""
    return and_(
        func.coalesce(blobs.c.touched_at, blobs.c.created_at) < cutoff,
        ~exists().where(links.c.digest == blobs.c.digest),
        ~exists().where(refs.c.digest == blobs.c.digest),
    )


def _unused_link(cutoff: float):  # type: ignore[no-untyped-def]
    """Links older than `cutoff` that no image of the same repository refers to."""
    return and_(
        links.c.linked_at < cutoff,
        ~exists()
        .where(refs.c.digest == links.c.digest)
        .where(refs.c.image_id == images.c.id)
        .where(images.c.repository_id == links.c.repository_id),
    )


async def collect(
    svc: Services, *, dry_run: bool, grace_seconds: float, upload_expiry_seconds: float, now: float | None = None
) -> Collection:
    moment = time.time() if now is None else now
    cutoff = moment - grace_seconds
    result = Collection(dry_run)
    result.uploads = await _expire_uploads(svc, moment - upload_expiry_seconds, dry_run)
    result.links = await _drop_links(svc, cutoff, dry_run)
    result.blobs = await _delete_blobs(svc, cutoff, dry_run, assume_links_dropped=dry_run)
    result.orphan_blob_files = await _orphan_blob_files(svc, cutoff, dry_run)
    result.orphan_upload_files = await _orphan_upload_files(svc, cutoff, dry_run)
    return result


async def _expire_uploads(svc: Services, cutoff: float, dry_run: bool) -> list[tuple[str, int]]:
    async with svc.db.read() as conn:
        rows = (await conn.execute(select(uploads.c.id, uploads.c.size).where(uploads.c.updated_at < cutoff))).all()
    found = [(row.id, int(row.size)) for row in rows]
    if dry_run:
        return found
    removed: list[tuple[str, int]] = []
    for batch in _batches(found):
        sizes = dict(batch)
        async with AsyncExitStack() as held:
            idle = [upload_id for upload_id in sizes if await _hold_if_idle(svc, held, upload_id)]
            async with svc.db.write() as conn:
                gone = (
                    await conn.execute(
                        delete(uploads)
                        .where(uploads.c.id.in_(idle), uploads.c.updated_at < cutoff)
                        .returning(uploads.c.id)
                    )
                ).scalars()
                ids = list(gone)
            for upload_id in ids:
                await svc.blobs.cancel_upload(upload_id)
                removed.append((upload_id, sizes[upload_id]))
    return removed


async def _hold_if_idle(svc: Services, held: AsyncExitStack, upload_id: str) -> bool:
    """Take the upload's lock unless a request holds it (an upload whose bytes are gone is idle)."""
    try:
        await held.enter_async_context(svc.blobs.upload_lock(upload_id))
    except UploadBusy:
        return False
    except UploadGone:
        pass
    return True


async def _drop_links(svc: Services, cutoff: float, dry_run: bool) -> int:
    if dry_run:
        async with svc.db.read() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(links).where(_unused_link(cutoff)))).scalar_one()
            )
    async with svc.db.write() as conn:
        return int((await conn.execute(delete(links).where(_unused_link(cutoff)))).rowcount or 0)


async def _delete_blobs(
    svc: Services, cutoff: float, dry_run: bool, *, assume_links_dropped: bool
) -> list[tuple[str, int]]:
    async with svc.db.read() as conn:
        query = select(blobs.c.digest, blobs.c.size).where(_unreferenced(cutoff))
        if assume_links_dropped:
            # A dry run removed no link: count blobs whose only links are ones a real run would drop.
            query = select(blobs.c.digest, blobs.c.size).where(
                func.coalesce(blobs.c.touched_at, blobs.c.created_at) < cutoff,
                ~exists().where(links.c.digest == blobs.c.digest, ~_unused_link(cutoff)),
                ~exists().where(refs.c.digest == blobs.c.digest),
            )
        found = [(row.digest, int(row.size)) for row in await conn.execute(query)]
    if dry_run:
        return found
    removed: list[tuple[str, int]] = []
    for batch in _batches(found):
        sizes = dict(batch)
        # Row and file go in one write transaction, re-checked there: see the module docstring.
        async with svc.db.write() as conn:
            digests = await _still_unreferenced(conn, list(sizes), cutoff)
            if digests:
                await conn.execute(delete(blobs).where(blobs.c.digest.in_(digests)))
                for digest in digests:
                    await svc.blobs.delete(digest)
        removed.extend((digest, sizes[digest]) for digest in digests)
    return removed


async def _still_unreferenced(conn: AsyncConnection, digests: list[str], cutoff: float) -> list[str]:
    query = select(blobs.c.digest).where(blobs.c.digest.in_(digests), _unreferenced(cutoff)).with_for_update()
    return list((await conn.execute(query)).scalars())


async def _orphan_blob_files(svc: Services, cutoff: float, dry_run: bool) -> list[tuple[str, int]]:
    files = [f async for f in svc.blobs.stored_blobs() if f.changed_at < cutoff]
    removed: list[tuple[str, int]] = []
    for batch in _batches([(f.name, f.size) for f in files]):
        sizes = dict(batch)
        transaction = svc.db.read() if dry_run else svc.db.write()
        async with transaction as conn:
            known = set((await conn.execute(select(blobs.c.digest).where(blobs.c.digest.in_(list(sizes))))).scalars())
            orphans = [d for d in sizes if d not in known]
            if not dry_run:
                for digest in orphans:
                    await svc.blobs.delete(digest)
        removed.extend((digest, sizes[digest]) for digest in orphans)
    return removed


async def _orphan_upload_files(svc: Services, cutoff: float, dry_run: bool) -> list[tuple[str, int]]:
    files = [f async for f in svc.blobs.stored_uploads() if f.changed_at < cutoff]
    removed: list[tuple[str, int]] = []
    for batch in _batches([(f.name, f.size) for f in files]):
        sizes = dict(batch)
        transaction = svc.db.read() if dry_run else svc.db.write()
        async with transaction as conn:
            known = set((await conn.execute(select(uploads.c.id).where(uploads.c.id.in_(list(sizes))))).scalars())
            orphans = [name for name in sizes if name not in known]
            if not dry_run:
                for name in orphans:
                    await svc.blobs.cancel_upload(name)
        removed.extend((name, sizes[name]) for name in orphans)
    return removed


def _batches(items: list[tuple[str, int]]) -> Iterable[list[tuple[str, int]]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


async def storage_report(svc: Services) -> StorageReport:
    """Bytes stored, in total (each blob once) and per repository (each layer it has, once)."""
    report = StorageReport()
    async with svc.db.read() as conn:
        total = (await conn.execute(select(func.count(), func.coalesce(func.sum(blobs.c.size), 0)))).one()
        report.blobs, report.total_bytes = int(total[0]), int(total[1])
        pending = (await conn.execute(select(func.count(), func.coalesce(func.sum(uploads.c.size), 0)))).one()
        report.upload_sessions, report.upload_bytes = int(pending[0]), int(pending[1])
        image_counts = dict(
            (await conn.execute(select(images.c.repository_id, func.count()).group_by(images.c.repository_id))).all()
        )
        rows = await conn.execute(
            select(
                repos.c.id,
                repos.c.account_id,
                repos.c.region,
                repos.c.name,
                func.coalesce(func.sum(blobs.c.size), 0),
                func.count(blobs.c.digest),
            )
            .select_from(
                repos.outerjoin(links, links.c.repository_id == repos.c.id).outerjoin(
                    blobs, blobs.c.digest == links.c.digest
                )
            )
            .group_by(repos.c.id, repos.c.account_id, repos.c.region, repos.c.name)
            .order_by(repos.c.account_id, repos.c.region, repos.c.name)
        )
        for row in rows:
            report.repositories.append(
                RepositoryStorage(row[1], row[2], row[3], int(row[4]), int(row[5]), int(image_counts.get(row[0], 0)))
            )
    return report
