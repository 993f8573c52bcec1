"""The ECR door's account operations: account settings and pull-time update exclusions, request
members onto dockyard.core.operations.account_settings and dockyard.core.registry.pull_time_exclusions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from dockyard.core.identity.caller import Caller
from dockyard.core.operations import account_settings
from dockyard.core.registry import pull_time_exclusions
from dockyard.core.services import Services

Params = dict[str, Any]


async def get_account_setting(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await account_settings.get_account_setting(svc, caller, p["name"])


async def put_account_setting(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await account_settings.put_account_setting(svc, caller, p["name"], p["value"])


async def register_pull_time_update_exclusion(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await pull_time_exclusions.register_exclusion(svc, caller, p["principalArn"])


async def deregister_pull_time_update_exclusion(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await pull_time_exclusions.deregister_exclusion(svc, caller, p["principalArn"])


async def list_pull_time_update_exclusions(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await pull_time_exclusions.list_exclusions(svc, caller, p.get("maxResults"), p.get("nextToken"))


ACCOUNT_OPERATIONS: dict[str, Callable[[Services, Caller, Params], Awaitable[dict[str, Any]]]] = {
    "GetAccountSetting": get_account_setting,
    "PutAccountSetting": put_account_setting,
    "RegisterPullTimeUpdateExclusion": register_pull_time_update_exclusion,
    "DeregisterPullTimeUpdateExclusion": deregister_pull_time_update_exclusion,
    "ListPullTimeUpdateExclusions": list_pull_time_update_exclusions,
}
