"""The ECR door's replication operations: request members onto dockyard.core.replication."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from dockyard.core.identity.caller import Caller
from dockyard.core.replication import configuration
from dockyard.core.services import Services

Params = dict[str, Any]


async def put_replication_configuration(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await configuration.put_replication_configuration(svc, caller, p["replicationConfiguration"])


async def describe_image_replication_status(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await configuration.describe_image_replication_status(
        svc, caller, p.get("registryId") or caller.account_id, p["repositoryName"], p["imageId"]
    )


REPLICATION_OPERATIONS: dict[str, Callable[[Services, Caller, Params], Awaitable[dict[str, Any]]]] = {
    "PutReplicationConfiguration": put_replication_configuration,
    "DescribeImageReplicationStatus": describe_image_replication_status,
}
