"""One ASGI middleware for everything the operations side needs from a request: its ID, metrics,
a structured log line and its audit event.

It costs a request a few microseconds: classification looks at the method, the path and one
header; metric children are cached; the log line is only formatted when its level is enabled;
a read-only audit event is a list append (see dockyard.audit.trail for durability). Only the
error bodies of failed requests are kept (to read their error code), never a success body."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from html import unescape
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard.audit.events import api_call_event, is_read_only
from dockyard.audit.trail import AuditTrail
from dockyard.doors.throttle import RateLimiter
from dockyard.observe import metrics
from dockyard.observe.classify import REGISTRY_AUDITED, classify, operation_label
from dockyard.observe.context import CONTEXT_KEY, RequestContext
from dockyard.observe.ids import new_id

log = logging.getLogger("dockyard.request")

AWS_DOORS = frozenset({"ecr", "cloudtrail", "iam", "sts", "query"})
AWS_REQUEST_ID = b"x-amzn-requestid"
MAX_ERROR_BODY = 64 * 1024
# nginx's "client closed request": the client left before its response was complete. Counted apart
# from the server's errors, since anyone can hang up on purpose.
CLIENT_ABORTED = 499
_XML_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_XML_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")
_UPLOAD_OPERATIONS = frozenset({"UploadLayerPart", "CompleteLayerUpload"})


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, *, limiter: RateLimiter | None, trail: AuditTrail | None) -> None:
        self.app = app
        self.limiter = limiter
        self.trail = trail
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._bytes: dict[str, tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        door, operation, source, where = classify(method, path, scope["headers"])
        context = RequestContext(
            request_id=new_id(),
            received_at=time.time(),
            started=time.perf_counter(),
            door=door,
            operation=operation,
            source=source,
            method=method,
            path=path,
            query=scope.get("query_string", b"").decode("latin-1"),
            where=where,
            limiter=self.limiter,
        )
        scope[CONTEXT_KEY] = context
        uploading = door == "registry" and operation in _UPLOAD_OPERATIONS and method in ("PATCH", "PUT", "POST")
        if uploading:
            metrics.UPLOADS_IN_PROGRESS.inc()
        error_body: bytearray | None = None
        audited = False
        disconnected = responded = False

        async def counting_receive() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.request":
                context.bytes_in += len(message.get("body", b""))
            elif message["type"] == "http.disconnect":
                disconnected = True
            return message

        async def observing_send(message: Message) -> None:
            nonlocal error_body, audited, responded, disconnected
            kind = message["type"]
            final = False
            if kind == "http.response.start":
                context.status = message["status"]
                message["headers"] = self._with_request_id(context, list(message.get("headers", ())))
                context.response_headers = message["headers"]
                if context.status >= 400:
                    error_body = bytearray()
            elif kind == "http.response.body":
                body = message.get("body", b"")
                context.bytes_out += len(body)
                if error_body is not None and len(error_body) < MAX_ERROR_BODY:
                    error_body += body
                if not message.get("more_body", False):
                    final = True
                    if error_body is not None:
                        _read_error(context, bytes(error_body))
                    audited = True
                    await self._audit(context, before_response_ends=True)
            elif kind == "http.response.pathsend":
                final = True
                context.bytes_out += _content_length(context.response_headers)
            try:
                await send(message)
            except OSError:
                # granian refuses to send once the client has gone (a download it hung up on).
                disconnected = True
                raise
            if final:
                # A response finished after the client left reached nobody (uvicorn drops it quietly).
                responded = not disconnected

        try:
            await self.app(scope, counting_receive, observing_send)
        except Exception:
            if disconnected and not responded:
                # The client stopped sending (the abort is counted and logged at info by _observe).
                # One that only half-closed still reads: tell it the body was cut short, or the
                # server under us would answer for the app with a 500.
                if not context.status:
                    await _answer_incomplete_body(send)
                context.status = CLIENT_ABORTED
            else:
                context.status = context.status or 500
                context.error_code = context.error_code or "ServerException"
                log.exception("request failed", extra={"fields": self._fields(context)})
                raise
        finally:
            if disconnected and not responded:
                context.status = CLIENT_ABORTED
                context.error_code = "ClientAborted"
                context.error_message = "The client closed the connection before the response was complete"
            if uploading:
                metrics.UPLOADS_IN_PROGRESS.dec()
            if not audited:
                await self._audit(context, before_response_ends=False)
            self._observe(context)

    def _with_request_id(
        self, context: RequestContext, headers: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        """Answer with the request's ID; an AWS door that set x-amzn-RequestId itself keeps its value,
        and the logs and audit event adopt it, so all three agree."""
        if context.door in AWS_DOORS:
            for name, value in headers:
                if name == AWS_REQUEST_ID:
                    context.request_id = value.decode("latin-1")
                    return headers
            headers.append((b"x-amzn-RequestId", context.request_id.encode()))
        else:
            headers.append((b"X-Request-Id", context.request_id.encode()))
        return headers

    async def _audit(self, context: RequestContext, *, before_response_ends: bool) -> None:
        # Not running: an app served without its lifespan (some tests), or one shutting down.
        if self.trail is None or not self.trail.running or (context.caller is None and context.event is None):
            return
        if context.door == "registry" and context.operation not in REGISTRY_AUDITED:
            return
        try:
            event = context.event or api_call_event(context)
            if event is None:
                return
            if event["readOnly"] or not before_response_ends:
                self.trail.record(event)
            else:
                await self.trail.record_durably(event)
        except Exception:  # noqa: BLE001 - a failing trail must not fail the request; it is logged loudly
            log.exception("could not record the audit event", extra={"fields": self._fields(context)})

    def _observe(self, context: RequestContext) -> None:
        duration = time.perf_counter() - context.started
        door = context.door
        operation = operation_label(door, context.operation)
        key = (door, operation, context.status)
        children = self._children.get(key)
        if children is None:
            children = (
                metrics.REQUESTS.labels(door, operation, str(context.status)),
                metrics.LATENCY.labels(door, operation),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(duration)
        if context.bytes_in or context.bytes_out:
            received, sent = self._bytes.get(door) or self._bytes.setdefault(
                door, (metrics.BYTES_IN.labels(door), metrics.BYTES_OUT.labels(door))
            )
            if context.bytes_in:
                received.inc(context.bytes_in)
            if context.bytes_out:
                sent.inc(context.bytes_out)
        if context.throttled:
            metrics.THROTTLED.labels(operation).inc()
        level = _level(context)
        if log.isEnabledFor(level):
            fields = self._fields(context)
            fields["duration_ms"] = round(duration * 1000, 3)
            log.log(level, "%s %s %s", context.method, context.path, context.status, extra={"fields": fields})

    @staticmethod
    def _fields(context: RequestContext) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "request_id": context.request_id,
            "door": context.door,
            "operation": context.operation,
            "method": context.method,
            "path": context.path,
            "status": context.status,
            "bytes_in": context.bytes_in,
            "bytes_out": context.bytes_out,
        }
        caller = context.caller
        if caller is not None:
            fields.update(account=caller.account_id, principal=caller.arn, source_ip=caller.source_ip)
        if context.error_code:
            fields["error_code"] = context.error_code
            fields["error_message"] = context.error_message
        if context.throttled:
            fields["throttled"] = True
        return fields


def _level(context: RequestContext) -> int:
    """Errors at error, refusals and changes at info, successful reads at debug: a busy registry's
    pulls would otherwise flood the log (the audit trail records them all)."""
    if context.status == CLIENT_ABORTED:
        return logging.INFO
    if context.status >= 500:
        return logging.ERROR
    if context.status >= 400:
        return logging.INFO
    if context.door == "registry":
        return logging.DEBUG if context.method in ("GET", "HEAD") else logging.INFO
    if context.door == "ops" or (context.operation and is_read_only(context.operation, context.source)):
        return logging.DEBUG
    return logging.INFO


def _read_error(context: RequestContext, body: bytes) -> None:
    """The error code and message of a failed response, whatever the door's wire format."""
    text = body.strip()
    code = message = None
    if text.startswith(b"{"):
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict):
            if "__type" in document:
                code = str(document["__type"]).rpartition("#")[2]
                message = document.get("message", document.get("Message"))
            elif isinstance(document.get("errors"), list) and document["errors"]:
                first = document["errors"][0]
                if isinstance(first, dict):
                    code, message = first.get("code"), first.get("message")
    elif text.startswith(b"<"):
        found_code, found_message = _XML_CODE.search(text), _XML_MESSAGE.search(text)
        code = unescape(found_code.group(1).decode()) if found_code else None
        message = unescape(found_message.group(1).decode()) if found_message else None
    context.error_code = context.error_code or (str(code) if code else str(context.status))
    context.error_message = context.error_message or (str(message) if message is not None else "")


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


async def _answer_incomplete_body(send: Send) -> None:
    with contextlib.suppress(OSError):
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [(b"content-type", b"text/plain"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": b"the request body ended before its Content-Length"})
