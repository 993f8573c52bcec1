"""The account's CloudTrail event history, as the AWS console's "Event history": one lookup
attribute and a time range, newest events first, 50 a page, each event's record on demand.

It runs the CloudTrail door's own LookupEvents (its model checks, its query, and its
authorisation as cloudtrail:LookupEvents for the signed-in principal), so the page can show
exactly what `aws cloudtrail lookup-events` would."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from dockyard.core.errors import DockyardError
from dockyard.doors.aws_json import ValidationError
from dockyard.doors.console.forms import ApiRefused, refusal_of
from dockyard.doors.console.web import Page, Visit

SECTION = "trail"
PAGE_SIZE = 50
ATTRIBUTES = (
    ("EventName", "Event name"),
    ("Username", "User name"),
    ("ResourceName", "Resource name"),
    ("EventSource", "Event source"),
    ("ResourceType", "Resource type"),
    ("AccessKeyId", "AWS access key"),
    ("ReadOnly", "Read-only"),
    ("EventId", "Event ID"),
)
TIME_FORMAT = "%Y-%m-%dT%H:%M"
FIELDS = {"LookupAttributes": "value", "StartTime": "start", "EndTime": "end", "NextToken": "value"}


def _epoch(text: str) -> float | None:
    """A datetime-local value (read as UTC) as epoch seconds; None when empty."""
    if not text:
        return None
    for layout in (TIME_FORMAT, TIME_FORMAT + ":%S"):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    raise ValueError(text)


def _request(key: str, value: str, start: float | None, end: float | None, token: str) -> dict[str, Any]:
    params: dict[str, Any] = {"MaxResults": PAGE_SIZE}
    if value:
        params["LookupAttributes"] = [{"AttributeKey": key, "AttributeValue": value}]
    if start is not None:
        params["StartTime"] = start
    if end is not None:
        params["EndTime"] = end
    if token:
        params["NextToken"] = token
    return params


def _event_view(event: dict[str, Any]) -> dict[str, Any]:
    record = json.loads(event["CloudTrailEvent"])
    return {
        **event,
        "resources": [r["ResourceName"] for r in event.get("Resources") or [] if r.get("ResourceName")],
        "record": json.dumps(record, indent=2, sort_keys=True),
        "error_code": record.get("errorCode"),
    }


async def lookup(visit: Visit, params: dict[str, Any]) -> dict[str, Any]:
    """LookupEvents as the signed-in principal, through the CloudTrail door's own operation."""
    door = visit.request.app.state.operations.cloudtrail
    try:
        checked = door.model.validate_input("LookupEvents", params)
    except ValidationError as exc:
        raise ApiRefused(exc.code, exc.message or exc.code) from None
    result: dict[str, Any] = await door.lookup_events(visit.caller, checked)
    return result


async def event_history(visit: Visit) -> Response:
    key = visit.param("key", "EventName")
    key = key if key in dict(ATTRIBUTES) else "EventName"
    value, start_text, end_text, token = (visit.param(n).strip() for n in ("value", "start", "end", "page"))
    context: dict[str, Any] = {
        "attributes": ATTRIBUTES, "key": key, "value": value, "start": start_text, "end": end_text,
        "events": [], "next_page": None, "paged": bool(token),
    }  # fmt: skip
    field_errors: dict[str, str] = {}
    times: dict[str, float | None] = {}
    for name, text in (("start", start_text), ("end", end_text)):
        try:
            times[name] = _epoch(text)
        except ValueError:
            field_errors[name] = "Enter a date and time such as 2026-01-31T14:30 (UTC)."
    if field_errors:
        return visit.render("trail_events.html", 400, field_errors=field_errors, **context)
    try:
        found = await lookup(visit, _request(key, value, times["start"], times["end"], token))
    except DockyardError as exc:
        if exc.code in ("AccessDeniedException", "AccessDenied"):
            return visit.refused(exc)
        refusal = refusal_of(exc, FIELDS)
        if exc.code == "InvalidTimeRangeException":
            refusal.field_errors["start"] = "The start must be before the end."
        if exc.code == "InvalidNextTokenException":
            refusal.field_errors["value"] = "This page of results has expired: search again."
        return visit.render("trail_events.html", 400, error=refusal.error, field_errors=refusal.field_errors, **context)
    context.update(events=[_event_view(e) for e in found["Events"]], next_page=found.get("NextToken"))
    return visit.render("trail_events.html", **context)


PAGES = [Page("/trail", event_history, section=SECTION)]
