"""The layer API: ECR's direct path for clients that do not speak the registry protocol.

BatchCheckLayerAvailability, InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload and
GetDownloadUrlForLayer are the registry door's blob HEAD, upload POST/PATCH/PUT and blob GET:
the same uploads, blobs and authorisations (core/uploads.py, core/blobs.py), with ECR's stricter
rules on top (part sizes, empty uploads, existing layers).

GetDownloadUrlForLayer hands out a URL on this server, ``/layers/<token>``, that anyone holding
it may GET without signing until it expires, as ECR's pre-signed S3 URLs work. The token names
the blob and the expiry and is signed with the server secret, so any node can check it.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.auth.tokens import check, sign
from dockyard.core.errors import (
    AccessDeniedException,
    DigestInvalid,
    InvalidLayerException,
    LayerAlreadyExistsException,
    LayerInaccessibleException,
    LayersNotFoundException,
)
from dockyard.core.identity.caller import Caller
from dockyard.core.registry import archive, uploads
from dockyard.core.registry.blobs import linked_size, linked_sizes, local_damage
from dockyard.core.registry.manifests import DigestError, validate_digest
from dockyard.core.registry.repositories import Repository, open_repository
from dockyard.core.services import Services
from dockyard.store import schema

DOWNLOAD_PURPOSE = "ecr-layer-download"
# The API reference's wording: ECR's own message for a digest that does not match is not on record.
INVALID_LAYER = (
    "The layer digest calculation performed by Amazon ECR upon receipt of the image layer does not match "
    "the digest specified."
)
_TOKEN_VERSION = 1


def layers_not_found(repo: Repository, digest: str) -> LayersNotFoundException:
    return LayersNotFoundException(
        f"The layer with digest '{digest}' does not exist within the repository with name '{repo.name}' "
        f"in the registry with id '{repo.account_id}'"
    )


def _is_digest(value: str) -> bool:
    try:
        validate_digest(value)
    except DigestError:
        return False
    return True


# --- BatchCheckLayerAvailability --------------------------------------------------------------


async def _media_types(conn: AsyncConnection, repo: Repository, digests: list[str]) -> dict[str, str]:
    """The media type the repository's manifests give each blob (ECR reports it when it knows it)."""
    refs, images = schema.image_references, schema.images
    rows = await conn.execute(
        select(images.c.manifest)
        .join(refs, refs.c.image_id == images.c.id)
        .where(images.c.repository_id == repo.id, refs.c.digest.in_(digests), refs.c.kind == "blob")
        .distinct()
    )
    found: dict[str, str] = {}
    for (manifest,) in rows:
        document = json.loads(manifest)
        for descriptor in [document.get("config") or {}, *(document.get("layers") or [])]:
            digest = descriptor.get("digest")
            if digest in digests and isinstance(descriptor.get("mediaType"), str):
                found.setdefault(digest, descriptor["mediaType"])
    return found


async def batch_check_layer_availability(
    svc: Services, caller: Caller, account_id: str, repository: str, digests: list[str]
) -> dict[str, Any]:
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:BatchCheckLayerAvailability")
        wanted = list(dict.fromkeys(d for d in digests if d and _is_digest(d)))
        sizes = await linked_sizes(conn, repo, wanted) if wanted else {}
        media_types = await _media_types(conn, repo, list(sizes)) if sizes else {}
        archived = await archive.archived_among(conn, list(sizes)) if sizes else set()
    layers: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for digest in dict.fromkeys(digests):
        if not digest:
            failures.append(
                {"layerDigest": digest, "failureCode": "MissingLayerDigest", "failureReason": "Missing layer digest"}
            )
        elif not _is_digest(digest):
            failures.append(
                {
                    "layerDigest": digest,
                    "failureCode": "InvalidLayerDigest",
                    "failureReason": "Invalid layer digest",
                }
            )
        elif digest in archived:
            layers.append({"layerDigest": digest, "layerAvailability": "ARCHIVED", "layerSize": sizes[digest]})
        elif digest in sizes and local_damage(svc, digest, sizes[digest]) is None:
            layers.append(
                {
                    "layerDigest": digest,
                    "layerAvailability": "AVAILABLE",
                    "layerSize": sizes[digest],
                    "mediaType": media_types.get(digest),
                }
            )
        else:
            # Unknown, or known but its data missing or damaged: the client uploads it, which repairs it.
            layers.append({"layerDigest": digest, "layerAvailability": "UNAVAILABLE"})
    return {"layers": layers, "failures": failures}


# --- uploads ----------------------------------------------------------------------------------


async def initiate_layer_upload(svc: Services, caller: Caller, account_id: str, repository: str) -> dict[str, Any]:
    upload = await uploads.start_upload(svc, caller, account_id, repository)
    return {"uploadId": upload.id, "partSize": uploads.MAX_PART_SIZE}


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def upload_layer_part(
    svc: Services,
    caller: Caller,
    account_id: str,
    repository: str,
    upload_id: str,
    first_byte: int,
    last_byte: int,
    data: bytes,
) -> dict[str, Any]:
    if last_byte >= first_byte and len(data) != last_byte - first_byte + 1:
        upload = await uploads.find_upload(svc, caller, account_id, repository, upload_id, "ecr:UploadLayerPart")
        raise uploads.invalid_part(upload)
    upload = await uploads.append(
        svc,
        caller,
        account_id,
        repository,
        upload_id,
        _one(data),
        start=first_byte,
        last_byte=last_byte,
        part_rules=True,
    )
    return {
        "registryId": upload.repository.account_id,
        "repositoryName": upload.repository.name,
        "uploadId": upload.id,
        "lastByteReceived": upload.size - 1,
    }


async def complete_layer_upload(
    svc: Services, caller: Caller, account_id: str, repository: str, upload_id: str, digests: list[str]
) -> dict[str, Any]:
    upload = await uploads.find_upload(svc, caller, account_id, repository, upload_id, "ecr:CompleteLayerUpload")
    repo = upload.repository
    uploads.check_part_sizes(upload)
    digest = digests[0]
    if not _is_digest(digest):
        raise InvalidLayerException(INVALID_LAYER)
    async with svc.db.read() as conn:
        size = await linked_size(conn, repo, digest)
    # A layer whose stored data is damaged is uploaded again (BatchCheckLayerAvailability said
    # UNAVAILABLE): completing that upload puts the data back.
    if size is not None and local_damage(svc, digest, size) is None:
        await uploads.cancel(svc, caller, account_id, repository, upload.id)
        raise LayerAlreadyExistsException(
            f"The layer with digest '{digest}' already exists in the repository with name '{repo.name}' "
            f"in the registry with id '{repo.account_id}'"
        )
    try:
        await uploads.complete(svc, caller, account_id, repository, upload.id, digest, refuse_empty=True)
    except DigestInvalid:
        raise InvalidLayerException(INVALID_LAYER) from None
    return {
        "registryId": repo.account_id,
        "repositoryName": repo.name,
        "uploadId": upload.id,
        "layerDigest": digest,
    }


# --- downloads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    digest: str
    size: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def download_token(secret: bytes, digest: str, expires_at: int) -> str:
    payload = _b64(json.dumps([_TOKEN_VERSION, digest, expires_at], separators=(",", ":")).encode())
    return f"{payload}.{sign(payload.encode('ascii'), secret, purpose=DOWNLOAD_PURPOSE)}"


async def _is_referenced(conn: AsyncConnection, repo: Repository, digest: str) -> bool:
    refs, images = schema.image_references, schema.images
    row = await conn.execute(
        select(refs.c.image_id)
        .join(images, images.c.id == refs.c.image_id)
        .where(images.c.repository_id == repo.id, refs.c.digest == digest)
        .limit(1)
    )
    return row.first() is not None


async def get_download_url_for_layer(
    svc: Services, caller: Caller, account_id: str, repository: str, digest: str
) -> dict[str, Any]:
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:GetDownloadUrlForLayer")
        size = await linked_size(conn, repo, digest)
    if size is None:
        size = await _pull_through(svc, caller, account_id, repo, digest)
    async with svc.db.read() as conn:
        if not await archive.servable(svc, digest, await archive.location_of(svc, digest)):
            raise archive.archived_layer(repo, digest)
        damaged = local_damage(svc, digest, size)
        if damaged is not None:
            raise LayersNotFoundException(damaged.message)
        if not await _is_referenced(conn, repo, digest) and not await _pull_through_pending(svc, repo, digest):
            raise LayerInaccessibleException(
                "The specified layer is not available because it is not associated with an image. "
                "Unassociated image layers may be cleaned up at any time."
            )
    # With --s3-redirect, a presigned object URL, as ECR hands out presigned S3 URLs.
    url = await svc.blobs.download_url(digest)
    if url is None:
        expires_at = int(time.time()) + svc.settings.layer_url_lifetime_seconds
        token = download_token(svc.token_secret, digest, expires_at)
        url = f"{svc.settings.scheme}://{svc.settings.public_host}/layers/{token}"
    return {"downloadUrl": url, "layerDigest": digest}


async def _pull_through(svc: Services, caller: Caller, account_id: str, repo: Repository, digest: str) -> int:
    """A layer the repository lacks, fetched whole from its pull through cache's upstream (when
    a rule covers the repository); else ECR's LayersNotFoundException."""
    from dockyard.core.registry import pull_through  # noqa: PLC0415 - it imports this module

    size = await pull_through.ensure_blob(svc, caller, account_id, repo, digest)
    if size is None:
        raise layers_not_found(repo, digest)
    return size


async def _pull_through_pending(svc: Services, repo: Repository, digest: str) -> bool:
    """Whether an image a pull through cache fetched (stored once its layers are in) names the layer."""
    from dockyard.core.registry import pull_through  # noqa: PLC0415 - it imports this module

    return await pull_through.pending_reference(svc, repo, digest)


def read_download_token(secret: bytes, token: str, now: float) -> str:
    """The digest a download token names, once its signature and expiry check out."""
    payload, _, signature = token.partition(".")
    if not payload.isascii() or not check(payload.encode("ascii"), signature, secret, purpose=DOWNLOAD_PURPOSE):
        raise AccessDeniedException("The request signature does not match")
    try:
        version, digest, expires_at = json.loads(_unb64(payload))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise AccessDeniedException("The request signature does not match") from exc
    if version != _TOKEN_VERSION or not isinstance(digest, str) or not isinstance(expires_at, int):
        raise AccessDeniedException("The request signature does not match")
    if now >= expires_at:
        raise AccessDeniedException("Request has expired")
    return digest


async def open_download(svc: Services, token: str) -> Download:
    """The blob a GetDownloadUrlForLayer URL names, while the URL is valid."""
    digest = read_download_token(svc.token_secret, token, time.time())
    async with svc.db.read() as conn:
        size = (await conn.execute(select(schema.blobs.c.size).where(schema.blobs.c.digest == digest))).scalar()
    if size is None:
        raise LayersNotFoundException(f"The layer with digest '{digest}' no longer exists")
    damaged = local_damage(svc, digest, size)
    if damaged is not None:
        raise damaged
    return Download(digest, size)
