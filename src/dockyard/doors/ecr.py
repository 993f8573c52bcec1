"""The ECR door: AWS JSON 1.1 (`X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Operation>`).

botocore's service model is the contract: input is validated against it and output shaped by it.
Each operation below only maps the request's members onto a core call. The door also serves
the URLs GetDownloadUrlForLayer hands out (``GET /layers/<token>``), which need no signature."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from dockyard.auth.sigv4 import SignatureError
from dockyard.core.errors import AccessDeniedException, DockyardError
from dockyard.core.identity import authorization
from dockyard.core.identity.caller import Caller
from dockyard.core.operations import creation_templates, registry_settings
from dockyard.core.registry import (
    archive,
    blobs,
    image_details,
    layers,
    repositories,
    repository_policies,
    repository_settings,
)
from dockyard.core.registry.repositories import RepositorySettings
from dockyard.core.scanning import scans
from dockyard.core.services import Services
from dockyard.doors.aws_auth import authenticate
from dockyard.doors.aws_json import REQUEST_TOO_LARGE_EXCEPTION, ServiceModel, ValidationError, error_body
from dockyard.doors.bodies import ECR_BODY_LIMIT, BodyTooLarge, read_body, refused
from dockyard.doors.ecr_account import ACCOUNT_OPERATIONS
from dockyard.doors.ecr_lifecycle import LIFECYCLE_OPERATIONS
from dockyard.doors.ecr_pull_through import PULL_THROUGH_OPERATIONS
from dockyard.doors.ecr_referrers import REFERRERS_OPERATIONS
from dockyard.doors.ecr_replication import REPLICATION_OPERATIONS
from dockyard.doors.ecr_signing import SIGNING_OPERATIONS
from dockyard.doors.ranges import RangeNotSatisfiable, requested_range
from dockyard.doors.throttle import Throttled
from dockyard.observe.context import report, request_id_of

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
CONTENT_TYPE = "application/x-amz-json-1.1"

Params = dict[str, Any]
Operation = Callable[[Services, Caller, Params], Awaitable[dict[str, Any]]]


def _registry(caller: Caller, p: Params) -> str:
    return p.get("registryId") or caller.account_id


def _filter(p: Params, member: str) -> str | None:
    return (p.get("filter") or {}).get(member)


# --- repositories -----------------------------------------------------------------------------


async def create_repository(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    encryption = p.get("encryptionConfiguration") or {}
    settings = RepositorySettings(
        image_tag_mutability=p.get("imageTagMutability", "MUTABLE"),
        exclusion_filters=p.get("imageTagMutabilityExclusionFilters") or [],
        scan_on_push=bool((p.get("imageScanningConfiguration") or {}).get("scanOnPush", False)),
        encryption_type=encryption.get("encryptionType", "AES256"),
        kms_key=encryption.get("kmsKey"),
        tags=p.get("tags") or [],
    )
    repository = await repositories.create_repository(svc, caller, _registry(caller, p), p["repositoryName"], settings)
    return {"repository": repository}


async def describe_repositories(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await repositories.describe_repositories(
        svc, caller, _registry(caller, p), p.get("repositoryNames"), p.get("maxResults"), p.get("nextToken")
    )


async def delete_repository(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    repository = await repositories.delete_repository(
        svc, caller, _registry(caller, p), p["repositoryName"], bool(p.get("force", False))
    )
    return {"repository": repository}


async def get_authorization_token(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await authorization.get_authorization_token(
        svc, caller, p.get("registryIds"), session_expires_at=caller.session_expires_at
    )


async def put_image_tag_mutability(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await repository_settings.put_image_tag_mutability(
        svc,
        caller,
        _registry(caller, p),
        p["repositoryName"],
        p["imageTagMutability"],
        p.get("imageTagMutabilityExclusionFilters"),
    )


async def put_image_scanning_configuration(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    scan_on_push = bool(p["imageScanningConfiguration"].get("scanOnPush", False))
    return await repository_settings.put_image_scanning_configuration(
        svc, caller, _registry(caller, p), p["repositoryName"], scan_on_push
    )


async def tag_resource(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await repository_settings.tag_resource(svc, caller, p["resourceArn"], p["tags"])


async def untag_resource(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await repository_settings.untag_resource(svc, caller, p["resourceArn"], p["tagKeys"])


async def list_tags_for_resource(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await repository_settings.list_tags_for_resource(svc, caller, p["resourceArn"])


# --- images -----------------------------------------------------------------------------------


async def list_images(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await image_details.list_images(
        svc,
        caller,
        _registry(caller, p),
        p["repositoryName"],
        tag_status=_filter(p, "tagStatus"),
        image_status=_filter(p, "imageStatus"),
        max_results=p.get("maxResults"),
        next_token=p.get("nextToken"),
    )


async def describe_images(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await image_details.describe_images(
        svc,
        caller,
        _registry(caller, p),
        p["repositoryName"],
        image_ids=p.get("imageIds"),
        tag_status=_filter(p, "tagStatus"),
        image_status=_filter(p, "imageStatus"),
        max_results=p.get("maxResults"),
        next_token=p.get("nextToken"),
    )


async def batch_get_image(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await image_details.batch_get_image(
        svc, caller, _registry(caller, p), p["repositoryName"], p["imageIds"], p.get("acceptedMediaTypes")
    )


async def update_image_storage_class(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await archive.update_image_storage_class(
        svc, caller, _registry(caller, p), p["repositoryName"], p["imageId"], p["targetStorageClass"]
    )


async def batch_delete_image(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await image_details.batch_delete_image(svc, caller, _registry(caller, p), p["repositoryName"], p["imageIds"])


async def put_image(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await image_details.put_image(
        svc,
        caller,
        _registry(caller, p),
        p["repositoryName"],
        p["imageManifest"],
        media_type=p.get("imageManifestMediaType"),
        tag=p.get("imageTag"),
        digest=p.get("imageDigest"),
    )


# --- layers -----------------------------------------------------------------------------------


async def batch_check_layer_availability(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await layers.batch_check_layer_availability(
        svc, caller, _registry(caller, p), p["repositoryName"], p["layerDigests"]
    )


async def initiate_layer_upload(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await layers.initiate_layer_upload(svc, caller, _registry(caller, p), p["repositoryName"])


async def upload_layer_part(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await layers.upload_layer_part(
        svc,
        caller,
        _registry(caller, p),
        p["repositoryName"],
        p["uploadId"],
        p["partFirstByte"],
        p["partLastByte"],
        p["layerPartBlob"],
    )


async def complete_layer_upload(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await layers.complete_layer_upload(
        svc, caller, _registry(caller, p), p["repositoryName"], p["uploadId"], p["layerDigests"]
    )


async def get_download_url_for_layer(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await layers.get_download_url_for_layer(
        svc, caller, _registry(caller, p), p["repositoryName"], p["layerDigest"]
    )


# --- policies ---------------------------------------------------------------------------------


async def set_repository_policy(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await repository_policies.set_repository_policy(
        svc, caller, _registry(caller, p), p["repositoryName"], p["policyText"], bool(p.get("force", False))
    )


async def get_repository_policy(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await repository_policies.get_repository_policy(svc, caller, _registry(caller, p), p["repositoryName"])


async def delete_repository_policy(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await repository_policies.delete_repository_policy(svc, caller, _registry(caller, p), p["repositoryName"])


async def put_registry_policy(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await repository_policies.put_registry_policy(svc, caller, p["policyText"])


async def get_registry_policy(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await repository_policies.get_registry_policy(svc, caller)


async def delete_registry_policy(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await repository_policies.delete_registry_policy(svc, caller)


async def describe_registry(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await registry_settings.describe_registry(svc, caller)


# --- repository creation templates ------------------------------------------------------------


async def create_repository_creation_template(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await creation_templates.create_template(svc, caller, p)


async def update_repository_creation_template(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await creation_templates.update_template(svc, caller, p)


async def delete_repository_creation_template(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await creation_templates.delete_template(svc, caller, p["prefix"])


async def describe_repository_creation_templates(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await creation_templates.describe_templates(
        svc, caller, p.get("prefixes"), p.get("maxResults"), p.get("nextToken")
    )


# --- image scanning ---------------------------------------------------------------------------


async def start_image_scan(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await scans.start_image_scan(svc, caller, _registry(caller, p), p["repositoryName"], p["imageId"])


async def describe_image_scan_findings(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await scans.describe_image_scan_findings(
        svc, caller, _registry(caller, p), p["repositoryName"], p["imageId"], p.get("maxResults"), p.get("nextToken")
    )


async def put_registry_scanning_configuration(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await scans.put_registry_scanning_configuration(svc, caller, p.get("scanType"), p.get("rules"))


async def get_registry_scanning_configuration(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await scans.get_registry_scanning_configuration(svc, caller)


async def batch_get_repository_scanning_configuration(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await scans.batch_get_repository_scanning_configuration(svc, caller, caller.account_id, p["repositoryNames"])


OPERATIONS: dict[str, Operation] = {
    "CreateRepository": create_repository,
    "DescribeRepositories": describe_repositories,
    "DeleteRepository": delete_repository,
    "GetAuthorizationToken": get_authorization_token,
    "PutImageTagMutability": put_image_tag_mutability,
    "PutImageScanningConfiguration": put_image_scanning_configuration,
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListTagsForResource": list_tags_for_resource,
    "ListImages": list_images,
    "DescribeImages": describe_images,
    "UpdateImageStorageClass": update_image_storage_class,
    "BatchGetImage": batch_get_image,
    "BatchDeleteImage": batch_delete_image,
    "PutImage": put_image,
    "BatchCheckLayerAvailability": batch_check_layer_availability,
    "InitiateLayerUpload": initiate_layer_upload,
    "UploadLayerPart": upload_layer_part,
    "CompleteLayerUpload": complete_layer_upload,
    "GetDownloadUrlForLayer": get_download_url_for_layer,
    "SetRepositoryPolicy": set_repository_policy,
    "GetRepositoryPolicy": get_repository_policy,
    "DeleteRepositoryPolicy": delete_repository_policy,
    "PutRegistryPolicy": put_registry_policy,
    "GetRegistryPolicy": get_registry_policy,
    "DeleteRegistryPolicy": delete_registry_policy,
    "DescribeRegistry": describe_registry,
    "CreateRepositoryCreationTemplate": create_repository_creation_template,
    "UpdateRepositoryCreationTemplate": update_repository_creation_template,
    "DeleteRepositoryCreationTemplate": delete_repository_creation_template,
    "DescribeRepositoryCreationTemplates": describe_repository_creation_templates,
    "StartImageScan": start_image_scan,
    "DescribeImageScanFindings": describe_image_scan_findings,
    "PutRegistryScanningConfiguration": put_registry_scanning_configuration,
    "GetRegistryScanningConfiguration": get_registry_scanning_configuration,
    "BatchGetRepositoryScanningConfiguration": batch_get_repository_scanning_configuration,
    **LIFECYCLE_OPERATIONS,
    **PULL_THROUGH_OPERATIONS,
    **ACCOUNT_OPERATIONS,
    **REFERRERS_OPERATIONS,
    **SIGNING_OPERATIONS,
    **REPLICATION_OPERATIONS,
}


def _s3_error(status: int, code: str, message: str) -> Response:
    """Layer URLs answer as the pre-signed S3 URLs ECR hands out do: an XML error document."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
    )
    return Response(body, status, media_type="application/xml")


def _invalid_range(exc: RangeNotSatisfiable) -> Response:
    """S3's answer to a range past the object's end: InvalidRange, naming the range and the size."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error><Code>InvalidRange</Code><Message>The requested range is not satisfiable</Message>"
        f"<RangeRequested>{escape(exc.value)}</RangeRequested><ActualObjectSize>{exc.size}</ActualObjectSize></Error>"
    )
    return Response(body, 416, headers=exc.headers, media_type="application/xml")


class EcrDoor:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.model = ServiceModel("ecr")

    def _respond(self, status: int, body: bytes, request_id: str) -> Response:
        headers = {"x-amzn-RequestId": request_id}
        return Response(body, status, headers=headers, media_type=CONTENT_TYPE)

    def _error(self, status: int, code: str, message: str, request_id: str, **fields: Any) -> Response:
        return self._respond(status, error_body(code, message, **fields), request_id)

    async def handle(self, request: Request, target: str) -> Response:
        request_id = request_id_of(request)
        try:
            body = await read_body(request, ECR_BODY_LIMIT)
        except BodyTooLarge as exc:
            return refused(self._error(413, REQUEST_TOO_LARGE_EXCEPTION, exc.message, request_id))
        try:
            caller = await authenticate(self.svc, request, body, ("ecr",))
        except (SignatureError, Throttled) as exc:
            error = exc.render("json")
            return self._error(error.status, error.code, error.message, request_id)
        name = target.removeprefix(TARGET_PREFIX)
        operation = OPERATIONS.get(name)
        if not target.startswith(TARGET_PREFIX) or operation is None:
            return self._respond(400, error_body("UnknownOperationException", None), request_id)  # AWS sends no message
        try:
            params = self.model.parse_input(name, body)
            report(request, params=params)
            result = await operation(self.svc, caller, params)
            report(request, response=result)
        except ValidationError as exc:
            return self._respond(exc.status, exc.body(), request_id)
        except DockyardError as exc:
            # The core's errors carry the registry door's HTTP statuses too; here AWS JSON's rule
            # holds: 400 for client errors, 500 for faults.
            status = self.model.error_status(exc.code)
            return self._error(status, exc.code, exc.message, request_id, **exc.fields)
        return self._respond(200, self.model.serialize_output(name, result), request_id)

    async def download_layer(self, request: Request) -> Response:
        """GET (or HEAD) of a GetDownloadUrlForLayer URL: the blob's bytes, no signature needed.
        A GET answers a Range as the registry door's blob GET does, whatever the blob store."""
        try:
            download = await layers.open_download(self.svc, request.path_params["token"])
        except AccessDeniedException as exc:
            return _s3_error(403, "AccessDenied", exc.message)
        except DockyardError as exc:
            return _s3_error(404, "NoSuchKey", exc.message)
        headers = {"Content-Length": str(download.size), "Accept-Ranges": "bytes"}
        media_type = "application/octet-stream"
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers, media_type=media_type)
        requested = request.headers.get("range")
        try:
            window = requested_range(requested, download.size)
        except RangeNotSatisfiable as exc:
            return _invalid_range(exc)
        # open_download checked a local file's size against the metadata (the server may send a
        # FileResponse's file itself); an object store's bytes are checked as they stream.
        # FileResponse would answer a Range header itself: it only serves requests without one.
        path = self.svc.blobs.local_path(download.digest)
        if path is not None and requested is None:
            # The stat here spares FileResponse its own in a thread (a hand-over per download), and a
            # file garbage collection removed since the check is as absent as any missing key.
            try:
                stat_result = path.stat()
            except FileNotFoundError:
                return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
            return FileResponse(
                path, headers={"Accept-Ranges": "bytes"}, media_type=media_type, stat_result=stat_result
            )
        start, end = (0, download.size) if window is None else (window.first, window.end)
        try:
            stream = await blobs.open_stream(self.svc, download.digest, download.size, start, end)
        except DockyardError as exc:
            return _s3_error(404, "NoSuchKey", exc.message)
        if window is None:
            return StreamingResponse(stream, headers=headers, media_type=media_type)
        return StreamingResponse(stream, 206, headers=headers | window.headers, media_type=media_type)
