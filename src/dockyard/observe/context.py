"""What one request is, as the operations side sees it: the single place a door reports to.

The middleware (dockyard.observe.middleware) opens a RequestContext for every HTTP request and,
when the response ends, turns it into metrics, a log line and an audit event. A door only tells
it what the middleware cannot see from outside:

    if not await admit(request, caller):        # who is calling; False: answer "Rate exceeded"
        ...
    report(request, params=params, response=result)   # what the operation took and gave back

Everything here is cheap and synchronous except `admit`, which asks the rate limiter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import Scope

from dockyard.core.identity.caller import Caller
from dockyard.doors.throttle import RateLimiter
from dockyard.observe.classify import RegistryPath
from dockyard.observe.ids import new_id

CONTEXT_KEY = "dockyard.context"


@dataclass(slots=True, eq=False)
class RequestContext:
    request_id: str
    # Epoch seconds when the request arrived (the event's eventTime) and a monotonic start.
    received_at: float
    started: float
    # registry, ecr, cloudtrail, iam, sts, ops (health and metrics), other
    door: str
    # The operation as CloudTrail names it (CreateRepository, PutImage, ...); "" when unknown.
    operation: str
    # eventSource of the audit event (ecr.amazonaws.com, ...); "" for requests that are never audited.
    source: str
    method: str = ""
    path: str = ""
    query: str = ""
    where: RegistryPath | None = None
    limiter: RateLimiter | None = None
    caller: Caller | None = None
    # The registry (account) a registry request addresses, when it is not the caller's own.
    registry_id: str | None = None
    params: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    # A complete audit event a door built itself (a console sign-in), recorded as it is.
    event: dict[str, Any] | None = None
    status: int = 0
    error_code: str | None = None
    error_message: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    throttled: bool = False
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def context_of(request: HTTPConnection | Scope) -> RequestContext | None:
    scope = request.scope if isinstance(request, HTTPConnection) else request
    return scope.get(CONTEXT_KEY)  # type: ignore[no-any-return]


def request_id_of(request: HTTPConnection) -> str:
    """The request's ID (x-amzn-RequestId, the audit event's requestID, every log line's request_id)."""
    context = context_of(request)
    return context.request_id if context is not None else new_id()


def report(
    request: HTTPConnection,
    *,
    operation: str | None = None,
    source: str | None = None,
    caller: Caller | None = None,
    params: dict[str, Any] | None = None,
    response: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
) -> None:
    """Tell the request's context what only the door knows; each argument left out stays as it was."""
    context = context_of(request)
    if context is None:
        return
    if operation is not None:
        context.operation = operation
    if source is not None:
        context.source = source
    if caller is not None:
        context.caller = caller
    if params is not None:
        context.params = params
    if response is not None:
        context.response = response
    if event is not None:
        context.event = event


async def admit(request: HTTPConnection, caller: Caller, *, registry_id: str | None = None) -> bool:
    """Record who is calling and take a token from their account's bucket for this operation.
    False: the door answers with its protocol's throttling error."""
    context = context_of(request)
    if context is None:
        return True
    context.caller = caller
    if registry_id is not None:
        context.registry_id = registry_id
    if context.limiter is None or not context.operation:
        return True
    if await context.limiter.admit(caller.account_id, context.operation):
        return True
    context.throttled = True
    return False
