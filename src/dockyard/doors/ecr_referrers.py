"""The ECR door's ListImageReferrers: request members onto dockyard.core.registry.referrers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from dockyard.core.identity.caller import Caller
from dockyard.core.registry import referrers
from dockyard.core.services import Services

Params = dict[str, Any]


async def list_image_referrers(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    selection = p.get("filter") or {}
    return await referrers.list_image_referrers(
        svc,
        caller,
        p.get("registryId") or caller.account_id,
        p["repositoryName"],
        p["subjectId"]["imageDigest"],
        artifact_types=selection.get("artifactTypes"),
        artifact_status=selection.get("artifactStatus"),
        max_results=p.get("maxResults"),
        next_token=p.get("nextToken"),
    )


REFERRERS_OPERATIONS: dict[str, Callable[[Services, Caller, Params], Awaitable[dict[str, Any]]]] = {
    "ListImageReferrers": list_image_referrers,
}
