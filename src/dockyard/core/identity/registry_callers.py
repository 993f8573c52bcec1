"""The caller behind a registry password or a SigV4 access key, cached per process without
ever being stale.

Resolving a token's principal (its key, user, groups and every policy) is most of what a
registry request used to cost. A resolved caller depends only on the identity tables, so it is
kept under the authorization generation it was read at (core/auth_generation.py) and reused
while the database still reports that generation: one primary-key read instead of the full
resolution. The token itself is checked on every request: its signature once per distinct
password (the HMAC of the same bytes under the same secret cannot change), its expiry, region
and account every time, and a session's expiry every time. An access key's credentials (its
secret and caller) are kept the same way; the request's signature is still verified against the
secret on every request by the door."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy import select

from dockyard.auth.tokens import TokenClaims, TokenError, read_password
from dockyard.core.identity import auth_generation
from dockyard.core.identity.authorization import TokenRejected, caller_for_password
from dockyard.core.identity.caller import Caller
from dockyard.core.identity.principals import ResolvedCredentials, resolve_credentials
from dockyard.core.services import Services
from dockyard.store import schema

MAX_ENTRIES = 4096
K = TypeVar("K")
V = TypeVar("V")

# (server secret, password) -> the claims it carries, signature checked.
_claims: OrderedDict[tuple[bytes, str], TokenClaims] = OrderedDict()
# (database, access key, account, region) -> (generation, caller)
_callers: OrderedDict[tuple[str, str, str, str], tuple[str, Caller]] = OrderedDict()
# (database, access key, session token, region) -> (generation, credentials)
_credentials: OrderedDict[tuple[str, str, str | None, str], tuple[str, ResolvedCredentials]] = OrderedDict()


def _remember(cache: OrderedDict[K, V], key: K, value: V) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > MAX_ENTRIES:
        cache.popitem(last=False)


def verified_claims(svc: Services, password: str, now: float) -> TokenClaims:
    """The claims of `password`, or TokenRejected (forged, garbled, expired)."""
    key = (svc.token_secret, password)
    claims = _claims.get(key)
    if claims is None:
        try:
            claims = read_password(password, svc.token_secret, now)
        except TokenError as exc:
            raise TokenRejected(exc.reason) from exc
        _remember(_claims, key, claims)
    elif now >= claims.expires_at:
        del _claims[key]
        raise TokenRejected("expired")
    return claims


async def registry_caller(svc: Services, password: str, region: str) -> Caller:
    """As authorization.caller_for_password, from the cache when nothing it depends on changed."""
    now = time.time()
    claims = verified_claims(svc, password, now)
    if claims.region != region:
        raise TokenRejected("region")
    generation = await _generation(svc)
    key = (svc.db.url, claims.access_key_id, claims.account_id, region)
    held = _callers.get(key)
    if held is not None and held[0] == generation and _alive(held[1], now):
        return held[1]
    caller = await with_registry_features(svc, await caller_for_password(svc, password, region))
    _remember(_callers, key, (generation, caller))
    return caller


async def signed_credentials(
    svc: Services, access_key_id: str, session_token: str | None, region: str
) -> ResolvedCredentials:
    """As principals.resolve_credentials, from the cache when nothing it depends on changed.

    Raises CredentialsRejected as resolve_credentials does; rejections are never cached, and an
    expired session always goes back to the database, which rejects it in AWS's words."""
    generation = await _generation(svc)
    key = (svc.db.url, access_key_id, session_token, region)
    held = _credentials.get(key)
    if held is not None and held[0] == generation and _alive(held[1].caller, time.time()):
        return held[1]
    resolved = await resolve_credentials(svc, access_key_id, session_token, region)
    resolved = replace(resolved, caller=await with_registry_features(svc, resolved.caller))
    _remember(_credentials, key, (generation, resolved))
    return resolved


async def _generation(svc: Services) -> str:
    # Read before resolving: a write landing in between leaves the entry under the older
    # generation, so the next request resolves again.
    generation = await auth_generation.current(svc.db)
    if generation is None:
        generation = await svc.server_value(auth_generation.NAME, "initial")
    return generation


def _alive(caller: Caller, now: float) -> bool:
    return caller.session_expires_at is None or now < caller.session_expires_at


_EXCLUSIONS = schema.pull_time_exclusions
_SIGNING = schema.signing_configurations
_REPLICATION = schema.replication_configurations


def _registries(rows: Any) -> frozenset[tuple[str, str]]:
    return frozenset((row.account_id, row.region) for row in rows)


async def with_registry_features(svc: Services, caller: Caller) -> Caller:
    """`caller` with what its requests consult on every push or pull, read once per
    authorization generation (every table here is one it watches), so that a request never reads
    them: the registries whose pull-time update exclusions name the caller (an IAM user by its ARN,
    an assumed role's sessions by the role's), and the registries that configured managed signing
    or replication (few: one row each), so a push to a registry without either reads nothing."""
    if caller.type == "IAMUser":
        excluded_arn: str | None = caller.arn
    elif caller.type == "AssumedRole":
        excluded_arn = caller.role_arn
    else:
        excluded_arn = None
    async with svc.db.read() as conn:
        excluded: frozenset[tuple[str, str]] = frozenset()
        if excluded_arn is not None:
            where = _EXCLUSIONS.c.principal_arn == excluded_arn
            excluded = _registries(
                await conn.execute(select(_EXCLUSIONS.c.account_id, _EXCLUSIONS.c.region).where(where))
            )
        signing = _registries(await conn.execute(select(_SIGNING.c.account_id, _SIGNING.c.region)))
        replication = _registries(await conn.execute(select(_REPLICATION.c.account_id, _REPLICATION.c.region)))
    return replace(
        caller, pull_time_excluded_in=excluded, signing_registries=signing, replication_registries=replication
    )
