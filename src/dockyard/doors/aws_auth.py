"""SigV4 authentication shared by the AWS doors (ECR's JSON protocol, IAM/STS's Query protocol)."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request

from dockyard.auth.sigv4 import SignatureError, SignatureInfo, parse_signature, verify_signature
from dockyard.core.identity.caller import Caller
from dockyard.core.identity.principals import CredentialsRejected, check_service
from dockyard.core.identity.registry_callers import signed_credentials
from dockyard.core.services import Services
from dockyard.doors.origin import with_origin
from dockyard.doors.throttle import Throttled
from dockyard.observe.context import admit, context_of


def _name_operation(request: Request, operation: str | None) -> None:
    """Name the operation for throttling and audit when only the door could read it (the Query
    protocol's Action is in the body); a name the request's headers gave stays."""
    context = context_of(request)
    if context is not None and operation and not context.operation:
        context.operation = operation


async def authenticate_signed(
    svc: Services, request: Request, body: bytes, services: tuple[str, ...], *, operation: str | None = None
) -> tuple[Caller, SignatureInfo]:
    """The caller that signed `request`, and what the signature says (service, region).

    The signature covers Host, every x-amz-* header (X-Amz-Target included) and the hash of
    `body` (dockyard.auth.sigv4 refuses anything less), so once this returns the door may act on
    the operation the headers name and the parameters (or the Query protocol's Action, which the
    door read from `body` and passes as `operation`) in `body`.

    Raises SignatureError (rendered by the door): an unknown or inactive key, a session token
    that does not belong to the key, expired temporary credentials, or credentials the service
    does not take, each as AWS words it. Raises Throttled when the caller's account is over its
    rate for the operation."""
    now = datetime.now(UTC)
    path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    method = request.method
    info = parse_signature(method, path, query, request.headers, now, services=services)
    try:
        resolved = await signed_credentials(svc, info.access_key_id, info.session_token, info.region)
    except CredentialsRejected as exc:
        raise SignatureError(exc.kind) from exc
    verify_signature(info, resolved.secret_access_key, method, path, query, request.headers, body, now)
    caller = with_origin(resolved.caller, request)
    _name_operation(request, operation)
    if not await admit(request, caller):
        raise Throttled()
    try:
        check_service(caller, info.service)
    except CredentialsRejected as exc:
        raise SignatureError(exc.kind) from exc
    return caller, info


async def authenticate(svc: Services, request: Request, body: bytes, services: tuple[str, ...]) -> Caller:
    """The caller that signed `request`; raises SignatureError or Throttled (rendered by the door)."""
    caller, _ = await authenticate_signed(svc, request, body, services)
    return caller
