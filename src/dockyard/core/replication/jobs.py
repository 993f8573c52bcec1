"""Replication jobs: the IN_PROGRESS rows of image_replication_statuses, claimed by one worker at
a time under a lease, carried out, and closed as COMPLETE or FAILED.

A claim is an UPDATE in a write transaction, and write transactions are serialised across
processes, so two workers never hold one job. A worker renews its claim while it copies; a claim
not renewed for LEASE_SECONDS is taken over. Closing a job only succeeds for the claim's holder,
and a job a push re-opened meanwhile (`pending`, a tag moved onto the image) is handed back
rather than closed, so its new tag is carried too. A failure worth retrying (a site that does
not answer) leaves the job IN_PROGRESS with its failure code, to be tried again after a backoff
that doubles up to MAX_BACKOFF_SECONDS, for as long as it takes the site to come back."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from sqlalchemy import and_, delete, or_, select, update

from dockyard.core.replication.rules import COMPLETE, FAILED, IN_PROGRESS
from dockyard.core.services import Services, now
from dockyard.store import schema

log = logging.getLogger("dockyard.replication")

LEASE_SECONDS = 120.0
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0

statuses = schema.image_replication_statuses


@dataclass(frozen=True)
class ReplicationJob:
    image_id: int
    destination_region: str
    destination_registry: str
    source_account: str
    source_region: str
    repository_id: int
    repository: str
    digest: str
    attempts: int
    # When the job became due: the same for a worker that takes over a dead one's claim, new
    # when a push re-opens the job or a failure puts it off. Names the writes of one round.
    due_at: float

    @property
    def round_key(self) -> str:
        return f"{self.image_id}/{self.destination_region}/{self.destination_registry}/{self.due_at!r}"


def backoff(attempts: int) -> float:
    """Seconds before attempt `attempts` + 1, after `attempts` failed ones."""
    return min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** max(0, attempts - 1))


def _claimable(lease_seconds: float) -> object:
    moment = now()
    return and_(
        statuses.c.status == IN_PROGRESS,
        statuses.c.next_attempt_at <= moment,
        or_(statuses.c.claimed_by.is_(None), statuses.c.claimed_at < moment - lease_seconds),
    )


async def claim_next(svc: Services, node: str, lease_seconds: float = LEASE_SECONDS) -> ReplicationJob | None:
    """Take the oldest due job (or one whose worker stopped renewing its claim)."""
    keys = (statuses.c.image_id, statuses.c.destination_region, statuses.c.destination_registry)
    async with svc.db.read() as conn:
        if (await conn.execute(select(*keys).where(_claimable(lease_seconds)).limit(1))).first() is None:
            return None
    async with svc.db.write() as conn:
        query = select(*keys, statuses.c.attempts, statuses.c.next_attempt_at).where(_claimable(lease_seconds))
        row = (await conn.execute(query.order_by(statuses.c.next_attempt_at).limit(1))).first()
        if row is None:
            return None
        await conn.execute(
            update(statuses)
            .where(*_key(row.image_id, row.destination_region, row.destination_registry))
            .values(claimed_by=node, claimed_at=now(), pending=False)
        )
        image, repos = schema.images, schema.repositories
        found = (
            await conn.execute(
                select(image.c.digest, repos.c.id, repos.c.name, repos.c.account_id, repos.c.region)
                .join(repos, repos.c.id == image.c.repository_id)
                .where(image.c.id == row.image_id)
            )
        ).first()
        if found is None:
            # The image went between the two reads without its rows (foreign keys off): drop the job.
            await conn.execute(
                delete(statuses).where(*_key(row.image_id, row.destination_region, row.destination_registry))
            )
            return None
    return ReplicationJob(
        row.image_id,
        row.destination_region,
        row.destination_registry,
        found.account_id,
        found.region,
        found.id,
        found.name,
        found.digest,
        row.attempts,
        float(row.next_attempt_at),
    )


def _key(image_id: int, region: str, registry: str) -> tuple[object, ...]:
    return (
        statuses.c.image_id == image_id,
        statuses.c.destination_region == region,
        statuses.c.destination_registry == registry,
    )


def _mine(job: ReplicationJob, node: str) -> tuple[object, ...]:
    return (
        *_key(job.image_id, job.destination_region, job.destination_registry),
        statuses.c.claimed_by == node,
        statuses.c.status == IN_PROGRESS,
    )


async def renew_claim(svc: Services, job: ReplicationJob, node: str) -> None:
    async with svc.db.write() as conn:
        await conn.execute(update(statuses).where(*_mine(job, node)).values(claimed_at=now()))


async def release_claim(svc: Services, job: ReplicationJob, node: str) -> None:
    async with svc.db.write() as conn:
        await conn.execute(update(statuses).where(*_mine(job, node)).values(claimed_by=None, claimed_at=None))


async def complete(svc: Services, job: ReplicationJob, node: str) -> bool:
    """COMPLETE, unless a push re-opened the job meanwhile: then it is handed back, due now."""
    moment = now()
    async with svc.db.write() as conn:
        done = await conn.execute(
            update(statuses)
            .where(*_mine(job, node), statuses.c.pending.is_(False))
            .values(status=COMPLETE, failure_code=None, failure_reason=None, claimed_by=None, completed_at=moment)
        )
        if done.rowcount:
            return True
        await conn.execute(
            update(statuses).where(*_mine(job, node)).values(claimed_by=None, claimed_at=None, next_attempt_at=moment)
        )
    return False


async def fail(svc: Services, job: ReplicationJob, node: str, code: str, reason: str) -> bool:
    async with svc.db.write() as conn:
        result = await conn.execute(
            update(statuses)
            .where(*_mine(job, node))
            .values(status=FAILED, failure_code=code, failure_reason=reason, claimed_by=None, completed_at=now())
        )
    return bool(result.rowcount)


async def retry_later(svc: Services, job: ReplicationJob, node: str, code: str, reason: str) -> float:
    """Keep the job IN_PROGRESS with its failure, due again after the backoff; the delay."""
    attempts = job.attempts + 1
    delay = backoff(attempts)
    async with svc.db.write() as conn:
        await conn.execute(
            update(statuses)
            .where(*_mine(job, node))
            .values(
                attempts=attempts,
                failure_code=code,
                failure_reason=reason,
                claimed_by=None,
                claimed_at=None,
                next_attempt_at=now() + delay,
            )
        )
    return delay


def _process_gone(node: str, hostname: str) -> bool:
    """Whether `node` (hostname:pid:nonce) names a process of this host that no longer runs."""
    host, _, rest = node.partition(":")
    pid = rest.partition(":")[0]
    if host != hostname or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def release_dead_claims(svc: Services, hostname: str) -> int:
    """Hand back at once the claims of this host's processes that died (a node killed and
    restarted): their lease would otherwise hold the jobs for LEASE_SECONDS. Claims of other
    hosts' processes cannot be judged from here and wait for their lease."""
    async with svc.db.read() as conn:
        holders = (
            await conn.execute(
                select(statuses.c.claimed_by)
                .where(statuses.c.status == IN_PROGRESS, statuses.c.claimed_by.like(f"{hostname}:%"))
                .distinct()
            )
        ).scalars()
        dead = [node for node in holders if _process_gone(node, hostname)]
    if not dead:
        return 0
    async with svc.db.write() as conn:
        result = await conn.execute(
            update(statuses)
            .where(statuses.c.status == IN_PROGRESS, statuses.c.claimed_by.in_(dead))
            .values(claimed_by=None, claimed_at=None)
        )
    log.info("took back %d replication jobs of processes that died: %s", result.rowcount, ", ".join(dead))
    return int(result.rowcount)
