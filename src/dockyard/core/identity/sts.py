"""AWS STS: who am I, and temporary credentials (GetSessionToken, AssumeRole).

Temporary credentials are rows of sts_sessions: an ASIA... key, its secret and the hash of its
session token, and when they expire. core/principals turns them back into callers."""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.identity.access import Resource, authorize
from dockyard.core.identity.accounts import new_access_key_id, new_secret_access_key
from dockyard.core.identity.caller import Caller
from dockyard.core.identity.iam_entities import find_entity
from dockyard.core.identity.iam_errors import AccessDenied, MalformedPolicyDocument, ValidationError
from dockyard.core.identity.principals import token_hash
from dockyard.core.services import Services
from dockyard.policy.evaluate import ContextValue
from dockyard.policy.language import PolicyError, parse_identity_policy
from dockyard.store import schema

sessions = schema.sts_sessions

MIN_DURATION = 900
SESSION_TOKEN_DEFAULT = 43200
SESSION_TOKEN_MAX = 129600
ROOT_SESSION_TOKEN_MAX = 3600
ASSUME_ROLE_DEFAULT = 3600
CHAINED_ROLE_MAX = 3600
# Expired sessions are kept this long (an expired key answers ExpiredToken, not "unknown key").
EXPIRED_KEPT = 86400.0
_ROLE_ARN = re.compile(r"arn:aws:iam::(\d{12}):role(/(?:[^/]+/)*)([\w+=,.@-]+)")


def refuse_unsupported(params: Mapping[str, Any], members: Sequence[str]) -> None:
    """Members this server does not implement (MFA, session tags, managed session policies):
    refused rather than ignored, since ignoring them would change what the credentials may do."""
    for member in members:
        if params.get(member):
            raise ValidationError(f"{member} is not supported by this server.")


def get_caller_identity(caller: Caller) -> dict[str, Any]:
    """Answers anyone with valid credentials: no permission is needed, none can deny it."""
    return {"UserId": caller.user_id, "Account": caller.account_id, "Arn": caller.arn}


def _expiry(duration: int) -> float:
    return float(int(time.time()) + duration)


async def _issue(conn: AsyncConnection, account_id: str, kind: str, duration: int, **values: Any) -> dict[str, Any]:
    await conn.execute(delete(sessions).where(sessions.c.expires_at < time.time() - EXPIRED_KEPT))
    access_key_id = new_access_key_id("ASIA")
    secret = new_secret_access_key()
    token = base64.b64encode(secrets.token_bytes(240)).decode()
    expires = _expiry(duration)
    await conn.execute(
        insert(sessions).values(
            access_key_id=access_key_id,
            secret_access_key=secret,
            token_hash=token_hash(token),
            account_id=account_id,
            kind=kind,
            created_at=time.time(),
            expires_at=expires,
            **values,
        )
    )
    return {"AccessKeyId": access_key_id, "SecretAccessKey": secret, "SessionToken": token, "Expiration": expires}


def _check_duration(duration: int, maximum: int, message: str) -> int:
    if duration < MIN_DURATION:
        raise ValidationError(
            f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: "
            f"Member must have value greater than or equal to {MIN_DURATION}"
        )
    if duration > maximum:
        raise ValidationError(message)
    return duration


async def get_session_token(svc: Services, caller: Caller, duration_seconds: int | None) -> dict[str, Any]:
    if caller.credential_kind != "permanent":
        raise AccessDenied("Cannot call GetSessionToken with session credentials")
    maximum = ROOT_SESSION_TOKEN_MAX if caller.type == "Root" else SESSION_TOKEN_MAX
    duration = _check_duration(
        duration_seconds or min(SESSION_TOKEN_DEFAULT, maximum),
        maximum,
        f"1 validation error detected: Value '{duration_seconds}' at 'durationSeconds' failed to satisfy "
        f"constraint: Member must have value less than or equal to {maximum}",
    )
    async with svc.db.write() as conn:
        credentials = await _issue(
            conn, caller.account_id, "session-token", duration, user_name=caller.username, source_arn=caller.arn
        )
    return {"Credentials": credentials}


@dataclass(frozen=True)
class AssumeRoleRequest:
    role_arn: str
    session_name: str
    duration_seconds: int | None = None
    policy: str | None = None
    external_id: str | None = None


def _not_authorized(caller: Caller, role_arn: str) -> AccessDenied:
    return AccessDenied(f"User: {caller.arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}")


def _session_policy(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        parse_identity_policy(text)
    except PolicyError as exc:
        raise MalformedPolicyDocument(exc.message) from None
    return text


async def assume_role(svc: Services, caller: Caller, request: AssumeRoleRequest) -> dict[str, Any]:
    if caller.type == "Root":
        raise AccessDenied("Roles may not be assumed by root accounts.")
    match = _ROLE_ARN.fullmatch(request.role_arn)
    if match is None:
        raise ValidationError(f"{request.role_arn} is invalid")
    account_id, path, name = match.groups()
    session_policy = _session_policy(request.policy)
    async with svc.db.write() as conn:
        role = await find_entity(conn, "role", account_id, name)
        if role is None or role.path != path:
            raise _not_authorized(caller, request.role_arn)
        context: dict[str, ContextValue] = {"sts:RoleSessionName": request.session_name}
        if request.external_id is not None:
            context["sts:ExternalId"] = request.external_id
        trust = Resource(
            arn=role.arn, account_id=role.account_id, policy_text=role.row["trust_policy"], policy_kind="trust"
        )
        await authorize(caller, "sts:AssumeRole", trust, context)
        maximum = CHAINED_ROLE_MAX if caller.credential_kind == "assumed-role" else role.row["max_session_duration"]
        duration = _check_duration(
            request.duration_seconds or min(ASSUME_ROLE_DEFAULT, maximum),
            maximum,
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."
            if caller.credential_kind == "assumed-role"
            else "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        )
        credentials = await _issue(
            conn,
            role.account_id,
            "assumed-role",
            duration,
            role_id=role.id,
            session_name=request.session_name,
            session_policy=session_policy,
            source_arn=caller.arn,
        )
    return {
        "Credentials": credentials,
        "AssumedRoleUser": {
            "AssumedRoleId": f"{role.unique_id}:{request.session_name}",
            "Arn": f"arn:aws:sts::{role.account_id}:assumed-role/{role.name}/{request.session_name}",
        },
    }
