"""The registry door: the OCI Distribution API v1.1 under /v2/, HTTP Basic with an ECR token.

It parses, authenticates, calls the core and renders OCI responses; nothing else."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from dockyard.auth.tokens import parse_basic_auth
from dockyard.core import blobs, images, repositories, uploads
from dockyard.core.authorization import TokenRejected, caller_for_password
from dockyard.core.caller import Caller
from dockyard.core.manifests import is_digest, validate_digest
from dockyard.core.paging import encode_token
from dockyard.core.services import Services
from dockyard.doors.origin import with_origin
from dockyard.errors import (
    AccessDeniedException,
    BlobUnknown,
    DigestInvalid,
    DockyardError,
    ImageNotFoundException,
    ImageTagAlreadyExistsException,
    LayersNotFoundException,
    LimitExceededException,
    ManifestInvalid,
    RangeInvalid,
    ReferencedImagesNotFoundException,
    RepositoryNotFoundException,
    UploadNotFoundException,
)

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}
TAG_PATTERN = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

# Core errors as the distribution spec names them: (HTTP status, OCI code).
_OCI_CODES: dict[type[DockyardError], tuple[int, str]] = {
    RepositoryNotFoundException: (404, "NAME_UNKNOWN"),
    ImageNotFoundException: (404, "MANIFEST_UNKNOWN"),
    BlobUnknown: (404, "BLOB_UNKNOWN"),
    UploadNotFoundException: (404, "BLOB_UPLOAD_UNKNOWN"),
    LayersNotFoundException: (400, "MANIFEST_BLOB_UNKNOWN"),
    ReferencedImagesNotFoundException: (400, "MANIFEST_BLOB_UNKNOWN"),
    ManifestInvalid: (400, "MANIFEST_INVALID"),
    DigestInvalid: (400, "DIGEST_INVALID"),
    RangeInvalid: (416, "BLOB_UPLOAD_INVALID"),
    ImageTagAlreadyExistsException: (400, "TAG_INVALID"),
    AccessDeniedException: (403, "DENIED"),
    LimitExceededException: (403, "DENIED"),
}


class RegistryError(Exception):
    def __init__(
        self, status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> Response:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": detail}]})
    return Response(body, status, headers=API_VERSION_HEADER | (headers or {}), media_type="application/json")


def _render(exc: DockyardError) -> Response:
    status, code = _OCI_CODES.get(type(exc), (400, "UNSUPPORTED"))
    if isinstance(exc, ManifestInvalid):
        code = exc.oci_code
    return error_response(status, code, exc.message)


def registry_address(svc: Services, request: Request) -> tuple[str, str]:
    """(account, region) of the registry a request addresses: ECR's <account>.dkr.ecr.<region>.…
    host names address that registry; any other host the default one."""
    match = ECR_HOST.match(request.headers.get("host", ""))
    if match:
        return match["account"], match["region"]
    return svc.settings.account_id, svc.settings.region


def _challenge(svc: Services, request: Request) -> dict[str, str]:
    host = request.headers.get("host", svc.settings.public_host)
    return {"WWW-Authenticate": f'Basic realm="{svc.settings.scheme}://{host}/",service="ecr.amazonaws.com"'}


async def authenticate(svc: Services, request: Request) -> tuple[Caller, str]:
    """The caller and the registry account a request addresses."""
    account, region = registry_address(svc, request)
    credentials = parse_basic_auth(request.headers.get("authorization", ""))
    if credentials is None:
        raise RegistryError(401, "UNAUTHORIZED", "Not Authorized", headers=_challenge(svc, request))
    user, password = credentials
    try:
        if user != "AWS":
            raise TokenRejected("invalid")
        caller = await caller_for_password(svc, password, region)
    except TokenRejected as exc:
        if exc.reason == "expired":
            raise RegistryError(
                403, "DENIED", "Your authorization token has expired. Reauthenticate and try again."
            ) from exc
        if exc.reason == "region":
            raise RegistryError(
                403,
                "DENIED",
                f"Your authorization token is not valid for this registry: it was issued for another region than "
                f"{region}. Authenticate against {region} and try again.",
            ) from exc
        raise RegistryError(401, "UNAUTHORIZED", "Not Authorized", headers=_challenge(svc, request)) from exc
    return with_origin(caller, request), account


def _name(request: Request) -> str:
    name = request.path_params["name"]
    if not repositories.valid_name(name):
        raise RegistryError(400, "NAME_INVALID", f"invalid repository name {name!r}")
    return name


def _reference(request: Request) -> str:
    reference = request.path_params["reference"]
    if is_digest(reference):
        _digest(reference)
    elif not TAG_PATTERN.fullmatch(reference):
        raise RegistryError(400, "TAG_INVALID", f"invalid tag {reference!r}")
    return reference


def _digest(value: str | None) -> str:
    if not value:
        raise RegistryError(400, "DIGEST_INVALID", "a digest is required")
    try:
        return validate_digest(value)
    except Exception as exc:  # noqa: BLE001 - any invalid form answers the same
        raise RegistryError(400, "DIGEST_INVALID", f"invalid digest {value!r}") from exc


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


def _upload_headers(name: str, upload: uploads.Upload) -> dict[str, str]:
    end = upload.size - 1 if upload.size > 0 else 0
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload.id}",
        "Range": f"0-{end}",
        "Docker-Upload-UUID": upload.id,
        "Content-Length": "0",
    }


def _link(path: str, params: dict[str, str]) -> str:
    return f'<{path}?{urlencode(params)}>; rel="next"'


def _page_size(request: Request) -> int | None:
    raw = request.query_params.get("n")
    if raw is None:
        return None
    if not raw.isdigit():
        raise RegistryError(400, "PAGINATION_NUMBER_INVALID", f"invalid number of results requested: {raw!r}")
    return min(int(raw), 1000)


class RegistryDoor:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def routes(self) -> list[Route]:
        def route(path: str, handler: Callable[..., Awaitable[Response]], methods: list[str]) -> Route:
            return Route(path, self._wrap(handler), methods=methods)

        return [
            route("/v2/", self.base, ["GET", "HEAD"]),
            route("/v2/_catalog", self.catalog, ["GET"]),
            route("/v2/{name:path}/tags/list", self.tags_list, ["GET"]),
            route("/v2/{name:path}/manifests/{reference}", self.manifest, ["GET", "HEAD", "PUT", "DELETE"]),
            route("/v2/{name:path}/referrers/{digest}", self.referrers, ["GET"]),
            route("/v2/{name:path}/blobs/uploads/", self.start_upload, ["POST"]),
            route(
                "/v2/{name:path}/blobs/uploads/{upload_id}", self.upload, ["GET", "PATCH", "PUT", "DELETE"]
            ),
            route("/v2/{name:path}/blobs/{digest}", self.blob, ["GET", "HEAD", "DELETE"]),
        ]

    def _wrap(
        self, handler: Callable[[Request, Caller, str], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                caller, account = await authenticate(self.svc, request)
                return await handler(request, caller, account)
            except RegistryError as exc:
                return error_response(exc.status, exc.code, exc.message, exc.detail, exc.headers)
            except DockyardError as exc:
                return _render(exc)

        return endpoint

    async def base(self, request: Request, caller: Caller, account: str) -> Response:
        return Response("{}", 200, headers=API_VERSION_HEADER, media_type="application/json")

    async def catalog(self, request: Request, caller: Caller, account: str) -> Response:
        limit = _page_size(request)
        last = request.query_params.get("last")
        names: list[str] = []
        token = None
        if last:
            token = encode_token(last)
        wanted = limit if limit is not None else 1000
        while len(names) < wanted:
            page = await repositories.describe_repositories(
                self.svc, caller, account, max_results=min(1000, wanted - len(names)), next_token=token
            )
            names.extend(r["repositoryName"] for r in page["repositories"])
            token = page.get("nextToken")
            if not token:
                break
        headers = dict(API_VERSION_HEADER)
        if token and limit is not None and names:
            headers["Link"] = _link("/v2/_catalog", {"n": str(limit), "last": names[-1]})
        return Response(
            json.dumps({"repositories": names}), 200, headers=headers, media_type="application/json"
        )

    async def tags_list(self, request: Request, caller: Caller, account: str) -> Response:
        name = _name(request)
        limit = _page_size(request)
        last = request.query_params.get("last")
        fetch = None if limit is None else limit + 1
        repo, names = await images.list_tags(self.svc, caller, account, name, fetch, last)
        headers = dict(API_VERSION_HEADER)
        if limit is not None and len(names) > limit:
            names = names[:limit]
            headers["Link"] = _link(f"/v2/{name}/tags/list", {"n": str(limit), "last": names[-1]})
        body = json.dumps({"name": repo.name, "tags": names})
        return Response(body, 200, headers=headers, media_type="application/json")

    async def manifest(self, request: Request, caller: Caller, account: str) -> Response:
        name = _name(request)
        reference = _reference(request)
        if request.method in ("GET", "HEAD"):
            return await self._get_manifest(request, caller, account, name, reference)
        if request.method == "PUT":
            return await self._put_manifest(request, caller, account, name, reference)
        await images.delete_reference(self.svc, caller, account, name, reference)
        return Response(status_code=202, headers=API_VERSION_HEADER)

    async def _get_manifest(
        self, request: Request, caller: Caller, account: str, name: str, reference: str
    ) -> Response:
        _, image = await images.get_manifest(
            self.svc, caller, account, name, reference, record_pull=request.method == "GET"
        )
        headers = API_VERSION_HEADER | {
            "Docker-Content-Digest": image.digest,
            "ETag": f'"{image.digest}"',
            "Content-Length": str(len(image.manifest)),
        }
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers, media_type=image.media_type)
        return Response(image.manifest, 200, headers=headers, media_type=image.media_type)

    async def _put_manifest(
        self, request: Request, caller: Caller, account: str, name: str, reference: str
    ) -> Response:
        data = await _read_limited(request, images.MAX_MANIFEST_SIZE)
        content_type = request.headers.get("content-type")
        digest = reference if is_digest(reference) else None
        tag = None if digest else reference
        try:
            _, manifest = await images.put_manifest(
                self.svc, caller, account, name, data, content_type, tag=tag, digest=digest
            )
        except DockyardError as exc:
            if type(exc).__name__ == "ImageDigestDoesNotMatchException":
                raise RegistryError(400, "DIGEST_INVALID", exc.message) from exc
            raise
        headers = API_VERSION_HEADER | {
            "Location": f"/v2/{name}/manifests/{manifest.digest}",
            "Docker-Content-Digest": manifest.digest,
            "Content-Length": "0",
        }
        if manifest.subject is not None:
            headers["OCI-Subject"] = manifest.subject.digest
        return Response(status_code=201, headers=headers)

    async def referrers(self, request: Request, caller: Caller, account: str) -> Response:
        name = _name(request)
        digest = _digest(request.path_params["digest"])
        artifact_type = request.query_params.get("artifactType")
        descriptors = await images.referrers(self.svc, caller, account, name, digest, artifact_type)
        headers = dict(API_VERSION_HEADER)
        if artifact_type:
            headers["OCI-Filters-Applied"] = "artifactType"
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors})
        return Response(body, 200, headers=headers, media_type=OCI_INDEX)

    async def blob(self, request: Request, caller: Caller, account: str) -> Response:
        name = _name(request)
        digest = _digest(request.path_params["digest"])
        if request.method == "DELETE":
            await blobs.unlink_blob(self.svc, caller, account, name, digest)
            return Response(status_code=202, headers=API_VERSION_HEADER)
        action = (
            "ecr:BatchCheckLayerAvailability" if request.method == "HEAD" else "ecr:GetDownloadUrlForLayer"
        )
        _, size = await blobs.stat_blob(self.svc, caller, account, name, digest, action)
        headers = API_VERSION_HEADER | {"Docker-Content-Digest": digest, "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            return Response(
                status_code=200,
                headers=headers | {"Content-Length": str(size)},
                media_type="application/octet-stream",
            )
        path = self.svc.blobs.local_path(digest)
        if path is not None:
            return FileResponse(path, headers=headers, media_type="application/octet-stream")
        return StreamingResponse(
            self.svc.blobs.read(digest),
            headers=headers | {"Content-Length": str(size)},
            media_type="application/octet-stream",
        )

    async def start_upload(self, request: Request, caller: Caller, account: str) -> Response:
        name = _name(request)
        params = request.query_params
        mount, source = params.get("mount"), params.get("from")
        if mount and source:
            digest = _digest(mount)
            if repositories.valid_name(source):
                size = await blobs.mount_blob(self.svc, caller, account, name, digest, source)
                if size is not None:
                    return _blob_created(name, digest)
        upload = await uploads.start_upload(self.svc, caller, account, name)
        if "digest" in params:
            digest = _digest(params["digest"])
            await uploads.complete(self.svc, caller, account, name, upload.id, digest, _body(request))
            return _blob_created(name, digest)
        return Response(status_code=202, headers=API_VERSION_HEADER | _upload_headers(name, upload))

    async def upload(self, request: Request, caller: Caller, account: str) -> Response:
        name = _name(request)
        upload_id = request.path_params["upload_id"]
        if request.method == "GET":
            upload = await uploads.find_upload(
                self.svc, caller, account, name, upload_id, "ecr:UploadLayerPart"
            )
            return Response(status_code=204, headers=API_VERSION_HEADER | _upload_headers(name, upload))
        if request.method == "DELETE":
            await uploads.cancel(self.svc, caller, account, name, upload_id)
            return Response(status_code=204, headers=API_VERSION_HEADER)
        if request.method == "PATCH":
            start = _content_range_start(request)
            upload = await uploads.append(
                self.svc, caller, account, name, upload_id, _body(request), start=start
            )
            return Response(status_code=202, headers=API_VERSION_HEADER | _upload_headers(name, upload))
        digest = _digest(request.query_params.get("digest"))
        await uploads.complete(self.svc, caller, account, name, upload_id, digest, _body(request))
        return _blob_created(name, digest)


def _blob_created(name: str, digest: str) -> Response:
    headers = API_VERSION_HEADER | {
        "Location": f"/v2/{name}/blobs/{digest}",
        "Docker-Content-Digest": digest,
        "Content-Length": "0",
    }
    return Response(status_code=201, headers=headers)


def _content_range_start(request: Request) -> int | None:
    """Where a PATCH says its chunk starts ("start-end", as the distribution spec writes it)."""
    value = request.headers.get("content-range")
    if value is None:
        return None
    match = re.fullmatch(r"(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?", value.strip())
    if not match or int(match[2]) < int(match[1]):
        raise RegistryError(416, "BLOB_UPLOAD_INVALID", f"invalid Content-Range {value!r}")
    length = request.headers.get("content-length")
    if length is not None and int(match[2]) - int(match[1]) + 1 != int(length):
        raise RegistryError(416, "BLOB_UPLOAD_INVALID", "Content-Range does not match Content-Length")
    return int(match[1])


async def _read_limited(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RegistryError(413, "SIZE_INVALID", f"manifest exceeds the {limit} byte limit")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise RegistryError(413, "SIZE_INVALID", f"manifest exceeds the {limit} byte limit")
    return bytes(data)
