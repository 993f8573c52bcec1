"""The ECR door's lifecycle policy operations: request members onto dockyard.core.operations.lifecycle."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from dockyard.core.identity.caller import Caller
from dockyard.core.operations import lifecycle
from dockyard.core.services import Services

Params = dict[str, Any]


def _registry(caller: Caller, p: Params) -> str:
    return p.get("registryId") or caller.account_id


async def put_lifecycle_policy(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await lifecycle.put_lifecycle_policy(
        svc, caller, _registry(caller, p), p["repositoryName"], p["lifecyclePolicyText"]
    )


async def get_lifecycle_policy(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await lifecycle.get_lifecycle_policy(svc, caller, _registry(caller, p), p["repositoryName"])


async def delete_lifecycle_policy(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await lifecycle.delete_lifecycle_policy(svc, caller, _registry(caller, p), p["repositoryName"])


async def start_lifecycle_policy_preview(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await lifecycle.start_lifecycle_policy_preview(
        svc, caller, _registry(caller, p), p["repositoryName"], p.get("lifecyclePolicyText")
    )


async def get_lifecycle_policy_preview(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await lifecycle.get_lifecycle_policy_preview(
        svc,
        caller,
        _registry(caller, p),
        p["repositoryName"],
        image_ids=p.get("imageIds"),
        tag_status=(p.get("filter") or {}).get("tagStatus"),
        max_results=p.get("maxResults"),
        next_token=p.get("nextToken"),
    )


LIFECYCLE_OPERATIONS: dict[str, Callable[[Services, Caller, Params], Awaitable[dict[str, Any]]]] = {
    "PutLifecyclePolicy": put_lifecycle_policy,
    "GetLifecyclePolicy": get_lifecycle_policy,
    "DeleteLifecyclePolicy": delete_lifecycle_policy,
    "StartLifecyclePolicyPreview": start_lifecycle_policy_preview,
    "GetLifecyclePolicyPreview": get_lifecycle_policy_preview,
}
