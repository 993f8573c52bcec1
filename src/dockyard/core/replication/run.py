"""One replication job carried out: to a registry of this deployment (local.py) or to another
site (sites.py), and its outcome recorded (jobs.py)."""

from __future__ import annotations

import logging

from dockyard.core.replication import jobs, local, sites, source
from dockyard.core.replication.local import Record, ReplicationRefused
from dockyard.core.services import Services

log = logging.getLogger("dockyard.replication")
IMAGE_NOT_FOUND = "ImageNotFound"


async def perform(svc: Services, job: jobs.ReplicationJob, node: str, record: Record) -> bool:
    """Copy the job's image and record the outcome; False when the claim was lost meanwhile."""
    async with svc.db.read() as conn:
        carried = await source.carried_images(conn, job.repository_id, job.digest)
    if not carried:
        return await jobs.fail(svc, job, node, IMAGE_NOT_FOUND, "The image was deleted before it was replicated.")
    try:
        site = sites.site_for(svc, job.destination_region)
        if site is not None:
            await sites.replicate(svc, site, job.destination_registry, job.repository, carried)
        else:
            await local.replicate(
                svc,
                source_account=job.source_account,
                source_region=job.source_region,
                destination_account=job.destination_registry,
                destination_region=job.destination_region,
                repository=job.repository,
                carried=carried,
                record=record,
                round_key=job.round_key,
            )
    except ReplicationRefused as exc:
        log.info("replication of %s@%s to %s/%s failed: %s", job.repository, job.digest, *_to(job), exc.reason)
        return await jobs.fail(svc, job, node, exc.code, exc.reason)
    except sites.SiteUnavailable as exc:
        delay = await jobs.retry_later(svc, job, node, exc.code, exc.reason)
        log.info(
            "replication of %s@%s to %s/%s retried in %.0fs: %s",
            job.repository, job.digest, *_to(job), delay, exc.reason,
        )  # fmt: skip
        return True
    log.info("replicated %s@%s to %s/%s", job.repository, job.digest, *_to(job))
    return await jobs.complete(svc, job, node)


def _to(job: jobs.ReplicationJob) -> tuple[str, str]:
    return job.destination_registry, job.destination_region
