"""The ECR door's managed signing operations: request members onto dockyard.core.signing.configuration."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from dockyard.core.identity.caller import Caller
from dockyard.core.services import Services
from dockyard.core.signing import configuration

Params = dict[str, Any]


async def put_signing_configuration(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await configuration.put_signing_configuration(svc, caller, p["signingConfiguration"])


async def get_signing_configuration(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await configuration.get_signing_configuration(svc, caller)


async def delete_signing_configuration(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await configuration.delete_signing_configuration(svc, caller)


async def describe_image_signing_status(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await configuration.describe_image_signing_status(
        svc, caller, p.get("registryId") or caller.account_id, p["repositoryName"], p["imageId"]
    )


SIGNING_OPERATIONS: dict[str, Callable[[Services, Caller, Params], Awaitable[dict[str, Any]]]] = {
    "PutSigningConfiguration": put_signing_configuration,
    "GetSigningConfiguration": get_signing_configuration,
    "DeleteSigningConfiguration": delete_signing_configuration,
    "DescribeImageSigningStatus": describe_image_signing_status,
}
