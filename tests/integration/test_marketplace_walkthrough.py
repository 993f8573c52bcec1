"""The AWS Marketplace walkthrough "Uploading your images", typed as written with the AWS CLI and
podman in docker's place: the account from `sts get-caller-identity`, `get-login-password` piped
into a login to `<account>.dkr.ecr.us-east-2.amazonaws.com`, `create-repository`, tag, push, and a
scan that must show no Critical or High finding before the image may be published.

No resolver knows the ECR host name here, so podman reaches Dockyard through it as an HTTP proxy,
which keeps the name in each request (a user adds a hosts entry instead; the README says how).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import AwsCli, ContainersConfig, Podman
from tests.support.images import build_image
from tests.support.scan_images import OSV_FIXTURES, debian_base, python_packages
from tests.support.server import DockyardServer, dockyard_command

REGION = "us-east-2"
IMAGE = REPO = "my-inference-image"


@pytest.fixture
def seller(dockyard_server: DockyardServer, aws: AwsCli) -> Iterator[DockyardServer]:
    command = [*dockyard_command(), "vulndb", "import", str(OSV_FIXTURES), "--data-dir", str(dockyard_server.data_dir)]
    imported = subprocess.run(command, capture_output=True, text=True, timeout=300, env=dockyard_server.server_env())
    assert imported.returncode == 0, imported.stderr
    yield dockyard_server
    aws("ecr", "--region", REGION, "delete-repository", "--repository-name", REPO, "--force", check=False)


def test_uploading_an_inference_image(
    seller: DockyardServer, aws: AwsCli, podman: Podman, containers_config: ContainersConfig, tmp_path: Path
) -> None:
    server = seller
    region = REGION
    account = aws("sts", "get-caller-identity", "--query", "Account")
    assert account == server.account_id

    registry = f"{account}.dkr.ecr.{region}.amazonaws.com:{server.port}"
    containers_config.add_insecure(registry)
    proxy = {"HTTP_PROXY": server.url, "http_proxy": server.url, "NO_PROXY": "", "no_proxy": ""}

    password = aws("ecr", "get-login-password", "--region", region)
    login = podman("login", "--username", "AWS", "--password-stdin", registry, input=password, env=proxy)
    assert "Login Succeeded" in login.stdout

    created = aws("ecr", "--region", region, "create-repository", "--repository-name", REPO)["repository"]
    assert created["repositoryArn"] == f"arn:aws:ecr:{region}:{account}:repository/{REPO}"
    assert created["registryId"] == account

    # The seller's inference image, built earlier in their guide; this one ships a vulnerable PyYAML.
    vulnerable = build_image(
        tmp_path / "v1", "latest", [debian_base(), python_packages({"PyYAML": "5.3.1"})], seed="inference-v1"
    )
    image_id = podman.load(vulnerable, IMAGE)
    fullname = f"{registry}/{REPO}:latest"
    podman("tag", IMAGE, fullname)
    pushed = podman("push", fullname, env=proxy)
    assert pushed.returncode == 0

    # In the other region the repository does not exist: the host and the token both name us-east-2.
    assert aws("ecr", "describe-repositories", "--repository-names", REPO, check=False).returncode == 255

    counts = scan(aws, region)
    assert counts.get("CRITICAL", 0) + counts.get("HIGH", 0) > 0, counts

    # Fixed: the same image with PyYAML upgraded, pushed again as latest and scanned again.
    fixed = build_image(
        tmp_path / "v2", "latest", [debian_base(), python_packages({"PyYAML": "6.0.1"})], seed="inference-v2"
    )
    podman("rmi", "--force", image_id)
    podman.load(fixed, IMAGE)
    podman("tag", IMAGE, fullname)
    podman("push", fullname, env=proxy)
    counts = scan(aws, region)
    assert "CRITICAL" not in counts and "HIGH" not in counts, counts

    listed = aws("ecr", "list-images", "--region", region, "--repository-name", REPO, "--filter", "tagStatus=TAGGED")
    assert [image["imageTag"] for image in listed["imageIds"]] == ["latest"]


def scan(aws: AwsCli, region: str) -> dict[str, int]:
    """The console's "Scan" on the image tagged latest, then its finding counts by severity."""
    image = ["--region", region, "--repository-name", REPO, "--image-id", "imageTag=latest"]
    started = aws("ecr", "start-image-scan", *image)
    assert started["imageScanStatus"]["status"] == "IN_PROGRESS"
    aws("ecr", "wait", "image-scan-complete", *image)
    findings = aws("ecr", "describe-image-scan-findings", *image)
    assert findings["imageScanStatus"]["status"] == "COMPLETE"
    return findings["imageScanFindings"].get("findingSeverityCounts", {})
