"""Replication jobs: the IN_PROGRESS rows of image_replication_statuses, claimed by one worker at
a time under a lease, carried out, and closed as COMPLETE or FAILED.

Claims are store/claims.py's: no two workers hold one job, a worker renews its claim while it
copies, and a claim not renewed for LEASE_SECONDS is taken over. Closing a job only succeeds for
the claim's holder, and a job a push re-opened meanwhile (`pending`, a tag moved onto the image)
is handed back rather than closed, so its new tag is carried too. A failure worth retrying (a site that does
not answer) leaves the job IN_PROGRESS with its failure code, to be tried again after a backoff
that doubles up to MAX_BACKOFF_SECONDS, for as long as it takes the site to come back."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from dockyard.core.replication.rules import COMPLETE, FAILED, IN_PROGRESS
from dockyard.core.services import Services, now
from dockyard.store import schema
from dockyard.store.claims import ClaimedQueue

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
    def key(self) -> tuple[int, str, str]:
        return (self.image_id, self.destination_region, self.destination_registry)

    @property
    def round_key(self) -> str:
        return f"{self.image_id}/{self.destination_region}/{self.destination_registry}/{self.due_at!r}"


def backoff(attempts: int) -> float:
    """Seconds before attempt `attempts` + 1, after `attempts` failed ones."""
    return min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** max(0, attempts - 1))


QUEUE = ClaimedQueue(
    statuses,
    key=(statuses.c.image_id, statuses.c.destination_region, statuses.c.destination_registry),
    open=statuses.c.status == IN_PROGRESS,
    oldest_first=statuses.c.next_attempt_at,
    due_at=statuses.c.next_attempt_at,
    # A push that re-opens the job while it is carried out sets it again (see `complete`).
    on_claim={"pending": False},
)


async def claim_next(svc: Services, node: str, lease_seconds: float = LEASE_SECONDS) -> ReplicationJob | None:
    """Take the oldest due job (or one whose worker stopped renewing its claim)."""
    columns = (statuses.c.attempts, statuses.c.next_attempt_at)
    async with QUEUE.claim_next(svc.db, node, lease_seconds, *columns) as claimed:
        if claimed is None:
            return None
        conn, row = claimed
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
            await conn.execute(delete(statuses).where(*QUEUE.named(QUEUE.key_of(row))))
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


async def complete(svc: Services, job: ReplicationJob, node: str) -> bool:
    """COMPLETE, unless a push re-opened the job meanwhile: then it is handed back, due now."""
    moment = now()
    async with svc.db.write() as conn:
        done = await conn.execute(
            update(statuses)
            .where(QUEUE.held(job.key, node), statuses.c.pending.is_(False))
            .values(status=COMPLETE, failure_code=None, failure_reason=None, claimed_by=None, completed_at=moment)
        )
        if done.rowcount:
            return True
        await conn.execute(
            update(statuses)
            .where(QUEUE.held(job.key, node))
            .values(claimed_by=None, claimed_at=None, next_attempt_at=moment)
        )
    return False


async def fail(svc: Services, job: ReplicationJob, node: str, code: str, reason: str) -> bool:
    async with svc.db.write() as conn:
        result = await conn.execute(
            update(statuses)
            .where(QUEUE.held(job.key, node))
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
            .where(QUEUE.held(job.key, node))
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
