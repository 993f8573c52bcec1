"""GetAuthorizationToken, and turning a registry password back into the principal it names.

A token names its principal only: what it may do is decided afresh on every request, so a
deactivated key or a changed policy takes effect at once, not when the token expires."""

from __future__ import annotations

import time
from typing import Any

from dockyard.auth.tokens import TokenClaims, TokenError, authorization_token, issue_password, read_password
from dockyard.core.identity.access import Resource, authorize
from dockyard.core.identity.caller import Caller
from dockyard.core.identity.principals import CredentialsRejected, resolve_credentials
from dockyard.core.registry.repositories import registry_host
from dockyard.core.services import Services


class TokenRejected(Exception):
    """Why a registry password was refused: `expired`, `region` or `invalid`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def get_authorization_token(
    svc: Services,
    caller: Caller,
    registry_ids: list[str] | None = None,
    session_expires_at: float | None = None,
) -> dict[str, Any]:
    await authorize(caller, "ecr:GetAuthorizationToken", Resource(arn="*", account_id=caller.account_id))
    issued = int(time.time())
    expires = issued + svc.settings.token_lifetime_seconds
    # A token obtained with temporary credentials expires when they do (troubleshooting, "Your
    # token has expired").
    for limit in (session_expires_at, caller.session_expires_at):
        if limit is not None:
            expires = min(expires, int(limit))
    claims = TokenClaims(
        account_id=caller.account_id,
        region=caller.region,
        principal_arn=caller.arn,
        principal_id=caller.user_id,
        access_key_id=caller.access_key_id or "",
        issued_at=issued,
        expires_at=expires,
    )
    token = authorization_token(issue_password(claims, svc.token_secret))
    scheme = svc.settings.scheme
    return {
        "authorizationData": [
            {
                "authorizationToken": token,
                "expiresAt": float(expires),
                "proxyEndpoint": f"{scheme}://{registry_host(svc, account, caller.region)}",
            }
            for account in (registry_ids or [caller.account_id])
        ]
    }


async def caller_for_password(svc: Services, password: str, region: str) -> Caller:
    try:
        claims = read_password(password, svc.token_secret, time.time())
    except TokenError as exc:
        raise TokenRejected(exc.reason) from exc
    if claims.region != region:
        raise TokenRejected("region")
    # The key (or the session) the token was issued to must still be good, and the principal
    # is re-read with its policies as they are now.
    try:
        resolved = await resolve_credentials(svc, claims.access_key_id, None, region, check_token=False)
    except CredentialsRejected as exc:
        raise TokenRejected("expired" if exc.kind == "expired_token" else "invalid") from exc
    if resolved.caller.account_id != claims.account_id:
        raise TokenRejected("invalid")
    return resolved.caller
