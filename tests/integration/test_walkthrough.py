"""The ECR user guide's "Using the AWS CLI with Amazon ECR" (steps 1-7), run as written with the real
AWS CLI, and podman in docker's place, against a Dockyard server.

Outputs are checked as the guide prints them, with this server's account, region and registry in
place of the example's; values the guide cannot know (tokens, digests, times) are checked by shape
and against what the clients themselves report.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import AwsCli, Podman, Skopeo
from tests.support.images import OCI_CONFIG, OCI_MANIFEST, BuiltImage, build_image, sha256_digest
from tests.support.server import DockyardServer

REPOSITORY = "ubuntu"
TAG = "trusty"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@pytest.fixture
def trusty(tmp_path: Path) -> BuiltImage:
    """Step 2's image: four layers, like the guide's ubuntu:trusty, built locally (no Docker Hub)."""
    return build_image(tmp_path / "layout", TAG, [65536, 4096, 512, {"etc/motd": b"trusty\n"}], seed="walk")


@pytest.fixture
def cleanup_repository(aws: AwsCli) -> Iterator[None]:
    yield
    aws("ecr", "delete-repository", "--repository-name", REPOSITORY, "--force", check=False)


def test_step1_get_login_prints_a_docker_login_command(
    aws: AwsCli, podman: Podman, dockyard_server: DockyardServer
) -> None:
    printed = aws("ecr", "get-login")

    match = re.fullmatch(r"docker login -u AWS -p (\S+) -e none (https?)://(\S+)", printed)
    assert match, printed
    password, _scheme, endpoint = match.groups()
    assert endpoint == dockyard_server.registry
    # Pasted into a terminal, with podman's spelling (it has no -e): the token is a working password.
    login = podman("login", "-u", "AWS", "-p", password, endpoint)
    assert "Login Succeeded" in login.stdout


def test_walkthrough(
    aws: AwsCli,
    podman: Podman,
    skopeo: Skopeo,
    dockyard_server: DockyardServer,
    trusty: BuiltImage,
    cleanup_repository: None,
) -> None:
    server = dockyard_server
    registry = server.registry
    remote = f"{registry}/{REPOSITORY}:{TAG}"
    arn = f"arn:aws:ecr:{server.region}:{server.account_id}:repository/{REPOSITORY}"

    # Step 1: authenticate the client to the default registry.
    password = aws("ecr", "get-login-password")
    assert isinstance(password, str) and password
    assert "Login Succeeded" in podman.login(registry, password).stdout

    # Step 2: get an image.
    image_id = podman.load(trusty, f"localhost/{REPOSITORY}:{TAG}")
    assert f"localhost/{REPOSITORY}" in podman("images").stdout

    # Step 3: create a repository.
    created = aws("ecr", "create-repository", "--repository-name", REPOSITORY)["repository"]
    assert set(created) == {
        "registryId",
        "repositoryName",
        "repositoryArn",
        "repositoryUri",
        "createdAt",
        "imageTagMutability",
        "imageScanningConfiguration",
        "encryptionConfiguration",
    }
    assert created["registryId"] == server.account_id
    assert created["repositoryName"] == REPOSITORY
    assert created["repositoryArn"] == arn
    assert created["repositoryUri"] == f"{registry}/{REPOSITORY}"
    assert isinstance(created["createdAt"], float) and abs(created["createdAt"] - time.time()) < 300
    assert created["imageTagMutability"] == "MUTABLE"
    assert created["imageScanningConfiguration"] == {"scanOnPush": False}
    assert created["encryptionConfiguration"] == {"encryptionType": "AES256"}

    # Step 4: tag and push the image.
    podman("tag", f"localhost/{REPOSITORY}:{TAG}", remote)
    pushed = podman.push(remote)
    assert DIGEST.match(pushed), pushed
    served = skopeo.inspect(f"docker://{remote}").json()
    assert served["Digest"] == pushed
    manifest = skopeo.inspect_raw(f"docker://{remote}")
    assert sha256_digest(manifest) == pushed
    assert len(served["Layers"]) == len(trusty.layers)
    config = skopeo.inspect(f"docker://{remote}", "--config").json()
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in trusty.layers]

    listed = aws("ecr", "list-images", "--repository-name", REPOSITORY)
    assert listed == {"imageIds": [{"imageDigest": pushed, "imageTag": TAG}]}
    described = aws("ecr", "describe-images", "--repository-name", REPOSITORY)["imageDetails"]
    assert len(described) == 1
    detail = described[0]
    assert detail["registryId"] == server.account_id
    assert detail["repositoryName"] == REPOSITORY
    assert detail["imageDigest"] == pushed
    assert detail["imageTags"] == [TAG]
    assert detail["imageManifestMediaType"] == OCI_MANIFEST
    assert detail["artifactMediaType"] == OCI_CONFIG

    # Step 5: pull it back, from scratch.
    podman("rmi", "--force", image_id)
    assert not podman.exists(remote)
    pulled = podman("pull", remote)
    assert "Writing manifest to image destination" in pulled.stderr
    assert pulled.stdout.strip().splitlines()[-1] == image_id
    local = podman.inspect(remote)
    assert local["Digest"] == pushed
    assert f"{registry}/{REPOSITORY}@{pushed}" in local["RepoDigests"]

    # Step 6: delete the image by tag.
    deleted = aws("ecr", "batch-delete-image", "--repository-name", REPOSITORY, "--image-ids", f"imageTag={TAG}")
    assert deleted == {"failures": [], "imageIds": [{"imageTag": TAG, "imageDigest": pushed}]}
    assert aws("ecr", "list-images", "--repository-name", REPOSITORY) == {"imageIds": []}
    gone = skopeo.inspect(f"docker://{remote}", check=False)
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr.lower()

    # Step 7: delete the repository; it holds an image again (pushed by skopeo this time, which keeps
    # the built manifest byte for byte), so only --force may delete it.
    skopeo.copy(trusty, f"docker://{remote}")
    assert skopeo.inspect_raw(f"docker://{remote}") == trusty.manifest.data
    refused = aws("ecr", "delete-repository", "--repository-name", REPOSITORY, check=False)
    assert refused.returncode == 255
    assert refused.stderr.strip() == (
        "An error occurred (RepositoryNotEmptyException) when calling the DeleteRepository operation: "
        f"The repository with name '{REPOSITORY}' in registry with id '{server.account_id}' "
        "cannot be deleted because it still contains images"
    )

    removed = aws("ecr", "delete-repository", "--repository-name", REPOSITORY, "--force")["repository"]
    assert removed["registryId"] == server.account_id
    assert removed["repositoryName"] == REPOSITORY
    assert removed["repositoryArn"] == arn
    assert removed["createdAt"] == created["createdAt"]
    assert removed["repositoryUri"] == f"{registry}/{REPOSITORY}"

    missing = aws("ecr", "describe-repositories", "--repository-names", REPOSITORY, check=False)
    assert missing.returncode == 255
    assert missing.stderr.strip() == (
        "An error occurred (RepositoryNotFoundException) when calling the DescribeRepositories operation: "
        f"The repository with name '{REPOSITORY}' does not exist in the registry with id '{server.account_id}'"
    )
    assert skopeo.inspect(f"docker://{remote}", check=False).returncode != 0
