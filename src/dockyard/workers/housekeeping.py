"""Background jobs of a running server: lifecycle policies, garbage collection, the archive mover
(layers of archived images to the archive tier and back) and the refresh of the vulnerability
data, on a schedule.

Each job runs on one process at a time, whatever the number of workers or nodes: a run first takes
a lease (a row in `leases`) that outlives the run's expected length; the others skip that round.
The same jobs run on demand from the command line (`dockyard lifecycle run`, `dockyard gc`,
`dockyard vulndb update`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select, update

from dockyard.audit.events import lifecycle_events
from dockyard.audit.trail import AuditTrail
from dockyard.core.operations import lifecycle
from dockyard.core.registry import archive, gc
from dockyard.core.services import Services
from dockyard.observe import metrics
from dockyard.store import schema
from dockyard.vulndb import store as vulndb_store

if TYPE_CHECKING:
    from dockyard.vulndb import update as vulndb_update

log = logging.getLogger("dockyard.housekeeping")
leases = schema.leases
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def acquire_lease(svc: Services, name: str, seconds: float, holder: str = HOLDER) -> bool:
    async with svc.db.write() as conn:
        row = (await conn.execute(select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name))).first()
        moment = time.time()
        if row is None:
            await conn.execute(insert(leases).values(name=name, holder=holder, expires_at=moment + seconds))
            return True
        if row.holder != holder and row.expires_at > moment:
            return False
        await conn.execute(
            update(leases).where(leases.c.name == name).values(holder=holder, expires_at=moment + seconds)
        )
        return True


async def release_lease(svc: Services, name: str, holder: str = HOLDER) -> None:
    async with svc.db.write() as conn:
        await conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))


async def run_lifecycle(svc: Services, trail: AuditTrail | None, *, dry_run: bool) -> list[lifecycle.RepositoryRun]:
    """Apply every repository's lifecycle policy now; each expiry run becomes a PolicyExecutionEvent."""
    runs = []
    for repository_id in await lifecycle.policy_repositories(svc):
        run = await lifecycle.apply_to_repository(svc, repository_id, dry_run=dry_run)
        if run is None:
            continue
        runs.append(run)
        if dry_run or not run.expired:
            continue
        metrics.LIFECYCLE_EXPIRED.inc(len(run.expired))
        log.info(
            "lifecycle policy expired %d images in %s",
            len(run.expired),
            run.repository,
            extra={"fields": {"repository": run.repository, "account": run.account_id, "expired": len(run.expired)}},
        )
        if trail is not None:
            expired = [
                {
                    "digest": e.image.digest,
                    "tags": e.image.tags,
                    "pushedAt": e.image.pushed_at,
                    "rulePriority": e.rule.priority,
                }
                for e in run.expired
            ]
            rules = [r.document for r in run.policy.rules]
            for event in lifecycle_events(run.account_id, run.region, run.repository, rules, expired, time.time()):
                await trail.record_durably(event)
    return runs


async def run_gc(svc: Services, *, dry_run: bool) -> gc.Collection:
    options = svc.settings.operations
    result = await gc.collect(
        svc,
        dry_run=dry_run,
        grace_seconds=options.gc_grace_seconds,
        upload_expiry_seconds=options.upload_expiry_seconds,
    )
    if not dry_run:
        metrics.GC_FREED_BYTES.inc(result.freed_bytes)
        if result.freed_bytes or result.links:
            log.info(
                "garbage collection freed %d bytes",
                result.freed_bytes,
                extra={
                    "fields": {
                        "blobs": len(result.blobs),
                        "links": result.links,
                        "uploads": len(result.uploads),
                        "orphan_files": len(result.orphan_blob_files) + len(result.orphan_upload_files),
                        "freed_bytes": result.freed_bytes,
                    }
                },
            )
    return result


# The archive mover's lease, renewed in the background every third of it while a run goes on (a
# copy of a big layer may take long), released when the run ends; after a crash another process
# takes over within this many seconds.
ARCHIVE_LEASE_SECONDS = 30.0


async def run_archive(svc: Services, *, sweep: bool = False) -> archive.Moves:
    """One run of the archive mover, under the "archive" lease (skipped while another holds it)."""
    if not await acquire_lease(svc, "archive", ARCHIVE_LEASE_SECONDS):
        return archive.Moves()
    held = asyncio.Event()
    held.set()

    async def renew() -> None:
        while held.is_set():
            await asyncio.sleep(ARCHIVE_LEASE_SECONDS / 3)
            if not await acquire_lease(svc, "archive", ARCHIVE_LEASE_SECONDS):
                held.clear()

    async def keep() -> bool:
        return held.is_set()

    renewing = asyncio.create_task(renew())
    try:
        moves = await archive.move(svc, sweep=sweep, keep=keep)
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await renewing
        await release_lease(svc, "archive")
    if moves.archived or moves.restored or moves.activated or moves.swept:
        log.info(
            "archive mover: %d layers archived, %d restored, %d images activated",
            len(moves.archived),
            len(moves.restored),
            moves.activated,
            extra={"fields": {"swept": moves.swept, "failed": len(moves.failed)}},
        )
    return moves


async def run_vulndb_update(svc: Services) -> list[vulndb_update.Outcome]:
    # Imported when the refresh runs (httpx and the archive reader are not a worker's daily fare).
    from dockyard.vulndb import update as vulndb_update

    settings = svc.settings
    ecosystems = settings.vulndb_ecosystems or list(vulndb_update.DEFAULT_ECOSYSTEMS)
    return await vulndb_update.update(svc.db, settings.vulndb_url, ecosystems, vulndb_update.LogProgress())


# A server with no vulnerability data fetches it this soon after it starts (its scans fail until then).
FIRST_FETCH_DELAY = 2.0
# Seconds before the first retry of a round that left its data still due (then doubling, up to
# the job's interval): a fresh server whose first download failed does not wait a day.
RETRY_AFTER_FAILURE = 10.0
# How long stopping waits to hand back the lease of a job it cancelled.
RELEASE_TIMEOUT = 5.0


async def vulndb_due_in(svc: Services, interval: float) -> float:
    """Seconds until the vulnerability data is an interval old, so a restart keeps the schedule.
    With no data yet, moments: ECR never scans without data, and a fresh server should not wait a
    day for its first (an air-gapped site turns the schedule off and imports instead)."""
    async with svc.db.read() as conn:
        loaded = await vulndb_store.ecosystems_loaded(conn)
    if not loaded:
        return min(interval, FIRST_FETCH_DELAY)
    return max(0.0, min(loaded.values()) + interval - time.time())


class Housekeeping:
    """The server's schedule: lifecycle every lifecycle_interval_seconds, GC every gc_interval_seconds,
    the vulnerability data every vulndb_update_interval_seconds (0 turns a job off). `trigger(name)`
    runs a job at once (the next tick)."""

    def __init__(self, svc: Services, trail: AuditTrail | None) -> None:
        self.svc = svc
        self.trail = trail
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: dict[str, asyncio.Event] = {}
        self._swept = False
        # Jobs that first ask, with one read, whether there is anything to do, and take no lease
        # (a write) when there is not.
        self._idle_checks: dict[str, Callable[[], Awaitable[bool]]] = {"archive": lambda: archive.has_work(svc)}

    def start(self) -> None:
        options = self.svc.settings.operations
        jobs: dict[str, tuple[float, Callable[[], Awaitable[object]]]] = {
            "lifecycle": (options.lifecycle_interval_seconds, self._lifecycle),
            "gc": (options.gc_interval_seconds, self._gc),
            "archive": (options.archive_interval_seconds, self._archive),
        }
        vulndb_interval = self.svc.settings.vulndb_update_interval_seconds
        jobs["vulndb"] = (vulndb_interval, self._vulndb)
        first_waits: dict[str, Callable[[], Awaitable[float]]] = {
            "vulndb": lambda: vulndb_due_in(self.svc, vulndb_interval)
        }
        for name, (interval, job) in jobs.items():
            if interval > 0:
                self._wake[name] = asyncio.Event()
                loop = self._loop(name, interval, job, first_waits.get(name))
                self._tasks.append(asyncio.create_task(loop, name=f"dockyard-{name}"))

    def trigger(self, name: str) -> None:
        if name in self._wake:
            self._wake[name].set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _lifecycle(self) -> object:
        return await run_lifecycle(self.svc, self.trail, dry_run=False)

    async def _gc(self) -> object:
        return await run_gc(self.svc, dry_run=False)

    async def _archive(self) -> object:
        # The first run of each process sweeps the second copies a crash may have left.
        sweep, self._swept = not self._swept, True
        return await run_archive(self.svc, sweep=sweep)

    async def _vulndb(self) -> object:
        return await run_vulndb_update(self.svc)

    async def _loop(
        self,
        name: str,
        interval: float,
        job: Callable[[], Awaitable[object]],
        first_wait: Callable[[], Awaitable[float]] | None = None,
    ) -> None:
        wake = self._wake[name]
        wait = interval if first_wait is None else await self._due_in(name, first_wait, interval)
        failed_rounds = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)
            wake.clear()
            wait = interval
            running = False
            try:
                # Held for most of an interval and not released: the other workers' ticks of this
                # round find it taken. Overlapping runs would still be safe, only wasted.
                idle_check = self._idle_checks.get(name)
                if idle_check is not None:
                    # Takes and releases its own lease.
                    if await idle_check():
                        await job()
                    continue
                if await acquire_lease(self.svc, name, interval * 0.9):
                    running = True
                    await job()
            except asyncio.CancelledError:
                if running:
                    await self._hand_back(name)
                raise
            except Exception:  # noqa: BLE001 - a failed round is logged and retried next round
                log.exception("the %s job failed", name)
            if first_wait is None:
                continue
            # A job whose schedule follows its data (the vulnerability data): when the round left
            # it still due (the download failed, say), try again sooner than a whole interval,
            # backing off, and let any node take the next try.
            if await self._due_in(name, first_wait, interval) < interval / 2:
                failed_rounds += 1
                wait = min(interval, RETRY_AFTER_FAILURE * 2 ** (failed_rounds - 1))
                if running:
                    await self._hand_back(name)
            else:
                failed_rounds = 0

    @staticmethod
    async def _due_in(name: str, first_wait: Callable[[], Awaitable[float]], interval: float) -> float:
        try:
            return await first_wait()
        except Exception:  # noqa: BLE001 - the schedule falls back to a whole interval
            log.exception("could not tell when the %s job is due", name)
            return interval

    async def _hand_back(self, name: str) -> None:
        """Release the lease of a job stopped halfway, so that another node (or this one, restarted)
        need not wait most of an interval to run it. Bounded: stopping never waits long on this."""
        try:
            await asyncio.wait_for(release_lease(self.svc, name), RELEASE_TIMEOUT)
        except Exception:  # noqa: BLE001 - the lease then simply expires
            log.warning("could not release the %s lease while stopping", name)
