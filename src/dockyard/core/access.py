"""The one place a request is authorised, as the ECR action that governs it."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.core.caller import Caller
from dockyard.errors import AccessDeniedException


@dataclass(frozen=True)
class Resource:
    """What an action is performed on: a repository ARN, or "*" for registry-level actions."""

    arn: str
    account_id: str
    policy_text: str | None = None


def repository_arn(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:ecr:{region}:{account_id}:repository/{name}"


def registry_resource(caller: Caller, account_id: str) -> Resource:
    return Resource(arn="*", account_id=account_id)


async def authorize(caller: Caller, action: str, resource: Resource) -> None:
    """Raise AccessDeniedException unless `caller` may perform `action` on `resource`."""
    if caller.account_id == resource.account_id:
        return
    raise AccessDeniedException(
        f"User: {caller.arn} is not authorized to perform: {action} on resource: {resource.arn} "
        f"because no resource-based policy allows the {action} action"
    )
