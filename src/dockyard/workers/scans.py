"""The background scan worker: started with the application, it takes waiting scans from the
database one at a time, reads the image's layers in a child process (scanner/run.py), matches what
it found, and stores the result; it also re-matches continuously scanned images after every import
of the vulnerability database. Several nodes may run one each: claims are rows, renewed while a
scan runs, so the scan of a node that died is taken over.

Every finished scan, and every re-match that changed an image's findings, is recorded in the audit
trail as the "ECR Image Scan" event ECR sends to EventBridge."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from dockyard.audit.events import image_scan_event
from dockyard.audit.trail import AuditTrail
from dockyard.core.registry.manifests import parse_manifest
from dockyard.core.scanning import scans
from dockyard.core.services import Services
from dockyard.workers.polling import POLL_INTERVAL, PollingWorker

if TYPE_CHECKING:
    from dockyard.scanner.inventory import Inventory

log = logging.getLogger("dockyard.scans")

TIMEOUT_ENV = "DOCKYARD_SCAN_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT = 3600.0
LEASE_SECONDS = 300.0
# Layers a registry may legitimately not hold (Windows base layers and the like).
_FOREIGN_MARKERS = ("foreign", "nondistributable")


class ScanWorker(PollingWorker):
    name = "dockyard-scan-worker"
    log = log

    def __init__(self, svc: Services, trail: AuditTrail | None = None, *, poll_interval: float = POLL_INTERVAL) -> None:
        super().__init__(poll_interval)
        self.svc = svc
        self.trail = trail
        self.timeout = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))

    async def run_once(self) -> bool:
        """Do one piece of work, if there is any; True when something was done."""
        job = await scans.claim_next(self.svc, self.node, LEASE_SECONDS)
        if job is not None:
            await self._scan(job)
            return True
        if await scans.vulndb_changed(self.svc):
            await self._rematch_continuous()
            return True
        return False

    async def _scan(self, job: scans.ScanJob) -> None:
        # The scanner is imported with the first scan: a worker that never scans never loads it.
        from dockyard.scanner.run import ScanFailed

        async with scans.QUEUE.holding(self.svc.db, job.key, self.node, LEASE_SECONDS):
            try:
                inventory = await self._inventory(job)
                evaluation = await scans.evaluate(self.svc, inventory)
                stored = await scans.complete_scan(self.svc, job, self.node, inventory, evaluation)
                log.info(
                    "scanned %s@%s: %d packages, %d findings, %s%s",
                    job.repository, job.digest, len(inventory.packages), len(evaluation.findings), evaluation.status,
                    "" if stored else " (discarded)",
                )  # fmt: skip
                if stored:
                    await self._record(job.image_id)
            except ScanFailed as exc:
                log.warning("scan of %s@%s failed: %s", job.repository, job.digest, exc)
                if await scans.fail_scan(self.svc, job, self.node, f"ScanFailedError: {exc}"):
                    await self._record(job.image_id)
            except Exception as exc:  # noqa: BLE001 - recorded as the scan's failure, not retried forever
                log.exception("scan of %s@%s failed", job.repository, job.digest)
                description = f"ScanFailedError: internal error: {type(exc).__name__}"
                if await scans.fail_scan(self.svc, job, self.node, description):
                    await self._record(job.image_id)

    async def _inventory(self, job: scans.ScanJob) -> Inventory:
        from dockyard.scanner.layers import PathLayer
        from dockyard.scanner.run import ScanFailed, inventory_in_process, inventory_in_thread

        manifest = parse_manifest(job.manifest, job.media_type)
        local: list[PathLayer] = []
        streamed: list[tuple[str, Callable[[], AsyncIterator[bytes]]]] = []
        for layer in manifest.layers:
            if await self.svc.blobs.size(layer.digest) is None:
                if any(marker in layer.media_type for marker in _FOREIGN_MARKERS):
                    continue
                raise ScanFailed(f"layer {layer.digest} is missing from the registry's storage")
            path = self.svc.blobs.local_path(layer.digest)
            if path is not None:
                local.append(PathLayer(layer.digest, str(path)))
            streamed.append((layer.digest, lambda d=layer.digest: self.svc.blobs.read(d)))
        if len(local) == len(streamed):
            return await inventory_in_process(local, self.timeout)
        return await inventory_in_thread(streamed, self.timeout)

    async def _rematch_continuous(self) -> None:
        targets = await scans.continuous_targets(self.svc)
        changed = 0
        for image_id, inventory in targets:
            if await scans.rematch(self.svc, image_id, inventory):
                changed += 1
                await self._record(image_id)
        if targets:
            log.info(
                "vulnerability database changed: re-matched %d continuously scanned images, %d changed",
                len(targets), changed,
            )  # fmt: skip

    async def _record(self, image_id: int) -> None:
        """Record the image's scan as ECR's "ECR Image Scan" event, once it is stored."""
        if self.trail is None:
            return
        result = await scans.scan_result(self.svc, image_id)
        if result is None:
            return
        await self.trail.record_durably(
            image_scan_event(
                result.account_id,
                result.region,
                result.repository,
                result.digest,
                result.tags,
                result.status,
                result.severity_counts,
                time.time(),
            )  # fmt: skip
        )
