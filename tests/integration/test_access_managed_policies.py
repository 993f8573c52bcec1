"""Each AWS managed ECR policy, end to end as a user that has only it: skopeo pushes and pulls through
the registry, the AWS CLI calls the ECR API. What the policy allows works; everything else is refused
with AWS's AccessDeniedException message, or the registry's 403 DENIED."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.clients import AwsCli, Boto3Clients, Skopeo
from tests.support.identities import (
    Iam,
    Identity,
    Registry,
    access_denied,
    aws_error,
    denied,
    login_password,
    root_identity,
    suffix,
)
from tests.support.images import BuiltImage, build_image
from tests.support.server import DockyardServer


@dataclass(frozen=True)
class Seeded:
    repository: str
    arn: str
    image: BuiltImage


@pytest.fixture(scope="module")
def seeded(
    tmp_path_factory: pytest.TempPathFactory,
    dockyard_server: DockyardServer,
    aws: AwsCli,
    boto3_client: Boto3Clients,
    skopeo: Skopeo,
) -> Iterator[Seeded]:
    """A repository of the default account holding one image, pushed by the root user."""
    name = f"managed-{suffix()}"
    ecr = boto3_client("ecr")
    arn = ecr.create_repository(repositoryName=name)["repository"]["repositoryArn"]
    image = build_image(tmp_path_factory.mktemp("managed") / "layout", "v1", [2048, 512], seed=name)
    pushed = Registry(skopeo, dockyard_server.registry).push(
        image, name, login_password(aws, root_identity(dockyard_server))
    )
    assert pushed.returncode == 0, pushed.stderr
    yield Seeded(name, arn, image)
    ecr.delete_repository(repositoryName=name, force=True)


@pytest.fixture
def iam(aws: AwsCli, dockyard_server: DockyardServer) -> Iam:
    return Iam(aws, root_identity(dockyard_server))


def _user(iam: Iam, managed_policy: str) -> Identity:
    return iam.user(
        f"{managed_policy.removeprefix('AmazonEC2ContainerRegistry').lower()}-{suffix()}", managed=(managed_policy,)
    )


def _can_pull(registry: Registry, seeded: Seeded, password: str, into: Path) -> bool:
    result = registry.pull(seeded.repository, "v1", password, into)
    if result.returncode == 0:
        return True
    assert denied(result), result.stderr
    return False


def _can_push(registry: Registry, seeded: Seeded, password: str, tmp_path: Path) -> bool:
    image = build_image(tmp_path / "push", "pushed", [1024], seed=f"{tmp_path}")
    result = registry.push(image, seeded.repository, password)
    if result.returncode == 0:
        return True
    assert denied(result), result.stderr
    return False


def _api(aws: AwsCli, user: Identity, *args: str) -> tuple[bool, str]:
    result = aws("ecr", *args, env=user.env(), check=False)
    return (True, "") if result.returncode == 0 else (False, aws_error(result))


def test_full_access(
    iam: Iam, aws: AwsCli, skopeo: Skopeo, dockyard_server: DockyardServer, seeded: Seeded, tmp_path: Path
) -> None:
    user = _user(iam, "AmazonEC2ContainerRegistryFullAccess")
    registry = Registry(skopeo, dockyard_server.registry)
    password = login_password(aws, user)
    assert _can_pull(registry, seeded, password, tmp_path / "pull")
    assert _can_push(registry, seeded, password, tmp_path)
    own = f"full-{suffix()}"
    assert _api(aws, user, "create-repository", "--repository-name", own) == (True, "")
    grant = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "ecr:ListImages"}]}
    assert _api(aws, user, "set-repository-policy", "--repository-name", own, "--policy-text", json.dumps(grant)) == (
        True,
        "",
    )
    assert _api(aws, user, "get-repository-policy", "--repository-name", own)[0]
    assert _api(aws, user, "delete-repository", "--repository-name", own) == (True, "")


def test_power_user(
    iam: Iam, aws: AwsCli, skopeo: Skopeo, dockyard_server: DockyardServer, seeded: Seeded, tmp_path: Path
) -> None:
    user = _user(iam, "AmazonEC2ContainerRegistryPowerUser")
    registry = Registry(skopeo, dockyard_server.registry)
    password = login_password(aws, user)
    assert _can_pull(registry, seeded, password, tmp_path / "pull")
    assert _can_push(registry, seeded, password, tmp_path)
    assert _api(aws, user, "describe-repositories", "--repository-names", seeded.repository)[0]
    assert _api(aws, user, "list-images", "--repository-name", seeded.repository)[0]
    assert _api(aws, user, "get-repository-policy", "--repository-name", seeded.repository)[1].startswith(
        "An error occurred (RepositoryPolicyNotFoundException)"
    )
    # ... but it may neither delete repositories nor change their policies.
    assert _api(aws, user, "delete-repository", "--repository-name", seeded.repository) == (
        False,
        access_denied(user, "ecr:DeleteRepository", seeded.arn),
    )
    policy_text = json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "ecr:*"}]}
    )
    assert _api(
        aws, user, "set-repository-policy", "--repository-name", seeded.repository, "--policy-text", policy_text
    ) == (
        False,
        access_denied(user, "ecr:SetRepositoryPolicy", seeded.arn),
    )
    removed = skopeo.delete(
        f"docker://{dockyard_server.registry}/{seeded.repository}:pushed", "--creds", f"AWS:{password}", check=False
    )
    assert denied(removed), removed.stderr


def test_read_only(
    iam: Iam, aws: AwsCli, skopeo: Skopeo, dockyard_server: DockyardServer, seeded: Seeded, tmp_path: Path
) -> None:
    user = _user(iam, "AmazonEC2ContainerRegistryReadOnly")
    registry = Registry(skopeo, dockyard_server.registry)
    password = login_password(aws, user)
    assert _can_pull(registry, seeded, password, tmp_path / "pull")
    assert not _can_push(registry, seeded, password, tmp_path)
    assert _api(aws, user, "describe-repositories", "--repository-names", seeded.repository)[0]
    assert _api(aws, user, "list-images", "--repository-name", seeded.repository)[0]
    # Today's version of the policy (v3) grants what the console's read-only views need.
    assert _api(aws, user, "describe-images", "--repository-name", seeded.repository) == (True, "")
    assert _api(aws, user, "list-tags-for-resource", "--resource-arn", seeded.arn) == (True, "")
    assert _api(aws, user, "get-lifecycle-policy", "--repository-name", seeded.repository)[1].startswith(
        "An error occurred (LifecyclePolicyNotFoundException)"
    )
    assert (
        skopeo(
            "list-tags",
            "--tls-verify=false",
            "--creds",
            f"AWS:{password}",
            f"docker://{registry.host}/{seeded.repository}",
        ).returncode
        == 0
    )
    assert _api(
        aws, user, "batch-delete-image", "--repository-name", seeded.repository, "--image-ids", "imageTag=v1"
    ) == (
        False,
        access_denied(user, "ecr:BatchDeleteImage", seeded.arn),
    )
    new_repository = f"ro-{suffix()}"
    assert _api(aws, user, "create-repository", "--repository-name", new_repository) == (
        False,
        access_denied(user, "ecr:CreateRepository", seeded.arn.rsplit("/", 1)[0] + f"/{new_repository}"),
    )


def test_pull_only(
    iam: Iam, aws: AwsCli, skopeo: Skopeo, dockyard_server: DockyardServer, seeded: Seeded, tmp_path: Path
) -> None:
    user = _user(iam, "AmazonEC2ContainerRegistryPullOnly")
    registry = Registry(skopeo, dockyard_server.registry)
    password = login_password(aws, user)
    assert _can_pull(registry, seeded, password, tmp_path / "pull")
    assert not _can_push(registry, seeded, password, tmp_path)
    assert _api(aws, user, "list-images", "--repository-name", seeded.repository) == (
        False,
        access_denied(user, "ecr:ListImages", seeded.arn),
    )
    assert _api(aws, user, "describe-repositories", "--repository-names", seeded.repository) == (
        False,
        access_denied(user, "ecr:DescribeRepositories", seeded.arn),
    )


def test_no_policy_cannot_even_log_in(iam: Iam, aws: AwsCli, dockyard_server: DockyardServer) -> None:
    user = iam.user(f"none-{suffix()}")
    result = aws("ecr", "get-login-password", env=user.env(), check=False)
    assert aws_error(result) == access_denied(user, "ecr:GetAuthorizationToken", "*")
