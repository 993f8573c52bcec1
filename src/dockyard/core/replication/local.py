"""Replication to a registry this deployment serves (another region, another account): regions
and accounts share the blob store, so a copy is metadata only. Blobs are content-addressed and
already stored: they are linked into the destination repository, never copied.

Every step is idempotent (a link refreshed, a manifest already held left as it is, a tag set to
where it already points), so a job taken over after its worker died repeats nothing visible.

Across accounts the destination registry's policy decides, as in ECR: the source account must be
allowed ecr:ReplicateImage, and ecr:CreateRepository when the repository does not exist yet.
The policy is read whatever its scope (V1 registry policies govern replication too). The
writes themselves are then made as the destination registry (ECR's service-linked role)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from dockyard.core.errors import AccessDeniedException, DockyardError, RepositoryAlreadyExistsException
from dockyard.core.identity.access import Resource, authorize, repository_arn
from dockyard.core.identity.caller import root_caller
from dockyard.core.operations.creation_templates import template_for
from dockyard.core.registry import blobs, images
from dockyard.core.registry.repositories import RepositorySettings, insert_repository
from dockyard.core.replication.events import replication_event
from dockyard.core.replication.source import CarriedImage
from dockyard.core.services import Services
from dockyard.store import schema

REPLICATION = "REPLICATION"
Record = Callable[[dict[str, Any]], Awaitable[None]]


class ReplicationRefused(Exception):
    """A failure that retrying cannot mend: the job ends FAILED with `code`."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def _registry_policy(svc: Services, account_id: str, region: str) -> str | None:
    policies = schema.registry_policies
    async with svc.db.read() as conn:
        return (
            await conn.execute(
                select(policies.c.policy_text).where(policies.c.account_id == account_id, policies.c.region == region)
            )
        ).scalar()


async def _repository_id(svc: Services, account_id: str, region: str, name: str) -> int | None:
    repos = schema.repositories
    async with svc.db.read() as conn:
        return (
            await conn.execute(
                select(repos.c.id).where(
                    repos.c.account_id == account_id, repos.c.region == region, repos.c.name == name
                )
            )
        ).scalar()


async def replicate(
    svc: Services,
    *,
    source_account: str,
    source_region: str,
    destination_account: str,
    destination_region: str,
    repository: str,
    carried: list[CarriedImage],
    record: Record,
    round_key: str,
) -> None:
    """Write `carried` into `repository` of the destination registry, creating it if missing."""

    async def event(name: str, digest: str | None, error: tuple[str, str] | None = None) -> None:
        await record(
            replication_event(
                name,
                source_account=source_account,
                source_region=source_region,
                destination_account=destination_account,
                destination_region=destination_region,
                repository=repository,
                digest=digest,
                moment=time.time(),
                round_key=round_key,
                error=error,
            )
        )

    principal = root_caller(source_account, destination_region)
    resource = Resource(
        arn=repository_arn(destination_region, destination_account, repository),
        account_id=destination_account,
        registry_policy_text=await _registry_policy(svc, destination_account, destination_region)
        if destination_account != source_account
        else None,
    )

    async def allowed(action: str, name: str, digest: str | None) -> None:
        try:
            await authorize(principal, action, resource)
        except AccessDeniedException as exc:
            await event(name, digest, ("AccessDenied", exc.message))
            raise ReplicationRefused("AccessDenied", exc.message) from exc

    head = carried[-1].digest if carried else None
    await allowed("ecr:ReplicateImage", "ReplicateImage", head)
    owner = root_caller(destination_account, destination_region)
    repository_id = await _repository_id(svc, destination_account, destination_region, repository)
    if repository_id is None:
        await allowed("ecr:CreateRepository", "CreateRepository", None)
        await _create_repository(svc, owner, destination_account, destination_region, repository)
        await event("CreateRepository", None)
        repository_id = await _repository_id(svc, destination_account, destination_region, repository)
        assert repository_id is not None
    try:
        for image in carried:
            async with svc.db.write() as conn:
                for digest, size in image.blobs.items():
                    await blobs.link(conn, repository_id, digest, size)
            await images.put_manifest(svc, owner, destination_account, repository, image.manifest, image.media_type)
            for tag in image.tags:
                await images.put_manifest(
                    svc, owner, destination_account, repository, image.manifest, image.media_type, tag=tag
                )
            await event("ReplicateImage", image.digest)
    except DockyardError as exc:
        await event("ReplicateImage", head, (exc.code, exc.message))
        raise ReplicationRefused(exc.code.removesuffix("Exception"), exc.message) from exc


async def _create_repository(svc: Services, owner: Any, account_id: str, region: str, name: str) -> None:
    """The destination repository, with the registry's REPLICATION creation template's settings
    when one covers the name (the longest prefix wins, else ROOT), else ECR's defaults."""
    async with svc.db.write() as conn:
        template = await template_for(conn, account_id, region, name, REPLICATION)
        settings = template.settings() if template is not None else RepositorySettings()
        try:
            await insert_repository(svc, conn, owner, account_id, name, settings)
        except RepositoryAlreadyExistsException:
            return  # another worker (another destination's job) created it first
