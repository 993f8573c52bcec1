"""Registry-wide settings, as DescribeRegistry reports them."""

from __future__ import annotations

from typing import Any

from dockyard.core.identity.access import authorize
from dockyard.core.identity.caller import Caller
from dockyard.core.operations.account_settings import governed_registry
from dockyard.core.replication.configuration import replication_rules
from dockyard.core.services import Services


async def describe_registry(svc: Services, caller: Caller) -> dict[str, Any]:
    """The caller's registry with its replication configuration (no rules when it never set one,
    which is what ECR reports for such a registry)."""
    await authorize(caller, "ecr:DescribeRegistry", await governed_registry(svc, caller, caller.account_id))
    rules = await replication_rules(svc, caller.account_id, caller.region)
    return {"registryId": caller.account_id, "replicationConfiguration": {"rules": rules}}
