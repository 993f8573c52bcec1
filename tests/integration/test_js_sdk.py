"""The AWS SDK for JavaScript v3 (an independent SigV4, AWS JSON 1.1 and Query implementation)
drives the ECR user guide's flow against Dockyard: an IAM user and its key, who that key is, a
repository, a registry login, a push (skopeo, with the SDK's token), the image described and
fetched, lifecycle and repository policies, the errors as the SDK surfaces them, and deletion.

The SDK (versions pinned in js/package.json and package-lock.json) is installed once into
~/.cache/dockyard-tests/js-sdk/ and reused by later runs."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import ContainersConfig, Skopeo
from tests.support.images import build_image
from tests.support.js_sdk import JsSdk, install_js_sdk
from tests.support.server import DockyardServer, ServerFactory

ECR_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}
LIFECYCLE_POLICY = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "Expire untagged images after 14 days",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 14,
            },
            "action": {"type": "expire"},
        }
    ]
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, containers_config: ContainersConfig) -> Iterator[DockyardServer]:
    factory = ServerFactory(tmp_path_factory.mktemp("js-sdk-servers"), on_started=[containers_config.trust_server])
    yield factory(args=["--workers", "2"])
    factory.close()


@pytest.fixture(scope="module")
def js(server: DockyardServer) -> JsSdk:
    return JsSdk(server, install_js_sdk())


def output(entry: dict[str, Any]) -> dict[str, Any]:
    """A call's output, failing with what the SDK reported when the call did not succeed."""
    assert "output" in entry, f"the call failed: {entry}"
    assert entry["status"] == 200
    assert entry["requestId"]
    return entry["output"]


def error(entry: dict[str, Any]) -> dict[str, Any]:
    assert "error" in entry, f"the call succeeded: {entry}"
    assert entry["requestId"]
    return {**entry["error"], "status": entry["status"]}


def ecr(command: str, **input: Any) -> dict[str, Any]:
    return {"service": "ecr", "command": command, "input": input}


def iam(command: str, **input: Any) -> dict[str, Any]:
    return {"service": "iam", "command": command, "input": input}


def create_user(js: JsSdk, name: str, policy: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, str]]:
    """An IAM user (with `policy` inline, if any) and an access key of its: (User, SDK credentials)."""
    calls = [iam("CreateUser", UserName=name)]
    if policy is not None:
        calls.append(iam("PutUserPolicy", UserName=name, PolicyName="ecr", PolicyDocument=json.dumps(policy)))
    calls.append(iam("CreateAccessKey", UserName=name))
    results = [output(entry) for entry in js(calls)]
    key = results[-1]["AccessKey"]
    assert key["UserName"] == name
    assert key["Status"] == "Active"
    assert key["AccessKeyId"].startswith("AKIA") and len(key["AccessKeyId"]) == 20
    return results[0]["User"], {"accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"]}


def parse_time(value: str) -> datetime:
    """A timestamp as the SDK gives it (a Date, printed as ISO 8601 in UTC)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_user_guide_flow(js: JsSdk, server: DockyardServer, skopeo: Skopeo, tmp_path: Path) -> None:
    account, region = server.account_id, server.region
    user, credentials = create_user(js, "js-developer", ECR_ALL)
    assert user["Arn"] == f"arn:aws:iam::{account}:user/js-developer"

    identity = output(js.one("sts", "GetCallerIdentity", credentials=credentials))
    assert identity == {"UserId": user["UserId"], "Account": account, "Arn": user["Arn"]}

    name = "js-sdk/hello"
    created = output(
        js.one(
            "ecr",
            "CreateRepository",
            {"repositoryName": name, "imageScanningConfiguration": {"scanOnPush": True}},
            credentials=credentials,
        )
    )["repository"]
    assert created["repositoryName"] == name
    assert created["repositoryArn"] == f"arn:aws:ecr:{region}:{account}:repository/{name}"
    assert created["repositoryUri"] == f"{server.registry}/{name}"
    assert created["registryId"] == account
    assert created["imageTagMutability"] == "MUTABLE"
    assert created["imageScanningConfiguration"] == {"scanOnPush": True}
    assert abs(parse_time(created["createdAt"]) - datetime.now(UTC)) < timedelta(minutes=5)

    token, described = (
        output(entry)
        for entry in js([ecr("GetAuthorizationToken"), ecr("DescribeRepositories")], credentials=credentials)
    )
    (authorization,) = token["authorizationData"]
    assert authorization["proxyEndpoint"] == server.url
    assert parse_time(authorization["expiresAt"]) > datetime.now(UTC) + timedelta(hours=11)
    username, password = base64.b64decode(authorization["authorizationToken"]).decode().split(":", 1)
    assert username == "AWS"
    assert described["repositories"] == [created]

    # The SDK's token is what docker login takes: push with it.
    skopeo.login(server.registry, password)
    image = build_image(tmp_path / "layout", "v1", [2048, {"etc/motd": b"hello from the JS SDK\n"}])
    skopeo.copy(image, f"docker://{created['repositoryUri']}:v1")

    images, fetched = (
        output(entry)
        for entry in js(
            [
                ecr("DescribeImages", repositoryName=name),
                ecr(
                    "BatchGetImage",
                    repositoryName=name,
                    imageIds=[{"imageTag": "v1"}],
                    acceptedMediaTypes=[image.media_type],
                ),
            ],
            credentials=credentials,
        )
    )
    (detail,) = images["imageDetails"]
    assert detail["imageDigest"] == image.digest
    assert detail["imageTags"] == ["v1"]
    assert detail["repositoryName"] == name
    assert detail["registryId"] == account
    assert detail["imageManifestMediaType"] == image.media_type
    assert detail["imageSizeInBytes"] > 2048
    assert abs(parse_time(detail["imagePushedAt"]) - datetime.now(UTC)) < timedelta(minutes=5)
    assert fetched["failures"] == []
    (got,) = fetched["images"]
    assert got["imageId"] == {"imageDigest": image.digest, "imageTag": "v1"}
    assert got["imageManifest"] == image.manifest.data.decode()
    assert got["imageManifestMediaType"] == image.media_type

    lifecycle_text = json.dumps(LIFECYCLE_POLICY)
    repository_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowPull",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            }
        ],
    }
    put_lifecycle, got_lifecycle, set_policy, got_policy = (
        output(entry)
        for entry in js(
            [
                ecr("PutLifecyclePolicy", repositoryName=name, lifecyclePolicyText=lifecycle_text),
                ecr("GetLifecyclePolicy", repositoryName=name),
                ecr("SetRepositoryPolicy", repositoryName=name, policyText=json.dumps(repository_policy)),
                ecr("GetRepositoryPolicy", repositoryName=name),
            ],
            credentials=credentials,
        )
    )
    assert put_lifecycle == {"registryId": account, "repositoryName": name, "lifecyclePolicyText": lifecycle_text}
    assert json.loads(got_lifecycle["lifecyclePolicyText"]) == LIFECYCLE_POLICY
    assert got_lifecycle["repositoryName"] == name
    assert set_policy["repositoryName"] == name
    assert json.loads(set_policy["policyText"]) == repository_policy
    assert got_policy == set_policy

    deleted, after = js(
        [ecr("DeleteRepository", repositoryName=name, force=True), ecr("DescribeRepositories", repositoryNames=[name])],
        credentials=credentials,
    )
    assert output(deleted)["repository"]["repositoryArn"] == created["repositoryArn"]
    assert error(after)["name"] == "RepositoryNotFoundException"


def test_errors_as_the_sdk_surfaces_them(js: JsSdk, server: DockyardServer) -> None:
    account = server.account_id
    not_found = f"The repository with name 'js-sdk/missing' does not exist in the registry with id '{account}'"
    missing_describe, missing_images, created, again, no_user = js(
        [
            ecr("DescribeRepositories", repositoryNames=["js-sdk/missing"]),
            ecr("DescribeImages", repositoryName="js-sdk/missing"),
            ecr("CreateRepository", repositoryName="js-sdk/twice"),
            ecr("CreateRepository", repositoryName="js-sdk/twice"),
            iam("GetUser", UserName="nobody"),
        ]
    )

    # The SDK knows these from the ECR and IAM models: instances of their exception classes.
    for entry in (missing_describe, missing_images):
        assert error(entry) == {
            "name": "RepositoryNotFoundException",
            "message": not_found,
            "fault": "client",
            "modeled": True,
            "status": 400,
        }
    output(created)
    assert error(again) == {
        "name": "RepositoryAlreadyExistsException",
        "message": f"The repository with name 'js-sdk/twice' already exists in the registry with id '{account}'",
        "fault": "client",
        "modeled": True,
        "status": 400,
    }
    assert error(no_user) == {
        "name": "NoSuchEntityException",
        "message": "The user with name nobody cannot be found.",
        "fault": "client",
        "modeled": True,
        "status": 404,
    }


def test_signing_and_access_errors(js: JsSdk, server: DockyardServer) -> None:
    account, region = server.account_id, server.region
    user, credentials = create_user(js, "js-nobody", None)
    wrong_secret = {"accessKeyId": server.access_key_id, "secretAccessKey": "x" * 40}
    unknown_key = {"accessKeyId": "AKIAIOSFODNN7EXAMPLE", "secretAccessKey": "x" * 40}
    sts_identity = {"service": "sts", "command": "GetCallerIdentity", "input": {}}
    results = js(
        [
            {**ecr("DescribeRepositories"), "credentials": wrong_secret},
            {**ecr("DescribeRepositories"), "credentials": unknown_key},
            {**sts_identity, "credentials": wrong_secret},
            {**sts_identity, "credentials": unknown_key},
            {**ecr("CreateRepository", repositoryName="js-sdk/denied"), "credentials": credentials},
            {**iam("ListUsers"), "credentials": credentials},
        ]
    )
    signature = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )
    invalid_token = "The security token included in the request is invalid."
    denied = (
        "User: {arn} is not authorized to perform: {action} on resource: {resource} "
        "because no identity-based policy allows the {action} action"
    )
    assert [(e["name"], e["message"], e["status"]) for e in map(error, results)] == [
        ("InvalidSignatureException", signature, 400),
        ("UnrecognizedClientException", invalid_token, 400),
        ("SignatureDoesNotMatch", signature, 403),
        ("InvalidClientTokenId", invalid_token, 403),
        (
            "AccessDeniedException",
            denied.format(
                arn=user["Arn"],
                action="ecr:CreateRepository",
                resource=f"arn:aws:ecr:{region}:{account}:repository/js-sdk/denied",
            ),
            400,
        ),
        (
            "AccessDenied",
            denied.format(arn=user["Arn"], action="iam:ListUsers", resource=f"arn:aws:iam::{account}:user/"),
            403,
        ),
    ]
