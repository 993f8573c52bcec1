"""CLI parity: the seed's JSON outputs come back from the AWS CLI as the user guide prints them, and
the CLI's own machinery (auto-pagination, --query, --output text and table) works as with AWS."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.ecr_support import push, unique
from tests.support.clients import AwsCli, Boto3Clients
from tests.support.images import build_image
from tests.support.server import DockyardServer


@pytest.fixture
def ecr(boto3_client: Boto3Clients) -> Any:
    return boto3_client("ecr")


@pytest.fixture
def names(ecr: Any) -> Iterator[list[str]]:
    """Repository names for one test, deleted afterwards."""
    created: list[str] = []
    yield created
    for name in created:
        with contextlib.suppress(ClientError):
            ecr.delete_repository(repositoryName=name, force=True)


def cli_text(aws: AwsCli, *args: str) -> str:
    """A CLI command's raw stdout with another --output (the runner asks for JSON)."""
    server = aws.server
    command = [aws.binary, *args, "--endpoint-url", server.url]
    done = subprocess.run(command, env=server.env(), capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def test_the_seed_outputs(
    aws: AwsCli, ecr: Any, names: list[str], tmp_path: Path, dockyard_server: DockyardServer
) -> None:
    account, region = dockyard_server.account_id, dockyard_server.region
    name = unique("my-web-app")
    names.append(name)
    arn = f"arn:aws:ecr:{region}:{account}:repository/{name}"

    # "Step 3: Create a Repository"
    created = aws("ecr", "create-repository", "--repository-name", name)
    assert set(created) == {"repository"}
    assert {k: created["repository"][k] for k in ("registryId", "repositoryName", "repositoryArn")} == {
        "registryId": account,
        "repositoryName": name,
        "repositoryArn": arn,
    }

    # "You can list the repositories in a registry with the aws ecr describe-repositories command."
    described = aws("ecr", "describe-repositories", "--repository-names", name)
    assert set(described) == {"repositories"}
    assert {k: described["repositories"][0][k] for k in ("registryId", "repositoryName", "repositoryArn")} == {
        "registryId": account,
        "repositoryName": name,
        "repositoryArn": arn,
    }

    # "You can list the images within a repository with the aws ecr list-images command."
    image = build_image(tmp_path / "layout", "latest", [256])
    push(ecr, name, image, "latest")
    assert aws("ecr", "list-images", "--repository-name", name) == {
        "imageIds": [{"imageTag": "latest", "imageDigest": image.digest}]
    }

    # "Delete the image by specifying the tag of the image you want to delete."
    assert aws("ecr", "batch-delete-image", "--repository-name", name, "--image-ids", "imageTag=latest") == {
        "failures": [],
        "imageIds": [{"imageTag": "latest", "imageDigest": image.digest}],
    }

    # "Step 7: Delete a Repository" (it holds an image again, so --force).
    push(ecr, name, image, "latest")
    deleted = aws("ecr", "delete-repository", "--repository-name", name, "--force")
    assert set(deleted) == {"repository"}
    repository = deleted["repository"]
    assert {k: repository[k] for k in ("registryId", "repositoryName", "repositoryArn", "repositoryUri")} == {
        "registryId": account,
        "repositoryName": name,
        "repositoryArn": arn,
        "repositoryUri": f"{dockyard_server.registry}/{name}",
    }
    assert isinstance(repository["createdAt"], float)


def test_auto_pagination_query_and_output_formats(
    aws: AwsCli, ecr: Any, names: list[str], tmp_path: Path, boto3_client: Boto3Clients
) -> None:
    base = unique("pages")
    for number in range(3):
        names.append(f"{base}/r{number}")
        aws("ecr", "create-repository", "--repository-name", f"{base}/r{number}")

    # The CLI follows nextToken by itself: --page-size 1 still lists every repository.
    listed = aws(
        "ecr",
        "describe-repositories",
        "--page-size",
        "1",
        "--query",
        f"repositories[?starts_with(repositoryName, '{base}')].repositoryName",
    )
    assert listed == [f"{base}/r0", f"{base}/r1", f"{base}/r2"]
    pages = list(ecr.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": 1}))
    assert len(pages) >= 3 and all("nextToken" in page for page in pages[:-1])

    image = build_image(tmp_path / "layout", "v1", [128])
    push(ecr, f"{base}/r0", image, "v1")
    text = cli_text(aws, "ecr", "list-images", "--repository-name", f"{base}/r0", "--output", "text")
    assert text == f"IMAGEIDS\t{image.digest}\tv1\n"
    queried = cli_text(aws, "ecr", "describe-images", "--repository-name", f"{base}/r0",
                       "--query", "imageDetails[0].imageTags[0]", "--output", "text")  # fmt: skip
    assert queried == "v1\n"
    table = cli_text(aws, "ecr", "list-images", "--repository-name", f"{base}/r0", "--output", "table")
    assert "ListImages" in table and "imageIds" in table and image.digest in table and "v1" in table


def test_waiting_for_a_lifecycle_policy_preview(aws: AwsCli, names: list[str], tmp_path: Path, ecr: Any) -> None:
    """`aws ecr wait lifecycle-policy-preview-complete` returns once the preview is COMPLETE."""
    name = unique("preview")
    names.append(name)
    aws("ecr", "create-repository", "--repository-name", name)
    for tag in ("old", "new"):
        push(ecr, name, build_image(tmp_path / tag, tag, [64]), tag)
    policy = (
        '{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan",'
        '"countNumber":1},"action":{"type":"expire"}}]}'
    )
    started = aws("ecr", "start-lifecycle-policy-preview", "--repository-name", name, "--lifecycle-policy-text", policy)
    assert started["repositoryName"] == name
    assert aws("ecr", "wait", "lifecycle-policy-preview-complete", "--repository-name", name) is None
    preview = aws("ecr", "get-lifecycle-policy-preview", "--repository-name", name)
    assert preview["status"] == "COMPLETE"
    assert preview["summary"] == {"expiringImageTotalCount": 1}
