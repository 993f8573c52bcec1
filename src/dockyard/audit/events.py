"""CloudTrail events, shaped as CloudTrail records them (the seed's "Logging Amazon ECR API Calls By
Using AWS CloudTrail"; the CloudTrail record contents reference).

Secrets never enter an event: request parameters and response elements pass through `redact`,
and read-only calls record no response elements at all (as CloudTrail does)."""

from __future__ import annotations

import functools
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from dockyard.core.identity.caller import Caller
from dockyard.observe.classify import split_registry_path
from dockyard.observe.context import RequestContext
from dockyard.observe.ids import new_ordered_id
from dockyard.observe.logs import redact

EVENT_VERSION = "1.08"
ECR_SOURCE = "ecr.amazonaws.com"
INTERNAL = "AWS Internal"
READ_ONLY_PREFIXES = ("Get", "Describe", "List", "BatchGet", "BatchCheck", "Lookup", "Simulate")
# STS hands out credentials without changing any resource: CloudTrail marks its calls read-only.
READ_ONLY_SOURCES = frozenset({"sts.amazonaws.com"})
_QUERY_SOURCES = frozenset({"iam.amazonaws.com", "sts.amazonaws.com"})
_RESOURCE_TYPES = {
    "repositoryName": ("AWS::ECR::Repository", "ecr"),
    "userName": ("AWS::IAM::User", "iam"),
    "roleName": ("AWS::IAM::Role", "iam"),
    "groupName": ("AWS::IAM::Group", "iam"),
    "policyArn": ("AWS::IAM::Policy", "iam"),
}


def is_read_only(operation: str, source: str = ECR_SOURCE) -> bool:
    return source in READ_ONLY_SOURCES or operation.startswith(READ_ONLY_PREFIXES)


def event_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def parse_event_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _java_date(epoch: float) -> str:
    """How CloudTrail prints ECR's timestamps inside response elements ("Mar 26, 2020 2:09:59 PM")."""
    moment = datetime.fromtimestamp(epoch, UTC)
    hour = moment.hour % 12 or 12
    return f"{moment:%b} {moment.day}, {moment.year} {hour}:{moment:%M:%S} {'AM' if moment.hour < 12 else 'PM'}"


def _plain(value: Any, key: str = "", *, camel: bool = False) -> Any:
    """JSON-ready copy: timestamps (members named ...At, datetimes) as CloudTrail prints them; with
    `camel`, member names as CloudTrail writes the Query services' (UserName becomes userName)."""
    if isinstance(value, dict):
        return {
            (str(k)[:1].lower() + str(k)[1:] if camel else str(k)): _plain(v, str(k), camel=camel)
            for k, v in value.items()
            if v is not None
        }
    if isinstance(value, list | tuple):
        return [_plain(v, camel=camel) for v in value]
    if isinstance(value, datetime):
        return _java_date(value.timestamp())
    if isinstance(value, float) and key.endswith("At"):
        return _java_date(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value


def user_identity(caller: Caller) -> dict[str, Any]:
    """CloudTrail's userIdentity; shared between events (it is only ever serialised), built once per principal."""
    return _identity(
        caller.type,
        caller.user_id,
        caller.arn,
        caller.account_id,
        caller.access_key_id,
        caller.username,
        caller.role_arn,
    )


@functools.lru_cache(maxsize=1024)
def _identity(
    kind: str,
    user_id: str,
    arn: str,
    account_id: str,
    access_key_id: str | None,
    name: str | None,
    role_arn: str | None,
) -> dict[str, Any]:
    identity: dict[str, Any] = {"type": kind, "principalId": user_id, "arn": arn, "accountId": account_id}
    if access_key_id:
        identity["accessKeyId"] = access_key_id
    if kind == "IAMUser" and name:
        identity["userName"] = name
    if kind == "AssumedRole" and role_arn:
        identity["sessionContext"] = {
            "sessionIssuer": {
                "type": "Role",
                "principalId": user_id.partition(":")[0],
                "arn": role_arn,
                "accountId": account_id,
                "userName": role_arn.rpartition("/")[2],
            },
            "attributes": {"mfaAuthenticated": "false"},
        }
    return identity


def username(event: dict[str, Any]) -> str | None:
    """LookupEvents' Username: the IAM user name, "root", or an assumed role's session name."""
    identity = event.get("userIdentity") or {}
    kind = identity.get("type")
    if kind == "Root":
        return "root"
    if kind == "IAMUser":
        return identity.get("userName")
    if kind == "AssumedRole":
        return str(identity.get("arn", "")).rpartition("/")[2] or None
    return identity.get("userName")


def resources_for(params: dict[str, Any] | None, account_id: str, region: str) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    for key, value in (params or {}).items():
        normal = key[:1].lower() + key[1:]
        if normal not in _RESOURCE_TYPES or not isinstance(value, str):
            continue
        kind, service = _RESOURCE_TYPES[normal]
        if normal == "policyArn":
            arn = value
        elif service == "ecr":
            arn = f"arn:aws:ecr:{region}:{account_id}:repository/{value}"
        else:
            arn = f"arn:aws:iam::{account_id}:{normal[:-4]}/{value}"
        found.append({"accountId": account_id, "type": kind, "ARN": arn})
    return found


def resource_name(resource: dict[str, Any]) -> str:
    arn = str(resource.get("ARN", ""))
    if ":repository/" in arn:
        return arn.partition(":repository/")[2]
    return arn.rpartition("/")[2] or arn


def api_call_event(context: RequestContext) -> dict[str, Any] | None:
    """The event for one API call or registry request; None when it is not audited (no caller)."""
    caller = context.caller
    if caller is None or not context.operation or not context.source:
        return None
    read_only = is_read_only(context.operation, context.source)
    if context.params is not None:
        camel = context.source in _QUERY_SOURCES
        params = redact(_plain(context.params, camel=camel))
        # A read-only call's event carries no response (below): converting one costs as much as
        # the call itself when it lists a hundred images.
        response = redact(_plain(context.response, camel=camel)) if context.response and not read_only else None
    else:
        # The registry door's parameters come from the path and headers: nothing there to hide.
        params = _registry_parameters(context)
        response = None if read_only else _registry_response(context)
    recipient = context.registry_id or caller.account_id
    event: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": user_identity(caller),
        "eventTime": event_time(context.received_at),
        "eventSource": context.source,
        "eventName": context.operation,
        "awsRegion": caller.region,
        "sourceIPAddress": caller.source_ip or INTERNAL,
        "userAgent": caller.user_agent,
    }
    failed = context.status >= 400 or context.throttled
    if failed:
        event["errorCode"] = context.error_code or ("ThrottlingException" if context.throttled else str(context.status))
        event["errorMessage"] = context.error_message or ""
    event["requestParameters"] = params or None
    event["responseElements"] = response if response and not read_only and not failed else None
    event["requestID"] = context.request_id
    event["eventID"] = new_ordered_id()
    event["readOnly"] = read_only
    resources = resources_for(params, recipient, caller.region)
    if resources:
        event["resources"] = resources
    event["eventType"] = "AwsApiCall"
    event["managementEvent"] = True
    event["recipientAccountId"] = recipient
    event["eventCategory"] = "Management"
    return event


def _registry_parameters(context: RequestContext) -> dict[str, Any] | None:
    if context.door != "registry":
        return None
    where = context.where or split_registry_path(context.path)
    registry_id = context.registry_id or (context.caller.account_id if context.caller else "")
    params: dict[str, Any] = {"registryId": registry_id}
    if where.repository:
        params["repositoryName"] = where.repository
    operation = context.operation
    if where.kind == "manifests":
        key = "imageDigest" if where.reference.startswith("sha256:") or ":" in where.reference else "imageTag"
        if operation == "PutImage":
            params[key] = where.reference
        else:
            params["imageIds"] = [{key: where.reference}]
    elif where.kind == "blobs":
        if operation == "BatchCheckLayerAvailability":
            params["layerDigests"] = [where.reference]
        else:
            params["layerDigest"] = where.reference
    elif where.kind == "uploads" and where.reference:
        params["uploadId"] = where.reference
        if operation == "CompleteLayerUpload":
            digest = parse_qs(context.query).get("digest")
            if digest:
                params["layerDigests"] = digest[:1]
    return params


def _registry_response(context: RequestContext) -> dict[str, Any] | None:
    if context.door != "registry" or context.status >= 400:
        return None
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in context.response_headers}
    digest = headers.get("docker-content-digest")
    where = context.where or split_registry_path(context.path)
    base = {"registryId": context.registry_id or (context.caller.account_id if context.caller else "")}
    base["repositoryName"] = where.repository
    operation = context.operation
    if operation == "PutImage":
        image_id = {"imageDigest": digest}
        if not (where.reference.startswith("sha256:") or ":" in where.reference):
            image_id["imageTag"] = where.reference
        return {"image": base | {"imageId": image_id}}
    if operation == "InitiateLayerUpload":
        upload = headers.get("docker-upload-uuid")
        return base | ({"uploadId": upload} if upload else {"layerDigest": digest})
    if operation == "CompleteLayerUpload":
        return base | {"uploadId": where.reference, "layerDigest": digest}
    if operation == "UploadLayerPart":
        return base | {"uploadId": where.reference}
    if operation == "BatchDeleteImage":
        return base | {
            "imageIds": [{"imageDigest" if ":" in where.reference else "imageTag": where.reference}],
            "failures": [],
        }
    return None


# ECR splits the images of one lifecycle run over several events once there are 10 or more (an
# event's size is limited); each event then names at most this many.
IMAGES_PER_LIFECYCLE_EVENT = 9
_COUNT_TYPES = {"imageCountMoreThan": "Image count more than", "sinceImagePushed": "Since image pushed"}


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A policy rule as PolicyExecutionEvent describes it (the console's wording for countType)."""
    selection = rule["selection"]
    described: dict[str, Any] = {
        "tagStatus": selection["tagStatus"].capitalize(),
        "tagPrefixList": selection.get("tagPrefixList", []),
    }
    if "tagPatternList" in selection:
        described["tagPatternList"] = selection["tagPatternList"]
    described["countType"] = _COUNT_TYPES[selection["countType"]]
    if "countUnit" in selection:
        described["countUnit"] = selection["countUnit"]
    described["countNumber"] = selection["countNumber"]
    return {
        "rulePriority": rule["rulePriority"],
        "description": rule.get("description", ""),
        "lifecycleEventSelection": described,
        "action": rule["action"]["type"],
    }


def _lifecycle_action(image: dict[str, Any]) -> dict[str, Any]:
    return {
        "lifecycleEventImage": {
            "digest": image["digest"],
            "tagStatus": "Tagged" if image["tags"] else "Untagged",
            "tagList": list(image["tags"]),
            "pushedAt": int(image["pushedAt"] * 1000),
        },
        "rulePriority": image["rulePriority"],
    }


def lifecycle_events(
    account_id: str,
    region: str,
    repository: str,
    rules: list[dict[str, Any]],
    expired: list[dict[str, Any]],
    evaluated_at: float,
) -> list[dict[str, Any]]:
    """The PolicyExecutionEvents ECR records when a lifecycle policy expires images.

    `rules` are the policy's rules; `expired` holds {"digest", "tags", "pushedAt", "rulePriority"}."""
    arn = f"arn:aws:ecr:{region}:{account_id}:repository/{repository}"
    policy = {
        "lifecycleEventRules": [_lifecycle_rule(rule) for rule in rules],
        "lastEvaluatedAt": 0,
        "policyVersion": 1,
        # Stable for one policy of one repository, as ECR's policyId is.
        "policyId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{arn}#{json.dumps(rules, sort_keys=True)}")),
    }
    events = []
    for start in range(0, len(expired), IMAGES_PER_LIFECYCLE_EVENT):
        chunk = expired[start : start + IMAGES_PER_LIFECYCLE_EVENT]
        events.append(
            {
                "eventVersion": EVENT_VERSION,
                "userIdentity": {"accountId": account_id, "invokedBy": INTERNAL},
                "eventTime": event_time(evaluated_at),
                "eventSource": ECR_SOURCE,
                "eventName": "PolicyExecutionEvent",
                "awsRegion": region,
                "sourceIPAddress": INTERNAL,
                "userAgent": INTERNAL,
                "requestParameters": None,
                "responseElements": None,
                "eventID": new_ordered_id(),
                "readOnly": True,
                "resources": [{"accountId": account_id, "type": "AWS::ECR::Repository", "ARN": arn}],
                "eventType": "AwsServiceEvent",
                "managementEvent": True,
                "recipientAccountId": account_id,
                "serviceEventDetails": {
                    "repositoryName": repository,
                    "lifecycleEventPolicy": policy,
                    "lifecycleEventImageActions": [_lifecycle_action(image) for image in chunk],
                },
                "eventCategory": "Management",
            }
        )
    return events


def console_sign_in_event(
    account_id: str,
    region: str,
    identity: dict[str, Any],
    *,
    success: bool,
    source_ip: str,
    user_agent: str,
    request_id: str | None = None,
) -> dict[str, Any]:
    """A ConsoleLogin event (for the console door): `identity` as `user_identity` builds it, or
    {"type": "IAMUser", "accountId": ..., "userName": ...} for a failed attempt."""
    event: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": identity,
        "eventTime": event_time(time.time()),
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "awsRegion": region,
        "sourceIPAddress": source_ip or INTERNAL,
        "userAgent": user_agent,
    }
    if not success:
        event["errorMessage"] = "Failed authentication"
    event["requestParameters"] = None
    event["responseElements"] = {"ConsoleLogin": "Success" if success else "Failure"}
    event["additionalEventData"] = {"MobileVersion": "No", "MFAUsed": "No"}
    if request_id:
        event["requestID"] = request_id
    event["eventID"] = new_ordered_id()
    event["readOnly"] = False
    event["eventType"] = "AwsConsoleSignIn"
    event["managementEvent"] = True
    event["recipientAccountId"] = account_id
    event["eventCategory"] = "Management"
    return event


IMAGE_SCAN_DETAIL_TYPE = "ECR Image Scan"


def image_scan_event(
    account_id: str,
    region: str,
    repository: str,
    digest: str,
    tags: list[str],
    status: str,
    severity_counts: dict[str, int],
    moment: float,
) -> dict[str, Any]:
    """A finished (or continuously re-evaluated) basic scan, recorded as a service event that carries
    the EventBridge event ECR sends for it ("ECR Image Scan") as its serviceEventDetails."""
    arn = f"arn:aws:ecr:{region}:{account_id}:repository/{repository}"
    event_id = new_ordered_id()
    detail: dict[str, Any] = {"scan-status": status, "repository-name": repository}
    if status == "COMPLETE":
        detail["finding-severity-counts"] = dict(severity_counts)
    detail |= {"image-digest": digest, "image-tags": list(tags)}
    return {
        "eventVersion": EVENT_VERSION,
        "userIdentity": {"accountId": account_id, "invokedBy": INTERNAL},
        "eventTime": event_time(moment),
        "eventSource": ECR_SOURCE,
        "eventName": IMAGE_SCAN_DETAIL_TYPE,
        "awsRegion": region,
        "sourceIPAddress": INTERNAL,
        "userAgent": INTERNAL,
        "requestParameters": None,
        "responseElements": None,
        "eventID": event_id,
        "readOnly": True,
        "resources": [{"accountId": account_id, "type": "AWS::ECR::Repository", "ARN": arn}],
        "eventType": "AwsServiceEvent",
        "managementEvent": True,
        "recipientAccountId": account_id,
        "serviceEventDetails": {
            "version": "0",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, event_id)),
            "detail-type": IMAGE_SCAN_DETAIL_TYPE,
            "source": "aws.ecr",
            "account": account_id,
            "time": event_time(moment),
            "region": region,
            "resources": [arn],
            "detail": detail,
        },
        "eventCategory": "Management",
    }
