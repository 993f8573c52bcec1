"""Repository creation templates through boto3 and the AWS CLI, and create on push: a push to a
missing repository that a CREATE_ON_PUSH template covers creates it with the template's settings;
without one the seed's "repository does not exist" answer stands."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.ecr_support import error_of, push, unique
from tests.support.clients import AwsCli, Boto3Clients, Podman
from tests.support.images import build_image
from tests.support.server import DockyardServer

POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "Pull", "Effect": "Allow", "Principal": "*", "Action": ["ecr:BatchGetImage"]}],
}


@pytest.fixture
def ecr(boto3_client: Boto3Clients) -> Any:
    return boto3_client("ecr")


@pytest.fixture
def prefix(ecr: Any) -> Iterator[str]:
    """A namespace of its own, its templates and repositories removed afterwards."""
    name = unique("tpl")
    yield name
    for template in ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]:
        if template["prefix"].startswith(name):
            ecr.delete_repository_creation_template(prefix=template["prefix"])
    for page in ecr.get_paginator("describe_repositories").paginate():
        for repo in page["repositories"]:
            if repo["repositoryName"].startswith(name):
                with contextlib.suppress(ClientError):
                    ecr.delete_repository(repositoryName=repo["repositoryName"], force=True)


def test_template_life_cycle(ecr: Any, prefix: str, dockyard_server: DockyardServer) -> None:
    account = dockyard_server.account_id
    created = ecr.create_repository_creation_template(
        prefix=prefix,
        description="teams' repositories",
        appliedFor=["CREATE_ON_PUSH", "REPLICATION"],
        imageTagMutability="IMMUTABLE",
        resourceTags=[{"Key": "team", "Value": "a"}],
        repositoryPolicy=json.dumps(POLICY),
    )
    assert created["registryId"] == account
    template = created["repositoryCreationTemplate"]
    assert template["prefix"] == prefix and template["appliedFor"] == ["CREATE_ON_PUSH", "REPLICATION"]
    assert template["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert template["createdAt"] == template["updatedAt"]

    with pytest.raises(ClientError) as twice:
        ecr.create_repository_creation_template(prefix=prefix, appliedFor=["CREATE_ON_PUSH"])
    assert error_of(twice) == (
        "TemplateAlreadyExistsException",
        f"The repository creation template with prefix '{prefix}' already exists in the registry with id '{account}'",
    )

    updated = ecr.update_repository_creation_template(prefix=prefix, description="changed")[
        "repositoryCreationTemplate"
    ]
    assert updated["description"] == "changed" and updated["imageTagMutability"] == "IMMUTABLE"
    assert updated["updatedAt"] >= updated["createdAt"]

    described = ecr.describe_repository_creation_templates(prefixes=[prefix])
    assert described["registryId"] == account
    assert [t["prefix"] for t in described["repositoryCreationTemplates"]] == [prefix]

    deleted = ecr.delete_repository_creation_template(prefix=prefix)["repositoryCreationTemplate"]
    assert deleted["description"] == "changed"
    for call in (
        lambda: ecr.delete_repository_creation_template(prefix=prefix),
        lambda: ecr.update_repository_creation_template(prefix=prefix, description="x"),
    ):
        with pytest.raises(ClientError) as missing:
            call()
        assert error_of(missing) == (
            "TemplateNotFoundException",
            f"The repository creation template with prefix '{prefix}' does not exist in the registry with id "
            f"'{account}'",
        )


def test_templates_are_validated(ecr: Any, prefix: str) -> None:
    with pytest.raises(ClientError) as bad_policy:
        ecr.create_repository_creation_template(prefix=prefix, appliedFor=["CREATE_ON_PUSH"], repositoryPolicy="{}")
    assert error_of(bad_policy) == (
        "InvalidParameterException",
        "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'",
    )
    with pytest.raises(ClientError) as bad_scenario:
        ecr.create_repository_creation_template(prefix=prefix, appliedFor=["SOMETIMES"])
    assert error_of(bad_scenario)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as bad_prefix:
        ecr.create_repository_creation_template(prefix="Not/Valid", appliedFor=["CREATE_ON_PUSH"])
    assert error_of(bad_prefix)[0] == "InvalidParameterException"


def test_templates_paginate(ecr: Any, prefix: str) -> None:
    for number in range(5):
        ecr.create_repository_creation_template(prefix=f"{prefix}/p{number}", appliedFor=["CREATE_ON_PUSH"])
    pages = list(ecr.get_paginator("describe_repository_creation_templates").paginate(PaginationConfig={"PageSize": 2}))
    assert len(pages) >= 3
    mine = [
        t["prefix"] for page in pages for t in page["repositoryCreationTemplates"] if t["prefix"].startswith(prefix)
    ]
    assert mine == [f"{prefix}/p{number}" for number in range(5)]


def test_create_on_push(
    ecr: Any,
    prefix: str,
    tmp_path: Path,
    aws: AwsCli,
    podman: Podman,
    dockyard_server: DockyardServer,
) -> None:
    image = build_image(tmp_path / "layout", "v1", [512])
    podman.login(dockyard_server.registry, aws("ecr", "get-login-password"))
    podman.load(image, f"localhost/{prefix}:v1")

    # Without a template the repository must exist first.
    target = f"{dockyard_server.registry}/{prefix}/app:v1"
    podman("tag", f"localhost/{prefix}:v1", target)
    refused = podman.push(target, check=False)
    assert not isinstance(refused, str) and refused.returncode != 0
    with pytest.raises(ClientError):
        ecr.describe_repositories(repositoryNames=[f"{prefix}/app"])

    ecr.create_repository_creation_template(
        prefix=prefix,
        appliedFor=["CREATE_ON_PUSH"],
        imageTagMutability="IMMUTABLE",
        resourceTags=[{"Key": "team", "Value": "a"}],
        repositoryPolicy=json.dumps(POLICY),
    )
    # A more specific template wins over a shorter prefix.
    ecr.create_repository_creation_template(
        prefix=f"{prefix}/special", appliedFor=["CREATE_ON_PUSH"], encryptionConfiguration={"encryptionType": "KMS"}
    )
    digest = podman.push(target)
    repo = ecr.describe_repositories(repositoryNames=[f"{prefix}/app"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"] == [{"Key": "team", "Value": "a"}]
    assert json.loads(ecr.get_repository_policy(repositoryName=f"{prefix}/app")["policyText"]) == POLICY
    assert ecr.list_images(repositoryName=f"{prefix}/app")["imageIds"] == [{"imageDigest": digest, "imageTag": "v1"}]

    # The layer API pushes too (InitiateLayerUpload creates), with the most specific template.
    special = f"{prefix}/special/tool"
    ecr.initiate_layer_upload(repositoryName=special)
    repo = ecr.describe_repositories(repositoryNames=[special])["repositories"][0]
    assert repo["encryptionConfiguration"]["encryptionType"] == "KMS"
    assert repo["imageTagMutability"] == "MUTABLE"
    push(ecr, special, image, "v1")

    # A template for other scenarios does not create repositories on push (nor does a template
    # whose prefix is only a leading part of a name's first component: prefixes end at a '/').
    ecr.create_repository_creation_template(prefix=f"{prefix}-mirror", appliedFor=["PULL_THROUGH_CACHE"])
    mirror = f"{dockyard_server.registry}/{prefix}-mirror/app:v1"
    podman("tag", f"localhost/{prefix}:v1", mirror)
    refused = podman.push(mirror, check=False)
    assert not isinstance(refused, str) and refused.returncode != 0


def test_template_commands_with_the_cli(aws: AwsCli, prefix: str) -> None:
    created = aws("ecr", "create-repository-creation-template", "--prefix", prefix, "--applied-for", "CREATE_ON_PUSH",
                  "--image-tag-mutability", "IMMUTABLE")  # fmt: skip
    assert created["repositoryCreationTemplate"]["prefix"] == prefix
    updated = aws("ecr", "update-repository-creation-template", "--prefix", prefix, "--description", "via the CLI")
    assert updated["repositoryCreationTemplate"]["description"] == "via the CLI"
    listed = aws("ecr", "describe-repository-creation-templates", "--prefixes", prefix)
    assert [t["prefix"] for t in listed["repositoryCreationTemplates"]] == [prefix]
    assert aws("ecr", "delete-repository-creation-template", "--prefix", prefix)["repositoryCreationTemplate"]
    missing = aws("ecr", "delete-repository-creation-template", "--prefix", prefix, check=False)
    assert missing.returncode == 255 and "TemplateNotFoundException" in missing.stderr
