"""Where replication meets a push: queueing the copies an image's registry asks for.

Runs inside the push's write transaction (core/registry/images.put_manifest), so the jobs commit
with the image (or its new tag) or not at all; the copying happens later, in the background
worker (workers/replication.py).

A push to a registry without a replication configuration reads nothing: the pusher's caller
carries the registries that have one (core/identity/registry_callers.py, resolved under the
authorization generation, which every write of replication_configurations bumps). A push to one
that has a configuration reads its rules with one primary-key read. Callers the server builds
itself (root_caller) carry no registries: the copies the worker writes are never replicated
again, as ECR does not chain replication."""

from __future__ import annotations

import json
from dataclasses import replace

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.identity.caller import Caller
from dockyard.core.registry.manifests import Manifest
from dockyard.core.registry.repositories import Repository
from dockyard.core.replication.rules import IN_PROGRESS, destinations_for
from dockyard.core.services import Services, now
from dockyard.store import schema
from dockyard.store.prepared import Prepared

configurations = schema.replication_configurations
statuses = schema.image_replication_statuses

_RULES = Prepared(
    select(configurations.c.rules).where(
        configurations.c.account_id == bindparam("account_id"), configurations.c.region == bindparam("region")
    )
)


async def with_own_replication(svc: Services, caller: Caller) -> Caller:
    """`caller` (one the server built) carrying its own registry when that registry has a
    replication configuration, so that its pushes there are replicated as a user's would be."""
    async with svc.db.read() as conn:
        rules_text = (await _RULES.execute(conn, {"account_id": caller.account_id, "region": caller.region})).scalar()
    if rules_text is None:
        return caller
    return replace(caller, replication_registries=caller.replication_registries | {(caller.account_id, caller.region)})


async def queue_replication_on_push(
    conn: AsyncConnection, repo: Repository, manifest: Manifest, image_id: int | None, caller: Caller | None
) -> None:
    """Queue a copy of the pushed image (new, or newly tagged) to each destination its registry's
    replication rules name for its repository. A job already queued or done for the image is
    opened again, so that a tag moved onto it is carried too."""
    if image_id is None or caller is None or (repo.account_id, repo.region) not in caller.replication_registries:
        return
    rules_text = (await _RULES.execute(conn, {"account_id": repo.account_id, "region": repo.region})).scalar()
    if rules_text is None:
        return
    destinations = destinations_for(json.loads(rules_text), repo.name)
    if not destinations:
        return
    moment = now()
    held = {
        (row.destination_region, row.destination_registry)
        for row in await conn.execute(
            select(statuses.c.destination_region, statuses.c.destination_registry).where(
                statuses.c.image_id == image_id
            )
        )
    }
    fresh = [d for d in destinations if d not in held]
    if fresh:
        await conn.execute(
            insert(statuses),
            [
                {
                    "image_id": image_id,
                    "destination_region": region,
                    "destination_registry": registry,
                    "status": IN_PROGRESS,
                    "attempts": 0,
                    "requested_at": moment,
                    "next_attempt_at": moment,
                    "pending": False,
                }
                for region, registry in fresh
            ],
        )
    for region, registry in (d for d in destinations if d in held):
        await conn.execute(
            update(statuses)
            .where(
                statuses.c.image_id == image_id,
                statuses.c.destination_region == region,
                statuses.c.destination_registry == registry,
            )
            .values(
                status=IN_PROGRESS,
                failure_code=None,
                failure_reason=None,
                attempts=0,
                next_attempt_at=moment,
                pending=True,
                completed_at=None,
            )
        )
