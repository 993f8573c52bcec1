"""ECR-to-ECR pull through cache between two Dockyard servers: the upstream serves region
us-west-2 and the cache knows it as a site (--replication-site, --replication-site-credentials).
A rule for `<account>.dkr.ecr.us-west-2.amazonaws.com` signs in there with GetAuthorizationToken
under the site's key (or a role assumed there), maps repositories through the upstream
repository prefix, and validation really signs in."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import Boto3Clients, Skopeo
from tests.support.images import build_image
from tests.support.registry_http import registry_password
from tests.support.server import DockyardServer, ServerFactory, access_key_id, secret_access_key

UPSTREAM_REGION = "us-west-2"
WRONG_REGION = "eu-west-1"
UPSTREAM_ACCOUNT = "123456789012"
POLL_LIMIT = 120.0
PULLS = ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
AUTHENTICATION_FAILED = (
    "The authentication to the upstream registry failed. Verify that the credentials provided in the pull "
    "through cache rule are correct, and try again."
)


def _ecr_host(region: str) -> str:
    return f"{UPSTREAM_ACCOUNT}.dkr.ecr.{region}.amazonaws.com"


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, containers_config: Any, skopeo: Skopeo
) -> Iterator[tuple[DockyardServer, DockyardServer]]:
    factory = ServerFactory(tmp_path_factory.mktemp("ecr2ecr"), on_started=[containers_config.trust_server])
    try:
        upstream = factory(args=["--workers", "2"], region=UPSTREAM_REGION)
        # The site's key is an IAM user's there: roles may not be assumed with a root key.
        user = _site_user(upstream)
        wrong = f"{access_key_id()}:{secret_access_key()}"
        cache = factory(
            args=[
                "--workers",
                "2",
                "--replication-site",
                f"{UPSTREAM_REGION}={upstream.url}",
                "--replication-site-credentials",
                f"{UPSTREAM_REGION}={user}",
                # A site this deployment holds a key for that the site does not know.
                "--replication-site",
                f"{WRONG_REGION}={upstream.url}",
                "--replication-site-credentials",
                f"{WRONG_REGION}={wrong}",
            ]
        )
        for server in (upstream, cache):
            skopeo.login(server.registry, registry_password(server))
        yield upstream, cache
    finally:
        factory.close()


def _site_user(upstream: DockyardServer) -> str:
    """KEY:SECRET of a user of the upstream that may pull and assume roles."""
    iam = Boto3Clients(upstream)("iam")
    iam.create_user(UserName="ptc-site")
    statement = {"Effect": "Allow", "Action": ["sts:AssumeRole", *PULLS], "Resource": "*"}
    iam.put_user_policy(
        UserName="ptc-site",
        PolicyName="assume",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )
    key = iam.create_access_key(UserName="ptc-site")["AccessKey"]
    return f"{key['AccessKeyId']}:{key['SecretAccessKey']}"


def _stored(ecr: Any, repository: str, tag: str) -> bool:
    try:
        found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    except (ecr.exceptions.ImageNotFoundException, ecr.exceptions.RepositoryNotFoundException):
        return False
    return bool(found)


def _wait_for_stored(ecr: Any, repository: str, tag: str) -> None:
    deadline = time.monotonic() + POLL_LIMIT
    while not _stored(ecr, repository, tag):
        assert time.monotonic() < deadline, f"{repository}:{tag} was never stored"
        time.sleep(0.1)


def test_an_ecr_upstream_at_a_site_is_pulled_through_with_the_site_key(
    servers: tuple[DockyardServer, DockyardServer], skopeo: Skopeo, tmp_path: Path
) -> None:
    upstream, cache = servers
    image = build_image(tmp_path / "src", "v1", layers=[200_000, 3000], seed="ecr to ecr")
    Boto3Clients(upstream)("ecr").create_repository(repositoryName="team/app")
    skopeo.copy(image, f"docker://{upstream.registry}/team/app:v1")

    ecr = Boto3Clients(cache)("ecr")
    created = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="mirror",
        upstreamRegistryUrl=_ecr_host(UPSTREAM_REGION),
        upstreamRegistry="ecr",
        upstreamRepositoryPrefix="team",
    )
    assert created["upstreamRepositoryPrefix"] == "team"
    valid = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="mirror")
    assert valid["isValid"] is True and "failure" not in valid

    source = f"docker://{cache.registry}/mirror/app:v1"
    skopeo.copy(source, f"oci:{tmp_path / 'pulled'}:v1")
    assert skopeo.inspect_raw(source) == image.manifest.data
    _wait_for_stored(ecr, "mirror/app", "v1")
    got = ecr.batch_get_image(repositoryName="mirror/app", imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageId"]["imageDigest"] == image.digest

    # A repository the upstream does not have is not created here, as for any other upstream.
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.batch_get_image(repositoryName="mirror/absent", imageIds=[{"imageTag": "v1"}])


def test_validation_signs_in_and_names_a_wrong_key(servers: tuple[DockyardServer, DockyardServer]) -> None:
    _, cache = servers
    ecr = Boto3Clients(cache)("ecr")
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="wrong-key", upstreamRegistryUrl=_ecr_host(WRONG_REGION), upstreamRegistry="ecr"
    )
    refused = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="wrong-key")
    assert refused["isValid"] is False and refused["failure"] == AUTHENTICATION_FAILED
    with pytest.raises(ecr.exceptions.ClientError) as failed:
        ecr.batch_get_image(repositoryName="wrong-key/team/app", imageIds=[{"imageTag": "v1"}])
    assert failed.value.response["Error"]["Code"] == "UnableToGetUpstreamImageException"


def test_a_custom_role_is_assumed_at_the_site(
    servers: tuple[DockyardServer, DockyardServer], skopeo: Skopeo, tmp_path: Path
) -> None:
    upstream, cache = servers
    iam = Boto3Clients(upstream)("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{UPSTREAM_ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    puller = iam.create_role(RoleName="ptc-puller", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    statement = {"Effect": "Allow", "Action": PULLS, "Resource": "*"}
    iam.put_role_policy(
        RoleName="ptc-puller",
        PolicyName="pull",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )
    nobody = iam.create_role(RoleName="ptc-nobody", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    image = build_image(tmp_path / "src", "v2", layers=[40_000], seed="by role")
    Boto3Clients(upstream)("ecr").create_repository(repositoryName="roles/app")
    skopeo.copy(image, f"docker://{upstream.registry}/roles/app:v2")

    ecr = Boto3Clients(cache)("ecr")
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="by-role",
        upstreamRegistryUrl=_ecr_host(UPSTREAM_REGION),
        upstreamRegistry="ecr",
        customRoleArn=nobody,
    )
    denied = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="by-role")
    assert denied["isValid"] is False and denied["failure"] == AUTHENTICATION_FAILED

    ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="by-role", customRoleArn=puller)
    allowed = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="by-role")
    assert allowed["isValid"] is True and allowed["customRoleArn"] == puller
    source = f"docker://{cache.registry}/by-role/roles/app:v2"
    assert skopeo.inspect_raw(source) == image.manifest.data
    skopeo.copy(source, f"oci:{tmp_path / 'pulled'}:v2")
    _wait_for_stored(ecr, "by-role/roles/app", "v2")
