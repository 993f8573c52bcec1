"""The ECR door's pull through cache rule operations: request members onto
dockyard.core.registry.pull_through_rules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from dockyard.core.identity.caller import Caller
from dockyard.core.registry import pull_through_rules
from dockyard.core.services import Services

Params = dict[str, Any]


def _registry(caller: Caller, p: Params) -> str:
    return p.get("registryId") or caller.account_id


async def create_pull_through_cache_rule(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    new = pull_through_rules.NewRule(
        ecr_repository_prefix=p["ecrRepositoryPrefix"],
        upstream_registry_url=p["upstreamRegistryUrl"],
        upstream_registry=p.get("upstreamRegistry"),
        credential_arn=p.get("credentialArn"),
        custom_role_arn=p.get("customRoleArn"),
        upstream_repository_prefix=p.get("upstreamRepositoryPrefix"),
    )
    return await pull_through_rules.create_rule(svc, caller, _registry(caller, p), new)


async def describe_pull_through_cache_rules(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await pull_through_rules.describe_rules(
        svc, caller, _registry(caller, p), p.get("ecrRepositoryPrefixes"), p.get("maxResults"), p.get("nextToken")
    )


async def update_pull_through_cache_rule(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await pull_through_rules.update_rule(
        svc, caller, _registry(caller, p), p["ecrRepositoryPrefix"], p.get("credentialArn"), p.get("customRoleArn")
    )


async def delete_pull_through_cache_rule(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await pull_through_rules.delete_rule(svc, caller, _registry(caller, p), p["ecrRepositoryPrefix"])


async def validate_pull_through_cache_rule(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await pull_through_rules.validate_rule(svc, caller, _registry(caller, p), p["ecrRepositoryPrefix"])


PULL_THROUGH_OPERATIONS: dict[str, Callable[[Services, Caller, Params], Awaitable[dict[str, Any]]]] = {
    "CreatePullThroughCacheRule": create_pull_through_cache_rule,
    "DescribePullThroughCacheRules": describe_pull_through_cache_rules,
    "UpdatePullThroughCacheRule": update_pull_through_cache_rule,
    "DeletePullThroughCacheRule": delete_pull_through_cache_rule,
    "ValidatePullThroughCacheRule": validate_pull_through_cache_rule,
}
