"""The background signing worker: started with the application, it takes queued signatures
(core/signing/jobs.py) one at a time, signs each image with its signing profile and stores the
Notary Project signature as the image's referrer. Several processes and nodes may run one each:
claims are rows under a lease, renewed while a signature is made, so no image is signed twice by
one profile and the work of a process that died is taken over."""

from __future__ import annotations

import logging

from dockyard.core.services import Services
from dockyard.core.signing import jobs
from dockyard.workers.polling import POLL_INTERVAL, PollingWorker

log = logging.getLogger("dockyard.signing")


class SigningWorker(PollingWorker):
    name = "dockyard-signing-worker"
    log = log

    def __init__(self, svc: Services, *, poll_interval: float = POLL_INTERVAL) -> None:
        super().__init__(poll_interval)
        self.svc = svc

    async def run_once(self) -> bool:
        """Make one signature, if one is waiting; True when something was done."""
        job = await jobs.claim_next(self.svc, self.node)
        if job is None:
            return False
        async with jobs.QUEUE.holding(self.svc.db, job.key, self.node, jobs.LEASE_SECONDS):
            try:
                await jobs.sign(self.svc, job, self.node)
            except Exception as exc:  # noqa: BLE001 - recorded as the job's failure, not retried forever
                log.exception("signing %s@%s failed", job.repository, job.target.digest)
                await jobs.fail(self.svc, job, self.node, jobs.SIGNING_ERROR, f"Internal error: {type(exc).__name__}")
        return True
