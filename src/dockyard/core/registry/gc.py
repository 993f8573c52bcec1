"""Garbage collection, online: what no image needs any more is removed while pushes go on.

What goes, in this order:
1. upload sessions untouched for longer than the upload expiry (row, then bytes; or, where the
   blob store keeps an upload's state beside its bytes, state and bytes, under the upload's lock);
2. layer links (a repository "has" a blob) older than the grace period that no image of that
   repository refers to: what abandoned pushes, blob DELETEs and deleted images leave behind;
3. blobs no repository has and no image refers to, recorded or touched longer ago than the grace
   period: row and file go in one write transaction;
4. files no row accounts for (a crash between writing bytes and recording them), or uploads whose
   bytes or state are missing, once older than the grace period.

Why an upload, a mount or a manifest put in flight never loses a blob it relies on:
- Every step marks candidates from reads, then deletes in short write transactions of at most
  BATCH rows that re-check the candidates. Write transactions are serialised (SQLite's write lock;
  on PostgreSQL the advisory lock every write transaction takes, see store.database), so no link
  or image can appear between a re-check and its delete.
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
- A link's re-check costs the same however many images share its layer or fill its repository:
  it reads the link by primary key (still older than the grace period?) and the references of
  the repository's images pushed since the marking read began (less CLOCK_SKEW). An image's
  references are recorded only with the image, whose pushed_at is its node's clock at that
  moment, so any image the marking read could not see is among those; images it saw that refer
  to the layer made the link no candidate in the first place.
An image that was acknowledged is therefore never affected: its references keep its links, and
its links keep its blobs.

What the work costs: every read walks its table once in primary-key pages (a page's upper bound
is found by index), each link page compares a range of repositories' links with the references of
their images reached through images.repository_id (never from a layer to all its references), and
nothing whose cost grows with the data runs inside a write transaction."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, CompoundSelect, Select, and_, delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.services import Services
from dockyard.store import schema
from dockyard.store.blobs.interface import StoredFile, UploadBusy, UploadGone, UploadState, UploadStates

log = logging.getLogger("dockyard.gc")

# Rows a write transaction deletes at most, and rows a read page walks.
BATCH = 500
# How far apart the clocks of the nodes may be (the grace period trusts them to agree too): an
# image the marking read could not see has pushed_at later than the read's start less this.
CLOCK_SKEW = 600.0
KEY_GROUPS = 100
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


def _unreferenced(cutoff: float, *, spare_recent_links_only: bool):  # type: ignore[no-untyped-def]
    """Blobs no image refers to, nobody claimed since `cutoff`, and no repository has (with
    `spare_recent_links_only`: no link newer than `cutoff`, i.e. every link a run would drop:
    no image refers to the blob, so no image of the link's repository does)."""
    linked = exists().where(links.c.digest == blobs.c.digest)
    if spare_recent_links_only:
        linked = linked.where(links.c.linked_at >= cutoff)
    return and_(
        func.coalesce(blobs.c.touched_at, blobs.c.created_at) < cutoff,
        ~exists().where(refs.c.digest == blobs.c.digest),
        ~linked,
    )


def _unused_links_between(after: int, last: int, cutoff: float) -> CompoundSelect:
    """Links of repositories after..last (inclusive) older than `cutoff` that no image of the same
    repository refers to. The references are reached from the repositories' images only: with no
    condition on a digest, no plan can walk every reference to a shared layer."""
    linked = select(links.c.repository_id, links.c.digest).where(
        links.c.repository_id > after, links.c.repository_id <= last, links.c.linked_at < cutoff
    )
    used = (
        select(images.c.repository_id, refs.c.digest)
        .select_from(images.join(refs, refs.c.image_id == images.c.id))
        .where(images.c.repository_id > after, images.c.repository_id <= last)
    )
    return linked.except_(used)


def _recently_used(repository_ids: list[int], since: float) -> Select[tuple[int, str]]:
    """What images of these repositories pushed since `since` refer to (by the pushed index)."""
    return (
        select(images.c.repository_id, refs.c.digest)
        .select_from(images.join(refs, refs.c.image_id == images.c.id))
        .where(images.c.repository_id.in_(repository_ids), images.c.pushed_at >= since)
    )


async def collect(
    svc: Services, *, dry_run: bool, grace_seconds: float, upload_expiry_seconds: float, now: float | None = None
) -> Collection:
    moment = time.time() if now is None else now
    cutoff = moment - grace_seconds
    result = Collection(dry_run)
    result.uploads = await _expire_uploads(svc, moment - upload_expiry_seconds, dry_run)
    result.links = await _drop_links(svc, cutoff, dry_run)
    result.blobs = await _delete_blobs(svc, cutoff, dry_run)
    result.orphan_blob_files = await _orphan_blob_files(svc, cutoff, dry_run)
    result.orphan_upload_files = await _orphan_upload_files(svc, cutoff, dry_run)
    return result


async def _idle_upload_pages(svc: Services, cutoff: float) -> AsyncIterator[list[tuple[str, int]]]:
    after = ""
    while True:
        async with svc.db.read() as conn:
            rows = (
                await conn.execute(
                    select(uploads.c.id, uploads.c.size)
                    .where(uploads.c.id > after, uploads.c.updated_at < cutoff)
                    .order_by(uploads.c.id)
                    .limit(BATCH)
                )
            ).all()
        if not rows:
            return
        yield [(row.id, int(row.size)) for row in rows]
        after = rows[-1].id


async def _expire_uploads(svc: Services, cutoff: float, dry_run: bool) -> list[tuple[str, int]]:
    # Rows too where the store keeps the states: an upload started before it did has one.
    removed = await _expire_upload_rows(svc, cutoff, dry_run)
    if svc.blobs.upload_states is not None:
        removed.extend(await _expire_upload_states(svc, svc.blobs.upload_states, cutoff, dry_run))
    return removed


async def _expire_upload_states(
    svc: Services, states: UploadStates, cutoff: float, dry_run: bool
) -> list[tuple[str, int]]:
    """Uploads whose state the blob store keeps, idle since `cutoff`: the state is read again
    under the upload's lock, which an append holds from reading the state to saving the next."""
    removed: list[tuple[str, int]] = []
    async for upload in svc.blobs.stored_uploads():
        state = await states.load(upload.name) if upload.changed_at < cutoff else None
        if state is None or state.updated_at >= cutoff:
            continue
        if not dry_run:
            async with AsyncExitStack() as held:
                state = await states.load(upload.name) if await _hold_if_idle(svc, held, upload.name) else None
                if state is None or state.updated_at >= cutoff:
                    continue
                await svc.blobs.cancel_upload(upload.name)
        removed.append((upload.name, state.size))
    return removed


async def _expire_upload_rows(svc: Services, cutoff: float, dry_run: bool) -> list[tuple[str, int]]:
    removed: list[tuple[str, int]] = []
    async for page in _idle_upload_pages(svc, cutoff):
        if dry_run:
            removed.extend(page)
            continue
        sizes = dict(page)
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


async def _link_page_end(conn: AsyncConnection, after: int) -> int | None:
    """The last repository of the page after `after`: the one holding the BATCH-th link (a page
    takes whole repositories, so a repository with more links makes a longer page)."""
    following = links.c.repository_id > after
    last = (
        await conn.execute(
            select(links.c.repository_id)
            .where(following)
            .order_by(links.c.repository_id, links.c.digest)
            .offset(BATCH - 1)
            .limit(1)
        )
    ).scalar()
    if last is None:
        last = (await conn.execute(select(func.max(links.c.repository_id)).where(following))).scalar()
    return None if last is None else int(last)


async def _unused_link_pages(svc: Services, cutoff: float) -> AsyncIterator[tuple[float, list[tuple[int, str]]]]:
    """Pages of unused links, each with the time its read began."""
    after = -1
    while True:
        began = time.time()
        async with svc.db.read() as conn:
            last = await _link_page_end(conn, after)
            if last is None:
                return
            rows = (await conn.execute(_unused_links_between(after, last, cutoff))).all()
        yield began, [(int(row[0]), str(row[1])) for row in rows]
        after = last


async def _drop_links(svc: Services, cutoff: float, dry_run: bool) -> int:
    dropped = 0
    async for began, page in _unused_link_pages(svc, cutoff):
        if dry_run:
            dropped += len(page)
            continue
        for start in range(0, len(page), BATCH):
            dropped += await _drop_link_batch(svc, page[start : start + BATCH], cutoff, began - CLOCK_SKEW)
    return dropped


def _by_key(pairs: list[tuple[int, str]]) -> list[ColumnElement[bool]]:
    """Conditions selecting exactly the links `pairs` by primary key, a repository's digests
    together, KEY_GROUPS repositories a statement (SQLite scans the table for a row-value IN
    list, and caps how deep an expression may nest)."""
    digests: dict[int, list[str]] = {}
    for repository_id, digest in pairs:
        digests.setdefault(repository_id, []).append(digest)
    groups = [
        and_(links.c.repository_id == repository_id, links.c.digest.in_(names))
        for repository_id, names in sorted(digests.items())
    ]
    return [or_(*groups[start : start + KEY_GROUPS]) for start in range(0, len(groups), KEY_GROUPS)]


async def _drop_link_batch(svc: Services, batch: list[tuple[int, str]], cutoff: float, since: float) -> int:
    """Delete the links of `batch` that are still unused: see the module docstring's re-check."""
    async with svc.db.write() as conn:
        old: list[tuple[int, str]] = []
        for keys in _by_key(batch):
            rows = await conn.execute(
                select(links.c.repository_id, links.c.digest).where(keys, links.c.linked_at < cutoff)
            )
            old.extend((int(row[0]), str(row[1])) for row in rows)
        if not old:
            return 0
        repository_ids = sorted({repository_id for repository_id, _ in old})
        used = {(int(row[0]), str(row[1])) for row in await conn.execute(_recently_used(repository_ids, since))}
        doomed = [key for key in old if key not in used]
        for keys in _by_key(doomed):
            await conn.execute(delete(links).where(keys))
    return len(doomed)


async def _unreferenced_blob_pages(
    svc: Services, cutoff: float, *, spare_recent_links_only: bool
) -> AsyncIterator[list[tuple[str, int]]]:
    """Unreferenced blobs, walking the blobs in digest pages of BATCH rows."""
    after = ""
    while True:
        async with svc.db.read() as conn:
            last = (
                await conn.execute(
                    select(blobs.c.digest)
                    .where(blobs.c.digest > after)
                    .order_by(blobs.c.digest)
                    .offset(BATCH - 1)
                    .limit(1)
                )
            ).scalar()
            page = [blobs.c.digest > after] if last is None else [blobs.c.digest > after, blobs.c.digest <= last]
            rows = await conn.execute(
                select(blobs.c.digest, blobs.c.size)
                .where(*page, _unreferenced(cutoff, spare_recent_links_only=spare_recent_links_only))
                .order_by(blobs.c.digest)
            )
            found = [(row.digest, int(row.size)) for row in rows]
        if found:
            yield found
        if last is None:
            return
        after = last


async def _delete_blobs(svc: Services, cutoff: float, dry_run: bool) -> list[tuple[str, int]]:
    removed: list[tuple[str, int]] = []
    # A dry run dropped no link: it counts the blobs whose links a run would all drop.
    async for page in _unreferenced_blob_pages(svc, cutoff, spare_recent_links_only=dry_run):
        if dry_run:
            removed.extend(page)
            continue
        sizes = dict(page)
        # Row and file go in one write transaction, re-checked there: see the module docstring.
        async with svc.db.write() as conn:
            digests = await _still_unreferenced(conn, list(sizes), cutoff)
            if digests:
                await conn.execute(delete(blobs).where(blobs.c.digest.in_(digests)))
                for digest in digests:
                    await svc.blobs.delete(digest)
                    # A blob archived images used has its bytes on the archive tier.
                    await svc.blobs.delete_archived(digest)
        removed.extend((digest, sizes[digest]) for digest in digests)
    return removed


async def _still_unreferenced(conn: AsyncConnection, digests: list[str], cutoff: float) -> list[str]:
    query = (
        select(blobs.c.digest)
        .where(blobs.c.digest.in_(digests), _unreferenced(cutoff, spare_recent_links_only=False))
        .with_for_update()
    )
    return list((await conn.execute(query)).scalars())


async def _orphan_blob_files(svc: Services, cutoff: float, dry_run: bool) -> list[tuple[str, int]]:
    removed = await _orphans_among(svc, svc.blobs.stored_blobs(), svc.blobs.delete, cutoff, dry_run)
    # Copies on the archive tier (core/registry/archive.py) of blobs the metadata no longer has.
    removed += await _orphans_among(svc, svc.blobs.stored_archived_blobs(), svc.blobs.delete_archived, cutoff, dry_run)
    return removed


async def _orphans_among(
    svc: Services,
    stored: AsyncIterable[StoredFile],
    remove: Callable[[str], Awaitable[None]],
    cutoff: float,
    dry_run: bool,
) -> list[tuple[str, int]]:
    files = (f async for f in stored if f.changed_at < cutoff)
    removed: list[tuple[str, int]] = []
    async for batch in _batches((f.name, f.size) async for f in files):
        sizes = dict(batch)
        transaction = svc.db.read() if dry_run else svc.db.write()
        async with transaction as conn:
            known = set((await conn.execute(select(blobs.c.digest).where(blobs.c.digest.in_(list(sizes))))).scalars())
            orphans = [d for d in sizes if d not in known]
            if not dry_run:
                for digest in orphans:
                    await remove(digest)
        removed.extend((digest, sizes[digest]) for digest in orphans)
    return removed


async def _orphan_upload_files(svc: Services, cutoff: float, dry_run: bool) -> list[tuple[str, int]]:
    files = (f async for f in svc.blobs.stored_uploads() if f.changed_at < cutoff)
    removed: list[tuple[str, int]] = []
    states = svc.blobs.upload_states
    async for batch in _batches((f.name, f.size) async for f in files):
        sizes = dict(batch)
        if states is not None:
            # An upload exists while its bytes and its state both do; a crash may leave one.
            orphans = [name for name in sizes if await states.load(name) is None]
            if not dry_run:
                for name in orphans:
                    await svc.blobs.cancel_upload(name)
            removed.extend((name, sizes[name]) for name in orphans)
            continue
        transaction = svc.db.read() if dry_run else svc.db.write()
        async with transaction as conn:
            known = set((await conn.execute(select(uploads.c.id).where(uploads.c.id.in_(list(sizes))))).scalars())
            orphans = [name for name in sizes if name not in known]
            if not dry_run:
                for name in orphans:
                    await svc.blobs.cancel_upload(name)
        removed.extend((name, sizes[name]) for name in orphans)
    return removed


async def _upload_states(svc: Services, states: UploadStates) -> AsyncIterator[UploadState]:
    async for upload in svc.blobs.stored_uploads():
        state = await states.load(upload.name)
        if state is not None:
            yield state


async def _batches(items: AsyncIterable[tuple[str, int]]) -> AsyncIterator[list[tuple[str, int]]]:
    batch: list[tuple[str, int]] = []
    async for item in items:
        batch.append(item)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def storage_report(svc: Services) -> StorageReport:
    """Bytes stored, in total (each blob once) and per repository (each layer it has, once)."""
    report = StorageReport()
    async with svc.db.read() as conn:
        total = (await conn.execute(select(func.count(), func.coalesce(func.sum(blobs.c.size), 0)))).one()
        report.blobs, report.total_bytes = int(total[0]), int(total[1])
        pending = (await conn.execute(select(func.count(), func.coalesce(func.sum(uploads.c.size), 0)))).one()
        report.upload_sessions, report.upload_bytes = int(pending[0]), int(pending[1])
        if svc.blobs.upload_states is not None:
            kept = [state async for state in _upload_states(svc, svc.blobs.upload_states)]
            report.upload_sessions += len(kept)
            report.upload_bytes += sum(state.size for state in kept)
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
