"""Blobs as a repository sees them: a repository serves a blob once it was pushed or mounted into it."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from sqlalchemy import and_, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import BlobUnknown
from dockyard.core.identity.caller import Caller
from dockyard.core.operations.account_settings import BLOB_MOUNTING, setting_value
from dockyard.core.operations.creation_templates import open_for_push
from dockyard.core.registry import archive
from dockyard.core.registry.images import REPOSITORY_COLUMNS, THIS_REPOSITORY, authorized_repository
from dockyard.core.registry.repositories import Repository, open_repository
from dockyard.core.services import Services, now
from dockyard.store import fastread, schema
from dockyard.store.prepared import Prepared

log = logging.getLogger(__name__)
rb = schema.repository_blobs
# How a stored blob can fail its metadata: no data at all, or data of another size than recorded.
# (Bytes changed in place, same size, only `dockyard storage verify` finds: it re-hashes.)
Damage = Literal["missing", "size"]
# Digests whose damage this process has logged already: one warning each, however often it is hit.
_LOGGED_LIMIT = 10_000
_logged: set[tuple[str, str]] = set()
# A blob GET or HEAD in one indexed read: the repository (absent: no rows), and the blob's size
# and link if the repository has it (NULLs if not), run through store.fastread.
_LINK = (
    select(*REPOSITORY_COLUMNS, schema.blobs.c.size, rb.c.linked_at, schema.blobs.c.location)
    .select_from(
        schema.repositories.outerjoin(
            rb, and_(rb.c.repository_id == schema.repositories.c.id, rb.c.digest == bindparam("digest"))
        ).outerjoin(schema.blobs, schema.blobs.c.digest == rb.c.digest)
    )
    .where(THIS_REPOSITORY)
)


def blob_unknown(repo: Repository, digest: str) -> BlobUnknown:
    return BlobUnknown(
        f"The layer with digest '{digest}' does not exist in the repository with name '{repo.name}' "
        f"in the registry with id '{repo.account_id}'"
    )


def archived_blob(repo: Repository, digest: str) -> BlobUnknown:
    """A layer only archived images need: not served (ECR answers a pull of them with 404)."""
    return BlobUnknown(
        f"The layer with digest '{digest}' in the repository with name '{repo.name}' in the registry with id "
        f"'{repo.account_id}' belongs only to archived images and cannot be pulled"
    )


class BlobDamaged(BlobUnknown):
    """A blob the metadata records whose stored data is missing or of the wrong size. Clients see
    it as an unknown blob (404): the registry cannot serve it, and a push that asks finds it absent
    and uploads it again, which puts the data back."""

    def __init__(self, digest: str, damage: Damage, expected: int, stored: int | None) -> None:
        if damage == "missing":
            what = "its data is missing from the registry's storage"
        elif stored is None:
            what = f"its stored data does not have the {expected} bytes recorded"
        else:
            what = f"its stored data is damaged ({stored} bytes stored, {expected} recorded)"
        super().__init__(f"The layer with digest '{digest}' cannot be served: {what}. Push it again to restore it.")
        self.digest, self.damage, self.expected, self.stored = digest, damage, expected, stored


@functools.cache
def _damage_counter() -> Any:
    # Made on first use, in a worker: prometheus_client must not be imported before the CLI
    # sets up multiprocess metrics (see dockyard.observe.metrics).
    from prometheus_client import Counter

    return Counter("dockyard_blob_damaged", "Reads that found a blob's stored data missing or damaged", ["damage"])


def report_damage(digest: str, damage: str, expected: int, stored: int | None) -> None:
    """Count a read that found damage; log it once per digest and kind in this process."""
    _damage_counter().labels(damage=damage).inc()
    key = (digest, damage)
    if key in _logged:
        return
    if len(_logged) >= _LOGGED_LIMIT:
        _logged.clear()
    _logged.add(key)
    log.warning(
        "blob %s is damaged in storage: %s (recorded size %d, stored %s); "
        "run `dockyard storage verify` to find and repair damage",
        digest, damage, expected, "nothing" if stored is None else f"{stored} bytes",
    )  # fmt: skip


def local_damage(svc: Services, digest: str, size: int) -> BlobDamaged | None:
    """On a store of local files, what is wrong with the blob's file (reported), if anything: one
    stat, cheap enough for every HEAD and GET. Object stores are not asked here (a request per HEAD
    costs too much); their reads check the bytes as they stream (`open_stream`)."""
    path = svc.blobs.local_path(digest)
    if path is None:
        return None
    try:
        stored: int | None = path.stat().st_size
    except FileNotFoundError:
        stored = None
    if stored == size:
        return None
    damage: Damage = "missing" if stored is None else "size"
    report_damage(digest, damage, size, stored)
    return BlobDamaged(digest, damage, size, stored)


async def open_stream(
    svc: Services, digest: str, size: int, start: int = 0, end: int | None = None
) -> AsyncIterator[bytes]:
    """Bytes [start, end) of a blob of `size` recorded bytes, once the store has started sending
    them: a missing blob raises BlobDamaged here, before any response goes out. Data that ends
    early raises it mid-stream, which aborts the response rather than finish it short."""
    stop = size if end is None else end
    stream = svc.blobs.read(digest, start, stop)
    try:
        first = await anext(stream, b"")
    except FileNotFoundError:
        report_damage(digest, "missing", size, None)
        raise BlobDamaged(digest, "missing", size, None) from None
    return _counted(stream, first, digest, size, stop - start)


async def _counted(
    stream: AsyncIterator[bytes], first: bytes, digest: str, size: int, expected: int
) -> AsyncIterator[bytes]:
    # The store reads no further than asked, so only fewer bytes than expected can come.
    sent = 0
    chunk: bytes | None = first
    while chunk is not None:
        if chunk:
            yield chunk
        sent += len(chunk)
        chunk = await anext(stream, None)
    if sent < expected:
        report_damage(digest, "size", size, None)
        raise BlobDamaged(digest, "size", size, None)


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


@functools.cache
def _link_statements(dialect: str) -> tuple[Prepared, Prepared]:
    """The two upserts of `link` in the dialect's INSERT … ON CONFLICT. Built on first use: a
    server on SQLite never loads PostgreSQL's dialect (2 MiB in every worker)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    blobs = schema.blobs
    blob = dialect_insert(blobs).values(digest=bindparam("digest"), size=bindparam("size"), created_at=bindparam("now"))
    blob = blob.on_conflict_do_update(
        index_elements=[blobs.c.digest], set_={"size": blob.excluded.size}, where=blobs.c.size != blob.excluded.size
    )
    linked = dialect_insert(rb).values(
        repository_id=bindparam("repository_id"), digest=bindparam("digest"), linked_at=bindparam("now")
    )
    linked = linked.on_conflict_do_update(
        index_elements=[rb.c.repository_id, rb.c.digest], set_={"linked_at": linked.excluded.linked_at}
    )
    return Prepared(blob), Prepared(linked)


async def link(conn: AsyncConnection, repository_id: int, digest: str, size: int) -> None:
    """Record that the blob exists (its bytes are durable already, `size` verified) and that the
    repository has it. An existing link is refreshed: garbage collection counts a link's grace
    period from its last use, so a push that relies on it is never cut short. A blob row of the
    wrong size (a damaged blob's, put back by verified bytes) takes the true size."""
    blob, linked = _link_statements(conn.dialect.name)
    params = {"repository_id": repository_id, "digest": digest, "size": size, "now": now()}
    await blob.execute(conn, params)
    await linked.execute(conn, params)


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
    svc: Services, caller: Caller, account_id: str, repository: str, digest: str, action: str, *, refresh_link: bool
) -> tuple[Repository, int]:
    """The size of a blob the repository has, once `caller` may `action` it; one indexed read.
    `refresh_link`: the caller is a push checking what it may skip, so the link is kept (`keep_link`)."""
    params = {"account": account_id, "region": caller.region, "name": repository, "digest": digest}
    rows = await fastread.fetch(svc.db, _LINK, params)
    # Authorised before the blob is looked at: AccessDenied comes before any NotFound.
    repo = await authorized_repository(svc, caller, account_id, repository, action, rows)
    size, linked_at, location = rows[0][-3:]
    if size is None:
        raise blob_unknown(repo, digest)
    size = int(size)
    if not await archive.servable(svc, digest, location):
        raise archived_blob(repo, digest)
    damaged = local_damage(svc, digest, size)
    if damaged is not None:
        raise damaged
    if refresh_link:
        await keep_link(svc, repo, digest, linked_at)
    return repo, size


async def mount_blob(
    svc: Services, caller: Caller, account_id: str, repository: str, digest: str, source: str
) -> int | None:
    """Link `digest` from repository `source` into `repository`; None when it can't be mounted,
    so the caller falls back to an ordinary upload as the distribution spec says."""
    async with svc.db.write() as conn:
        # With the registry's BLOB_MOUNTING setting off, ECR ignores the mount parameters.
        if await setting_value(conn, account_id, caller.region, BLOB_MOUNTING) != "ENABLED":
            return None
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
