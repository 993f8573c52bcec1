"""From an access key to the caller it stands for, with that caller's policies as they are now.

Every signed request and every registry request resolves its credentials here, so a deleted
user, a deactivated key, an expired session or a changed policy takes effect on the next
request. Policy documents are parsed once per distinct text (a parsed policy is immutable), and
a principal's policies — inline and attached, its groups' too — are read with one query.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import Row, and_, func, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from dockyard.core.identity.caller import Caller, root_caller
from dockyard.core.services import Services
from dockyard.policy.language import (
    Policy,
    PolicyError,
    RegistryPolicyScope,
    parse_identity_policy,
    parse_resource_policy,
)
from dockyard.policy.managed import MANAGED_POLICIES, ManagedPolicy, ManagedPolicyVersion, get_managed_policy
from dockyard.store import schema

PrincipalKind = Literal["user", "group", "role"]
RejectionKind = Literal["unknown_key", "invalid_token", "expired_token"]

AWS_POLICY_PREFIX = "arn:aws:iam::aws:policy/"

# AWS managed policies beyond ECR's own (dockyard.policy.managed): the one an administrator
# that is not the root user needs.
_ADMINISTRATOR_ACCESS = ManagedPolicy(
    "AdministratorAccess",
    "Provides full access to AWS services and resources.",
    (
        ManagedPolicyVersion(
            "v1",
            '{\n  "Version": "2012-10-17",\n  "Statement": [\n    {\n      "Effect": "Allow",\n'
            '      "Action": "*",\n      "Resource": "*"\n    }\n  ]\n}',
            1423247986.0,  # 2015-02-06T18:39:46Z, as IAM dates it
        ),
    ),
)
_EXTRA_AWS_POLICIES = {_ADMINISTRATOR_ACCESS.arn: _ADMINISTRATOR_ACCESS}


def aws_managed_policy(arn: str) -> ManagedPolicy | None:
    """An AWS managed policy by its ARN."""
    if not arn.startswith(AWS_POLICY_PREFIX):
        return None
    return get_managed_policy(arn) or _EXTRA_AWS_POLICIES.get(arn)


def aws_managed_policies() -> list[ManagedPolicy]:
    found = {**_EXTRA_AWS_POLICIES, **MANAGED_POLICIES}
    return sorted(found.values(), key=lambda policy: policy.name)


@lru_cache(maxsize=8192)
def identity_policy(text: str) -> Policy:
    """A stored identity policy, parsed once per distinct text."""
    return parse_identity_policy(text)


@lru_cache(maxsize=8192)
def resource_policy(
    text: str, kind: Literal["repository", "registry"] = "repository", registry_scope: RegistryPolicyScope = "V1"
) -> Policy:
    """A stored resource policy (repository, registry or role trust policy), parsed once per text."""
    return parse_resource_policy(text, kind=kind, registry_scope=registry_scope)


class CredentialsRejected(Exception):
    """Why credentials do not name a caller; `kind` is a SignatureError kind."""

    def __init__(self, kind: RejectionKind) -> None:
        super().__init__(kind)
        self.kind: RejectionKind = kind


def check_service(caller: Caller, service: str) -> None:
    """Raise CredentialsRejected unless `caller`'s credentials may call `service` (a SigV4 scope's).

    Credentials from GetSessionToken may call IAM only with MFA information, which this server
    never puts in them, so IAM refuses them as it refuses a token that is not valid. Within STS
    they may call AssumeRole and GetCallerIdentity; GetSessionToken refuses them itself
    (sts.get_session_token), with its own message."""
    if service == "iam" and caller.credential_kind == "session-token":
        raise CredentialsRejected("invalid_token")


@dataclass(frozen=True)
class ResolvedCredentials:
    secret_access_key: str
    caller: Caller


def user_arn(account_id: str, path: str, name: str) -> str:
    return f"arn:aws:iam::{account_id}:user{path}{name}"


def role_arn(account_id: str, path: str, name: str) -> str:
    return f"arn:aws:iam::{account_id}:role{path}{name}"


def token_hash(session_token: str) -> str:
    return hashlib.sha256(session_token.encode()).hexdigest()


keys = schema.access_keys
users = schema.iam_users
roles = schema.iam_roles
sessions = schema.sts_sessions


async def resolve_credentials(
    svc: Services,
    access_key_id: str,
    session_token: str | None,
    region: str,
    *,
    check_token: bool = True,
) -> ResolvedCredentials:
    """The caller `access_key_id` (with `session_token`, for temporary credentials) stands for.

    `check_token=False` skips the session-token comparison: an ECR authorization token names
    the access key it was issued to, and the session behind it only has to be alive still."""
    async with svc.db.read() as conn:
        permanent = await _permanent_key(conn, access_key_id, session_token, region)
        if permanent is not None:
            return permanent
        return await _session_key(conn, access_key_id, session_token, region, check_token)


async def _permanent_key(
    conn: AsyncConnection, access_key_id: str, session_token: str | None, region: str
) -> ResolvedCredentials | None:
    row = (
        await conn.execute(
            select(
                keys.c.secret_access_key,
                keys.c.account_id,
                keys.c.user_name,
                keys.c.status,
                users.c.id.label("user_id"),
                users.c.path,
                users.c.unique_id,
            )
            .select_from(
                keys.outerjoin(
                    users,
                    and_(users.c.account_id == keys.c.account_id, users.c.name_key == func.lower(keys.c.user_name)),
                )
            )
            .where(keys.c.access_key_id == access_key_id)
        )
    ).first()
    if row is None:
        return None
    if row.status != "Active" or (row.user_name is not None and row.user_id is None):
        raise CredentialsRejected("unknown_key")
    if session_token is not None:
        raise CredentialsRejected("invalid_token")
    if row.user_name is None:
        return ResolvedCredentials(row.secret_access_key, root_caller(row.account_id, region, access_key_id))
    caller = Caller(
        account_id=row.account_id,
        arn=user_arn(row.account_id, row.path, row.user_name),
        user_id=row.unique_id,
        type="IAMUser",
        username=row.user_name,
        access_key_id=access_key_id,
        region=region,
        policies=await principal_policies(conn, "user", row.user_id),
    )
    return ResolvedCredentials(row.secret_access_key, caller)


async def _session_key(
    conn: AsyncConnection, access_key_id: str, session_token: str | None, region: str, check_token: bool
) -> ResolvedCredentials:
    row = (
        await conn.execute(
            select(
                sessions,
                roles.c.name.label("role_name"),
                roles.c.path.label("role_path"),
                roles.c.unique_id.label("role_unique_id"),
            )
            .select_from(sessions.outerjoin(roles, roles.c.id == sessions.c.role_id))
            .where(sessions.c.access_key_id == access_key_id)
        )
    ).first()
    if row is None:
        raise CredentialsRejected("unknown_key")
    if check_token and (session_token is None or not hmac.compare_digest(token_hash(session_token), row.token_hash)):
        raise CredentialsRejected("invalid_token")
    if row.expires_at <= time.time():
        raise CredentialsRejected("expired_token")
    if row.kind == "assumed-role":
        caller = await _role_session_caller(conn, row, region)
    else:
        caller = await _user_session_caller(conn, row, region)
    return ResolvedCredentials(row.secret_access_key, caller)


async def _role_session_caller(conn: AsyncConnection, row: Row[Any], region: str) -> Caller:
    if row.role_name is None:
        raise CredentialsRejected("invalid_token")  # the role was deleted
    account_id: str = row.account_id
    name: str = row.role_name
    session_name: str = row.session_name
    session_policy_text: str | None = row.session_policy
    return Caller(
        account_id=account_id,
        arn=f"arn:aws:sts::{account_id}:assumed-role/{name}/{session_name}",
        user_id=f"{row.role_unique_id}:{session_name}",
        type="AssumedRole",
        username=None,
        access_key_id=row.access_key_id,
        region=region,
        role_arn=role_arn(account_id, row.role_path, name),
        credential_kind="assumed-role",
        session_expires_at=row.expires_at,
        policies=await principal_policies(conn, "role", row.role_id),
        session_policy=identity_policy(session_policy_text) if session_policy_text else None,
    )


async def _user_session_caller(conn: AsyncConnection, row: Row[Any], region: str) -> Caller:
    account_id: str = row.account_id
    access_key_id: str = row.access_key_id
    expires_at: float = row.expires_at
    user_name: str | None = row.user_name
    if user_name is None:
        root = root_caller(account_id, region, access_key_id)
        return dataclasses.replace(root, credential_kind="session-token", session_expires_at=expires_at)
    user = (
        await conn.execute(
            select(users.c.id, users.c.name, users.c.path, users.c.unique_id).where(
                users.c.account_id == account_id, users.c.name_key == user_name.lower()
            )
        )
    ).first()
    if user is None:
        raise CredentialsRejected("invalid_token")  # the user was deleted
    return Caller(
        account_id=account_id,
        arn=user_arn(account_id, user.path, user.name),
        user_id=user.unique_id,
        type="IAMUser",
        username=user.name,
        access_key_id=access_key_id,
        region=region,
        credential_kind="session-token",
        session_expires_at=expires_at,
        policies=await principal_policies(conn, "user", user.id),
    )


def _owned_by(table: schema.Table, kind: PrincipalKind, principal_id: int) -> ColumnElement[bool]:
    own = and_(table.c.principal_kind == kind, table.c.principal_id == principal_id)
    if kind != "user":
        return own
    groups = select(schema.iam_group_members.c.group_id).where(schema.iam_group_members.c.user_id == principal_id)
    return or_(own, and_(table.c.principal_kind == "group", table.c.principal_id.in_(groups)))


@dataclass(frozen=True)
class SourcedPolicy:
    """An identity policy and where it comes from, as the policy simulator reports it."""

    source_type: str  # user, group, role (inline policies), aws-managed, user-managed
    source_id: str  # the inline policy's or the managed policy's name
    policy: Policy


async def principal_policies(conn: AsyncConnection, kind: PrincipalKind, principal_id: int) -> tuple[Policy, ...]:
    """The identity policies of a user (with its groups'), group or role: inline and attached."""
    return tuple(sourced.policy for sourced in await sourced_policies(conn, kind, principal_id))


async def sourced_policies(conn: AsyncConnection, kind: PrincipalKind, principal_id: int) -> list[SourcedPolicy]:
    inline = schema.iam_inline_policies
    attached = schema.iam_attachments
    managed = schema.iam_policies
    versions = schema.iam_policy_versions
    inline_query = select(
        inline.c.principal_kind.label("source"), inline.c.name, literal(None).label("arn"), inline.c.document
    ).where(_owned_by(inline, kind, principal_id))
    attached_query = (
        select(
            literal("managed").label("source"),
            managed.c.name,
            attached.c.policy_arn.label("arn"),
            versions.c.document,
        )
        .select_from(
            attached.outerjoin(managed, managed.c.arn == attached.c.policy_arn).outerjoin(
                versions,
                and_(versions.c.policy_id == managed.c.id, versions.c.version_id == managed.c.default_version),
            )
        )
        .where(_owned_by(attached, kind, principal_id))
    )
    found: list[SourcedPolicy] = []
    for source, name, arn, document in await conn.execute(union_all(inline_query, attached_query)):
        if document is None:
            aws = aws_managed_policy(arn) if arn else None
            if aws is not None:
                found.append(SourcedPolicy("aws-managed", aws.name, aws.policy))
            continue
        try:
            policy = identity_policy(document)
        except PolicyError:
            continue  # validated when stored; a document the parser now refuses grants nothing
        found.append(SourcedPolicy("user-managed" if source == "managed" else source, name, policy))
    return found
