"""Registry-wide settings, as DescribeRegistry reports them."""

from __future__ import annotations

from typing import Any

from dockyard.core.identity.access import authorize, registry_resource
from dockyard.core.identity.caller import Caller
from dockyard.core.services import Services


async def describe_registry(svc: Services, caller: Caller) -> dict[str, Any]:
    """The caller's registry. Dockyard replicates nothing, so its replication configuration has
    no rules, which is what ECR reports for a registry that never configured replication."""
    await authorize(caller, "ecr:DescribeRegistry", registry_resource(caller, caller.account_id))
    return {"registryId": caller.account_id, "replicationConfiguration": {"rules": []}}
