"""Repository policies and the registry policy: stored, validated as ECR validates them, and
handed back as ECR prints them. Enforcing them is the policy engine's business (core/access.py).

SetRepositoryPolicy refuses, unless forced, a policy that would lock the caller out: one under
which the caller could no longer call SetRepositoryPolicy on the repository."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import delete, insert, select, update

from dockyard.core.errors import (
    InvalidParameterException,
    RegistryPolicyNotFoundException,
    RepositoryPolicyNotFoundException,
)
from dockyard.core.identity.access import authorize, decide
from dockyard.core.identity.caller import Caller
from dockyard.core.operations.account_settings import REGISTRY_POLICY_SCOPE, governed_registry, setting_value
from dockyard.core.registry.repositories import Repository, open_repository, repos
from dockyard.core.services import Services, now
from dockyard.policy.language import Policy, PolicyError, RegistryPolicyScope, parse_resource_policy
from dockyard.policy.text import ecr_policy_text
from dockyard.store import schema

SET_POLICY = "ecr:SetRepositoryPolicy"
LOCKOUT = (
    "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'The repository policy would prevent the "
    "caller from calling SetRepositoryPolicy on the repository in the future. Set force to apply it anyway.'"
)
registry_policies = schema.registry_policies


def _parse(text: str, kind: str, registry_scope: RegistryPolicyScope = "V1") -> Policy:
    try:
        return parse_resource_policy(text, kind=kind, registry_scope=registry_scope)  # type: ignore[arg-type]
    except PolicyError as exc:
        raise InvalidParameterException(exc.message) from None


def _locks_out(caller: Caller, repo: Repository, policy_text: str) -> bool:
    """Whether `caller`, with the identity policies it has now, could no longer call
    SetRepositoryPolicy on `repo` once `policy_text` is its repository policy."""
    resource = replace(repo.resource, policy_text=policy_text)
    _, decision = decide(caller, SET_POLICY, resource)
    return not decision.allowed


def _answer(repo: Repository, text: str) -> dict[str, Any]:
    return {"registryId": repo.account_id, "repositoryName": repo.name, "policyText": ecr_policy_text(text)}


def policy_not_found(repo: Repository) -> RepositoryPolicyNotFoundException:
    return RepositoryPolicyNotFoundException(
        f"Repository policy does not exist for the repository with name '{repo.name}' in the registry with id "
        f"'{repo.account_id}'"
    )


async def set_repository_policy(
    svc: Services, caller: Caller, account_id: str, name: str, text: str, force: bool = False
) -> dict[str, Any]:
    async with svc.db.write() as conn:
        repo = await open_repository(conn, caller, account_id, name, SET_POLICY)
        _parse(text, "repository")
        if not force and _locks_out(caller, repo, text):
            raise InvalidParameterException(LOCKOUT)
        await conn.execute(update(repos).where(repos.c.id == repo.id).values(policy_text=text))
    return _answer(repo, text)


async def get_repository_policy(svc: Services, caller: Caller, account_id: str, name: str) -> dict[str, Any]:
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, account_id, name, "ecr:GetRepositoryPolicy")
    if not repo.policy_text:
        raise policy_not_found(repo)
    return _answer(repo, repo.policy_text)


async def delete_repository_policy(svc: Services, caller: Caller, account_id: str, name: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        repo = await open_repository(conn, caller, account_id, name, "ecr:DeleteRepositoryPolicy")
        if not repo.policy_text:
            raise policy_not_found(repo)
        await conn.execute(update(repos).where(repos.c.id == repo.id).values(policy_text=None))
    return _answer(repo, repo.policy_text)


# --- the registry policy ----------------------------------------------------------------------


def registry_policy_not_found(account_id: str) -> RegistryPolicyNotFoundException:
    return RegistryPolicyNotFoundException(f"Registry policy does not exist in the registry with id '{account_id}'")


def _registry_answer(account_id: str, text: str) -> dict[str, Any]:
    return {"registryId": account_id, "policyText": ecr_policy_text(text)}


def _registry_key(caller: Caller) -> Any:
    return (registry_policies.c.account_id == caller.account_id) & (registry_policies.c.region == caller.region)


async def registry_policy_text(svc: Services, account_id: str, region: str) -> str | None:
    """The registry policy of a registry, for the policy engine."""
    async with svc.db.read() as conn:
        return (
            await conn.execute(
                select(registry_policies.c.policy_text).where(
                    registry_policies.c.account_id == account_id, registry_policies.c.region == region
                )
            )
        ).scalar()


async def put_registry_policy(svc: Services, caller: Caller, text: str) -> dict[str, Any]:
    """Under the V1 policy scope a registry policy may only name replication and pull-through
    cache actions; under V2 any action."""
    await authorize(caller, "ecr:PutRegistryPolicy", await governed_registry(svc, caller, caller.account_id))
    async with svc.db.write() as conn:
        scope = await setting_value(conn, caller.account_id, caller.region, REGISTRY_POLICY_SCOPE)
        _parse(text, "registry", "V1" if scope == "V1" else "V2")
        updated = await conn.execute(
            update(registry_policies).where(_registry_key(caller)).values(policy_text=text, updated_at=now())
        )
        if updated.rowcount == 0:
            await conn.execute(
                insert(registry_policies).values(
                    account_id=caller.account_id, region=caller.region, policy_text=text, updated_at=now()
                )
            )
    return _registry_answer(caller.account_id, text)


async def get_registry_policy(svc: Services, caller: Caller) -> dict[str, Any]:
    await authorize(caller, "ecr:GetRegistryPolicy", await governed_registry(svc, caller, caller.account_id))
    text = await registry_policy_text(svc, caller.account_id, caller.region)
    if text is None:
        raise registry_policy_not_found(caller.account_id)
    return _registry_answer(caller.account_id, text)


async def delete_registry_policy(svc: Services, caller: Caller) -> dict[str, Any]:
    await authorize(caller, "ecr:DeleteRegistryPolicy", await governed_registry(svc, caller, caller.account_id))
    async with svc.db.write() as conn:
        text = (await conn.execute(select(registry_policies.c.policy_text).where(_registry_key(caller)))).scalar()
        if text is None:
            raise registry_policy_not_found(caller.account_id)
        await conn.execute(delete(registry_policies).where(_registry_key(caller)))
    return _registry_answer(caller.account_id, text)
