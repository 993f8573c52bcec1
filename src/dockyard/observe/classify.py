"""Which door and operation a request is, from its method, path and headers alone (no body).

Registry requests are named by the ECR action that governs them, as CloudTrail names a docker
push or pull: a manifest GET is BatchGetImage, a blob GET GetDownloadUrlForLayer, and so on."""

from __future__ import annotations

from functools import cache
from typing import NamedTuple
from urllib.parse import unquote

ECR_SOURCE = "ecr.amazonaws.com"
CLOUDTRAIL_TARGET_PREFIX = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101."
SECRETS_MANAGER_TARGET_PREFIX = "secretsmanager."
SECRETS_MANAGER_SOURCE = "secretsmanager.amazonaws.com"
OPS_PATHS = frozenset({"/healthz", "/readyz"})
# The label of every operation outside the catalogue below: the X-Amz-Target header and a query's
# Action are the client's to choose, and each new label value is a new series for every scrape.
UNKNOWN_OPERATION = "unknown"
# Which botocore service models name the operations each AWS door may be asked for.
_DOOR_MODELS = {
    "ecr": ("ecr",),
    "cloudtrail": ("cloudtrail",),
    "secretsmanager": ("secretsmanager",),
    "iam": ("iam",),
    "sts": ("sts",),
    "query": ("iam", "sts"),
}
# Registry operations recorded in the audit trail (the ECR actions of ARCHITECTURE.md's table).
REGISTRY_AUDITED = frozenset(
    {
        "BatchGetImage",
        "BatchCheckLayerAvailability",
        "GetDownloadUrlForLayer",
        "InitiateLayerUpload",
        "UploadLayerPart",
        "CompleteLayerUpload",
        "PutImage",
        "BatchDeleteImage",
        "ListImages",
        "DescribeRepositories",
    }
)


class RegistryPath(NamedTuple):
    repository: str
    kind: str  # manifests, blobs, uploads, tags, referrers, catalog, base
    reference: str  # tag or digest, upload id; "" when the path has none


class Classified(NamedTuple):
    door: str
    operation: str
    source: str
    where: RegistryPath | None = None  # registry requests: what the path names


_MANIFEST_OPERATIONS = {
    "GET": "BatchGetImage",
    "HEAD": "BatchGetImage",
    "PUT": "PutImage",
    "DELETE": "BatchDeleteImage",
}
_BLOB_OPERATIONS = {
    "GET": "GetDownloadUrlForLayer",
    "HEAD": "BatchCheckLayerAvailability",
    "DELETE": "BatchDeleteImage",
}
_UPLOAD_OPERATIONS = {
    "PATCH": "UploadLayerPart",
    "PUT": "CompleteLayerUpload",
    "GET": "UploadLayerPart",
    "DELETE": "UploadLayerPart",
}


REGISTRY_OPERATIONS = frozenset(
    {
        *_MANIFEST_OPERATIONS.values(),
        *_BLOB_OPERATIONS.values(),
        *_UPLOAD_OPERATIONS.values(),
        "InitiateLayerUpload",
        "ListImages",
        "DescribeRepositories",
        "Ping",
    }
)
OPS_OPERATIONS = frozenset(path[1:] for path in OPS_PATHS)


@cache
def _model_operations(door: str) -> frozenset[str]:
    """The operations of `door`'s AWS services, read once from botocore's models."""
    # The doors' own models (read once a process): only a worker's first request to a door pays.
    from dockyard.doors.aws_json import botocore_model

    names: set[str] = set()
    for service in _DOOR_MODELS.get(door, ()):
        names.update(botocore_model(service).operation_names)
    return frozenset(names)


def operation_label(door: str, operation: str) -> str:
    """`operation` as a metric label: itself when the catalogue knows it, else "unknown", so no request
    can add label values (and series) beyond a fixed set."""
    if door == "registry":
        known: frozenset[str] = REGISTRY_OPERATIONS
    elif door == "ops":
        known = OPS_OPERATIONS
    elif door in _DOOR_MODELS:
        known = _model_operations(door)
    else:
        known = frozenset()
    return operation if operation in known else UNKNOWN_OPERATION


def split_registry_path(path: str) -> RegistryPath:
    """Repository name and reference of a /v2/ path; names may contain slashes, so search from the right."""
    rest = path[4:]
    if rest in ("", "/"):
        return RegistryPath("", "base", "")
    if rest == "_catalog":
        return RegistryPath("", "catalog", "")
    if rest.endswith("/tags/list"):
        return RegistryPath(rest[: -len("/tags/list")], "tags", "")
    for marker, kind in (
        ("/blobs/uploads/", "uploads"),
        ("/manifests/", "manifests"),
        ("/referrers/", "referrers"),
        ("/blobs/", "blobs"),
    ):
        index = rest.rfind(marker)
        if index > 0:
            return RegistryPath(rest[:index], kind, unquote(rest[index + len(marker) :]))
    return RegistryPath("", "other", "")


def registry_operation(method: str, where: RegistryPath) -> str:
    kind = where.kind
    if kind == "manifests":
        return _MANIFEST_OPERATIONS.get(method, "")
    if kind == "blobs":
        return _BLOB_OPERATIONS.get(method, "")
    if kind == "uploads":
        if not where.reference:
            return "InitiateLayerUpload" if method == "POST" else ""
        return _UPLOAD_OPERATIONS.get(method, "")
    if kind == "tags":
        return "ListImages"
    if kind == "catalog":
        return "DescribeRepositories"
    if kind == "referrers":
        return "BatchGetImage"
    return "Ping" if kind == "base" else ""


def classify(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> Classified:
    if path.startswith("/v2/") or path == "/v2":
        where = split_registry_path(path)
        return Classified("registry", registry_operation(method, where), ECR_SOURCE, where)
    if path == "/" and method == "POST":
        target = _header(headers, b"x-amz-target")
        if target is not None:
            operation = target.rpartition(".")[2]
            if target.startswith(CLOUDTRAIL_TARGET_PREFIX):
                return Classified("cloudtrail", operation, "cloudtrail.amazonaws.com")
            if target.startswith(SECRETS_MANAGER_TARGET_PREFIX):
                return Classified("secretsmanager", operation, SECRETS_MANAGER_SOURCE)
            return Classified("ecr", operation, ECR_SOURCE)
        # AWS Query (IAM, STS): the Action is in the body, which the door reads and reports.
        service = _signing_service(_header(headers, b"authorization") or "")
        door = service if service in ("iam", "sts") else "query"
        return Classified(door, "", f"{service}.amazonaws.com" if service in ("iam", "sts") else "")
    if path in OPS_PATHS:
        return Classified("ops", path[1:], "")
    if path.startswith("/console"):
        return Classified("console", "", "")
    return Classified("other", "", "")


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _signing_service(authorization: str) -> str:
    """The service named in a SigV4 credential scope: Credential=AKID/date/region/SERVICE/aws4_request."""
    start = authorization.find("Credential=")
    if start < 0:
        return ""
    scope = authorization[start + 11 :].split(",", 1)[0].split("/")
    return scope[3] if len(scope) >= 5 else ""
