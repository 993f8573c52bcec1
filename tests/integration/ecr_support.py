"""Helpers for the ECR API tests: unique repositories, and images pushed through the layer API
(InitiateLayerUpload / UploadLayerPart / CompleteLayerUpload, then PutImage)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from tests.support.images import Blob, BuiltImage

PART_SIZE = 5 * 1024 * 1024


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def repository(ecr: Any, prefix: str, **create: Any) -> Iterator[str]:
    """A fresh repository, deleted (with its images) afterwards."""
    name = unique(prefix)
    ecr.create_repository(repositoryName=name, **create)
    try:
        yield name
    finally:
        with contextlib.suppress(ClientError):
            ecr.delete_repository(repositoryName=name, force=True)


def upload_blob(ecr: Any, repository_name: str, blob: Blob, part_size: int = PART_SIZE) -> dict[str, Any]:
    """Upload `blob` with the layer API in parts of `part_size`; returns CompleteLayerUpload's answer."""
    upload_id = ecr.initiate_layer_upload(repositoryName=repository_name)["uploadId"]
    data = blob.data
    for first in range(0, len(data), part_size):
        part = data[first : first + part_size]
        ecr.upload_layer_part(
            repositoryName=repository_name,
            uploadId=upload_id,
            partFirstByte=first,
            partLastByte=first + len(part) - 1,
            layerPartBlob=part,
        )
    return ecr.complete_layer_upload(repositoryName=repository_name, uploadId=upload_id, layerDigests=[blob.digest])


def upload_missing_blobs(ecr: Any, repository_name: str, image: BuiltImage) -> None:
    """Upload the blobs of `image` the repository does not have yet."""
    digests = [blob.digest for blob in image.blobs]
    answer = ecr.batch_check_layer_availability(repositoryName=repository_name, layerDigests=digests)
    available = {layer["layerDigest"] for layer in answer["layers"] if layer["layerAvailability"] == "AVAILABLE"}
    for blob in image.blobs:
        if blob.digest not in available:
            upload_blob(ecr, repository_name, blob)


def push(ecr: Any, repository_name: str, image: BuiltImage, tag: str | None = None) -> dict[str, Any]:
    """Push `image` through the ECR API; returns PutImage's `image`."""
    upload_missing_blobs(ecr, repository_name, image)
    arguments: dict[str, Any] = {"repositoryName": repository_name, "imageManifest": image.manifest.data.decode()}
    if tag is not None:
        arguments["imageTag"] = tag
    return ecr.put_image(**arguments)["image"]


def error_of(excinfo: Any) -> tuple[str, str]:
    """(code, message) of a botocore ClientError."""
    error = excinfo.value.response["Error"]
    return error["Code"], error["Message"]
