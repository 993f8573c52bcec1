"""Console sign-ins in the audit trail: ConsoleLogin events, successful or not."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from dockyard.audit.events import console_sign_in_event, user_identity
from dockyard.core.identity.principals import CredentialsRejected, resolve_credentials
from dockyard.core.services import Services
from dockyard.observe.context import report, request_id_of


async def report_sign_in(svc: Services, request: Request, access_key_id: str, *, success: bool) -> None:
    """Hand the request's ConsoleLogin event to the middleware. Only the access key id is used,
    never the secret that came with it."""
    region = svc.settings.region
    account_id = svc.settings.account_id
    identity: dict[str, Any] = {"type": "Unknown", "accessKeyId": access_key_id}
    try:
        resolved = await resolve_credentials(svc, access_key_id, None, region)
    except CredentialsRejected:
        pass
    else:
        identity = user_identity(resolved.caller)
        account_id = resolved.caller.account_id
    client = request.client
    event = console_sign_in_event(
        account_id,
        region,
        identity,
        success=success,
        source_ip=client.host if client else "",
        user_agent=request.headers.get("user-agent", ""),
        request_id=request_id_of(request),
    )
    report(request, event=event)
