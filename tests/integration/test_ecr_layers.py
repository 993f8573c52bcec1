"""The layer API through boto3 and the AWS CLI: an image uploaded layer by layer, put with PutImage
and pulled with podman; every refusal the part rules and upload states call for; download URLs."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.integration.ecr_support import PART_SIZE, error_of, push, repository, upload_blob
from tests.support.clients import AwsCli, Boto3Clients, Podman
from tests.support.images import Blob, build_image, random_bytes, sha256_digest
from tests.support.server import DockyardServer

MiB = 1024 * 1024
INVALID_PART = (
    "The layer part size is not valid, or the first byte specified is not consecutive to the last byte of a "
    "previous layer part upload."
)


@pytest.fixture
def ecr(boto3_client: Boto3Clients) -> Any:
    return boto3_client("ecr")


@pytest.fixture
def repo(ecr: Any) -> Iterator[str]:
    with repository(ecr, "layers") as name:
        yield name


def test_layer_api_round_trip_pulled_by_podman(
    ecr: Any, repo: str, tmp_path: Path, aws: AwsCli, podman: Podman, dockyard_server: DockyardServer
) -> None:
    # Random content does not compress: the first layer needs two parts (5 MiB and the rest).
    image = build_image(tmp_path / "layout", "v1", [6 * MiB, {"etc/motd": b"uploaded part by part\n"}])
    assert image.layers[0].size > PART_SIZE

    for blob in image.blobs:
        done = upload_blob(ecr, repo, blob)
        assert done["layerDigest"] == blob.digest and done["repositoryName"] == repo
    available = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[b.digest for b in image.blobs])
    assert available["failures"] == []
    assert [(layer["layerDigest"], layer["layerSize"]) for layer in available["layers"]] == [
        (blob.digest, blob.size) for blob in image.blobs
    ]
    ecr.put_image(repositoryName=repo, imageManifest=image.manifest.data.decode(), imageTag="v1")
    # Once an image refers to them, ECR knows their media types.
    known = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[image.config.digest])["layers"]
    assert known[0]["mediaType"] == image.config.media_type

    podman.login(dockyard_server.registry, aws("ecr", "get-login-password"))
    reference = f"{dockyard_server.registry}/{repo}:v1"
    podman("pull", reference)
    inspected = podman.inspect(reference)
    assert inspected["Digest"] == image.digest
    assert inspected["RootFS"]["Layers"] == [layer.diff_id for layer in image.layers]


def test_layer_commands_with_the_cli(aws: AwsCli, ecr: Any, repo: str, tmp_path: Path) -> None:
    image = build_image(tmp_path / "layout", "cli", [3000])
    for blob in image.blobs:
        started = aws("ecr", "initiate-layer-upload", "--repository-name", repo)
        assert started["partSize"] == 10 * MiB
        upload_id = started["uploadId"]
        assert str(uuid.UUID(upload_id)) == upload_id
        part = tmp_path / "part"
        part.write_bytes(blob.data)
        uploaded = aws("ecr", "upload-layer-part", "--repository-name", repo, "--upload-id", upload_id,
                       "--part-first-byte", "0", "--part-last-byte", str(blob.size - 1),
                       "--layer-part-blob", f"fileb://{part}")  # fmt: skip
        assert uploaded["lastByteReceived"] == blob.size - 1 and uploaded["uploadId"] == upload_id
        completed = aws("ecr", "complete-layer-upload", "--repository-name", repo, "--upload-id", upload_id,
                        "--layer-digests", blob.digest)  # fmt: skip
        assert completed["layerDigest"] == blob.digest
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(image.manifest.data)
    aws("ecr", "put-image", "--repository-name", repo, "--image-tag", "cli", "--image-manifest", f"file://{manifest}")

    checked = aws("ecr", "batch-check-layer-availability", "--repository-name", repo,
                  "--layer-digests", image.layers[0].digest, "sha256:" + "0" * 64, "bogus")  # fmt: skip
    assert [layer["layerAvailability"] for layer in checked["layers"]] == ["AVAILABLE", "UNAVAILABLE"]
    assert checked["failures"] == [
        {"layerDigest": "bogus", "failureCode": "InvalidLayerDigest", "failureReason": "Invalid layer digest"}
    ]

    url = aws("ecr", "get-download-url-for-layer", "--repository-name", repo, "--layer-digest", image.layers[0].digest)
    assert url["layerDigest"] == image.layers[0].digest
    fetched = requests.get(url["downloadUrl"], timeout=30)  # no credentials at all
    assert fetched.status_code == 200 and fetched.content == image.layers[0].data


def test_download_urls(ecr: Any, repo: str, tmp_path: Path, dockyard_server: DockyardServer) -> None:
    image = build_image(tmp_path / "layout", "v1", [4096])
    push(ecr, repo, image, "v1")
    answer = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=image.layers[0].digest)
    url = answer["downloadUrl"]
    assert url.startswith(f"http://{dockyard_server.registry}/layers/")
    head = requests.head(url, timeout=30)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(image.layers[0].size)
    assert hashlib.sha256(requests.get(url, timeout=30).content).hexdigest() == image.layers[0].digest[7:]

    forged = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    refused = requests.get(forged, timeout=30)
    assert refused.status_code == 403 and "<Code>AccessDenied</Code>" in refused.text

    unknown_digest = "sha256:" + "1" * 64
    with pytest.raises(ClientError) as unknown:
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=unknown_digest)
    assert error_of(unknown) == (
        "LayersNotFoundException",
        f"The layer with digest '{unknown_digest}' does not exist within the repository with name '{repo}' "
        f"in the registry with id '{dockyard_server.account_id}'",
    )

    # A layer no image refers to is in the repository, but not to be downloaded.
    loose = Blob("application/octet-stream", b"loose bytes")
    upload_blob(ecr, repo, loose)
    with pytest.raises(ClientError) as inaccessible:
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=loose.digest)
    assert error_of(inaccessible) == (
        "LayerInaccessibleException",
        "The specified layer is not available because it is not associated with an image. "
        "Unassociated image layers may be cleaned up at any time.",
    )


def test_upload_refusals(ecr: Any, repo: str, dockyard_server: DockyardServer) -> None:
    account = dockyard_server.account_id
    missing_id = str(uuid.uuid4())
    with pytest.raises(ClientError) as not_found:
        ecr.upload_layer_part(
            repositoryName=repo, uploadId=missing_id, partFirstByte=0, partLastByte=0, layerPartBlob=b"x"
        )
    assert error_of(not_found) == (
        "UploadNotFoundException",
        f"The upload with id '{missing_id}' does not exist in the repository with name '{repo}' "
        f"in the registry with id '{account}'",
    )

    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    with pytest.raises(ClientError) as empty:
        ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[sha256_digest(b"")])
    assert error_of(empty) == ("EmptyUploadException", "The specified layer upload does not contain any layer parts.")

    small = random_bytes(MiB, "small part")
    ecr.upload_layer_part(
        repositoryName=repo, uploadId=upload_id, partFirstByte=0, partLastByte=MiB - 1, layerPartBlob=small
    )
    with pytest.raises(ClientError) as out_of_order:
        ecr.upload_layer_part(
            repositoryName=repo, uploadId=upload_id, partFirstByte=5, partLastByte=9, layerPartBlob=b"12345"
        )
    assert error_of(out_of_order) == ("InvalidLayerPartException", INVALID_PART)
    assert out_of_order.value.response["lastValidByteReceived"] == MiB - 1
    assert out_of_order.value.response["uploadId"] == upload_id
    with pytest.raises(ClientError) as mismatch:
        ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[sha256_digest(b"other")])
    assert error_of(mismatch) == (
        "InvalidLayerException",
        "The layer digest calculation performed by Amazon ECR upon receipt of the image layer does not match "
        "the digest specified.",
    )

    # A part under 5 MiB followed by another is only refused when the upload completes, as the
    # model has it (LayerPartTooSmallException belongs to CompleteLayerUpload).
    small_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    for first, part in ((0, small), (MiB, b"!")):
        ecr.upload_layer_part(
            repositoryName=repo,
            uploadId=small_id,
            partFirstByte=first,
            partLastByte=first + len(part) - 1,
            layerPartBlob=part,
        )
    with pytest.raises(ClientError) as too_small:
        ecr.complete_layer_upload(repositoryName=repo, uploadId=small_id, layerDigests=[sha256_digest(small + b"!")])
    assert error_of(too_small) == (
        "LayerPartTooSmallException",
        "All layer parts except the last part should be at least 5MB",
    )

    big_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    too_big = b"\0" * (10 * MiB + 1)
    with pytest.raises(ClientError) as oversized:
        ecr.upload_layer_part(
            repositoryName=repo, uploadId=big_id, partFirstByte=0, partLastByte=len(too_big) - 1, layerPartBlob=too_big
        )
    assert error_of(oversized) == ("InvalidLayerPartException", INVALID_PART)
    with pytest.raises(ClientError) as wrong_length:
        ecr.upload_layer_part(
            repositoryName=repo, uploadId=big_id, partFirstByte=0, partLastByte=9, layerPartBlob=b"short"
        )
    assert error_of(wrong_length) == ("InvalidLayerPartException", INVALID_PART)


def test_completing_a_layer_the_repository_has(ecr: Any, repo: str, dockyard_server: DockyardServer) -> None:
    blob = Blob("application/octet-stream", b"twice")
    upload_blob(ecr, repo, blob)
    with pytest.raises(ClientError) as exists:
        upload_blob(ecr, repo, blob)
    assert error_of(exists) == (
        "LayerAlreadyExistsException",
        f"The layer with digest '{blob.digest}' already exists in the repository with name '{repo}' "
        f"in the registry with id '{dockyard_server.account_id}'",
    )


def test_layer_calls_on_a_missing_repository(ecr: Any, dockyard_server: DockyardServer) -> None:
    name = "layers-nowhere"
    calls = [
        lambda: ecr.initiate_layer_upload(repositoryName=name),
        lambda: ecr.batch_check_layer_availability(repositoryName=name, layerDigests=["sha256:" + "2" * 64]),
        lambda: ecr.get_download_url_for_layer(repositoryName=name, layerDigest="sha256:" + "2" * 64),
    ]
    for call in calls:
        with pytest.raises(ClientError) as missing:
            call()
        assert error_of(missing) == (
            "RepositoryNotFoundException",
            f"The repository with name '{name}' does not exist in the registry with id '{dockyard_server.account_id}'",
        )
