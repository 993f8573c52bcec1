"""The CloudTrail door: LookupEvents over the audit trail, AWS JSON 1.1
(`X-Amz-Target: com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents`).

Like CloudTrail's event history it answers for the caller's account and the region the request
is signed for, newest events first, at most 50 a page, over the last 90 days by default."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from functools import cached_property
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dockyard.audit.events import parse_event_time, resource_name, username
from dockyard.audit.trail import AuditTrail, InvalidToken, Query
from dockyard.auth.sigv4 import SignatureError
from dockyard.core import client_json as wire_json
from dockyard.core.errors import DockyardError
from dockyard.core.identity.access import Resource, authorize
from dockyard.core.identity.caller import Caller
from dockyard.core.services import Services
from dockyard.doors.aws_auth import authenticate
from dockyard.doors.aws_json import REQUEST_TOO_LARGE_EXCEPTION, ServiceModel, ValidationError, error_body
from dockyard.doors.bodies import CLOUDTRAIL_BODY_LIMIT, BodyTooLarge, read_body, refused
from dockyard.doors.throttle import Throttled
from dockyard.observe.classify import CLOUDTRAIL_TARGET_PREFIX
from dockyard.observe.context import report, request_id_of

CONTENT_TYPE = "application/x-amz-json-1.1"
HISTORY_SECONDS = 90 * 86400
MAX_RESULTS = 50


def _error(name: str) -> type[DockyardError]:
    return type(name, (DockyardError,), {"code": name, "status": 400})


InvalidLookupAttributesException = _error("InvalidLookupAttributesException")
InvalidTimeRangeException = _error("InvalidTimeRangeException")
InvalidMaxResultsException = _error("InvalidMaxResultsException")
InvalidNextTokenException = _error("InvalidNextTokenException")
InvalidEventCategoryException = _error("InvalidEventCategoryException")


def _epoch(value: datetime | float | None, default: float) -> float:
    if value is None:
        return default
    return value.timestamp() if isinstance(value, datetime) else float(value)


def build_query(caller: Caller, params: dict[str, Any]) -> Query:
    attributes = params.get("LookupAttributes") or []
    if len(attributes) > 1:
        raise InvalidLookupAttributesException("You cannot specify more than one lookup attribute.")
    attribute = None
    if attributes:
        attribute = (attributes[0]["AttributeKey"], attributes[0]["AttributeValue"])
    limit = params.get("MaxResults", MAX_RESULTS)
    if not 1 <= limit <= MAX_RESULTS:
        raise InvalidMaxResultsException(f"Value {limit} for MaxResults is invalid. It must be between 1 and 50.")
    now = time.time()
    end = _epoch(params.get("EndTime"), now)
    start = _epoch(params.get("StartTime"), now - HISTORY_SECONDS)
    if start > end:
        raise InvalidTimeRangeException("Start time must be before end time.")
    return Query(
        account_id=caller.account_id,
        region=caller.region,
        start=start,
        end=end,
        limit=limit,
        attribute=attribute,
        next_token=params.get("NextToken"),
    )


def lookup_event_shape(event: dict[str, Any]) -> dict[str, Any]:
    """One entry of LookupEvents' Events: CloudTrail's summary plus the whole event as a string."""
    resources = [
        {"ResourceType": r.get("type"), "ResourceName": resource_name(r)} for r in event.get("resources") or []
    ]
    return {
        "EventId": event.get("eventID"),
        "EventName": event.get("eventName"),
        "ReadOnly": "true" if event.get("readOnly") else "false",
        "AccessKeyId": (event.get("userIdentity") or {}).get("accessKeyId"),
        "EventTime": parse_event_time(event["eventTime"]),
        "EventSource": event.get("eventSource"),
        "Username": username(event),
        "Resources": resources or None,
        "CloudTrailEvent": json.dumps(event, separators=(",", ":")),
    }


class CloudTrailDoor:
    def __init__(self, svc: Services, trail: AuditTrail) -> None:
        self.svc = svc
        self.trail = trail

    # Compiled with the first LookupEvents, not with the door: a few MiB most workers never need.
    @cached_property
    def model(self) -> ServiceModel:
        return ServiceModel("cloudtrail")

    def _respond(self, status: int, body: bytes, request_id: str) -> Response:
        return Response(body, status, headers={"x-amzn-RequestId": request_id}, media_type=CONTENT_TYPE)

    def _error(self, status: int, code: str, message: str | None, request_id: str) -> Response:
        return self._respond(status, error_body(code, message), request_id)

    async def handle(self, request: Request, target: str) -> Response:
        request_id = request_id_of(request)
        try:
            body = await read_body(request, CLOUDTRAIL_BODY_LIMIT)
        except BodyTooLarge as exc:
            return refused(self._error(413, REQUEST_TOO_LARGE_EXCEPTION, exc.message, request_id))
        try:
            caller = await authenticate(self.svc, request, body, ("cloudtrail",))
        except (SignatureError, Throttled) as exc:
            error = exc.render("json")
            return self._error(error.status, error.code, error.message, request_id)
        name = target.removeprefix(CLOUDTRAIL_TARGET_PREFIX)
        if not target.startswith(CLOUDTRAIL_TARGET_PREFIX) or name != "LookupEvents":
            return self._error(400, "UnknownOperationException", None, request_id)
        try:
            _check_max_results(body)
            params = self.model.parse_input(name, body)
            report(request, params=_request_parameters(params))
            result = await self.lookup_events(caller, params)
        except ValidationError as exc:
            return self._respond(exc.status, exc.body(), request_id)
        except DockyardError as exc:
            return self._error(exc.status, exc.code, exc.message, request_id)
        return self._respond(200, self.model.serialize_output(name, result), request_id)

    async def lookup_events(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        await authorize(caller, "cloudtrail:LookupEvents", Resource(arn="*", account_id=caller.account_id))
        if params.get("EventCategory") not in (None, "insight"):
            raise InvalidEventCategoryException(f"Event category {params['EventCategory']} is not valid.")
        query = build_query(caller, params)
        if params.get("EventCategory") == "insight":
            return {"Events": []}  # Dockyard has no CloudTrail Insights
        await asyncio.to_thread(self.trail.flush)
        try:
            events, token = await asyncio.to_thread(self.trail.lookup, query)
        except InvalidToken as exc:
            raise InvalidNextTokenException("Invalid NextToken") from exc
        result: dict[str, Any] = {"Events": [lookup_event_shape(e) for e in events]}
        if token:
            result["NextToken"] = token
        return result


def _check_max_results(body: bytes) -> None:
    """CloudTrail answers a MaxResults out of range with its own error, before the model's checks."""
    try:
        document = wire_json.loads(body or b"{}")
    except ValueError:
        return  # the model's parse reports it
    limit = document.get("MaxResults") if isinstance(document, dict) else None
    if isinstance(limit, int) and not isinstance(limit, bool) and not 1 <= limit <= MAX_RESULTS:
        raise InvalidMaxResultsException(f"Value {limit} for MaxResults is invalid. It must be between 1 and 50.")


def _request_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """LookupEvents' parameters as CloudTrail records them (camelCase, times as text)."""
    recorded: dict[str, Any] = {}
    for key, value in params.items():
        name = key[:1].lower() + key[1:]
        if isinstance(value, datetime):
            value = value.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif key == "LookupAttributes":
            value = [{"attributeKey": a["AttributeKey"], "attributeValue": a["AttributeValue"]} for a in value]
        recorded[name] = value
    return recorded
