"""SigV4 authentication shared by the AWS doors (ECR's JSON protocol, IAM/STS's Query protocol)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import unquote_plus

from starlette.requests import Request

from dockyard.auth.sigv4 import AwsError, Protocol, SignatureError, SignatureInfo, parse_signature, verify_signature
from dockyard.core.identity.caller import Caller
from dockyard.core.identity.principals import CredentialsRejected
from dockyard.core.identity.registry_callers import signed_credentials
from dockyard.core.services import Services
from dockyard.doors.origin import with_origin
from dockyard.observe.context import admit, context_of

THROTTLED_MESSAGE = "Rate exceeded"


class Throttled(SignatureError):
    """The caller's account is over its rate for this operation. Raised where signature errors are,
    so every AWS door already renders it: ThrottlingException (JSON), Throttling (Query)."""

    def __init__(self) -> None:
        super().__init__("mismatch", THROTTLED_MESSAGE)

    def render(self, protocol: Protocol) -> AwsError:
        code = "ThrottlingException" if protocol == "json" else "Throttling"
        return AwsError(code, THROTTLED_MESSAGE, 400)


def _query_action(request: Request, body: bytes) -> None:
    """Name the operation of an AWS Query request (its Action is in the body) for throttling and audit."""
    context = context_of(request)
    if context is None or context.operation:
        return
    for pair in body.split(b"&"):
        if pair.startswith(b"Action="):
            context.operation = unquote_plus(pair[7:].decode("latin-1"))
            return


async def authenticate_signed(
    svc: Services, request: Request, body: bytes, services: tuple[str, ...]
) -> tuple[Caller, SignatureInfo]:
    """The caller that signed `request`, and what the signature says (service, region).

    The signature covers Host, every x-amz-* header (X-Amz-Target included) and the hash of
    `body` (dockyard.auth.sigv4 refuses anything less), so once this returns the door may act on
    the operation the headers name and the parameters (or the Query protocol's Action) in `body`.

    Raises SignatureError (rendered by the door): an unknown or inactive key, a session token
    that does not belong to the key, or expired temporary credentials, each as AWS words it."""
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
    _query_action(request, body)
    if not await admit(request, caller):
        raise Throttled()
    return caller, info


async def authenticate(svc: Services, request: Request, body: bytes, services: tuple[str, ...]) -> Caller:
    """The caller that signed `request`; raises SignatureError (rendered by the door)."""
    caller, _ = await authenticate_signed(svc, request, body, services)
    return caller
