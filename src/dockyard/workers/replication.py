"""The background replication worker: started with the application, it takes queued copies
(core/replication/jobs.py) one at a time and carries each out. Several processes and nodes may
run one each: claims are rows under a lease, renewed while an image is copied, so no copy is
made by two workers at once and the work of a process that died is taken over. The copy itself
is idempotent, so a job taken over mid-way repeats nothing visible."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from dockyard.audit.trail import AuditTrail
from dockyard.core.replication import jobs
from dockyard.core.services import Services
from dockyard.workers.polling import POLL_INTERVAL, PollingWorker

log = logging.getLogger("dockyard.replication")

# How often the claims of this host's dead processes are looked for (and once at start).
DEAD_CLAIMS_INTERVAL = 30.0
INTERNAL_ERROR = "InternalError"


class ReplicationWorker(PollingWorker):
    name = "dockyard-replication-worker"
    log = log

    def __init__(self, svc: Services, trail: AuditTrail | None = None, *, poll_interval: float = POLL_INTERVAL) -> None:
        super().__init__(poll_interval)
        self.svc = svc
        self.trail = trail
        self._dead_claims_checked = -DEAD_CLAIMS_INTERVAL

    async def _release_dead_claims(self) -> None:
        """Now and then, hand back the claims of this host's processes that died."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._dead_claims_checked >= DEAD_CLAIMS_INTERVAL:
            self._dead_claims_checked = loop.time()
            await jobs.release_dead_claims(self.svc, socket.gethostname())

    async def _record(self, event: dict[str, Any]) -> None:
        if self.trail is not None and self.trail.running:
            await self.trail.record_durably(event)

    async def run_once(self) -> bool:
        """Carry out one copy, if one is due; True when something was done."""
        await self._release_dead_claims()
        job = await jobs.claim_next(self.svc, self.node)
        if job is None:
            return False
        # Copying speaks to other sites (httpx, botocore's signer: a few MiB): loaded with the
        # first copy, not by every worker that only ever finds the queue empty.
        from dockyard.core.replication import run

        async with jobs.QUEUE.holding(self.svc.db, job.key, self.node, jobs.LEASE_SECONDS):
            try:
                await run.perform(self.svc, job, self.node, self._record)
            except Exception as exc:  # noqa: BLE001 - an unexpected fault is retried like an unanswering site
                log.exception("replication of %s@%s failed", job.repository, job.digest)
                internal = f"Internal error: {type(exc).__name__}"
                await jobs.retry_later(self.svc, job, self.node, INTERNAL_ERROR, internal)
        return True
