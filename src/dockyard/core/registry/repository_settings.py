"""Changing an existing repository's settings: tag mutability, scan on push and resource tags."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import InvalidParameterException
from dockyard.core.identity.access import request_tag_context
from dockyard.core.identity.caller import Caller
from dockyard.core.registry import resource_tags
from dockyard.core.registry.repositories import Repository, check_tag_mutability, open_repository, repos
from dockyard.core.services import Services
from dockyard.policy.evaluate import ContextValue

# arn:<partition>:ecr:<region>:<account>:repository/<name>
_REPOSITORY_ARN = re.compile(r"arn:aws[a-z-]*:ecr:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):repository/(?P<name>.+)")


async def put_image_tag_mutability(
    svc: Services,
    caller: Caller,
    account_id: str,
    name: str,
    mutability: str,
    filters: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    stored = check_tag_mutability(mutability, filters)
    async with svc.db.write() as conn:
        repo = await open_repository(conn, caller, account_id, name, "ecr:PutImageTagMutability")
        await conn.execute(
            update(repos)
            .where(repos.c.id == repo.id)
            .values(image_tag_mutability=mutability, tag_mutability_exclusions=json.dumps(stored) if stored else None)
        )
    return {
        "registryId": repo.account_id,
        "repositoryName": repo.name,
        "imageTagMutability": mutability,
        "imageTagMutabilityExclusionFilters": stored or None,
    }


async def put_image_scanning_configuration(
    svc: Services, caller: Caller, account_id: str, name: str, scan_on_push: bool
) -> dict[str, Any]:
    async with svc.db.write() as conn:
        repo = await open_repository(conn, caller, account_id, name, "ecr:PutImageScanningConfiguration")
        await conn.execute(update(repos).where(repos.c.id == repo.id).values(scan_on_push=scan_on_push))
    return {
        "registryId": repo.account_id,
        "repositoryName": repo.name,
        "imageScanningConfiguration": {"scanOnPush": scan_on_push},
    }


def _repository_of(arn: str) -> tuple[str, str, str]:
    """(account, region, name) of a repository ARN; anything else is not a resource ECR tags."""
    match = _REPOSITORY_ARN.fullmatch(arn)
    if match is None:
        raise InvalidParameterException(
            "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN'"
        )
    return match["account"], match["region"], match["name"]


async def _open_by_arn(
    conn: AsyncConnection, caller: Caller, arn: str, action: str, context: Mapping[str, ContextValue] | None = None
) -> Repository:
    # A repository lives in one region: an ARN of another region names nothing in this one.
    account_id, _region, name = _repository_of(arn)
    return await open_repository(conn, caller, account_id, name, action, context)


async def tag_resource(svc: Services, caller: Caller, arn: str, tags: list[dict[str, str]]) -> dict[str, Any]:
    wanted = resource_tags.normalise(tags)
    async with svc.db.write() as conn:
        repo = await _open_by_arn(conn, caller, arn, "ecr:TagResource", request_tag_context(wanted))
        await resource_tags.merge(conn, repo.id, wanted)
    return {}


async def untag_resource(svc: Services, caller: Caller, arn: str, keys: list[str]) -> dict[str, Any]:
    for key in keys:
        resource_tags.check_key(key)
    async with svc.db.write() as conn:
        repo = await _open_by_arn(conn, caller, arn, "ecr:UntagResource", request_tag_context(keys))
        await resource_tags.remove(conn, repo.id, keys)
    return {}


async def list_tags_for_resource(svc: Services, caller: Caller, arn: str) -> dict[str, Any]:
    async with svc.db.read() as conn:
        repo = await _open_by_arn(conn, caller, arn, "ecr:ListTagsForResource")
        tags = await resource_tags.read(conn, repo.id)
    return {"tags": resource_tags.as_shapes(tags)}
