"""`dockyard storage verify`: re-hash the stored blobs, report the damaged ones, repair them from
another copy.

Reads check a blob's size against the metadata (dockyard.core.registry.blobs), which finds a lost or
truncated file; bytes changed in place, same size, only re-hashing finds. This walks every blob a
repository links (what clients can be served), in digest order, and compares each with its
metadata: data missing, of the wrong size, or hashing to another digest.

A pass over a big store takes long, so it is resumable: a checkpoint in the data directory holds
the last digest verified and the damage found so far, and the next run goes on from there (until
a pass completes, which removes it). Reads are paced to a rate, so a pass can run beside a busy
server. A repair copies the blob from another store (a replica, a backup) through the store's
ordinary verified upload: the copy must hash to the digest before it replaces anything."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.registry.archive import ARCHIVE as ARCHIVE_TIER
from dockyard.core.registry.archive import HOT as ARCHIVE_HOT
from dockyard.core.services import Services
from dockyard.store import schema
from dockyard.store.blobs.filesystem import FilesystemBlobStore
from dockyard.store.blobs.interface import BlobStore, DigestMismatch

CHECKPOINT_NAME = "storage-verify-checkpoint.json"
_CHECKPOINT_VERSION = 1
# Blobs read from the metadata at a time, and how often the checkpoint is written.
PAGE_SIZE = 500
CHECKPOINT_EVERY_BLOBS = 100
CHECKPOINT_EVERY_SECONDS = 5.0

DamageKind = Literal["missing", "size", "digest"]


class RepairFailed(Exception):
    """No good copy of a damaged blob could be put in place; the message says why."""


@dataclass
class Damaged:
    digest: str
    damage: DamageKind
    recorded_size: int
    stored_size: int | None = None
    # For "digest": what the stored bytes hash to.
    actual_digest: str | None = None
    repaired: bool = False
    repair_error: str | None = None

    def describe(self) -> str:
        if self.damage == "missing":
            return f"data missing (recorded {self.recorded_size} bytes)"
        if self.damage == "size":
            return f"wrong size: {self.stored_size} bytes stored, {self.recorded_size} recorded"
        return f"wrong content: the bytes hash to {self.actual_digest}"


@dataclass
class VerifyReport:
    checked: int = 0
    checked_bytes: int = 0
    damaged: list[Damaged] = field(default_factory=list)
    # The digest a resumed pass went on after; None for a pass from the start.
    resumed_after: str | None = None
    # False when the run stopped (--max-blobs) before the end of the pass: run again to go on.
    complete: bool = False
    elapsed_seconds: float = 0.0

    @property
    def unrepaired(self) -> list[Damaged]:
        return [d for d in self.damaged if not d.repaired]

    def to_json(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "resumedAfter": self.resumed_after,
            "checked": self.checked,
            "checkedBytes": self.checked_bytes,
            "elapsedSeconds": round(self.elapsed_seconds, 3),
            "damaged": [
                {
                    "digest": d.digest,
                    "damage": d.damage,
                    "recordedSize": d.recorded_size,
                    "storedSize": d.stored_size,
                    "actualDigest": d.actual_digest,
                    "repaired": d.repaired,
                    "repairError": d.repair_error,
                }
                for d in self.damaged
            ],
        }


class Pacer:
    """Holds reads to `bytes_per_second` on average since the run started (None: no limit)."""

    def __init__(self, bytes_per_second: float | None) -> None:
        self.rate = bytes_per_second
        self.started = time.monotonic()
        self.spent = 0

    async def spend(self, count: int) -> None:
        if not self.rate:
            return
        self.spent += count
        ahead = self.spent / self.rate - (time.monotonic() - self.started)
        if ahead > 0:
            await asyncio.sleep(ahead)

    async def paced(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            await self.spend(len(chunk))
            yield chunk


@dataclass
class Checkpoint:
    """Where an unfinished pass stands, in a JSON file written atomically. `store` names the blob
    store the pass is over: a checkpoint of another store is not resumed."""

    path: Path
    store: str

    def load(self) -> VerifyReport | None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # a damaged checkpoint only costs a fresh pass
        if raw.get("version") != _CHECKPOINT_VERSION or raw.get("store") != self.store or not raw.get("after"):
            return None
        return VerifyReport(
            checked=int(raw["checked"]),
            checked_bytes=int(raw["checkedBytes"]),
            damaged=[Damaged(**d) for d in raw["damaged"]],
            resumed_after=str(raw["after"]),
        )

    def save(self, report: VerifyReport, after: str) -> None:
        document = {
            "version": _CHECKPOINT_VERSION,
            "store": self.store,
            "after": after,
            "checked": report.checked,
            "checkedBytes": report.checked_bytes,
            "damaged": [asdict(d) for d in report.damaged],
        }
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(document))
        os.replace(temporary, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


async def _recorded_blobs(svc: Services, after: str | None, limit: int) -> list[tuple[str, int, str]]:
    """(digest, size, location) of blobs some repository links, in digest order, after `after`;
    the location is where the bytes are authoritative: "hot", or "archive" (the archive tier)."""
    blobs, links = schema.blobs, schema.repository_blobs
    query = (
        select(blobs.c.digest, blobs.c.size, blobs.c.location)
        .where(exists().where(links.c.digest == blobs.c.digest))
        .order_by(blobs.c.digest)
        .limit(limit)
    )
    if after is not None:
        query = query.where(blobs.c.digest > after)
    async with svc.db.read() as conn:
        return [(row.digest, int(row.size), str(row.location)) for row in await conn.execute(query)]


async def _recorded(conn: AsyncConnection, digest: str) -> bool:
    blobs, links = schema.blobs, schema.repository_blobs
    query = select(blobs.c.digest).where(blobs.c.digest == digest, exists().where(links.c.digest == digest))
    return (await conn.execute(query)).first() is not None


async def _location(svc: Services, digest: str) -> str:
    async with svc.db.read() as conn:
        found = (await conn.execute(select(schema.blobs.c.location).where(schema.blobs.c.digest == digest))).scalar()
    return str(found or ARCHIVE_HOT)


async def _still_recorded(svc: Services, digest: str) -> bool:
    """Whether the blob is still linked: garbage collection may have removed it since it was listed."""
    async with svc.db.read() as conn:
        return await _recorded(conn, digest)


async def _hash(store: BlobStore, digest: str, pacer: Pacer, archived: bool = False) -> str | None:
    """What the stored blob hashes to, in the digest's algorithm; None when its data is missing."""
    algorithm = digest.partition(":")[0]
    hasher = hashlib.new(algorithm)
    try:
        async for chunk in pacer.paced(store.read_archived(digest) if archived else store.read(digest)):
            hasher.update(chunk)
    except FileNotFoundError:
        return None
    return f"{algorithm}:{hasher.hexdigest()}"


async def check_blob(
    store: BlobStore, digest: str, size: int, pacer: Pacer, location: str = ARCHIVE_HOT
) -> Damaged | None:
    """What is wrong with one stored blob against its recorded size and its digest, if anything;
    a blob on the archive tier is checked there."""
    archived = location == ARCHIVE_TIER
    stored = await (store.archived_size(digest) if archived else store.size(digest))
    if stored is None:
        return Damaged(digest, "missing", size)
    if stored != size:
        return Damaged(digest, "size", size, stored)
    actual = await _hash(store, digest, pacer, archived)
    if actual is None:
        return Damaged(digest, "missing", size)
    if actual != digest:
        return Damaged(digest, "digest", size, stored, actual_digest=actual)
    return None


async def repair_blob(svc: Services, source: BlobStore, damaged: Damaged, pacer: Pacer) -> None:
    """Put `source`'s copy of the blob in place, through the store's verified upload: the copy is
    hashed on the way in and replaces nothing unless it matches the digest."""
    size = await source.size(damaged.digest)
    if size is None:
        raise RepairFailed("the repair source has no copy")
    if size != damaged.recorded_size:
        raise RepairFailed(f"the repair source's copy has {size} bytes, not the {damaged.recorded_size} recorded")
    store = svc.blobs
    upload_id = f"verify-repair-{uuid.uuid4().hex}"
    await store.start_upload(upload_id)
    try:
        async with store.upload_lock(upload_id):
            appended = await store.append(upload_id, 0, None, pacer.paced(source.read(damaged.digest)))
            await store.verify_upload(upload_id, appended.size, appended.writer, damaged.digest)
            # Garbage collection deletes a blob's row and bytes in one write transaction: placed
            # within one, the copy goes in only while the blob is still recorded.
            async with svc.db.write() as conn:
                if not await _recorded(conn, damaged.digest):
                    raise RepairFailed("the blob was removed (garbage collection) while it was repaired")
                if damaged.damage == "digest":
                    # Placing never replaces a blob of the right size, and this one has the right
                    # size and the wrong bytes: it goes first (it must not be served anyway).
                    await store.delete(damaged.digest)
                await store.place_upload(upload_id, appended.size, appended.writer, damaged.digest)
                # A blob damaged on the archive tier comes back hot, sound; its damaged archive copy
                # goes (the archive mover would trust a copy of the right size), and the mover
                # archives the sound bytes again if only archived images need them.
                moved = await conn.execute(
                    update(schema.blobs)
                    .where(schema.blobs.c.digest == damaged.digest, schema.blobs.c.location == ARCHIVE_TIER)
                    .values(location=ARCHIVE_HOT)
                )
                if moved.rowcount:
                    await store.delete_archived(damaged.digest)
    except DigestMismatch as exc:
        raise RepairFailed(f"the repair source's copy is damaged too: it hashes to {exc}") from exc
    except FileNotFoundError as exc:
        raise RepairFailed("the repair source's copy disappeared while it was read") from exc
    finally:
        # Gone already once placed; otherwise nothing of a failed repair stays behind.
        await store.cancel_upload(upload_id)


async def _repair(svc: Services, source: BlobStore | None, damaged: Damaged, pacer: Pacer) -> None:
    if source is None or damaged.repaired:
        return
    try:
        await repair_blob(svc, source, damaged, pacer)
    except RepairFailed as exc:
        damaged.repair_error = str(exc)
    else:
        damaged.repaired, damaged.repair_error = True, None


async def _recheck(svc: Services, report: VerifyReport, source: BlobStore | None, pacer: Pacer) -> None:
    """Damage a resumed pass carries over may have been healed since (a push, a repair): check it
    again, and keep what is still damaged."""
    kept = []
    for old in report.damaged:
        if old.repaired:
            kept.append(old)
            continue
        if not await _still_recorded(svc, old.digest):
            continue
        current = await check_blob(svc.blobs, old.digest, old.recorded_size, pacer, await _location(svc, old.digest))
        if current is not None:
            await _repair(svc, source, current, pacer)
            kept.append(current)
    report.damaged = kept


async def verify_store(
    svc: Services,
    checkpoint: Checkpoint,
    *,
    rate: float | None = None,
    repair_from: BlobStore | None = None,
    restart: bool = False,
    max_blobs: int | None = None,
    on_damage: Callable[[Damaged], None] | None = None,
) -> VerifyReport:
    """One run of a pass over the store: from the checkpoint (unless `restart`) to the end, or
    until `max_blobs` were checked. `rate` is in bytes per second."""
    pacer = Pacer(rate)
    report = None if restart else checkpoint.load()
    if report is None:
        checkpoint.clear()
        report = VerifyReport()
    else:
        await _recheck(svc, report, repair_from, pacer)
    after = report.resumed_after
    checked_now = 0
    saved_at = time.monotonic()
    try:
        while max_blobs is None or checked_now < max_blobs:
            page = await _recorded_blobs(svc, after, PAGE_SIZE)
            if not page:
                report.complete = True
                break
            for digest, size, location in page:
                if max_blobs is not None and checked_now >= max_blobs:
                    break
                damaged = await check_blob(svc.blobs, digest, size, pacer, location)
                if damaged is not None and await _still_recorded(svc, digest):
                    await _repair(svc, repair_from, damaged, pacer)
                    report.damaged.append(damaged)
                    if on_damage is not None:
                        on_damage(damaged)
                report.checked += 1
                report.checked_bytes += size
                checked_now += 1
                after = digest
                if checked_now % CHECKPOINT_EVERY_BLOBS == 0 or time.monotonic() - saved_at > CHECKPOINT_EVERY_SECONDS:
                    checkpoint.save(report, after)
                    saved_at = time.monotonic()
    finally:
        report.elapsed_seconds = time.monotonic() - pacer.started
        if report.complete:
            checkpoint.clear()
        elif after is not None:
            # Interrupted or stopped: the next run goes on from the last blob checked.
            checkpoint.save(report, after)
    if not report.complete and after is not None and await _at_end(svc, after):
        report.complete = True
        checkpoint.clear()
    return report


async def _at_end(svc: Services, after: str) -> bool:
    return not await _recorded_blobs(svc, after, 1)


def open_repair_source(location: str, *, endpoint_url: str | None = None, region: str | None = None) -> BlobStore:
    """The blob store `--repair-from` names: s3://BUCKET[/PREFIX], or a directory holding a blob
    store (`blobs/` inside it) or a data directory (`storage/blobs/`)."""
    if location.startswith("s3://"):
        from dockyard.store.blobs.s3 import S3BlobStore

        return S3BlobStore(location, endpoint_url=endpoint_url, region=region)
    root = Path(location.removeprefix("file://"))
    for candidate in (root, root / "storage"):
        if (candidate / "blobs").is_dir():
            return _CopiesDirectory(candidate)
    raise ValueError(f"{location} holds no blob store (no blobs/ or storage/blobs/ directory in it)")


class _CopiesDirectory(FilesystemBlobStore):
    """A blob store directory repairs only read from: opened without creating anything in it,
    so a read-only mount of a backup serves as well."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs"
        self._uploads = root / "uploads"
        self._hashing = {}


async def close_quietly(store: BlobStore) -> None:
    with contextlib.suppress(Exception):
        await store.close()
