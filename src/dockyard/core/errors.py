"""Errors raised by the core, named as ECR names them.

The core never knows which door called it: each door renders these in its own wire format
(AWS JSON, AWS Query XML, OCI error JSON, HTML)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DockyardError(Exception):
    """An error a client should see. `code` is the ECR/AWS error type; `status` the HTTP status;
    `fields` the members the error's shape models besides its message (e.g. InvalidLayerPartException's
    lastValidByteReceived)."""

    code = "ServerException"
    status = 400

    def __init__(self, message: str, *, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = dict(fields or {})


def _error(name: str, status: int = 400) -> type[DockyardError]:
    return type(name, (DockyardError,), {"code": name, "status": status})


ServerException = _error("ServerException", 500)
InvalidParameterException = _error("InvalidParameterException")
ValidationException = _error("ValidationException")
RepositoryNotFoundException = _error("RepositoryNotFoundException")
RepositoryAlreadyExistsException = _error("RepositoryAlreadyExistsException")
RepositoryNotEmptyException = _error("RepositoryNotEmptyException")
RepositoryPolicyNotFoundException = _error("RepositoryPolicyNotFoundException")
RegistryPolicyNotFoundException = _error("RegistryPolicyNotFoundException")
LifecyclePolicyNotFoundException = _error("LifecyclePolicyNotFoundException")
LifecyclePolicyPreviewNotFoundException = _error("LifecyclePolicyPreviewNotFoundException")
LifecyclePolicyPreviewInProgressException = _error("LifecyclePolicyPreviewInProgressException")
ImageNotFoundException = _error("ImageNotFoundException")
ImageAlreadyExistsException = _error("ImageAlreadyExistsException")
ImageTagAlreadyExistsException = _error("ImageTagAlreadyExistsException")
ImageDigestDoesNotMatchException = _error("ImageDigestDoesNotMatchException")
ReferencedImagesNotFoundException = _error("ReferencedImagesNotFoundException")
LayersNotFoundException = _error("LayersNotFoundException")
LayerInaccessibleException = _error("LayerInaccessibleException")
LayerAlreadyExistsException = _error("LayerAlreadyExistsException")
LayerPartTooSmallException = _error("LayerPartTooSmallException")
InvalidLayerException = _error("InvalidLayerException")
InvalidLayerPartException = _error("InvalidLayerPartException")
EmptyUploadException = _error("EmptyUploadException")
UploadNotFoundException = _error("UploadNotFoundException")
LimitExceededException = _error("LimitExceededException")
InvalidTagParameterException = _error("InvalidTagParameterException")
TooManyTagsException = _error("TooManyTagsException")
AccessDeniedException = _error("AccessDeniedException")
TemplateNotFoundException = _error("TemplateNotFoundException")
TemplateAlreadyExistsException = _error("TemplateAlreadyExistsException")
UnsupportedImageTypeException = _error("UnsupportedImageTypeException")
ImageArchivedException = _error("ImageArchivedException")
ImageStorageClassUpdateNotSupportedException = _error("ImageStorageClassUpdateNotSupportedException")
PullThroughCacheRuleAlreadyExistsException = _error("PullThroughCacheRuleAlreadyExistsException")
PullThroughCacheRuleNotFoundException = _error("PullThroughCacheRuleNotFoundException")
UnsupportedUpstreamRegistryException = _error("UnsupportedUpstreamRegistryException")
SecretNotFoundException = _error("SecretNotFoundException")
UnableToAccessSecretException = _error("UnableToAccessSecretException")
UnableToDecryptSecretValueException = _error("UnableToDecryptSecretValueException")
UnableToGetUpstreamImageException = _error("UnableToGetUpstreamImageException")
UnableToGetUpstreamLayerException = _error("UnableToGetUpstreamLayerException")


class ManifestInvalid(DockyardError):
    """A manifest that fails the OCI/Docker rules; `oci_code` is what the registry door answers."""

    code = "InvalidParameterException"

    def __init__(self, message: str, oci_code: str = "MANIFEST_INVALID") -> None:
        super().__init__(message)
        self.oci_code = oci_code


class BlobUnknown(DockyardError):
    """A blob that the repository cannot serve (registry door: BLOB_UNKNOWN)."""

    code = "LayersNotFoundException"
    status = 404


class DigestInvalid(DockyardError):
    """Uploaded bytes whose digest does not match the one claimed (registry door: DIGEST_INVALID)."""

    code = "InvalidLayerException"


class RangeInvalid(DockyardError):
    """A chunk that does not continue an upload where it stands (registry door: 416)."""

    code = "InvalidLayerPartException"
    status = 416


class StorageUnavailable(DockyardError):
    """Storage cannot take a write right now, through no fault of the request. The AWS doors answer
    ServerException (a fault: 500); the registry door answers `oci_status` with the OCI code
    UNAVAILABLE (the distribution spec has no code for this; UNAVAILABLE is distribution's own)."""

    code = "ServerException"
    status = 500
    oci_status = 503


class StorageFull(StorageUnavailable):
    """The disk holding the metadata database or the blobs is full (registry door: 507, RFC 4918's
    Insufficient Storage)."""

    oci_status = 507


class StorageBusy(StorageUnavailable):
    """The metadata database stayed locked by another process for longer than a request may wait."""
