"""Repository creation templates, and creating a repository on push from one.

A template names a namespace prefix (``prod`` stands for ``prod/``; ``ROOT`` for any name no
other template claims) and the settings a repository created in it gets. Dockyard acts on each
scenario a template may apply to. CREATE_ON_PUSH: a push to a missing repository whose
name falls under a CREATE_ON_PUSH template creates it with the template's settings (the
longest matching prefix wins). Without such a template a push to a missing repository fails
with RepositoryNotFoundException, as the seed describes. A REPLICATION template gives its
settings to a repository replication creates in its registry (core/replication/local.py), a
PULL_THROUGH_CACHE template to one a pull through cache creates (core/registry/pull_through.py),
through template_for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core import client_json as wire_json
from dockyard.core.errors import (
    InvalidParameterException,
    RepositoryNotFoundException,
    TemplateAlreadyExistsException,
    TemplateNotFoundException,
)
from dockyard.core.identity.access import authorize
from dockyard.core.identity.caller import Caller
from dockyard.core.operations.account_settings import governed_registry
from dockyard.core.paging import decode_token, encode_token, page_size
from dockyard.core.registry import resource_tags
from dockyard.core.registry.repositories import (
    Repository,
    RepositorySettings,
    check_encryption,
    check_tag_mutability,
    insert_repository,
    open_repository,
)
from dockyard.core.services import Services, now
from dockyard.policy.language import PolicyError, parse_resource_policy
from dockyard.store import schema

ROOT = "ROOT"
CREATE_ON_PUSH = "CREATE_ON_PUSH"
templates = schema.creation_templates


@dataclass(frozen=True)
class Template:
    prefix: str
    description: str | None
    encryption_type: str
    kms_key: str | None
    resource_tags: list[dict[str, str]]
    image_tag_mutability: str
    exclusion_filters: list[dict[str, str]]
    repository_policy: str | None
    lifecycle_policy: str | None
    applied_for: list[str]
    custom_role_arn: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Any) -> Template:
        return cls(
            prefix=row.prefix,
            description=row.description,
            encryption_type=row.encryption_type,
            kms_key=row.kms_key,
            resource_tags=json.loads(row.resource_tags),
            image_tag_mutability=row.image_tag_mutability,
            exclusion_filters=json.loads(row.tag_mutability_exclusions or "[]"),
            repository_policy=row.repository_policy,
            lifecycle_policy=row.lifecycle_policy,
            applied_for=json.loads(row.applied_for),
            custom_role_arn=row.custom_role_arn,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def describe(self) -> dict[str, Any]:
        """ECR's RepositoryCreationTemplate shape."""
        encryption: dict[str, Any] = {"encryptionType": self.encryption_type}
        if self.kms_key:
            encryption["kmsKey"] = self.kms_key
        return {
            "prefix": self.prefix,
            "description": self.description,
            "encryptionConfiguration": encryption,
            "resourceTags": self.resource_tags,
            "imageTagMutability": self.image_tag_mutability,
            "imageTagMutabilityExclusionFilters": self.exclusion_filters or None,
            "repositoryPolicy": self.repository_policy,
            "lifecyclePolicy": self.lifecycle_policy,
            "appliedFor": self.applied_for,
            "customRoleArn": self.custom_role_arn,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }

    def settings(self) -> RepositorySettings:
        return RepositorySettings(
            image_tag_mutability=self.image_tag_mutability,
            exclusion_filters=self.exclusion_filters,
            encryption_type=self.encryption_type,
            kms_key=self.kms_key or None,
            tags=self.resource_tags,
            policy_text=self.repository_policy,
            lifecycle_policy_text=self.lifecycle_policy,
        )

    def covers(self, repository_name: str) -> bool:
        if self.prefix == ROOT:
            return True
        return repository_name.startswith(self.prefix.rstrip("/") + "/")


def not_found(prefix: str, account_id: str) -> TemplateNotFoundException:
    return TemplateNotFoundException(
        f"The repository creation template with prefix '{prefix}' does not exist in the registry with id '{account_id}'"
    )


def _check_policies(repository_policy: str | None, lifecycle_policy: str | None) -> None:
    if repository_policy:
        try:
            parse_resource_policy(repository_policy, kind="repository")
        except PolicyError as exc:
            raise InvalidParameterException(exc.message) from None
    if lifecycle_policy:
        try:
            document = wire_json.loads(lifecycle_policy)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise InvalidParameterException(
                "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
                "'Lifecycle policy validation failure: the policy is not a JSON object'"
            )


def _columns(caller: Caller, account_id: str, fields: dict[str, Any], current: Template | None) -> dict[str, Any]:
    """Row values for a template: `fields` (ECR's request members) over `current` (or the defaults)."""
    encryption = fields.get("encryptionConfiguration")
    if encryption is not None:
        encryption_type, kms_key = encryption["encryptionType"], encryption.get("kmsKey") or None
    elif current is not None:
        encryption_type, kms_key = current.encryption_type, current.kms_key
    else:
        encryption_type, kms_key = "AES256", None
    if encryption_type == "AES256":
        check_encryption(encryption_type, kms_key, account_id, caller.region)
    mutability = fields.get("imageTagMutability", current.image_tag_mutability if current else "MUTABLE")
    filters = fields.get(
        "imageTagMutabilityExclusionFilters",
        current.exclusion_filters if current and "imageTagMutability" not in fields else None,
    )
    filters = check_tag_mutability(mutability, filters)
    tags = fields.get("resourceTags", current.resource_tags if current else [])
    normalised = resource_tags.normalise(tags)
    resource_tags.check_count(len(normalised))
    repository_policy = fields.get("repositoryPolicy", current.repository_policy if current else None)
    lifecycle_policy = fields.get("lifecyclePolicy", current.lifecycle_policy if current else None)
    _check_policies(repository_policy, lifecycle_policy)
    applied_for = fields.get("appliedFor", current.applied_for if current else [])
    return {
        "description": fields.get("description", current.description if current else None),
        "encryption_type": encryption_type,
        "kms_key": kms_key,
        "resource_tags": json.dumps(resource_tags.as_shapes(normalised)),
        "image_tag_mutability": mutability,
        "tag_mutability_exclusions": json.dumps(filters) if filters else None,
        "repository_policy": repository_policy or None,
        "lifecycle_policy": lifecycle_policy or None,
        "applied_for": json.dumps(list(dict.fromkeys(applied_for))),
        "custom_role_arn": fields.get("customRoleArn", current.custom_role_arn if current else None) or None,
    }


async def _find(conn: AsyncConnection, account_id: str, region: str, prefix: str) -> Template | None:
    row = (
        await conn.execute(
            select(templates).where(
                templates.c.account_id == account_id, templates.c.region == region, templates.c.prefix == prefix
            )
        )
    ).first()
    return Template.from_row(row) if row else None


async def create_template(svc: Services, caller: Caller, fields: dict[str, Any]) -> dict[str, Any]:
    account_id = caller.account_id
    await authorize(caller, "ecr:CreateRepositoryCreationTemplate", await governed_registry(svc, caller, account_id))
    prefix = fields["prefix"]
    values = _columns(caller, account_id, fields, None)
    moment = now()
    async with svc.db.write() as conn:
        try:
            async with conn.begin_nested():
                await conn.execute(
                    insert(templates).values(
                        account_id=account_id,
                        region=caller.region,
                        prefix=prefix,
                        created_at=moment,
                        updated_at=moment,
                        **values,
                    )
                )
        except IntegrityError as exc:
            raise TemplateAlreadyExistsException(
                f"The repository creation template with prefix '{prefix}' already exists in the registry with id "
                f"'{account_id}'"
            ) from exc
        template = await _find(conn, account_id, caller.region, prefix)
    assert template is not None
    return {"registryId": account_id, "repositoryCreationTemplate": template.describe()}


async def update_template(svc: Services, caller: Caller, fields: dict[str, Any]) -> dict[str, Any]:
    account_id = caller.account_id
    await authorize(caller, "ecr:UpdateRepositoryCreationTemplate", await governed_registry(svc, caller, account_id))
    prefix = fields["prefix"]
    async with svc.db.write() as conn:
        current = await _find(conn, account_id, caller.region, prefix)
        if current is None:
            raise not_found(prefix, account_id)
        values = _columns(caller, account_id, fields, current)
        await conn.execute(
            update(templates)
            .where(
                templates.c.account_id == account_id,
                templates.c.region == caller.region,
                templates.c.prefix == prefix,
            )
            .values(updated_at=now(), **values)
        )
        template = await _find(conn, account_id, caller.region, prefix)
    assert template is not None
    return {"registryId": account_id, "repositoryCreationTemplate": template.describe()}


async def delete_template(svc: Services, caller: Caller, prefix: str) -> dict[str, Any]:
    account_id = caller.account_id
    await authorize(caller, "ecr:DeleteRepositoryCreationTemplate", await governed_registry(svc, caller, account_id))
    async with svc.db.write() as conn:
        current = await _find(conn, account_id, caller.region, prefix)
        if current is None:
            raise not_found(prefix, account_id)
        await conn.execute(
            delete(templates).where(
                templates.c.account_id == account_id,
                templates.c.region == caller.region,
                templates.c.prefix == prefix,
            )
        )
    return {"registryId": account_id, "repositoryCreationTemplate": current.describe()}


async def describe_templates(
    svc: Services,
    caller: Caller,
    prefixes: list[str] | None = None,
    max_results: int | None = None,
    next_token: str | None = None,
) -> dict[str, Any]:
    account_id = caller.account_id
    await authorize(caller, "ecr:DescribeRepositoryCreationTemplates", await governed_registry(svc, caller, account_id))
    after = decode_token(next_token)
    limit = page_size(max_results, 100)
    query = (
        select(templates)
        .where(templates.c.account_id == account_id, templates.c.region == caller.region)
        .order_by(templates.c.prefix)
        .limit(limit + 1)
    )
    if prefixes:
        query = query.where(templates.c.prefix.in_(prefixes))
    if after is not None:
        query = query.where(templates.c.prefix > str(after))
    async with svc.db.read() as conn:
        found = [Template.from_row(row) for row in await conn.execute(query)]
    result: dict[str, Any] = {
        "registryId": account_id,
        "repositoryCreationTemplates": [t.describe() for t in found[:limit]],
    }
    if len(found) > limit:
        result["nextToken"] = encode_token(found[limit - 1].prefix)
    return result


def choose_template(templates: Iterable[Template], name: str, scenario: str) -> Template | None:
    """The template that governs creating repository `name` in `scenario`: the one with the longest
    prefix covering the name, else the ROOT template."""
    candidates = [t for t in templates if scenario in t.applied_for and t.covers(name)]
    named = [t for t in candidates if t.prefix != ROOT]
    if named:
        return max(named, key=lambda t: len(t.prefix.rstrip("/")))
    return candidates[0] if candidates else None


async def template_for(
    conn: AsyncConnection, account_id: str, region: str, name: str, scenario: str
) -> Template | None:
    rows = await conn.execute(
        select(templates).where(templates.c.account_id == account_id, templates.c.region == region)
    )
    return choose_template(map(Template.from_row, rows), name, scenario)


async def open_for_push(
    svc: Services, conn: AsyncConnection, caller: Caller, account_id: str, name: str, action: str
) -> Repository:
    """`open_repository` for the operations of a push (`conn` must be a write connection): a missing
    repository that a CREATE_ON_PUSH template covers is created first, authorised as
    CreateRepository for the caller."""
    try:
        return await open_repository(conn, caller, account_id, name, action)
    except RepositoryNotFoundException:
        template = await template_for(conn, account_id, caller.region, name, CREATE_ON_PUSH)
        if template is None:
            raise
    return await insert_repository(svc, conn, caller, account_id, name, template.settings())
