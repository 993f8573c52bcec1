"""Throttling: token buckets per account and operation. AWS clients get ThrottlingException (JSON) or
Throttling (Query) and recover by retrying; registry clients get 429 TOOMANYREQUESTS "Rate exceeded"."""

from __future__ import annotations

import os

import botocore.config
import pytest
import requests
from botocore.exceptions import ClientError

from tests.integration.ops_support import Pusher, metric, metrics
from tests.support.clients import AwsCli, Boto3Clients, Podman
from tests.support.images import make_layer
from tests.support.server import ServerFactory

# Buckets are per worker process (a shared limiter is for later): one worker makes the limits exact.
ONE_WORKER = ["--workers", "1"]


def test_get_authorization_token_allows_a_burst_of_50_then_throttles(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory(args=ONE_WORKER)
    ecr = Boto3Clients(server)("ecr")
    outcomes = []
    for _ in range(56):
        try:
            ecr.get_authorization_token()
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
            error = exc
    assert outcomes[:50] == ["ok"] * 50
    assert "ThrottlingException" in outcomes[50:]
    assert error.response["Error"]["Message"] == "Rate exceeded"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    # Other operations have buckets of their own.
    ecr.describe_repositories()


def test_the_aws_cli_standard_retry_mode_recovers(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory(args=[*ONE_WORKER, "--rate-limit", "DescribeRepositories=2:1"])
    ecr = Boto3Clients(server)("ecr")
    for n in range(4):
        ecr.create_repository(repositoryName=f"throttled-{n}")
    aws = AwsCli(server)
    # Four pages, back to back: without retries the second page is refused...
    once = aws(
        "ecr",
        "describe-repositories",
        "--page-size",
        "1",
        check=False,
        env={"AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "1"},
    )
    assert once.returncode != 0
    assert "(ThrottlingException)" in once.stderr and "Rate exceeded" in once.stderr
    # ...and with the standard retry mode every page arrives.
    retried = aws(
        "ecr", "describe-repositories", "--page-size", "1", env={"AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "10"}
    )
    assert sorted(r["repositoryName"] for r in retried["repositories"]) == [f"throttled-{n}" for n in range(4)]
    assert metric(metrics(server), "dockyard_throttled_requests_total", operation="DescribeRepositories") >= 2


def test_boto3_adaptive_and_standard_retries_see_throttling_as_retryable(
    dockyard_server_factory: ServerFactory,
) -> None:
    server = dockyard_server_factory(args=[*ONE_WORKER, "--rate-limit", "ListImages=5:1"])
    ecr = Boto3Clients(server)(
        "ecr", config=botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 10})
    )
    ecr.create_repository(repositoryName="retried")
    for _ in range(6):
        ecr.list_images(repositoryName="retried")


def test_query_protocol_answers_throttling(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory(args=[*ONE_WORKER, "--rate-limit", "GetCallerIdentity=0.01:1"])
    sts = Boto3Clients(server)("sts")
    sts.get_caller_identity()
    with pytest.raises(ClientError) as caught:
        sts.get_caller_identity()
    assert caught.value.response["Error"]["Code"] == "Throttling"
    assert caught.value.response["Error"]["Message"] == "Rate exceeded"


def test_the_registry_answers_429_toomanyrequests_and_podman_waits_it_out(
    dockyard_server_factory: ServerFactory, podman: Podman
) -> None:
    server = dockyard_server_factory(args=[*ONE_WORKER, "--rate-limit", "BatchGetImage=0.25:1"])
    Boto3Clients(server)("ecr").create_repository(repositoryName="limited")
    pusher = Pusher.for_server(server)
    pusher.push_unique("limited", "v1", [make_layer(4096, seed=os.urandom(8).hex()).data])
    ref = f"{server.registry}/limited:v1"
    podman.login(server.registry, AwsCli(server)("ecr", "get-login-password"))

    podman("pull", "--quiet", ref)  # the bucket's one token
    podman("rmi", ref)
    # The next pull is refused with 429 until the bucket refills; podman backs off and retries.
    podman("pull", "--quiet", ref)
    assert podman.exists(ref)
    assert metric(metrics(server), "dockyard_throttled_requests_total", operation="BatchGetImage") >= 1

    raw = requests.get(f"{server.url}/v2/limited/manifests/v1", auth=("AWS", pusher.password), timeout=10)
    raw = raw if raw.status_code == 429 else requests.get(raw.url, auth=("AWS", pusher.password), timeout=10)
    assert raw.status_code == 429
    assert raw.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert raw.json()["errors"][0]["message"] == "Rate exceeded"
    assert raw.headers["X-Request-Id"]
    # Pushes are other operations: not limited.
    pusher.push_unique("limited", "v2", [os.urandom(1024)])
