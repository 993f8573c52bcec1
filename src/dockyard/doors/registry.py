"""The registry door: the OCI Distribution API v1.1 under /v2/, HTTP Basic with an ECR token.

It parses, authenticates, calls the core and renders OCI responses; nothing else. Every response
under /v2/ (errors, unknown paths and refused methods included) carries the API version header
and, when it is an error, the spec's JSON error document."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from dockyard.auth.tokens import parse_basic_auth
from dockyard.core.errors import (
    AccessDeniedException,
    BlobUnknown,
    DigestInvalid,
    DockyardError,
    ImageDigestDoesNotMatchException,
    ImageNotFoundException,
    ImageTagAlreadyExistsException,
    LayersNotFoundException,
    LimitExceededException,
    ManifestInvalid,
    RangeInvalid,
    ReferencedImagesNotFoundException,
    RepositoryNotFoundException,
    StorageBusy,
    StorageFull,
    UnableToGetUpstreamImageException,
    UnableToGetUpstreamLayerException,
    UploadNotFoundException,
)
from dockyard.core.identity.authorization import TokenRejected
from dockyard.core.identity.caller import Caller
from dockyard.core.identity.registry_callers import registry_caller
from dockyard.core.paging import encode_token
from dockyard.core.registry import blobs, images, negotiation, pull_through, repositories, uploads
from dockyard.core.registry.manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    ManifestError,
    is_digest,
    validate_digest,
)
from dockyard.core.services import Services
from dockyard.doors.bodies import CLOSE, BodyTooLarge, read_body
from dockyard.doors.origin import with_origin
from dockyard.doors.ranges import RangeNotSatisfiable, requested_range
from dockyard.doors.throttle import REGISTRY_THROTTLED_CODE, REGISTRY_THROTTLED_STATUS, Throttled
from dockyard.observe.context import admit

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}
TAG_PATTERN = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.")
# Every method a route answers itself, so that a wrong one gets a spec error rather than Starlette's.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]
# Content-Range of a chunk, as the distribution spec writes it ("<first>-<last>"), with the
# RFC 9110 forms clients also send ("bytes=<first>-<last>", "bytes <first>-<last>/<total>").
CONTENT_RANGE = re.compile(r"(?:bytes[ =])?([0-9]+)-([0-9]+)(?:/(?:[0-9]+|\*))?")
NUMBER = re.compile(r"[0-9]{1,18}")
# An SQL LIMIT must stay within int64; no listing gets near this anyway.
MAX_PAGE = 2**31
MAX_CATALOG_PAGE = 1000

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
    ImageDigestDoesNotMatchException: (400, "DIGEST_INVALID"),
    RangeInvalid: (416, "BLOB_UPLOAD_INVALID"),
    ImageTagAlreadyExistsException: (400, "TAG_INVALID"),
    AccessDeniedException: (403, "DENIED"),
    LimitExceededException: (403, "DENIED"),
    StorageFull: (StorageFull.oci_status, "UNAVAILABLE"),
    StorageBusy: (StorageBusy.oci_status, "UNAVAILABLE"),
    UnableToGetUpstreamImageException: (404, "MANIFEST_UNKNOWN"),
    UnableToGetUpstreamLayerException: (404, "BLOB_UNKNOWN"),
}

Handler = Callable[[Request, Caller, str], Awaitable[Response]]


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
    status, code = _OCI_CODES.get(type(exc), (exc.status, "DENIED" if exc.status == 403 else "UNSUPPORTED"))
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
        caller = await registry_caller(svc, password, region)
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
    caller = with_origin(caller, request)
    if not await admit(request, caller, registry_id=account):
        raise Throttled()
    return caller, account


def _allow(request: Request, *methods: str) -> None:
    allowed = list(methods) + (["HEAD"] if "GET" in methods and "HEAD" not in methods else [])
    if request.method not in allowed:
        raise RegistryError(
            405,
            "UNSUPPORTED",
            f"{request.method} is not supported on {request.url.path}",
            headers={"Allow": ", ".join(allowed)},
        )


def _name(request: Request) -> str:
    name = request.path_params["name"]
    if not repositories.valid_name(name):
        raise RegistryError(400, "NAME_INVALID", f"invalid repository name {name!r}", {"name": name})
    return name


def _reference(request: Request) -> str:
    """A manifest reference: a digest (400 when malformed) or a tag. A malformed tag is refused
    for a PUT (400 TAG_INVALID); anything else simply finds no manifest by that name (404)."""
    reference = request.path_params["reference"]
    if is_digest(reference):
        return _digest(reference)
    if not TAG_PATTERN.fullmatch(reference):
        if request.method == "PUT":
            raise RegistryError(400, "TAG_INVALID", f"invalid tag {reference!r}", {"tag": reference})
        raise RegistryError(404, "MANIFEST_UNKNOWN", f"manifest unknown: {reference!r} is not a valid tag")
    return reference


def _digest(value: str | None) -> str:
    if not value:
        raise RegistryError(400, "DIGEST_INVALID", "a digest is required")
    try:
        return validate_digest(value)
    except ManifestError as exc:
        raise RegistryError(400, "DIGEST_INVALID", f"invalid digest {value!r}", exc.detail) from exc


def _is_valid_digest(value: str) -> bool:
    try:
        validate_digest(value)
    except ManifestError:
        return False
    return True


def _page_size(request: Request, ceiling: int) -> int | None:
    raw = request.query_params.get("n")
    if raw is None:
        return None
    if not NUMBER.fullmatch(raw):
        raise RegistryError(400, "UNSUPPORTED", f"invalid number of results requested: {raw!r}", {"n": raw})
    return min(int(raw), ceiling)


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


def _upload_headers(name: str, upload: uploads.Upload) -> dict[str, str]:
    """Where an upload is and how far it got: Range is "0-<last byte>", "0-0" before any byte."""
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload.id}",
        "Range": f"0-{max(upload.size - 1, 0)}",
        "Docker-Upload-UUID": upload.id,
    }


def _link(path: str, params: dict[str, str]) -> str:
    return f'<{path}?{urlencode(params)}>; rel="next"'


class _BlobFile(FileResponse):
    """A blob from local disk. Servers with `http.response.pathsend` (granian) send the file
    themselves; on others Starlette reads it in a thread chunk by chunk, and a bigger chunk than
    its 64 KiB means a sixteenth of the thread hops (memory: one chunk per pull in flight)."""

    chunk_size = 1024 * 1024


def _blob_file(path: Path, digest: str, size: int, headers: dict[str, str]) -> Response:
    """The whole blob at `path`, `size` bytes as checked. Without a stat FileResponse makes its
    own in a worker thread: a hand-over to the thread pool and back on every pull, for a stat that
    costs microseconds here (stat_blob has just read the same inode)."""
    try:
        stat_result = path.stat()
    except FileNotFoundError:
        # Removed since it was checked (garbage collection): as absent as a blob whose data is gone.
        raise blobs.BlobDamaged(digest, "missing", size, None) from None
    return _BlobFile(path, headers=headers, media_type="application/octet-stream", stat_result=stat_result)


def _blob_created(name: str, digest: str) -> Response:
    headers = API_VERSION_HEADER | {
        "Location": f"/v2/{name}/blobs/{digest}",
        "Docker-Content-Digest": digest,
        "Content-Length": "0",
    }
    return Response(status_code=201, headers=headers)


def _content_range(request: Request) -> tuple[int, int] | None:
    """The chunk's (first, last) byte from Content-Range; None without one. A range that cannot
    be read, or that disagrees with Content-Length, is a RangeInvalid (416)."""
    value = request.headers.get("content-range")
    if value is None:
        return None
    match = CONTENT_RANGE.fullmatch(value.strip())
    if not match or int(match[2]) < int(match[1]):
        raise RangeInvalid(f"invalid Content-Range {value!r}: expected <first byte>-<last byte>")
    first, last = int(match[1]), int(match[2])
    length = _content_length(request)
    if length is not None and last - first + 1 != length:
        raise RangeInvalid(f"Content-Range {value!r} spans {last - first + 1} bytes, Content-Length says {length}")
    return first, last


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length", "").strip()
    return int(value) if NUMBER.fullmatch(value) else None


def _manifest_kind(media_type: str) -> str:
    return {
        OCI_INDEX: "OCI index",
        OCI_MANIFEST: "OCI manifest",
        DOCKER_MANIFEST_LIST: "Docker manifest list",
        DOCKER_MANIFEST: "Docker manifest",
    }.get(media_type, "manifest")


def _not_acceptable(reference: str, image: images.StoredImage, accept: list[str]) -> RegistryError:
    kind = _manifest_kind(image.media_type)
    return RegistryError(
        404,
        "MANIFEST_UNKNOWN",
        f"{kind} found for {reference}, but the Accept header ({', '.join(accept)}) does not allow "
        f"{image.media_type}: add it to Accept to pull this manifest",
        {"mediaType": image.media_type, "accept": accept},
    )


def _etag_matches(request: Request, digest: str) -> bool:
    wanted = request.headers.get("if-none-match")
    if not wanted:
        return False
    return any(tag.strip() in (digest, f'"{digest}"', "*") for tag in wanted.split(","))


async def _read_manifest(request: Request) -> bytes:
    """A manifest PUT's body, refused with 413 past the 4 MiB ECR allows (the distribution spec's
    status for a manifest too large), before more than that is held."""
    try:
        return await read_body(request, images.MAX_MANIFEST_SIZE)
    except BodyTooLarge as exc:
        raise RegistryError(
            413, "SIZE_INVALID", f"manifest exceeds the {exc.limit} byte limit", headers=CLOSE
        ) from None


class RegistryDoor:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def routes(self) -> list[Route]:
        def route(path: str, handler: Handler) -> Route:
            return Route(path, self._wrap(handler), methods=ALL_METHODS)

        return [
            route("/v2", self.base),
            route("/v2/", self.base),
            route("/v2/_catalog", self.catalog),
            route("/v2/{name:path}/tags/list", self.tags_list),
            route("/v2/{name:path}/manifests/{reference}", self.manifest),
            route("/v2/{name:path}/referrers/{digest}", self.referrers),
            route("/v2/{name:path}/blobs/uploads/", self.start_upload),
            route("/v2/{name:path}/blobs/uploads/{upload_id}", self.upload),
            route("/v2/{name:path}/blobs/{digest}", self.blob),
            route("/v2/{path:path}", self.unknown),
        ]

    def _wrap(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                caller, account = await authenticate(self.svc, request)
                return await handler(request, caller, account)
            except RegistryError as exc:
                return error_response(exc.status, exc.code, exc.message, exc.detail, exc.headers)
            except Throttled as exc:
                return error_response(REGISTRY_THROTTLED_STATUS, REGISTRY_THROTTLED_CODE, exc.message)
            except DockyardError as exc:
                return _render(exc)

        return endpoint

    async def unknown(self, request: Request, caller: Caller, account: str) -> Response:
        raise RegistryError(404, "UNSUPPORTED", f"no such endpoint: {request.url.path}")

    async def base(self, request: Request, caller: Caller, account: str) -> Response:
        _allow(request, "GET")
        return Response("{}", 200, headers=API_VERSION_HEADER, media_type="application/json")

    async def catalog(self, request: Request, caller: Caller, account: str) -> Response:
        _allow(request, "GET")
        limit = _page_size(request, MAX_CATALOG_PAGE)
        last = request.query_params.get("last")
        names: list[str] = []
        token = encode_token(last) if last else None
        wanted = limit if limit is not None else MAX_CATALOG_PAGE
        while len(names) < wanted:
            page = await repositories.describe_repositories(
                self.svc, caller, account, max_results=min(MAX_CATALOG_PAGE, wanted - len(names)), next_token=token
            )
            names.extend(r["repositoryName"] for r in page["repositories"])
            token = page.get("nextToken")
            if not token:
                break
        headers = dict(API_VERSION_HEADER)
        if token and limit and names:
            headers["Link"] = _link("/v2/_catalog", {"n": str(limit), "last": names[-1]})
        return Response(json.dumps({"repositories": names}), 200, headers=headers, media_type="application/json")

    async def tags_list(self, request: Request, caller: Caller, account: str) -> Response:
        _allow(request, "GET")
        name = _name(request)
        limit = _page_size(request, MAX_PAGE)
        last = request.query_params.get("last")
        # One more than asked tells whether a next page exists (and so whether to send Link).
        fetch = None if limit is None else limit + 1
        repo, names = await images.list_tags(self.svc, caller, account, name, fetch, last)
        headers = dict(API_VERSION_HEADER)
        if limit is not None and len(names) > limit:
            names = names[:limit]
            if names:  # n=0 answers an empty list and no Link
                headers["Link"] = _link(f"/v2/{name}/tags/list", {"n": str(limit), "last": names[-1]})
        body = json.dumps({"name": repo.name, "tags": names})
        return Response(body, 200, headers=headers, media_type="application/json")

    async def manifest(self, request: Request, caller: Caller, account: str) -> Response:
        _allow(request, "GET", "PUT", "DELETE")
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
        _, image = await images.get_manifest(self.svc, caller, account, name, reference, record_pull=False)
        image = await self._negotiate(request, caller, account, name, reference, image)
        headers = API_VERSION_HEADER | {"Docker-Content-Digest": image.digest, "ETag": f'"{image.digest}"'}
        if _etag_matches(request, image.digest):
            return Response(status_code=304, headers=headers)
        if request.method == "GET":
            await images.record_pull_time(self.svc, caller, account, image)
        headers["Content-Length"] = str(len(image.manifest))
        body = image.manifest if request.method == "GET" else None
        return Response(body, 200, headers=headers, media_type=image.media_type)

    async def _negotiate(
        self, request: Request, caller: Caller, account: str, name: str, reference: str, image: images.StoredImage
    ) -> images.StoredImage:
        """The manifest to answer with, given what the client's Accept header allows."""
        accept = request.headers.getlist("accept")
        served = await negotiation.negotiate(self.svc, caller, account, name, reference, image, accept)
        if served is None:
            raise _not_acceptable(reference, image, accept)
        return served

    async def _put_manifest(
        self, request: Request, caller: Caller, account: str, name: str, reference: str
    ) -> Response:
        data = await _read_manifest(request)
        content_type = request.headers.get("content-type")
        digest = reference if is_digest(reference) else None
        tag = None if digest else reference
        _, manifest = await images.put_manifest(
            self.svc, caller, account, name, data, content_type, tag=tag, digest=digest
        )
        headers = API_VERSION_HEADER | {
            "Location": f"/v2/{name}/manifests/{manifest.digest}",
            "Docker-Content-Digest": manifest.digest,
            "Content-Length": "0",
        }
        if manifest.subject is not None:
            headers["OCI-Subject"] = manifest.subject.digest
        return Response(status_code=201, headers=headers)

    async def referrers(self, request: Request, caller: Caller, account: str) -> Response:
        _allow(request, "GET")
        name = _name(request)
        digest = _digest(request.path_params["digest"])
        artifact_type = request.query_params.get("artifactType") or None
        descriptors = await images.referrers(self.svc, caller, account, name, digest, artifact_type)
        headers = dict(API_VERSION_HEADER)
        if artifact_type:
            headers["OCI-Filters-Applied"] = "artifactType"
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors})
        return Response(body, 200, headers=headers, media_type=OCI_INDEX)

    async def blob(self, request: Request, caller: Caller, account: str) -> Response:
        _allow(request, "GET", "DELETE")
        name = _name(request)
        digest = _digest(request.path_params["digest"])
        if request.method == "DELETE":
            await blobs.unlink_blob(self.svc, caller, account, name, digest)
            return Response(status_code=202, headers=API_VERSION_HEADER)
        try:
            return await self._serve_blob(request, caller, account, name, digest)
        except blobs.BlobDamaged as exc:
            # 404, as distribution answers for a blob whose data is gone: the registry cannot serve
            # it, a client retrying (as it would on a 5xx) cannot change that, and a push's HEAD
            # must find it absent so that it uploads the blob again, which repairs it.
            raise RegistryError(404, "BLOB_UNKNOWN", exc.message, {"digest": digest, "damage": exc.damage}) from exc

    async def _serve_blob(self, request: Request, caller: Caller, account: str, name: str, digest: str) -> Response:
        # A HEAD is how a push asks which blobs it may skip: ECR's layer check, which keeps the
        # link it relies on from garbage collection until the manifest is put.
        head = request.method == "HEAD"
        action = "ecr:BatchCheckLayerAvailability" if head else "ecr:GetDownloadUrlForLayer"
        headers = API_VERSION_HEADER | {
            "Docker-Content-Digest": digest,
            "Accept-Ranges": "bytes",
            "ETag": f'"{digest}"',
        }
        # On local files stat_blob checks the file's size against the metadata before anything
        # is sent (the server sends a FileResponse's file itself, unchecked, with pathsend).
        try:
            _, size = await blobs.stat_blob(self.svc, caller, account, name, digest, action, refresh_link=head)
        except (BlobUnknown, RepositoryNotFoundException) as exc:
            # A miss in a pull through cache's repository streams the blob from its upstream.
            if head or isinstance(exc, blobs.BlobDamaged):
                raise
            pulled = await pull_through.pull_blob(self.svc, caller, account, name, digest)
            if pulled is None:
                raise
            if pulled.size is None and "range" in request.headers:
                # No range can be placed in bytes of unknown length: the fetch runs to its end
                # (its digest checked), then the stored blob answers.
                await pull_through.finish(pulled, name, digest, account)
                return await self._serve_blob(request, caller, account, name, digest)
            return _pulled_response(request, pulled, headers)
        if head:
            return Response(
                status_code=200, headers=headers | {"Content-Length": str(size)}, media_type="application/octet-stream"
            )
        location = await self.svc.blobs.download_url(digest)
        if location is not None:
            # As ECR does: the client fetches the layer from the object store, which answers Range itself.
            return Response(status_code=307, headers=headers | {"Location": location})
        try:
            window = requested_range(request.headers.get("range"), size)
        except RangeNotSatisfiable as exc:
            raise RegistryError(416, "SIZE_INVALID", str(exc), headers=exc.headers) from None
        if window is not None:
            return StreamingResponse(
                await blobs.open_stream(self.svc, digest, size, window.first, window.end),
                206,
                headers=headers | window.headers,
                media_type="application/octet-stream",
            )
        path = self.svc.blobs.local_path(digest)
        # FileResponse would answer a Range header itself; one we chose to ignore gets the whole blob.
        if path is not None and "range" not in request.headers:
            return _blob_file(path, digest, size, headers)
        return StreamingResponse(
            await blobs.open_stream(self.svc, digest, size),
            headers=headers | {"Content-Length": str(size)},
            media_type="application/octet-stream",
        )

    async def start_upload(self, request: Request, caller: Caller, account: str) -> Response:
        _allow(request, "POST")
        name = _name(request)
        params = request.query_params
        digest = _digest(params["digest"]) if "digest" in params else None
        mount, source = params.get("mount"), params.get("from")
        # Only with `from`: this registry does not look for the blob in other repositories by itself.
        # A mount that cannot happen (bad digest or name, no access, no such blob) is an upload.
        if (
            mount
            and source
            and _is_valid_digest(mount)
            and repositories.valid_name(source)
            and await blobs.mount_blob(self.svc, caller, account, name, mount, source) is not None
        ):
            return _blob_created(name, mount)
        upload = await uploads.start_upload(self.svc, caller, account, name)
        if digest is None:
            return Response(status_code=202, headers=API_VERSION_HEADER | _upload_headers(name, upload))
        try:
            await uploads.complete(self.svc, caller, account, name, upload.id, digest, _body(request))
        except DockyardError:
            await uploads.cancel(self.svc, caller, account, name, upload.id)
            raise
        return _blob_created(name, digest)

    async def upload(self, request: Request, caller: Caller, account: str) -> Response:
        _allow(request, "GET", "PATCH", "PUT", "DELETE")
        name = _name(request)
        upload_id = request.path_params["upload_id"]
        if request.method in ("GET", "HEAD"):
            upload = await uploads.find_upload(self.svc, caller, account, name, upload_id, "ecr:UploadLayerPart")
            return Response(status_code=204, headers=API_VERSION_HEADER | _upload_headers(name, upload))
        if request.method == "DELETE":
            await uploads.cancel(self.svc, caller, account, name, upload_id)
            return Response(status_code=204, headers=API_VERSION_HEADER)
        digest = _digest(request.query_params.get("digest")) if request.method == "PUT" else None
        try:
            span = _content_range(request)
            first, last = span if span else (None, None)
            if digest is None:
                upload = await uploads.append(
                    self.svc, caller, account, name, upload_id, _body(request), start=first, last_byte=last
                )
                return Response(status_code=202, headers=API_VERSION_HEADER | _upload_headers(name, upload))
            await uploads.complete(
                self.svc, caller, account, name, upload_id, digest, _body(request), start=first, last_byte=last
            )
        except RangeInvalid as exc:
            # The spec's 416 says where the upload stands, so the client can go on from there.
            upload = await uploads.find_upload(self.svc, caller, account, name, upload_id, "ecr:UploadLayerPart")
            raise RegistryError(416, "BLOB_UPLOAD_INVALID", exc.message, headers=_upload_headers(name, upload)) from exc
        return _blob_created(name, digest)


def _pulled_response(request: Request, pulled: pull_through.BlobPull, headers: dict[str, str]) -> Response:
    """A blob on its way from a pull through cache's upstream: whole, or the range asked (sent as
    its bytes arrive). Without a known size, whole and without Accept-Ranges."""
    if pulled.size is None:
        del headers["Accept-Ranges"]
        return StreamingResponse(pulled.chunks, headers=headers, media_type="application/octet-stream")
    try:
        window = requested_range(request.headers.get("range"), pulled.size)
    except RangeNotSatisfiable as exc:
        raise RegistryError(416, "SIZE_INVALID", str(exc), headers=exc.headers) from None
    if window is None:
        length = {"Content-Length": str(pulled.size)}
        return StreamingResponse(pulled.chunks, headers=headers | length, media_type="application/octet-stream")
    chunks = pull_through.byte_range(pulled.chunks, window.first, window.end)
    return StreamingResponse(chunks, 206, headers=headers | window.headers, media_type="application/octet-stream")
