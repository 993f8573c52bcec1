"""Pull-time update exclusions: principals whose pulls leave an image's lastRecordedPullTime alone
(a scanner's pulls should not keep an image "recently used" for lifecycle rules).

The list belongs to a registry (account and region) and holds IAM user and role ARNs; a role's
sessions are excluded with it. Pulls are the hot path, so they never read this table: a caller
is resolved with the registries that exclude it (core/identity/registry_callers.py), and since
this table is one the authorization generation watches, any change here resolves callers
afresh on every process."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select

from dockyard.core.errors import DockyardError, LimitExceededException
from dockyard.core.identity.access import authorize
from dockyard.core.identity.caller import Caller
from dockyard.core.operations.account_settings import governed_registry
from dockyard.core.paging import decode_token, encode_token, page_size
from dockyard.core.services import Services, now
from dockyard.store import schema

exclusions = schema.pull_time_exclusions
# ECR's quota: up to 100 exclusions (per account, in each region: the list is a registry's).
MAX_EXCLUSIONS = 100


class ExclusionAlreadyExistsException(DockyardError):
    code = "ExclusionAlreadyExistsException"


class ExclusionNotFoundException(DockyardError):
    code = "ExclusionNotFoundException"


def records_pull(caller: Caller, account_id: str) -> bool:
    """Whether a pull by `caller` from `account_id`'s registry (in the caller's region) moves
    lastRecordedPullTime."""
    return (account_id, caller.region) not in caller.pull_time_excluded_in


def _registry(caller: Caller) -> Any:
    return (exclusions.c.account_id == caller.account_id) & (exclusions.c.region == caller.region)


async def register_exclusion(svc: Services, caller: Caller, principal_arn: str) -> dict[str, Any]:
    registry = await governed_registry(svc, caller, caller.account_id)
    await authorize(caller, "ecr:RegisterPullTimeUpdateExclusion", registry)
    created_at = now()
    async with svc.db.write() as conn:
        held = (await conn.execute(select(exclusions.c.principal_arn).where(_registry(caller)))).scalars().all()
        if principal_arn in held:
            raise ExclusionAlreadyExistsException(
                f"The pull time update exclusion for principal '{principal_arn}' already exists in the registry "
                f"with id '{caller.account_id}'"
            )
        if len(held) >= MAX_EXCLUSIONS:
            raise LimitExceededException(
                f"The maximum number of pull time update exclusions ({MAX_EXCLUSIONS}) for the registry with id "
                f"'{caller.account_id}' has been reached"
            )
        await conn.execute(
            insert(exclusions).values(
                account_id=caller.account_id, region=caller.region, principal_arn=principal_arn, created_at=created_at
            )
        )
    return {"principalArn": principal_arn, "createdAt": created_at}


async def deregister_exclusion(svc: Services, caller: Caller, principal_arn: str) -> dict[str, Any]:
    registry = await governed_registry(svc, caller, caller.account_id)
    await authorize(caller, "ecr:DeregisterPullTimeUpdateExclusion", registry)
    async with svc.db.write() as conn:
        removed = await conn.execute(
            delete(exclusions).where(_registry(caller), exclusions.c.principal_arn == principal_arn)
        )
        if removed.rowcount == 0:
            raise ExclusionNotFoundException(
                f"The pull time update exclusion for principal '{principal_arn}' does not exist in the registry "
                f"with id '{caller.account_id}'"
            )
    return {"principalArn": principal_arn}


async def list_exclusions(
    svc: Services, caller: Caller, max_results: int | None, next_token: str | None
) -> dict[str, Any]:
    registry = await governed_registry(svc, caller, caller.account_id)
    await authorize(caller, "ecr:ListPullTimeUpdateExclusions", registry)
    after = decode_token(next_token)
    size = page_size(max_results, MAX_EXCLUSIONS, MAX_EXCLUSIONS)
    query = select(exclusions.c.principal_arn).where(_registry(caller)).order_by(exclusions.c.principal_arn)
    if isinstance(after, str):
        query = query.where(exclusions.c.principal_arn > after)
    async with svc.db.read() as conn:
        page = list((await conn.execute(query.limit(size + 1))).scalars())
    answer: dict[str, Any] = {"pullTimeUpdateExclusions": page[:size]}
    if len(page) > size:
        answer["nextToken"] = encode_token(page[size - 1])
    return answer
