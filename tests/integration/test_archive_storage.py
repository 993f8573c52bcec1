"""The archive storage class: UpdateImageStorageClass through the AWS CLI and boto3, archived
images refused on pull (registry API, skopeo, BatchGetImage, layer downloads), their layers moved
to the archive directory (and the hot store shrinking), restore through ACTIVATING to ACTIVE with
byte-identical pulls, lifecycle transition rules, and a server killed in the middle of a move."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest

from tests.integration.ops_support import dockyard
from tests.support.clients import AwsCli, Boto3Clients, Skopeo
from tests.support.registry_http import OCI_MANIFEST, RegistryHttp, digest_of, registry_password
from tests.support.server import DockyardServer, ServerFactory
from tests.support.services import S3Server, s3_server  # noqa: F401 - session fixture

POLL_SECONDS = 120.0
KiB = 1024


def wait_for(condition: Callable[[], Any], what: str, timeout: float = POLL_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def blob_file(root: Path, digest: str) -> Path:
    algorithm, _, hexpart = digest.partition(":")
    return root / "blobs" / algorithm / hexpart[:2] / hexpart


def tree_bytes(root: Path) -> int:
    return sum(entry.stat().st_size for entry in root.rglob("*") if entry.is_file())


def archive_server(factory: ServerFactory, tmp_path: Path, *args: str, **env: str) -> tuple[DockyardServer, Path]:
    cold = tmp_path / "cold-disk"
    server = factory(
        args=["--workers", "2", "--archive-interval", "0.5", "--archive-dir", str(cold), *args],
        env=env,
    )
    return server, cold


def status_of(ecr: Any, repository: str, tag: str) -> str:
    details = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    return str(details[0]["imageStatus"])


def test_archive_refuses_pulls_moves_layers_and_restores(
    dockyard_server_factory: ServerFactory, tmp_path: Path, skopeo: Skopeo
) -> None:
    server, cold = archive_server(dockyard_server_factory, tmp_path)
    hot = server.data_dir / "storage"
    ecr = Boto3Clients(server)("ecr")
    aws = AwsCli(server)
    ecr.create_repository(repositoryName="arc")
    registry = RegistryHttp.for_server(server)
    shared, only_old, only_new = os.urandom(300 * KiB), os.urandom(900 * KiB), os.urandom(200 * KiB)
    old_digest, old_manifest = registry.push_image("arc", "old", [shared, only_old])
    registry.push_image("arc", "new", [shared, only_new])
    hot_before = tree_bytes(hot)

    archived = aws(
        "ecr", "update-image-storage-class", "--repository-name", "arc",
        "--image-id", "imageTag=old", "--target-storage-class", "ARCHIVE",
    )  # fmt: skip
    assert archived["imageStatus"] == "ARCHIVED"
    assert archived["imageId"]["imageTag"] == "old"

    # Described and listed only when the filter asks for archived images.
    default = ecr.describe_images(repositoryName="arc")["imageDetails"]
    assert [d["imageTags"] for d in default] == [["new"]]
    only_archived = ecr.describe_images(repositoryName="arc", filter={"imageStatus": "ARCHIVED"})["imageDetails"]
    assert [(d["imageDigest"], d["imageStatus"]) for d in only_archived] == [(old_digest, "ARCHIVED")]
    assert "lastArchivedAt" in only_archived[0]
    every = ecr.describe_images(repositoryName="arc", filter={"imageStatus": "ANY"})["imageDetails"]
    assert len(every) == 2
    listed = ecr.list_images(repositoryName="arc", filter={"imageStatus": "ARCHIVED"})["imageIds"]
    assert listed == [{"imageDigest": old_digest, "imageTag": "old"}]
    assert {"imageDigest": old_digest, "imageTag": "old"} not in ecr.list_images(repositoryName="arc")["imageIds"]

    # Pulls are refused: the registry API, skopeo, BatchGetImage, StartImageScan.
    refused = registry.request("GET", "/v2/arc/manifests/old")
    assert refused.status_code == 404
    assert refused.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert registry.request("HEAD", f"/v2/arc/manifests/{old_digest}").status_code == 404
    skopeo.login(server.registry, registry_password(server))
    inspected = skopeo.inspect(f"docker://{server.registry}/arc:old", "--raw", check=False)
    assert inspected.returncode != 0 and "manifest unknown" in str(inspected.stderr).lower()
    batch = ecr.batch_get_image(repositoryName="arc", imageIds=[{"imageTag": "old"}, {"imageTag": "new"}])
    assert [i["imageId"]["imageTag"] for i in batch["images"]] == ["new"]
    assert batch["failures"][0]["imageId"] == {"imageTag": "old"}
    assert batch["failures"][0]["failureCode"] == "ImageNotFound"
    with pytest.raises(botocore.exceptions.ClientError) as scan:
        ecr.start_image_scan(repositoryName="arc", imageId={"imageTag": "old"})
    assert scan.value.response["Error"]["Code"] == "ImageArchivedException"

    # The layer only the archived image needs moves to the archive directory; the shared one stays.
    wait_for(lambda: blob_file(cold, digest_of(only_old)).exists(), "the archived layer on the archive disk")
    wait_for(lambda: not blob_file(hot, digest_of(only_old)).exists(), "the archived layer gone from the hot store")
    assert blob_file(cold, digest_of(only_old)).read_bytes() == only_old
    assert blob_file(hot, digest_of(shared)).exists() and not blob_file(cold, digest_of(shared)).exists()
    assert hot_before - tree_bytes(hot) >= len(only_old)
    assert registry.request("GET", f"/v2/arc/blobs/{digest_of(only_old)}").status_code == 404
    assert registry.request("GET", f"/v2/arc/blobs/{digest_of(shared)}").content == shared
    with pytest.raises(botocore.exceptions.ClientError) as layer:
        ecr.get_download_url_for_layer(repositoryName="arc", layerDigest=digest_of(only_old))
    assert layer.value.response["Error"]["Code"] == "LayerInaccessibleException"
    availability = ecr.batch_check_layer_availability(
        repositoryName="arc", layerDigests=[digest_of(only_old), digest_of(shared)]
    )["layers"]
    assert [a["layerAvailability"] for a in availability] == ["ARCHIVED", "AVAILABLE"]

    # Restore: ACTIVATING until the bytes are back, then ACTIVE, and the pull is byte-identical.
    restored = ecr.update_image_storage_class(
        repositoryName="arc", imageId={"imageDigest": old_digest}, targetStorageClass="STANDARD"
    )
    assert restored["imageStatus"] == "ACTIVATING"
    wait_for(lambda: status_of(ecr, "arc", "old") == "ACTIVE", "the restore to complete")
    detail = ecr.describe_images(repositoryName="arc", imageIds=[{"imageTag": "old"}])["imageDetails"][0]
    assert "lastActivatedAt" in detail
    assert blob_file(hot, digest_of(only_old)).exists() and not blob_file(cold, digest_of(only_old)).exists()
    pulled = registry.request(
        "GET", "/v2/arc/manifests/old", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
    )
    assert pulled.status_code == 200 and pulled.content == old_manifest
    for layer_bytes in (shared, only_old):
        assert registry.request("GET", f"/v2/arc/blobs/{digest_of(layer_bytes)}").content == layer_bytes
    assert json.loads(skopeo.inspect(f"docker://{server.registry}/arc:old", "--raw").stdout)["layers"]


def test_update_image_storage_class_errors(dockyard_server_factory: ServerFactory, tmp_path: Path) -> None:
    server, _ = archive_server(dockyard_server_factory, tmp_path)
    ecr = Boto3Clients(server)("ecr")
    ecr.create_repository(repositoryName="errs")
    RegistryHttp.for_server(server).push_image("errs", "one", [os.urandom(KiB)])
    with pytest.raises(ecr.exceptions.ImageNotFoundException):
        ecr.update_image_storage_class(
            repositoryName="errs", imageId={"imageTag": "nope"}, targetStorageClass="ARCHIVE"
        )
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.update_image_storage_class(repositoryName="none", imageId={"imageTag": "one"}, targetStorageClass="ARCHIVE")
    ecr.update_image_storage_class(repositoryName="errs", imageId={"imageTag": "one"}, targetStorageClass="ARCHIVE")
    assert ecr.update_image_storage_class(
        repositoryName="errs", imageId={"imageTag": "one"}, targetStorageClass="STANDARD"
    )["imageStatus"] in ("ACTIVATING", "ACTIVE")
    status = status_of(ecr, "errs", "one")
    if status == "ACTIVATING":
        with pytest.raises(ecr.exceptions.ImageStorageClassUpdateNotSupportedException):
            ecr.update_image_storage_class(
                repositoryName="errs", imageId={"imageTag": "one"}, targetStorageClass="ARCHIVE"
            )


def test_lifecycle_transition_rule_archives_what_it_selects(
    dockyard_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server, cold = archive_server(dockyard_server_factory, tmp_path, "--lifecycle-interval", "1")
    ecr = Boto3Clients(server)("ecr")
    ecr.create_repository(repositoryName="life")
    registry = RegistryHttp.for_server(server)
    layers = {tag: os.urandom(64 * KiB) for tag in ("v1", "v2", "v3")}
    digests = {tag: registry.push_image("life", tag, [data])[0] for tag, data in layers.items()}
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.put_lifecycle_policy(
            repositoryName="life",
            lifecyclePolicyText=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "selection": {
                                "tagStatus": "any",
                                "countType": "sinceImageTransitioned",
                                "countUnit": "days",
                                "countNumber": 100,
                            },
                            "action": {"type": "expire"},
                        }
                    ]
                }
            ),
        )
    policy = json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": "archive all but the newest image",
                    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
                    "action": {"type": "transition", "targetStorageClass": "archive"},
                }
            ]
        }
    )
    ecr.start_lifecycle_policy_preview(repositoryName="life", lifecyclePolicyText=policy)
    preview = ecr.get_lifecycle_policy_preview(repositoryName="life")
    assert preview["summary"]["transitioningImageTotalCounts"] == [
        {"targetStorageClass": "ARCHIVE", "imageTotalCount": 2}
    ]
    assert preview["summary"]["expiringImageTotalCount"] == 0
    moving = {r["imageDigest"]: r for r in preview["previewResults"]}
    assert set(moving) == {digests["v1"], digests["v2"]}
    assert moving[digests["v1"]]["action"] == {"type": "TRANSITION", "targetStorageClass": "ARCHIVE"}
    assert moving[digests["v1"]]["storageClass"] == "STANDARD"

    ecr.put_lifecycle_policy(repositoryName="life", lifecyclePolicyText=policy)
    wait_for(
        lambda: status_of(ecr, "life", "v1") == "ARCHIVED" and status_of(ecr, "life", "v2") == "ARCHIVED", "the rule"
    )
    assert status_of(ecr, "life", "v3") == "ACTIVE"
    wait_for(lambda: blob_file(cold, digest_of(layers["v1"])).exists(), "the transitioned layer on the archive disk")
    assert registry.request("GET", "/v2/life/manifests/v1").status_code == 404
    assert registry.request("GET", "/v2/life/manifests/v3").status_code == 200


def test_sigkill_in_the_middle_of_archiving_leaves_every_blob_readable(
    dockyard_server_factory: ServerFactory, tmp_path: Path
) -> None:
    # The mover waits between blobs, so the kill lands with some layers moved and some not.
    server, cold = archive_server(dockyard_server_factory, tmp_path, DOCKYARD_ARCHIVE_MOVE_DELAY="0.3")
    hot = server.data_dir / "storage"
    ecr = Boto3Clients(server)("ecr")
    ecr.create_repository(repositoryName="crash")
    layers = [os.urandom(48 * KiB) for _ in range(24)]
    digest, manifest = RegistryHttp.for_server(server).push_image("crash", "t", layers)
    ecr.update_image_storage_class(repositoryName="crash", imageId={"imageTag": "t"}, targetStorageClass="ARCHIVE")
    moved = lambda: sum(blob_file(cold, digest_of(layer)).exists() for layer in layers)  # noqa: E731
    wait_for(lambda: moved() >= 3, "the mover to start")
    server.kill()
    assert moved() < len(layers), "the mover finished before the kill: the test proved nothing"
    for layer in layers:
        found = [root for root in (hot, cold) if blob_file(root, digest_of(layer)).exists()]
        assert found, f"{digest_of(layer)} is in neither store"
        assert blob_file(found[0], digest_of(layer)).read_bytes() == layer

    server.extra_env = {}
    server.start()
    ecr = Boto3Clients(server)("ecr")
    registry = RegistryHttp.for_server(server)
    ecr.update_image_storage_class(repositoryName="crash", imageId={"imageTag": "t"}, targetStorageClass="STANDARD")
    wait_for(lambda: status_of(ecr, "crash", "t") == "ACTIVE", "the restore after the restart")
    pulled = registry.request(
        "GET", f"/v2/crash/manifests/{digest}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
    )
    assert pulled.content == manifest
    for layer in layers:
        assert registry.request("GET", f"/v2/crash/blobs/{digest_of(layer)}").content == layer
    wait_for(lambda: moved() == 0, "the archive copies to go once restored")


def test_on_s3_archived_layers_move_to_the_colder_storage_class_and_back(
    dockyard_server_factory: ServerFactory,
    s3_server: S3Server,  # noqa: F811
) -> None:
    bucket = f"archive-{os.urandom(6).hex()}"
    s3_server.create_bucket(bucket)
    server = dockyard_server_factory(
        args=[
            "--workers", "2", "--archive-interval", "0.5",
            "--blob-store", f"s3://{bucket}/reg", "--s3-endpoint-url", s3_server.endpoint_url,
            "--s3-region", s3_server.region, "--s3-archive-storage-class", "GLACIER_IR",
        ],
        env=s3_server.env(),
    )  # fmt: skip
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.access_key_id,
        aws_secret_access_key=s3_server.secret_access_key,
        region_name=s3_server.region,
    )
    ecr = Boto3Clients(server)("ecr")
    ecr.create_repository(repositoryName="cold")
    registry = RegistryHttp.for_server(server)
    layer = os.urandom(256 * KiB)
    registry.push_image("cold", "t", [layer])
    hexpart = digest_of(layer).partition(":")[2]
    hot_key, cold_key = f"reg/blobs/sha256/{hexpart}", f"reg/archive/sha256/{hexpart}"

    def storage_class(key: str) -> str | None:
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError:
            return None
        return str(head.get("StorageClass", "STANDARD"))

    assert storage_class(hot_key) == "STANDARD"
    ecr.update_image_storage_class(repositoryName="cold", imageId={"imageTag": "t"}, targetStorageClass="ARCHIVE")
    wait_for(
        lambda: storage_class(cold_key) == "GLACIER_IR" and storage_class(hot_key) is None,
        "the move to S3's archive class",
    )
    assert s3.get_object(Bucket=bucket, Key=cold_key)["Body"].read() == layer
    assert registry.request("GET", f"/v2/cold/blobs/{digest_of(layer)}").status_code == 404

    ecr.update_image_storage_class(repositoryName="cold", imageId={"imageTag": "t"}, targetStorageClass="STANDARD")
    wait_for(lambda: status_of(ecr, "cold", "t") == "ACTIVE", "the restore")
    assert storage_class(hot_key) == "STANDARD" and storage_class(cold_key) is None
    assert registry.request("GET", f"/v2/cold/blobs/{digest_of(layer)}").content == layer


def test_verification_and_gc_know_archived_blobs(dockyard_server_factory: ServerFactory, tmp_path: Path) -> None:
    server, cold = archive_server(dockyard_server_factory, tmp_path)
    ecr = Boto3Clients(server)("ecr")
    ecr.create_repository(repositoryName="kept")
    layer = os.urandom(128 * KiB)
    RegistryHttp.for_server(server).push_image("kept", "t", [layer])
    ecr.update_image_storage_class(repositoryName="kept", imageId={"imageTag": "t"}, targetStorageClass="ARCHIVE")
    archived = blob_file(cold, digest_of(layer))
    wait_for(
        lambda: archived.exists() and not blob_file(server.data_dir / "storage", digest_of(layer)).exists(), "the move"
    )
    place = ("--archive-dir", str(cold))

    # Verification reads an archived blob where it lives: sound there, then damaged there.
    sound = dockyard(server, "storage", "verify", "--restart", *place, "--json", check=False)
    assert sound.returncode == 0, sound.stdout
    archived.write_bytes(os.urandom(len(layer)))
    damaged = dockyard(server, "storage", "verify", "--restart", *place, "--json", check=False)
    assert damaged.returncode == 1
    assert [(d["digest"], d["damage"]) for d in json.loads(damaged.stdout)["damaged"]] == [(digest_of(layer), "digest")]

    # Garbage collection frees the archive copy of a blob no image refers to any more.
    ecr.batch_delete_image(repositoryName="kept", imageIds=[{"imageTag": "t"}])
    dockyard(server, "gc", "--grace", "0", *place)
    assert not archived.exists()


def test_pushing_an_archived_image_again_restores_it(dockyard_server_factory: ServerFactory, tmp_path: Path) -> None:
    """ECR's user guide: pushing an image that is archived restores it (no ImageAlreadyExists)."""
    server, cold = archive_server(dockyard_server_factory, tmp_path)
    ecr = Boto3Clients(server)("ecr")
    ecr.create_repository(repositoryName="again")
    registry = RegistryHttp.for_server(server)
    layer = os.urandom(200 * KiB)
    digest, manifest = registry.push_image("again", "v1", [layer])
    ecr.update_image_storage_class(repositoryName="again", imageId={"imageTag": "v1"}, targetStorageClass="ARCHIVE")
    wait_for(lambda: blob_file(cold, digest_of(layer)).exists(), "the layer on the archive disk")

    # The same manifest through PutImage (which refuses an image that is already there) restores it.
    put = ecr.put_image(
        repositoryName="again", imageManifest=manifest.decode(), imageManifestMediaType=OCI_MANIFEST, imageTag="v1"
    )
    assert put["image"]["imageId"]["imageDigest"] == digest
    assert status_of(ecr, "again", "v1") in ("ACTIVATING", "ACTIVE")
    wait_for(lambda: status_of(ecr, "again", "v1") == "ACTIVE", "the restore to complete")
    assert registry.request("GET", f"/v2/again/blobs/{digest_of(layer)}").content == layer

    # And through the registry API.
    ecr.update_image_storage_class(repositoryName="again", imageId={"imageTag": "v1"}, targetStorageClass="ARCHIVE")
    pushed = registry.request("PUT", "/v2/again/manifests/v1", data=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert pushed.status_code == 201, pushed.text
    wait_for(lambda: status_of(ecr, "again", "v1") == "ACTIVE", "the restore to complete")
    assert registry.request("GET", "/v2/again/manifests/v1", headers={"Accept": OCI_MANIFEST}).content == manifest
