"""SigV4 authentication shared by the AWS doors (ECR's JSON protocol, IAM/STS's Query protocol)."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request

from dockyard.auth.sigv4 import SignatureError, SignatureInfo, parse_signature, verify_signature
from dockyard.core.accounts import caller_for_key, find_access_key
from dockyard.core.caller import Caller
from dockyard.core.services import Services
from dockyard.doors.origin import with_origin


async def authenticate(svc: Services, request: Request, body: bytes, services: tuple[str, ...]) -> Caller:
    """The caller that signed `request`; raises SignatureError (rendered by the door)."""
    now = datetime.now(UTC)
    path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    method = request.method
    info: SignatureInfo = parse_signature(method, path, query, request.headers, now, services=services)
    key = await find_access_key(svc, info.access_key_id)
    if key is None or key.status != "Active":
        raise SignatureError("unknown_key")
    if info.session_token is not None:
        raise SignatureError("invalid_token")
    verify_signature(info, key.secret_access_key, method, path, query, request.headers, body, now)
    return with_origin(caller_for_key(key, info.region), request)
