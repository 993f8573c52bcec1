"""IAM policies: customer managed policies and their versions, the AWS managed policies,
attaching managed policies to users, groups and roles, and inline policies."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.identity import iam_common
from dockyard.core.identity.caller import Caller
from dockyard.core.identity.iam_common import (
    authorize_iam,
    check_path,
    check_tags,
    dump_tags,
    iam_arn,
    load_tags,
    paginate,
)
from dockyard.core.identity.iam_entities import Entity, EntityKind, open_entity
from dockyard.core.identity.iam_errors import (
    AccessDenied,
    DeleteConflict,
    EntityAlreadyExists,
    LimitExceeded,
    MalformedPolicyDocument,
    NoSuchEntity,
)
from dockyard.core.identity.principals import aws_managed_policies, aws_managed_policy
from dockyard.core.services import Services, now
from dockyard.policy.language import PolicyError, parse_identity_policy
from dockyard.policy.managed import ManagedPolicy
from dockyard.store import schema

policies = schema.iam_policies
versions = schema.iam_policy_versions
attachments = schema.iam_attachments
inline = schema.iam_inline_policies

MAX_VERSIONS = 5
MANAGED_POLICY_SIZE = 6144
ATTACHED_PER_PRINCIPAL = 10
# Inline policy size quotas (characters, whitespace not counted), per kind of principal.
INLINE_POLICY_SIZE: dict[EntityKind, int] = {"user": 2048, "group": 5120, "role": 10240}
_TITLES: dict[EntityKind, str] = {"user": "User", "group": "Group", "role": "Role"}
_POLICY_ARN = re.compile(r"arn:aws:iam::(\d{12}|aws):policy(/(?:.*/)?)([^/]+)")


def _size(text: str) -> int:
    return sum(1 for character in text if not character.isspace())


def check_identity_document(text: str, *, managed: bool) -> None:
    """IAM's validation of an identity policy: MalformedPolicyDocument with IAM's message."""
    try:
        parse_identity_policy(text, managed=managed)
    except PolicyError as exc:
        raise MalformedPolicyDocument(exc.message) from None


# --- customer managed and AWS managed policies --------------------------------------------------


@dataclass(frozen=True)
class StoredPolicy:
    """A customer managed policy row, or an AWS managed policy (aws set, id 0)."""

    id: int
    arn: str
    name: str
    path: str
    unique_id: str
    description: str | None
    default_version: str
    created_at: float
    updated_at: float
    tags: list[dict[str, str]]
    aws: ManagedPolicy | None = None


def _aws_policy(policy: ManagedPolicy) -> StoredPolicy:
    digest = hashlib.sha256(policy.arn.encode()).digest()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    unique = iam_common.POLICY_ID_PREFIX + "".join(alphabet[byte % 32] for byte in digest[:17])
    return StoredPolicy(
        id=0,
        arn=policy.arn,
        name=policy.name,
        path=policy.path,
        unique_id=unique,
        description=policy.description,
        default_version=policy.default_version_id,
        created_at=policy.created_at,
        updated_at=policy.updated_at,
        tags=[],
        aws=policy,
    )


def _stored(row: Any) -> StoredPolicy:
    return StoredPolicy(
        id=row.id,
        arn=row.arn,
        name=row.name,
        path=row.path,
        unique_id=row.unique_id,
        description=row.description,
        default_version=row.default_version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        tags=load_tags(row.tags),
    )


async def find_policy(conn: AsyncConnection, arn: str) -> StoredPolicy | None:
    aws = aws_managed_policy(arn)
    if aws is not None:
        return _aws_policy(aws)
    row = (await conn.execute(select(policies).where(policies.c.arn == arn))).first()
    return _stored(row) if row else None


async def _open_policy(conn: AsyncConnection, caller: Caller, arn: str, action: str) -> StoredPolicy:
    await authorize_iam(caller, action, arn)
    policy = await find_policy(conn, arn)
    if policy is None or (policy.aws is None and not arn.startswith(f"arn:aws:iam::{caller.account_id}:")):
        raise NoSuchEntity(f"Policy {arn} was not found.")
    return policy


def _own_policy(caller: Caller, policy: StoredPolicy, action: str) -> None:
    """AWS managed policies belong to AWS: an account may read and attach them, never change them."""
    if policy.aws is not None:
        raise AccessDenied(
            f"User: {caller.arn} is not authorized to perform: iam:{action} on resource: policy {policy.arn}"
        )


async def _attachment_count(conn: AsyncConnection, account_id: str, arn: str) -> int:
    query = (
        select(func.count())
        .select_from(attachments)
        .where(attachments.c.policy_arn == arn, attachments.c.account_id == account_id)
    )
    return int((await conn.execute(query)).scalar_one())


async def _policy_shape(
    conn: AsyncConnection, account_id: str, policy: StoredPolicy, *, detail: bool
) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "PolicyName": policy.name,
        "PolicyId": policy.unique_id,
        "Arn": policy.arn,
        "Path": policy.path,
        "DefaultVersionId": policy.default_version,
        "AttachmentCount": await _attachment_count(conn, account_id, policy.arn),
        "PermissionsBoundaryUsageCount": 0,
        "IsAttachable": True,
    }
    if detail and policy.description:
        shape["Description"] = policy.description
    shape["CreateDate"] = policy.created_at
    shape["UpdateDate"] = policy.updated_at
    if detail and policy.tags:
        shape["Tags"] = policy.tags
    return shape


@dataclass(frozen=True)
class NewPolicy:
    name: str
    document: str
    path: str | None = None
    description: str | None = None
    tags: list[dict[str, str]] | None = None


def _check_managed_document(text: str) -> None:
    check_identity_document(text, managed=True)
    if _size(text) > MANAGED_POLICY_SIZE:
        raise LimitExceeded(f"Cannot exceed quota for PolicySize: {MANAGED_POLICY_SIZE}")


async def create_policy(svc: Services, caller: Caller, new: NewPolicy) -> dict[str, Any]:
    iam_common.validate_name(new.name, "policyName", iam_common.POLICY_NAME_MAX)
    path = check_path(new.path)
    arn = iam_arn(caller.account_id, "policy", path, new.name)
    await authorize_iam(caller, "CreatePolicy", arn)
    _check_managed_document(new.document)
    tags = check_tags(new.tags)
    created = now()
    async with svc.db.write() as conn:
        try:
            async with conn.begin_nested():
                result = await conn.execute(
                    insert(policies).values(
                        account_id=caller.account_id,
                        name=new.name,
                        name_key=new.name.lower(),
                        path=path,
                        arn=arn,
                        unique_id=iam_common.unique_id(iam_common.POLICY_ID_PREFIX),
                        description=new.description,
                        default_version="v1",
                        next_version=2,
                        tags=dump_tags(tags),
                        created_at=created,
                        updated_at=created,
                    )
                )
        except IntegrityError as exc:
            raise EntityAlreadyExists(
                f"A policy called {new.name} already exists. Duplicate names are not allowed."
            ) from exc
        policy_id = result.inserted_primary_key[0]
        await conn.execute(
            insert(versions).values(policy_id=policy_id, version_id="v1", document=new.document, created_at=created)
        )
        policy = await find_policy(conn, arn)
        assert policy is not None
        shape = await _policy_shape(conn, caller.account_id, policy, detail=False)
    if tags:
        shape["Tags"] = tags
    return {"Policy": shape}


async def get_policy(svc: Services, caller: Caller, arn: str) -> dict[str, Any]:
    async with svc.db.read() as conn:
        policy = await _open_policy(conn, caller, arn, "GetPolicy")
        return {"Policy": await _policy_shape(conn, caller.account_id, policy, detail=True)}


@dataclass(frozen=True)
class PolicyListing:
    scope: str = "All"  # All, AWS, Local
    only_attached: bool = False
    path_prefix: str | None = None
    marker: str | None = None
    max_items: int | None = None


async def list_policies(svc: Services, caller: Caller, listing: PolicyListing) -> dict[str, Any]:
    await authorize_iam(caller, "ListPolicies", iam_arn(caller.account_id, "policy", "/", ""))
    async with svc.db.read() as conn:
        found: list[StoredPolicy] = []
        if listing.scope in ("All", "AWS"):
            found += [_aws_policy(policy) for policy in aws_managed_policies()]
        if listing.scope in ("All", "Local"):
            rows = await conn.execute(select(policies).where(policies.c.account_id == caller.account_id))
            found += [_stored(row) for row in rows]
        if listing.path_prefix:
            found = [policy for policy in found if policy.path.startswith(listing.path_prefix)]
        shapes = [await _policy_shape(conn, caller.account_id, policy, detail=False) for policy in found]
    if listing.only_attached:
        shapes = [shape for shape in shapes if shape["AttachmentCount"] > 0]
    shapes.sort(key=lambda shape: shape["Arn"])
    page, more = paginate(shapes, lambda shape: shape["Arn"], listing.marker, listing.max_items)
    return {"Policies": page, **more}


async def delete_policy(svc: Services, caller: Caller, arn: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        policy = await _open_policy(conn, caller, arn, "DeletePolicy")
        _own_policy(caller, policy, "DeletePolicy")
        if await _attachment_count(conn, caller.account_id, arn):
            raise DeleteConflict("Cannot delete a policy attached to entities.")
        count = select(func.count()).select_from(versions).where(versions.c.policy_id == policy.id)
        if (await conn.execute(count)).scalar_one() > 1:
            raise DeleteConflict(
                "This policy has more than one version. Before you delete a policy, you must delete the policy's "
                "versions. The default version is deleted with the policy."
            )
        await conn.execute(delete(versions).where(versions.c.policy_id == policy.id))
        await conn.execute(delete(policies).where(policies.c.id == policy.id))
    return {}


# --- versions -------------------------------------------------------------------------------------


def _version_shape(version_id: str, document: str, default: str, created_at: float) -> dict[str, Any]:
    return {
        "Document": document,
        "VersionId": version_id,
        "IsDefaultVersion": version_id == default,
        "CreateDate": created_at,
    }


async def _versions(conn: AsyncConnection, policy: StoredPolicy) -> list[dict[str, Any]]:
    if policy.aws is not None:
        return [
            _version_shape(version.version_id, version.document, policy.default_version, version.created_at)
            for version in reversed(policy.aws.versions)
        ]
    rows = await conn.execute(
        select(versions).where(versions.c.policy_id == policy.id).order_by(versions.c.created_at.desc())
    )
    return [_version_shape(row.version_id, row.document, policy.default_version, row.created_at) for row in rows]


def _version_not_found(arn: str, version_id: str) -> NoSuchEntity:
    return NoSuchEntity(f"Policy {arn} version {version_id} does not exist or is not attachable.")


async def create_policy_version(
    svc: Services, caller: Caller, arn: str, document: str, set_as_default: bool
) -> dict[str, Any]:
    async with svc.db.write() as conn:
        policy = await _open_policy(conn, caller, arn, "CreatePolicyVersion")
        _own_policy(caller, policy, "CreatePolicyVersion")
        _check_managed_document(document)
        existing = await _versions(conn, policy)
        if len(existing) >= MAX_VERSIONS:
            raise LimitExceeded(
                f"A managed policy can have up to {MAX_VERSIONS} versions. Before you create a new version, "
                "you must delete an existing version."
            )
        row = (await conn.execute(select(policies.c.next_version).where(policies.c.id == policy.id))).scalar_one()
        version_id = f"v{row}"
        created = now()
        await conn.execute(
            insert(versions).values(policy_id=policy.id, version_id=version_id, document=document, created_at=created)
        )
        values: dict[str, Any] = {"next_version": row + 1, "updated_at": created}
        if set_as_default:
            values["default_version"] = version_id
        await conn.execute(update(policies).where(policies.c.id == policy.id).values(**values))
    default = version_id if set_as_default else policy.default_version
    shape = _version_shape(version_id, document, default, created)
    del shape["Document"]  # CreatePolicyVersion does not echo the document
    return {"PolicyVersion": shape}


async def get_policy_version(svc: Services, caller: Caller, arn: str, version_id: str) -> dict[str, Any]:
    async with svc.db.read() as conn:
        policy = await _open_policy(conn, caller, arn, "GetPolicyVersion")
        for version in await _versions(conn, policy):
            if version["VersionId"] == version_id:
                return {"PolicyVersion": version}
    raise _version_not_found(arn, version_id)


async def list_policy_versions(
    svc: Services, caller: Caller, arn: str, marker: str | None, max_items: int | None
) -> dict[str, Any]:
    async with svc.db.read() as conn:
        policy = await _open_policy(conn, caller, arn, "ListPolicyVersions")
        found = await _versions(conn, policy)
    listed = [{key: value for key, value in version.items() if key != "Document"} for version in found]
    # Newest first, as IAM lists them; the marker is the position in that order.
    listed.sort(key=_newest_first)
    page, more = paginate(listed, _newest_first, marker, max_items)
    return {"Versions": page, **more}


def _newest_first(version: dict[str, Any]) -> str:
    return f"{10**8 - int(version['VersionId'].removeprefix('v')):09d}"


async def set_default_policy_version(svc: Services, caller: Caller, arn: str, version_id: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        policy = await _open_policy(conn, caller, arn, "SetDefaultPolicyVersion")
        _own_policy(caller, policy, "SetDefaultPolicyVersion")
        if version_id not in {version["VersionId"] for version in await _versions(conn, policy)}:
            raise _version_not_found(arn, version_id)
        await conn.execute(
            update(policies).where(policies.c.id == policy.id).values(default_version=version_id, updated_at=now())
        )
    return {}


async def delete_policy_version(svc: Services, caller: Caller, arn: str, version_id: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        policy = await _open_policy(conn, caller, arn, "DeletePolicyVersion")
        _own_policy(caller, policy, "DeletePolicyVersion")
        if version_id == policy.default_version:
            raise DeleteConflict("Cannot delete the default version of a policy.")
        removed = await conn.execute(
            delete(versions).where(versions.c.policy_id == policy.id, versions.c.version_id == version_id)
        )
        if removed.rowcount == 0:
            raise _version_not_found(arn, version_id)
    return {}


# --- attachments ----------------------------------------------------------------------------------


async def _attachable(conn: AsyncConnection, caller: Caller, arn: str) -> None:
    match = _POLICY_ARN.fullmatch(arn)
    owner_ok = match is not None and match.group(1) in ("aws", caller.account_id)
    if not owner_ok or await find_policy(conn, arn) is None:
        raise NoSuchEntity(f"Policy {arn} does not exist or is not attachable.")


async def attach_policy(svc: Services, caller: Caller, kind: EntityKind, name: str, arn: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        entity = await open_entity(conn, caller, kind, name, f"Attach{_TITLES[kind]}Policy")
        await _attachable(conn, caller, arn)
        owned = attachments.c.principal_kind == kind, attachments.c.principal_id == entity.id
        attached = (await conn.execute(select(attachments.c.policy_arn).where(*owned))).scalars().all()
        if arn in attached:
            return {}
        if len(attached) >= ATTACHED_PER_PRINCIPAL:
            raise LimitExceeded(f"Cannot exceed quota for PoliciesPer{_TITLES[kind]}: {ATTACHED_PER_PRINCIPAL}")
        await conn.execute(
            insert(attachments).values(
                principal_kind=kind,
                principal_id=entity.id,
                policy_arn=arn,
                account_id=caller.account_id,
                attached_at=now(),
            )
        )
    return {}


async def detach_policy(svc: Services, caller: Caller, kind: EntityKind, name: str, arn: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        entity = await open_entity(conn, caller, kind, name, f"Detach{_TITLES[kind]}Policy")
        removed = await conn.execute(
            delete(attachments).where(
                attachments.c.principal_kind == kind,
                attachments.c.principal_id == entity.id,
                attachments.c.policy_arn == arn,
            )
        )
        if removed.rowcount == 0:
            raise NoSuchEntity(f"Policy {arn} was not found.")
    return {}


async def list_attached_policies(
    svc: Services,
    caller: Caller,
    kind: EntityKind,
    name: str,
    path_prefix: str | None,
    marker: str | None,
    max_items: int | None,
) -> dict[str, Any]:
    async with svc.db.read() as conn:
        entity = await open_entity(conn, caller, kind, name, f"ListAttached{_TITLES[kind]}Policies")
        arns = (
            await conn.execute(
                select(attachments.c.policy_arn).where(
                    attachments.c.principal_kind == kind, attachments.c.principal_id == entity.id
                )
            )
        ).scalars()
        found = [policy for arn in arns if (policy := await find_policy(conn, arn)) is not None]
    if path_prefix:
        found = [policy for policy in found if policy.path.startswith(path_prefix)]
    found.sort(key=lambda policy: policy.name.lower())
    page, more = paginate(found, lambda policy: policy.name.lower(), marker, max_items)
    return {"AttachedPolicies": [{"PolicyName": p.name, "PolicyArn": p.arn} for p in page], **more}


# --- inline policies ------------------------------------------------------------------------------


def _inline_of(entity: Entity) -> Any:
    return and_(inline.c.principal_kind == entity.kind, inline.c.principal_id == entity.id)


def _no_inline_policy(kind: EntityKind, policy_name: str) -> NoSuchEntity:
    return NoSuchEntity(f"The {kind} policy with name {policy_name} cannot be found.")


async def put_inline_policy(
    svc: Services, caller: Caller, kind: EntityKind, name: str, policy_name: str, document: str
) -> dict[str, Any]:
    iam_common.validate_name(policy_name, "policyName", iam_common.POLICY_NAME_MAX)
    async with svc.db.write() as conn:
        entity = await open_entity(conn, caller, kind, name, f"Put{_TITLES[kind]}Policy")
        check_identity_document(document, managed=False)
        others = await conn.execute(select(inline.c.name, inline.c.document).where(_inline_of(entity)))
        total = _size(document) + sum(_size(text) for other, text in others if other != policy_name)
        if total > INLINE_POLICY_SIZE[kind]:
            raise LimitExceeded(
                f"Maximum policy size of {INLINE_POLICY_SIZE[kind]} bytes exceeded for {kind} {entity.name}"
            )
        replaced = await conn.execute(
            update(inline).where(_inline_of(entity), inline.c.name == policy_name).values(document=document)
        )
        if replaced.rowcount == 0:
            await conn.execute(
                insert(inline).values(principal_kind=kind, principal_id=entity.id, name=policy_name, document=document)
            )
    return {}


async def get_inline_policy(
    svc: Services, caller: Caller, kind: EntityKind, name: str, policy_name: str
) -> dict[str, Any]:
    async with svc.db.read() as conn:
        entity = await open_entity(conn, caller, kind, name, f"Get{_TITLES[kind]}Policy")
        document = (
            await conn.execute(select(inline.c.document).where(_inline_of(entity), inline.c.name == policy_name))
        ).scalar()
    if document is None:
        raise _no_inline_policy(kind, policy_name)
    return {f"{_TITLES[kind]}Name": entity.name, "PolicyName": policy_name, "PolicyDocument": document}


async def delete_inline_policy(
    svc: Services, caller: Caller, kind: EntityKind, name: str, policy_name: str
) -> dict[str, Any]:
    async with svc.db.write() as conn:
        entity = await open_entity(conn, caller, kind, name, f"Delete{_TITLES[kind]}Policy")
        removed = await conn.execute(delete(inline).where(_inline_of(entity), inline.c.name == policy_name))
    if removed.rowcount == 0:
        raise _no_inline_policy(kind, policy_name)
    return {}


async def list_inline_policies(
    svc: Services, caller: Caller, kind: EntityKind, name: str, marker: str | None, max_items: int | None
) -> dict[str, Any]:
    async with svc.db.read() as conn:
        entity = await open_entity(conn, caller, kind, name, f"List{_TITLES[kind]}Policies")
        names = sorted((await conn.execute(select(inline.c.name).where(_inline_of(entity)))).scalars())
    page, more = paginate(names, lambda policy_name: policy_name, marker, max_items)
    return {"PolicyNames": page, **more}
