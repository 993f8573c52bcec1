"""Signing jobs: the IN_PROGRESS rows of image_signing_statuses, claimed by one worker at a time
under a lease, signed, stored, and closed as COMPLETE or FAILED.

Claims are store/claims.py's: no two workers hold one job, a worker renews its claim while it
signs, and a claim not renewed for LEASE_SECONDS is taken over. Closing a job only succeeds for
the claim's holder."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update

from dockyard.core.errors import DockyardError
from dockyard.core.identity.caller import root_caller
from dockyard.core.registry import blobs, images
from dockyard.core.replication.replication_hooks import with_own_replication
from dockyard.core.services import Services, now
from dockyard.core.signing import profiles, signatures
from dockyard.core.signing.keys import SealedKeyError
from dockyard.core.signing.signing_hooks import COMPLETE, FAILED, IN_PROGRESS
from dockyard.store import schema
from dockyard.store.claims import ClaimedQueue

log = logging.getLogger("dockyard.signing")

LEASE_SECONDS = 120.0
PROFILE_NOT_FOUND = "SigningProfileNotFound"
PROFILE_NOT_ACTIVE = "SigningProfileNotActive"
SIGNING_ERROR = "SigningError"

statuses = schema.image_signing_statuses


@dataclass(frozen=True)
class SigningJob:
    image_id: int
    profile_arn: str
    account_id: str
    region: str
    repository: str
    target: signatures.Target

    @property
    def key(self) -> tuple[int, str]:
        return (self.image_id, self.profile_arn)


class SigningFailed(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


QUEUE = ClaimedQueue(
    statuses,
    key=(statuses.c.image_id, statuses.c.profile_arn),
    open=statuses.c.status == IN_PROGRESS,
    oldest_first=statuses.c.requested_at,
)


async def claim_next(svc: Services, node: str, lease_seconds: float = LEASE_SECONDS) -> SigningJob | None:
    """Take the oldest waiting signature (or one whose worker stopped renewing its claim)."""
    async with QUEUE.claim_next(svc.db, node, lease_seconds) as claimed:
        if claimed is None:
            return None
        conn, row = claimed
        image, repos = schema.images, schema.repositories
        found = (
            await conn.execute(
                select(
                    image.c.digest,
                    image.c.media_type,
                    image.c.manifest,
                    repos.c.name,
                    repos.c.account_id,
                    repos.c.region,
                )
                .join(repos, repos.c.id == image.c.repository_id)
                .where(image.c.id == row.image_id)
            )
        ).one()
    # The descriptor's size is the manifest's own (images.size counts the image's blobs).
    target = signatures.Target(found.media_type, found.digest, len(found.manifest))
    return SigningJob(row.image_id, row.profile_arn, found.account_id, found.region, found.name, target)


async def _close(svc: Services, job: SigningJob, node: str, **values: object) -> bool:
    async with svc.db.write() as conn:
        result = await conn.execute(
            update(statuses).where(QUEUE.held(job.key, node)).values(claimed_by=None, completed_at=now(), **values)
        )
    return bool(result.rowcount)


async def fail(svc: Services, job: SigningJob, node: str, code: str, reason: str) -> bool:
    return await _close(svc, job, node, status=FAILED, failure_code=code, failure_reason=reason)


async def sign(svc: Services, job: SigningJob, node: str) -> bool:
    """Sign the job's image and store the signature as its referrer, then record the outcome.
    A failure the profile explains (missing, canceled) is recorded as FAILED with its reason.
    False when the claim was lost meanwhile (another worker took it over)."""
    try:
        digest = await _sign_and_store(svc, job)
    except SigningFailed as exc:
        log.info("signing %s@%s with %s failed: %s", job.repository, job.target.digest, job.profile_arn, exc.reason)
        return await fail(svc, job, node, exc.code, exc.reason)
    log.info("signed %s@%s with %s: %s", job.repository, job.target.digest, job.profile_arn, digest)
    return await _close(svc, job, node, status=COMPLETE, signature_digest=digest)


async def _sign_and_store(svc: Services, job: SigningJob) -> str:
    try:
        key = await profiles.signing_key(svc, job.profile_arn)
    except SealedKeyError as exc:
        raise SigningFailed(SIGNING_ERROR, "The signing profile's key could not be opened.") from exc
    if key is None:
        raise SigningFailed(PROFILE_NOT_FOUND, f"The signing profile {job.profile_arn} does not exist.")
    if key.status != profiles.ACTIVE:
        raise SigningFailed(
            PROFILE_NOT_ACTIVE,
            f"The signing profile {job.profile_arn} is {key.status} and can no longer sign.",
        )
    chain = [key.certificate_pem, key.root_pem]
    made = await _signature_already_made(svc, job, signatures.thumbprints(chain)[0])
    if made is not None:
        return made
    envelope = signatures.build_envelope(job.target, key.private_key, chain, datetime.now(UTC), key.validity)
    manifest = signatures.build_signature_manifest(job.target, envelope, chain)
    # The system signs on the registry's behalf: the pusher's right to sign was checked at push.
    # The signature is replicated as any referrer pushed after its subject would be.
    system = await with_own_replication(svc, root_caller(job.account_id, job.region))
    try:
        await _store_blob(svc, job, envelope)
        await _store_blob(svc, job, signatures.EMPTY_CONFIG)
        await images.put_manifest(svc, system, job.account_id, job.repository, manifest, signatures.OCI_MANIFEST)
    except DockyardError as exc:
        # The image or its repository went away before it could be signed.
        raise SigningFailed(SIGNING_ERROR, f"The signature could not be stored: {exc.message}") from exc
    return signatures.digest_of(manifest)


async def _signature_already_made(svc: Services, job: SigningJob, leaf_thumbprint: str) -> str | None:
    """The digest of a signature of the job's image by this profile's certificate, if one is stored
    already: a worker that stopped between storing it and closing the job leaves one behind, and
    the job is then closed, not signed twice. Raises SigningFailed if the image is gone."""
    image, repos = schema.images, schema.repositories
    async with svc.db.read() as conn:
        repository_id = (
            await conn.execute(
                select(repos.c.id)
                .join(image, image.c.repository_id == repos.c.id)
                .where(
                    repos.c.account_id == job.account_id,
                    repos.c.region == job.region,
                    repos.c.name == job.repository,
                    image.c.id == job.image_id,
                )
            )
        ).scalar()
        if repository_id is None:
            raise SigningFailed(SIGNING_ERROR, "The image was deleted before it could be signed.")
        rows = await conn.execute(
            select(image.c.digest, image.c.manifest).where(
                image.c.repository_id == repository_id,
                image.c.subject_digest == job.target.digest,
                image.c.artifact_type == signatures.SIGNATURE_ARTIFACT_TYPE,
            )
        )
        for row in rows:
            annotations = json.loads(bytes(row.manifest)).get("annotations") or {}
            chain = json.loads(annotations.get(signatures.THUMBPRINTS_ANNOTATION, "[]"))
            if chain[:1] == [leaf_thumbprint]:
                return str(row.digest)
    return None


async def _store_blob(svc: Services, job: SigningJob, data: bytes) -> None:
    """Put `data` in the blob store and link it to the job's repository. The bytes are durable
    before the link commits, and the link commits only with the bytes found in place (as a
    finished upload does), so garbage collection cannot take them in between."""
    digest = await svc.blobs.put(data)
    async with svc.db.write() as conn:
        repos = schema.repositories
        repository_id = (
            await conn.execute(
                select(repos.c.id).where(
                    repos.c.account_id == job.account_id, repos.c.region == job.region, repos.c.name == job.repository
                )
            )
        ).scalar()
        if repository_id is None:
            raise SigningFailed(SIGNING_ERROR, f"The repository {job.repository} no longer exists.")
        if await svc.blobs.size(digest) != len(data):
            raise SigningFailed(SIGNING_ERROR, "The signature's bytes could not be stored.")
        await blobs.link(conn, repository_id, digest, len(data))
