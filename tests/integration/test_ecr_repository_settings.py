"""Repository settings through boto3 and the AWS CLI: tag immutability (with exclusion filters, on
PutImage and on registry pushes), scan on push, encryption, resource tags, DescribeRegistry, and
the service limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.ecr_support import error_of, push, repository, unique
from tests.support.clients import AwsCli, Boto3Clients, Skopeo
from tests.support.images import build_image
from tests.support.server import DockyardServer, ServerFactory


@pytest.fixture
def ecr(boto3_client: Boto3Clients) -> Any:
    return boto3_client("ecr")


@pytest.fixture
def repo(ecr: Any) -> Iterator[str]:
    with repository(ecr, "settings") as name:
        yield name


def immutable_refusal(repo: str, tag: str) -> tuple[str, str]:
    return (
        "ImageTagAlreadyExistsException",
        f"The image tag '{tag}' already exists in the '{repo}' repository and cannot be overwritten because the "
        "tag is immutable.",
    )


def test_immutable_tags(
    ecr: Any, repo: str, tmp_path: Path, aws: AwsCli, skopeo: Skopeo, dockyard_server: DockyardServer
) -> None:
    first = build_image(tmp_path / "layout", "v1", [128], seed="first")
    second = build_image(tmp_path / "layout", "v2", [128], seed="second")
    push(ecr, repo, first, "v1")
    answer = ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE")
    assert (answer["repositoryName"], answer["imageTagMutability"]) == (repo, "IMMUTABLE")
    assert ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]["imageTagMutability"] == "IMMUTABLE"

    with pytest.raises(ClientError) as refused:
        push(ecr, repo, second, "v1")
    assert error_of(refused) == immutable_refusal(repo, "v1")
    push(ecr, repo, second, "v2")  # a new tag is fine

    # The registry API enforces the same rule.
    skopeo.login(dockyard_server.registry, aws("ecr", "get-login-password"))
    copied = skopeo.copy(second, f"docker://{dockyard_server.registry}/{repo}:v1", check=False)
    assert copied.returncode != 0 and "immutable" in copied.stderr
    assert (
        ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"][0]["imageId"]["imageDigest"]
        == first.digest
    )


def test_exclusion_filters(
    ecr: Any, repo: str, tmp_path: Path, aws: AwsCli, skopeo: Skopeo, dockyard_server: DockyardServer
) -> None:
    first = build_image(tmp_path / "layout", "a", [64], seed="first")
    second = build_image(tmp_path / "layout", "b", [64], seed="second")
    filters = [{"filterType": "WILDCARD", "filter": "latest"}, {"filterType": "WILDCARD", "filter": "dev-*"}]
    answer = ecr.put_image_tag_mutability(
        repositoryName=repo, imageTagMutability="IMMUTABLE_WITH_EXCLUSION", imageTagMutabilityExclusionFilters=filters
    )
    assert answer["imageTagMutabilityExclusionFilters"] == filters
    described = ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert described["imageTagMutabilityExclusionFilters"] == filters

    for tag in ("latest", "dev-1", "v1"):
        push(ecr, repo, first, tag)
    push(ecr, repo, second, "latest")  # excluded: mutable
    push(ecr, repo, second, "dev-1")
    with pytest.raises(ClientError) as refused:
        push(ecr, repo, second, "v1")
    assert error_of(refused) == immutable_refusal(repo, "v1")

    ecr.put_image_tag_mutability(
        repositoryName=repo,
        imageTagMutability="MUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "release-*"}],
    )
    push(ecr, repo, second, "v1")  # not excluded: mutable now
    push(ecr, repo, first, "release-1")
    with pytest.raises(ClientError) as pinned:
        push(ecr, repo, second, "release-1")
    assert error_of(pinned) == immutable_refusal(repo, "release-1")

    # A registry-API manifest PUT obeys the same filters.
    skopeo.login(dockyard_server.registry, aws("ecr", "get-login-password"))
    copied = skopeo.copy(second, f"docker://{dockyard_server.registry}/{repo}:release-1", check=False)
    assert copied.returncode != 0 and "immutable" in copied.stderr
    skopeo.copy(first, f"docker://{dockyard_server.registry}/{repo}:v1")  # mutable: moves back
    by_tag = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "release-1"}, {"imageTag": "v1"}])
    assert [image["imageId"]["imageDigest"] for image in by_tag["images"]] == [first.digest, first.digest]

    with pytest.raises(ClientError) as without_filters:
        ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE_WITH_EXCLUSION")
    assert error_of(without_filters)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as with_filters:
        ecr.put_image_tag_mutability(
            repositoryName=repo, imageTagMutability="MUTABLE", imageTagMutabilityExclusionFilters=filters
        )
    assert error_of(with_filters)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as bad_enum:
        ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="SOMETIMES")
    assert error_of(bad_enum) == (
        "InvalidParameterException",
        "Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member must satisfy enum value "
        "set: [IMMUTABLE, MUTABLE, MUTABLE_WITH_EXCLUSION, IMMUTABLE_WITH_EXCLUSION]'",
    )


def test_scanning_and_encryption_configuration(ecr: Any, repo: str, dockyard_server: DockyardServer) -> None:
    answer = ecr.put_image_scanning_configuration(repositoryName=repo, imageScanningConfiguration={"scanOnPush": True})
    assert answer["imageScanningConfiguration"] == {"scanOnPush": True}
    described = ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert described["imageScanningConfiguration"] == {"scanOnPush": True}
    assert described["encryptionConfiguration"] == {"encryptionType": "AES256"}

    key = f"arn:aws:kms:{dockyard_server.region}:{dockyard_server.account_id}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    with repository(ecr, "kms", encryptionConfiguration={"encryptionType": "KMS", "kmsKey": key}) as name:
        kms = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["encryptionConfiguration"]
        assert kms == {"encryptionType": "KMS", "kmsKey": key}
    with repository(ecr, "kms-default", encryptionConfiguration={"encryptionType": "KMS"}) as name:
        kms = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["encryptionConfiguration"]
        assert kms["encryptionType"] == "KMS"
        assert kms["kmsKey"].startswith(f"arn:aws:kms:{dockyard_server.region}:{dockyard_server.account_id}:key/")
    with pytest.raises(ClientError) as aes_with_key:
        ecr.create_repository(
            repositoryName=unique("aes"), encryptionConfiguration={"encryptionType": "AES256", "kmsKey": key}
        )
    assert error_of(aes_with_key)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as no_repo:
        ecr.put_image_scanning_configuration(
            repositoryName=f"{repo}-missing", imageScanningConfiguration={"scanOnPush": True}
        )
    assert error_of(no_repo)[0] == "RepositoryNotFoundException"


def test_resource_tags(ecr: Any, dockyard_server: DockyardServer) -> None:
    with repository(ecr, "tagged", tags=[{"Key": "team", "Value": "a"}]) as name:
        arn = f"arn:aws:ecr:{dockyard_server.region}:{dockyard_server.account_id}:repository/{name}"
        assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "team", "Value": "a"}]
        ecr.tag_resource(resourceArn=arn, tags=[{"Key": "team", "Value": "b"}, {"Key": "env", "Value": "prod"}])
        assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == [
            {"Key": "env", "Value": "prod"},
            {"Key": "team", "Value": "b"},
        ]
        ecr.untag_resource(resourceArn=arn, tagKeys=["team", "absent"])
        assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "env", "Value": "prod"}]

        with pytest.raises(ClientError) as long_key:
            ecr.tag_resource(resourceArn=arn, tags=[{"Key": "k" * 129, "Value": "v"}])
        assert error_of(long_key)[0] == "InvalidTagParameterException"
        with pytest.raises(ClientError) as reserved:
            ecr.tag_resource(resourceArn=arn, tags=[{"Key": "aws:owner", "Value": "v"}])
        assert error_of(reserved)[0] == "InvalidTagParameterException"
        with pytest.raises(ClientError) as too_many:
            ecr.tag_resource(resourceArn=arn, tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
        assert error_of(too_many) == (
            "TooManyTagsException",
            "The list of tags on the repository is over the limit. The maximum number of tags that can be applied "
            "to a repository is 50.",
        )
        assert len(ecr.list_tags_for_resource(resourceArn=arn)["tags"]) == 1  # nothing of the refused call

    with pytest.raises(ClientError) as bad_arn:
        ecr.list_tags_for_resource(resourceArn="arn:aws:s3:::bucket")
    assert error_of(bad_arn) == (
        "InvalidParameterException",
        "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN'",
    )
    gone = f"arn:aws:ecr:{dockyard_server.region}:{dockyard_server.account_id}:repository/tagged-nowhere"
    with pytest.raises(ClientError) as missing:
        ecr.tag_resource(resourceArn=gone, tags=[{"Key": "a", "Value": "b"}])
    assert error_of(missing)[0] == "RepositoryNotFoundException"
    with pytest.raises(ClientError) as create_bad:
        ecr.create_repository(repositoryName=unique("badtags"), tags=[{"Key": "", "Value": "x"}])
    assert error_of(create_bad)[0] == "InvalidTagParameterException"


def test_describe_registry(ecr: Any, dockyard_server: DockyardServer) -> None:
    answer = ecr.describe_registry()
    assert answer["registryId"] == dockyard_server.account_id
    assert answer["replicationConfiguration"] == {"rules": []}


def test_settings_commands_with_the_cli(aws: AwsCli, repo: str, dockyard_server: DockyardServer) -> None:
    arn = f"arn:aws:ecr:{dockyard_server.region}:{dockyard_server.account_id}:repository/{repo}"
    mutability = aws(
        "ecr", "put-image-tag-mutability", "--repository-name", repo, "--image-tag-mutability", "IMMUTABLE"
    )
    assert mutability["imageTagMutability"] == "IMMUTABLE"
    scanning = aws("ecr", "put-image-scanning-configuration", "--repository-name", repo,
                   "--image-scanning-configuration", "scanOnPush=true")  # fmt: skip
    assert scanning["imageScanningConfiguration"] == {"scanOnPush": True}
    assert aws("ecr", "tag-resource", "--resource-arn", arn, "--tags", "Key=team,Value=a") is None
    assert aws("ecr", "list-tags-for-resource", "--resource-arn", arn) == {"tags": [{"Key": "team", "Value": "a"}]}
    assert aws("ecr", "untag-resource", "--resource-arn", arn, "--tag-keys", "team") is None
    assert aws("ecr", "list-tags-for-resource", "--resource-arn", arn) == {"tags": []}
    registry = aws("ecr", "describe-registry")
    assert registry == {"registryId": dockyard_server.account_id, "replicationConfiguration": {"rules": []}}


def test_service_limits_are_enforced_and_configurable(
    dockyard_server_factory: ServerFactory, boto3_client: Boto3Clients, aws: AwsCli, tmp_path: Path
) -> None:
    limits = {
        "DOCKYARD_LIMIT_REPOSITORIES_PER_ACCOUNT": "2",
        "DOCKYARD_LIMIT_IMAGES_PER_REPOSITORY": "2",
        "DOCKYARD_LIMIT_LAYERS_PER_IMAGE": "2",
    }
    server = dockyard_server_factory(env=limits)
    ecr = boto3_client("ecr", server=server)
    ecr.create_repository(repositoryName="one")
    ecr.create_repository(repositoryName="two")
    with pytest.raises(ClientError) as repositories:
        ecr.create_repository(repositoryName="three")
    assert error_of(repositories) == (
        "LimitExceededException",
        "The operation did not succeed because it would have exceeded a service limit for your account. "
        "Repositories per registry: 2",
    )

    images = [build_image(tmp_path / "layout", f"v{i}", [32], seed=f"image {i}") for i in range(3)]
    push(ecr, "one", images[0], "v0")
    push(ecr, "one", images[1], "v1")
    with pytest.raises(ClientError) as per_repository:
        push(ecr, "one", images[2], "v2")
    assert error_of(per_repository)[0] == "LimitExceededException"
    assert "Images per repository: 2" in error_of(per_repository)[1]

    layered = build_image(tmp_path / "layout", "many", [16, 16, 16], seed="layers")
    with pytest.raises(ClientError) as layers:
        push(ecr, "two", layered, "many")
    assert error_of(layers)[0] == "LimitExceededException"
    assert "Layers per image: 2" in error_of(layers)[1]

    refused = aws("ecr", "create-repository", "--repository-name", "three", server=server, check=False)
    assert refused.returncode == 255 and "LimitExceededException" in refused.stderr


def test_registry_ids(ecr: Any, repo: str, dockyard_server: DockyardServer) -> None:
    """The caller's own account id as registryId is the default registry; another account's
    registry answers as AWS does to an outsider without a resource policy: AccessDenied."""
    account, region = dockyard_server.account_id, dockyard_server.region
    described = ecr.describe_repositories(registryId=account, repositoryNames=[repo])["repositories"]
    assert [r["repositoryName"] for r in described] == [repo]
    assert ecr.list_images(registryId=account, repositoryName=repo)["imageIds"] == []
    assert ecr.describe_images(registryId=account, repositoryName=repo)["imageDetails"] == []

    foreign = "999999999999"
    user = f"arn:aws:iam::{account}:root"
    calls = {
        "ecr:CreateRepository": (
            lambda: ecr.create_repository(registryId=foreign, repositoryName=repo),
            f"repository/{repo}",
        ),
        "ecr:DescribeRepositories": (lambda: ecr.describe_repositories(registryId=foreign), "repository/*"),
        "ecr:ListImages": (lambda: ecr.list_images(registryId=foreign, repositoryName=repo), f"repository/{repo}"),
        "ecr:InitiateLayerUpload": (
            lambda: ecr.initiate_layer_upload(registryId=foreign, repositoryName=repo),
            f"repository/{repo}",
        ),
    }
    for action, (call, resource) in calls.items():
        with pytest.raises(ClientError) as refused:
            call()
        assert error_of(refused) == (
            "AccessDeniedException",
            f"User: {user} is not authorized to perform: {action} on resource: "
            f"arn:aws:ecr:{region}:{foreign}:{resource} because no resource-based policy allows the {action} action",
        )
