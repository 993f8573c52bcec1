"""Repositories: create, describe, delete, and the lookups every other operation starts with."""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import (
    InvalidParameterException,
    LimitExceededException,
    RepositoryAlreadyExistsException,
    RepositoryNotEmptyException,
    RepositoryNotFoundException,
)
from dockyard.core.identity.access import (
    Resource,
    authorize,
    reads_resource_tags,
    repository_arn,
    request_tag_context,
)
from dockyard.core.identity.caller import Caller
from dockyard.core.operations.account_settings import policy_in_force, registry_policy_in_force
from dockyard.core.paging import decode_token, encode_token, page_size
from dockyard.core.registry import resource_tags
from dockyard.core.services import Services, now
from dockyard.policy.evaluate import ContextValue
from dockyard.store import schema
from dockyard.store.prepared import Prepared

# botocore's RepositoryName pattern, anchored.
NAME_PATTERN = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
repos = schema.repositories
counts = schema.registry_counts


@dataclass(frozen=True)
class Repository:
    id: int
    account_id: str
    region: str
    name: str
    created_at: float
    image_tag_mutability: str
    tag_mutability_exclusions: str | None
    scan_on_push: bool
    encryption_type: str
    kms_key: str | None
    policy_text: str | None
    # The registry policy, when the registry's policy scope makes it govern this repository too.
    registry_policy_text: str | None = None

    @property
    def exclusion_filters(self) -> list[dict[str, str]]:
        return list(json.loads(self.tag_mutability_exclusions or "[]"))

    @property
    def arn(self) -> str:
        return repository_arn(self.region, self.account_id, self.name)

    @property
    def resource(self) -> Resource:
        return Resource(
            arn=self.arn,
            account_id=self.account_id,
            policy_text=self.policy_text,
            registry_policy_text=self.registry_policy_text,
        )


_COLUMNS = (
    repos.c.id,
    repos.c.account_id,
    repos.c.region,
    repos.c.name,
    repos.c.created_at,
    repos.c.image_tag_mutability,
    repos.c.tag_mutability_exclusions,
    repos.c.scan_on_push,
    repos.c.encryption_type,
    repos.c.kms_key,
    repos.c.policy_text,
    policy_in_force(repos.c.account_id, repos.c.region).label("registry_policy_text"),
)
# Every field of Repository, in order: what a query must select to build one.
COLUMNS = _COLUMNS


def valid_name(name: str) -> bool:
    return 2 <= len(name) <= 256 and NAME_PATTERN.fullmatch(name) is not None


def not_found(name: str, account_id: str) -> RepositoryNotFoundException:
    return RepositoryNotFoundException(
        f"The repository with name '{name}' does not exist in the registry with id '{account_id}'"
    )


# Every push and most API calls look their repository up: compiled once (store.prepared).
_FIND = Prepared(
    select(*_COLUMNS).where(
        repos.c.account_id == bindparam("account"),
        repos.c.region == bindparam("region"),
        repos.c.name == bindparam("name"),
    )
)


async def find(conn: AsyncConnection, account_id: str, region: str, name: str) -> Repository | None:
    row = (await _FIND.execute(conn, {"account": account_id, "region": region, "name": name})).first()
    if row is None:
        return None
    values = dict(row._mapping)
    # As the driver returns it (SQLite: 0 or 1).
    values["scan_on_push"] = bool(values["scan_on_push"])
    return Repository(**values)


async def open_repository(
    conn: AsyncConnection,
    caller: Caller,
    account_id: str,
    name: str,
    action: str,
    context: Mapping[str, ContextValue] | None = None,
) -> Repository:
    """The repository `name`, once `caller` is allowed `action` on it (`context`: the request's
    own condition keys); AccessDenied comes before RepositoryNotFound, as on AWS, so a denied
    caller learns nothing."""
    repo = await find(conn, account_id, caller.region, name)
    if repo is None:
        resource = Resource(
            arn=repository_arn(caller.region, account_id, name),
            account_id=account_id,
            registry_policy_text=await registry_policy_in_force(conn, account_id, caller.region),
        )
    else:
        resource = await resource_in(conn, caller, repo)
    await authorize(caller, action, resource, context)
    if repo is None:
        raise not_found(name, account_id)
    return repo


def _policy_texts(repo: Repository) -> str | None:
    if repo.registry_policy_text is None:
        return repo.policy_text
    return (repo.policy_text or "") + repo.registry_policy_text


async def resource_in(conn: AsyncConnection, caller: Caller, repo: Repository) -> Resource:
    """`repo` as the policy engine sees it: with its tags only when a policy reads them."""
    if not reads_resource_tags(caller, _policy_texts(repo)):
        return repo.resource
    tags = await resource_tags.read(conn, repo.id)
    return replace(repo.resource, tags=tuple(tags.items()))


async def repository_resource(svc: Services, caller: Caller, repo: Repository) -> Resource:
    """As `resource_in`, for callers that hold no connection (the fast read paths)."""
    if not reads_resource_tags(caller, _policy_texts(repo)):
        return repo.resource
    async with svc.db.read() as conn:
        return await resource_in(conn, caller, repo)


def describe(svc: Services, repo: Repository) -> dict[str, Any]:
    """The Repository shape of the ECR API."""
    host = registry_host(svc, repo.account_id, repo.region)
    return {
        "repositoryArn": repo.arn,
        "registryId": repo.account_id,
        "repositoryName": repo.name,
        "repositoryUri": f"{host}/{repo.name}",
        "createdAt": repo.created_at,
        "imageTagMutability": repo.image_tag_mutability,
        "imageTagMutabilityExclusionFilters": repo.exclusion_filters or None,
        "imageScanningConfiguration": {"scanOnPush": repo.scan_on_push},
        "encryptionConfiguration": {"encryptionType": repo.encryption_type}
        | ({"kmsKey": repo.kms_key} if repo.kms_key else {}),
    }


# An ECR-style registry host name, <account>.dkr.ecr.<region>.<domain>[:port].
_ECR_STYLE_HOST = re.compile(r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.(?P<domain>.+)")


def registry_host(svc: Services, account_id: str, region: str) -> str:
    """The host clients push to: the configured host for the default registry, ECR's
    <account>.dkr.ecr.<region>.<host> form for any other account or region."""
    settings = svc.settings
    if account_id == settings.account_id and region == settings.region:
        return settings.public_host
    ecr_style = _ECR_STYLE_HOST.fullmatch(settings.public_host)
    if ecr_style:
        # The configured host already names one registry: others swap its account and region.
        return f"{account_id}.dkr.ecr.{region}.{ecr_style['domain']}"
    host, colon, port = settings.public_host.rpartition(":")
    if not colon or not port.isdigit():
        host, colon, port = settings.public_host, "", ""
    if _is_ip_literal(host):
        # No name can sit in front of an IP address; *.localhost resolves to loopback (RFC 6761).
        host = "localhost"
    return f"{account_id}.dkr.ecr.{region}.{host}{colon}{port}"


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class RepositorySettings:
    """What a new repository starts with (CreateRepository's members, or a creation template's)."""

    image_tag_mutability: str = "MUTABLE"
    exclusion_filters: list[dict[str, str]] = field(default_factory=list)
    scan_on_push: bool = False
    encryption_type: str = "AES256"
    kms_key: str | None = None
    tags: list[dict[str, str]] = field(default_factory=list)
    policy_text: str | None = None
    lifecycle_policy_text: str | None = None


# ECR's ImageTagMutabilityExclusionFilters: 1 to 5 WILDCARD filters of 1 to 128 of these characters.
MAX_EXCLUSION_FILTERS = 5
EXCLUSION_FILTER_PATTERN = "^[0-9a-zA-Z._*-]{1,128}$"
_EXCLUSION_FILTER = re.compile(EXCLUSION_FILTER_PATTERN)
_EXCLUSION_MEMBER = "imageTagMutabilityExclusionFilters"


def exclusion_filters_problem(filters: list[dict[str, str]]) -> str | None:
    """What is wrong with tag-mutability exclusion `filters`, in plain words; None when nothing is.
    The one rule every door applies (see validate_exclusion_filters)."""
    if len(filters) > MAX_EXCLUSION_FILTERS:
        return f"At most {MAX_EXCLUSION_FILTERS} exclusion filters are allowed; there are {len(filters)}."
    for number, item in enumerate(filters, 1):
        if item.get("filterType") != "WILDCARD":
            return f"Filter {number} must be a wildcard filter."
        value = item.get("filter") or ""
        if len(value) > 128:
            return f"Filter {number} is {len(value)} characters long; a filter can be at most 128."
        if not _EXCLUSION_FILTER.fullmatch(value):
            return f"Filter {number} can contain only letters, digits and the characters . _ - and the wildcard *."
    return None


def validate_exclusion_filters(filters: list[dict[str, str]]) -> None:
    """Refuse `filters` that ECR's rule does not admit, with ECR's own message."""
    if exclusion_filters_problem(filters) is None:
        return
    at, constraint = _EXCLUSION_MEMBER, f"Member must have length less than or equal to {MAX_EXCLUSION_FILTERS}"
    for number, item in enumerate(filters, 1):
        if len(filters) > MAX_EXCLUSION_FILTERS:
            break
        if item.get("filterType") != "WILDCARD":
            at = f"{_EXCLUSION_MEMBER}.{number}.member.filterType"
            constraint = "Member must satisfy enum value set: [WILDCARD]"
            break
        if not _EXCLUSION_FILTER.fullmatch(item.get("filter") or ""):
            at = f"{_EXCLUSION_MEMBER}.{number}.member.filter"
            constraint = f"Member must satisfy regular expression pattern: {EXCLUSION_FILTER_PATTERN}"
            break
    raise InvalidParameterException(f"Invalid parameter at '{at}' failed to satisfy constraint: '{constraint}'")


def check_tag_mutability(mutability: str, filters: list[dict[str, str]] | None) -> list[dict[str, str]]:
    """The exclusion filters to store: required by the *_WITH_EXCLUSION settings, refused by the others."""
    validate_exclusion_filters(filters or [])
    with_exclusion = mutability.endswith("_WITH_EXCLUSION")
    if with_exclusion and not filters:
        raise InvalidParameterException(
            "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy constraint: "
            f"'imageTagMutabilityExclusionFilters must be specified when imageTagMutability is {mutability}'"
        )
    if filters and not with_exclusion:
        raise InvalidParameterException(
            "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy constraint: "
            f"'imageTagMutabilityExclusionFilters cannot be specified when imageTagMutability is {mutability}'"
        )
    return [{"filterType": f["filterType"], "filter": f["filter"]} for f in filters or []]


def check_encryption(encryption_type: str, kms_key: str | None, account_id: str, region: str) -> str | None:
    """The KMS key to report: the one given, or (as ECR does) the registry's AWS managed key for ECR."""
    if encryption_type == "AES256":
        if kms_key:
            raise InvalidParameterException(
                "Invalid parameter at 'encryptionConfiguration' failed to satisfy constraint: "
                "'kmsKey can only be specified when encryptionType is KMS or KMS_DSSE'"
            )
        return None
    if kms_key:
        return kms_key
    # A stable stand-in for the ARN of the aws/ecr managed key of this account and region.
    key_id = uuid.uuid5(uuid.NAMESPACE_URL, f"aws/ecr/{account_id}/{region}")
    return f"arn:aws:kms:{region}:{account_id}:key/{key_id}"


async def create_repository(
    svc: Services, caller: Caller, account_id: str, name: str, settings: RepositorySettings
) -> dict[str, Any]:
    if not valid_name(name):
        raise InvalidParameterException(
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
            "'must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*''"
        )
    async with svc.db.write() as conn:
        repo = await insert_repository(svc, conn, caller, account_id, name, settings)
    return describe(svc, repo)


async def insert_repository(
    svc: Services, conn: AsyncConnection, caller: Caller, account_id: str, name: str, settings: RepositorySettings
) -> Repository:
    """Create repository `name` in `conn`'s transaction, authorised as CreateRepository (and TagResource
    when it comes with tags, as ECR asks)."""
    resource = Resource(
        arn=repository_arn(caller.region, account_id, name),
        account_id=account_id,
        registry_policy_text=await registry_policy_in_force(conn, account_id, caller.region),
    )
    tags = resource_tags.normalise(settings.tags)
    tag_context = request_tag_context(tags)
    await authorize(caller, "ecr:CreateRepository", resource, tag_context)
    if tags:
        await authorize(caller, "ecr:TagResource", resource, tag_context)
    resource_tags.check_count(len(tags))
    filters = check_tag_mutability(settings.image_tag_mutability, settings.exclusion_filters)
    kms_key = check_encryption(settings.encryption_type, settings.kms_key, account_id, caller.region)
    if await repository_count(conn, account_id, caller.region) >= svc.settings.limits.repositories_per_account:
        raise LimitExceededException(
            "The operation did not succeed because it would have exceeded a service limit for your "
            f"account. Repositories per registry: {svc.settings.limits.repositories_per_account}"
        )
    try:
        async with conn.begin_nested():
            result = await conn.execute(
                insert(repos).values(
                    account_id=account_id,
                    region=caller.region,
                    name=name,
                    created_at=now(),
                    image_tag_mutability=settings.image_tag_mutability,
                    tag_mutability_exclusions=json.dumps(filters) if filters else None,
                    scan_on_push=settings.scan_on_push,
                    encryption_type=settings.encryption_type,
                    kms_key=kms_key,
                    policy_text=settings.policy_text,
                    lifecycle_policy_text=settings.lifecycle_policy_text,
                )
            )
    except IntegrityError as exc:
        raise RepositoryAlreadyExistsException(
            f"The repository with name '{name}' already exists in the registry with id '{account_id}'"
        ) from exc
    await _count_repository(conn, account_id, caller.region, 1)
    await resource_tags.merge(conn, result.inserted_primary_key[0], tags)
    repo = await find(conn, account_id, caller.region, name)
    assert repo is not None
    return repo


async def repository_count(conn: AsyncConnection, account_id: str, region: str) -> int:
    """How many repositories the registry holds (schema.registry_counts: one primary-key read)."""
    count = (
        await conn.execute(
            select(counts.c.repository_count).where(counts.c.account_id == account_id, counts.c.region == region)
        )
    ).scalar()
    return int(count or 0)


async def _count_repository(conn: AsyncConnection, account_id: str, region: str, change: int) -> None:
    """Move the registry's repository count by `change`, in the transaction that made the change."""
    this_registry = (counts.c.account_id == account_id, counts.c.region == region)
    result = await conn.execute(
        update(counts).where(*this_registry).values(repository_count=counts.c.repository_count + change)
    )
    if result.rowcount == 0:
        # Writers are serialised (the database layer's write lock): nobody inserts it meanwhile.
        await conn.execute(insert(counts).values(account_id=account_id, region=region, repository_count=change))


async def describe_repositories(
    svc: Services,
    caller: Caller,
    account_id: str,
    names: list[str] | None = None,
    max_results: int | None = None,
    next_token: str | None = None,
) -> dict[str, Any]:
    if names and (max_results or next_token):
        raise InvalidParameterException(
            "Invalid parameter at 'maxResults' failed to satisfy constraint: 'maxResults cannot be "
            "used with repositoryNames'"
        )
    async with svc.db.read() as conn:
        if names:
            found = []
            for name in dict.fromkeys(names):
                found.append(await open_repository(conn, caller, account_id, name, "ecr:DescribeRepositories"))
            return {"repositories": [describe(svc, r) for r in found]}
        after = decode_token(next_token)
        limit = page_size(max_results, 100)
        query = (
            select(*_COLUMNS)
            .where(repos.c.account_id == account_id, repos.c.region == caller.region)
            .order_by(repos.c.name)
            .limit(limit + 1)
        )
        if after is not None:
            query = query.where(repos.c.name > str(after))
        rows = [Repository(**row._mapping) for row in await conn.execute(query)]
    if not rows and account_id != caller.account_id:
        # Another account's registry with nothing to show: the caller still needs its leave to
        # look, so an outsider is refused rather than told the registry is empty.
        wildcard = Resource(arn=repository_arn(caller.region, account_id, "*"), account_id=account_id)
        await authorize(caller, "ecr:DescribeRepositories", wildcard)
    visible = []
    for repo in rows[:limit]:
        await authorize(caller, "ecr:DescribeRepositories", await repository_resource(svc, caller, repo))
        visible.append(describe(svc, repo))
    result: dict[str, Any] = {"repositories": visible}
    if len(rows) > limit:
        result["nextToken"] = encode_token(rows[limit - 1].name)
    return result


@dataclass(frozen=True)
class RepositoryPage:
    """One page of a registry's repositories by name, with how many match and how many there are."""

    repositories: list[dict[str, Any]]
    matching: int
    total: int


async def browse_repositories(
    svc: Services, caller: Caller, account_id: str, search: str, offset: int, limit: int
) -> RepositoryPage:
    """The console's list: repositories whose name contains `search` (any case), by name, from
    `offset`; counted and paged by the database, so a page costs the same in a registry of ten
    thousand repositories as in one of ten. Each shown repository is authorised as
    DescribeRepositories, as that operation's answer is."""
    scope = (repos.c.account_id == account_id) & (repos.c.region == caller.region)
    matching_scope = scope & repos.c.name.icontains(search, autoescape=True) if search else scope
    async with svc.db.read() as conn:
        total = (await conn.execute(select(func.count()).where(scope))).scalar_one()
        matching = (
            total if not search else (await conn.execute(select(func.count()).where(matching_scope))).scalar_one()
        )
        query = select(*_COLUMNS).where(matching_scope).order_by(repos.c.name).offset(offset).limit(limit)
        rows = [Repository(**row._mapping) for row in await conn.execute(query)]
    if account_id != caller.account_id and not rows:
        wildcard = Resource(arn=repository_arn(caller.region, account_id, "*"), account_id=account_id)
        await authorize(caller, "ecr:DescribeRepositories", wildcard)
    shown = []
    for repo in rows:
        await authorize(caller, "ecr:DescribeRepositories", await repository_resource(svc, caller, repo))
        shown.append(describe(svc, repo))
    return RepositoryPage(shown, matching, total)


async def delete_repository(
    svc: Services, caller: Caller, account_id: str, name: str, force: bool = False
) -> dict[str, Any]:
    async with svc.db.write() as conn:
        repo = await open_repository(conn, caller, account_id, name, "ecr:DeleteRepository")
        image_count = (await conn.execute(select(repos.c.image_count).where(repos.c.id == repo.id))).scalar_one()
        if image_count and not force:
            raise RepositoryNotEmptyException(
                f"The repository with name '{name}' in registry with id '{account_id}' cannot be deleted "
                "because it still contains images"
            )
        await purge(conn, repo.id)
    return describe(svc, repo)


async def purge(conn: AsyncConnection, repository_id: int) -> None:
    """Remove a repository and everything that hangs off it. Blobs stay for garbage collection."""
    image_ids = select(schema.images.c.id).where(schema.images.c.repository_id == repository_id)
    await conn.execute(delete(schema.tags).where(schema.tags.c.repository_id == repository_id))
    await conn.execute(delete(schema.image_references).where(schema.image_references.c.image_id.in_(image_ids)))
    await conn.execute(delete(schema.images).where(schema.images.c.repository_id == repository_id))
    await conn.execute(delete(schema.repository_blobs).where(schema.repository_blobs.c.repository_id == repository_id))
    await conn.execute(delete(schema.uploads).where(schema.uploads.c.repository_id == repository_id))
    await conn.execute(delete(schema.repository_tags).where(schema.repository_tags.c.repository_id == repository_id))
    lifecycle = schema.repository_lifecycle
    await conn.execute(delete(lifecycle).where(lifecycle.c.repository_id == repository_id))
    owner = (await conn.execute(select(repos.c.account_id, repos.c.region).where(repos.c.id == repository_id))).first()
    deleted = await conn.execute(delete(repos).where(repos.c.id == repository_id))
    if owner is not None and deleted.rowcount:
        await _count_repository(conn, owner.account_id, owner.region, -1)
