"""PutImage's media type and digest members as ECR reads them, through boto3, the AWS CLI and the
registry door:

* `imageManifestMediaType` stands in for a Docker schema 2 manifest's missing `mediaType` field
  (the API reference: "If you push an image manifest that does not contain the mediaType field,
  you must specify the imageManifestMediaType"); the registry door keeps distribution's rule;
* a manifest named by a sha512 digest is refused as an unsupported algorithm (ECR and distribution
  name manifests by sha256 only), not as a digest mismatch."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.ecr_support import error_of, repository, upload_missing_blobs
from tests.support.clients import AwsCli, Boto3Clients
from tests.support.images import DOCKER_MANIFEST, build_image
from tests.support.registry_http import RegistryHttp
from tests.support.server import DockyardServer


def sha512_of(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def unsupported(algorithm: str) -> str:
    return (
        "Invalid parameter at 'imageDigest' failed to satisfy constraint: "
        f"'Unsupported digest algorithm {algorithm}: image digests must use sha256'"
    )


@pytest.fixture
def ecr(boto3_client: Boto3Clients) -> Any:
    return boto3_client("ecr")


def test_image_manifest_media_type_stands_in_for_a_docker_manifests_missing_field(
    ecr: Any, aws: AwsCli, tmp_path: Path, dockyard_server: DockyardServer
) -> None:
    image = build_image(tmp_path / "docker", "v1", [300], fmt="docker")
    document = image.manifest_json
    del document["mediaType"]
    untyped = json.dumps(document)
    with repository(ecr, "untyped-docker") as repo:
        upload_missing_blobs(ecr, repo, image)
        with pytest.raises(ClientError) as no_type:
            ecr.put_image(repositoryName=repo, imageManifest=untyped, imageTag="bare")
        assert error_of(no_type) == (
            "InvalidParameterException",
            "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'",
        )

        put = ecr.put_image(
            repositoryName=repo, imageManifest=untyped, imageManifestMediaType=DOCKER_MANIFEST, imageTag="boto3"
        )["image"]
        digest = hashlib.sha256(untyped.encode()).hexdigest()
        assert put["imageId"] == {"imageDigest": f"sha256:{digest}", "imageTag": "boto3"}
        assert put["imageManifestMediaType"] == DOCKER_MANIFEST
        described = ecr.describe_images(repositoryName=repo)["imageDetails"]
        assert [(d["imageManifestMediaType"], d["imageSizeInBytes"]) for d in described] == [
            (DOCKER_MANIFEST, image.size)
        ]

        cli = aws(
            "ecr", "put-image", "--repository-name", repo, "--image-manifest", untyped,
            "--image-manifest-media-type", DOCKER_MANIFEST, "--image-tag", "cli",
        )  # fmt: skip
        assert cli["image"]["imageId"] == {"imageDigest": f"sha256:{digest}", "imageTag": "cli"}

        # The registry door keeps distribution's rule: a Docker document states its own media type.
        registry = RegistryHttp.for_server(dockyard_server)
        refused = registry.request(
            "PUT", f"/v2/{repo}/manifests/door", data=untyped.encode(), headers={"Content-Type": DOCKER_MANIFEST}
        )
        assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == "MANIFEST_INVALID"


def test_a_sha512_manifest_digest_is_refused_as_unsupported(
    ecr: Any, aws: AwsCli, tmp_path: Path, dockyard_server: DockyardServer
) -> None:
    image = build_image(tmp_path / "oci", "v1", [300])
    manifest = image.manifest.data
    with repository(ecr, "sha512-digest") as repo:
        upload_missing_blobs(ecr, repo, image)
        with pytest.raises(ClientError) as boto3_refused:
            ecr.put_image(repositoryName=repo, imageManifest=manifest.decode(), imageDigest=sha512_of(manifest))
        assert error_of(boto3_refused) == ("InvalidParameterException", unsupported("sha512"))

        cli = aws(
            "ecr", "put-image", "--repository-name", repo, "--image-manifest", manifest.decode(),
            "--image-digest", sha512_of(manifest), check=False,
        )  # fmt: skip
        assert cli.returncode == 255  # AWS CLI v1: any error
        assert f"(InvalidParameterException) when calling the PutImage operation: {unsupported('sha512')}" in (
            cli.stderr
        )

        registry = RegistryHttp.for_server(dockyard_server)
        door = registry.request(
            "PUT",
            f"/v2/{repo}/manifests/{sha512_of(manifest)}",
            data=manifest,
            headers={"Content-Type": image.media_type},
        )
        assert door.status_code == 400
        assert door.json()["errors"][0]["code"] == "DIGEST_INVALID"
        assert door.json()["errors"][0]["message"] == unsupported("sha512")

        # A sha256 digest that is not the manifest's is still a mismatch.
        wrong = "sha256:" + "0" * 64
        with pytest.raises(ClientError) as mismatch:
            ecr.put_image(repositoryName=repo, imageManifest=manifest.decode(), imageDigest=wrong)
        assert error_of(mismatch)[0] == "ImageDigestDoesNotMatchException"
        assert ecr.list_images(repositoryName=repo)["imageIds"] == []
