"""ECR's replication configuration (PutReplicationConfiguration, DescribeRegistry's
replicationConfiguration) and what it produced per image (DescribeImageReplicationStatus).

A configuration is a registry's (account and region) list of rules: destinations (a region and
a registry id) and, optionally, PREFIX_MATCH repository filters. Each image pushed afterwards to
a repository a rule covers is copied to the rule's destinations (replication_hooks.py queues it,
jobs.py and workers/replication.py carry it out)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert, select, update

from dockyard.core.identity.access import authorize
from dockyard.core.identity.caller import Caller
from dockyard.core.operations.account_settings import governed_registry
from dockyard.core.registry import images
from dockyard.core.registry.repositories import open_repository
from dockyard.core.replication.rules import check_rules, normalise_rules
from dockyard.core.services import Services, now
from dockyard.store import schema

configurations = schema.replication_configurations
statuses = schema.image_replication_statuses


async def put_replication_configuration(svc: Services, caller: Caller, configuration: dict[str, Any]) -> dict[str, Any]:
    await authorize(caller, "ecr:PutReplicationConfiguration", await governed_registry(svc, caller, caller.account_id))
    rules = normalise_rules(configuration)
    check_rules(caller, rules)
    text = json.dumps(rules)
    key = (configurations.c.account_id == caller.account_id) & (configurations.c.region == caller.region)
    async with svc.db.write() as conn:
        found = (await conn.execute(select(configurations.c.account_id).where(key))).first()
        if found is None:
            await conn.execute(
                insert(configurations).values(
                    account_id=caller.account_id, region=caller.region, rules=text, updated_at=now()
                )
            )
        else:
            await conn.execute(update(configurations).where(key).values(rules=text, updated_at=now()))
    return {"replicationConfiguration": {"rules": rules}}


async def replication_rules(svc: Services, account_id: str, region: str) -> list[dict[str, Any]]:
    """The registry's rules; none when it never configured replication (what ECR reports then)."""
    key = (configurations.c.account_id == account_id) & (configurations.c.region == region)
    async with svc.db.read() as conn:
        text = (await conn.execute(select(configurations.c.rules).where(key))).scalar()
    return json.loads(text) if text else []


async def describe_image_replication_status(
    svc: Services, caller: Caller, registry_id: str, repository: str, image_id: dict[str, Any]
) -> dict[str, Any]:
    """One status per destination the image's push matched; none for an image pushed while no
    rule covered it. A job being retried stays IN_PROGRESS and carries its last failure's code."""
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, registry_id, repository, "ecr:DescribeImageReplicationStatus")
        image = await images.resolve_image(conn, repo, image_id)
        rows = (
            await conn.execute(
                select(statuses)
                .where(statuses.c.image_id == image.id)
                .order_by(statuses.c.requested_at, statuses.c.destination_region, statuses.c.destination_registry)
            )
        ).all()
    found = []
    for row in rows:
        status: dict[str, Any] = {
            "region": row.destination_region,
            "registryId": row.destination_registry,
            "status": row.status,
        }
        if row.failure_code:
            status["failureCode"] = row.failure_code
        found.append(status)
    return {"repositoryName": repo.name, "imageId": images.image_id_of(image, image_id), "replicationStatuses": found}
