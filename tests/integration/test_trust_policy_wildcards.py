"""A policy's wildcards cannot stall the server: a resource such as ``repository/*a*a*a*a*a*a*a*b``
in a user's own policy, evaluated against a 256-character repository name, once held a worker
for as long as a backtracking regular expression needed (minutes), so two such calls froze both
workers and every other account waited. Each call now answers at once, and so does everyone
else meanwhile; the policy simulator too, with the same pattern and nothing stored."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import botocore.config
import botocore.exceptions
import pytest
import requests

from tests.support.clients import AwsCli, isolated_boto3_session
from tests.support.identities import SECOND_ACCOUNT_ID, Iam, Identity, ensure_account, policy, root_identity, suffix
from tests.support.server import DockyardServer, ServerFactory

PATHOLOGICAL = "*a*a*a*a*a*a*a*b"
LONG_NAME = "a" * 256  # ECR's longest repository name, and no "b" in it: the worst case
# Generous for a loaded machine; the backtracking matcher needed far longer than this.
PROMPT = 30.0
ALL_DONE = 90.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardServer]:
    factory = ServerFactory(tmp_path_factory.mktemp("trust-policy-wildcards"))
    try:
        yield factory(args=["--workers", "2", "--metrics-address", "off"])
    finally:
        factory.close()


def client(server: DockyardServer, identity: Identity, service: str) -> Any:
    # One attempt and a bounded wait: a stalled call must show up as a failure, not a retry.
    config = botocore.config.Config(retries={"max_attempts": 1}, read_timeout=ALL_DONE + PROMPT, connect_timeout=PROMPT)
    return isolated_boto3_session(server).client(
        service,
        endpoint_url=server.url,
        region_name=server.region,
        aws_access_key_id=identity.access_key_id,
        aws_secret_access_key=identity.secret_access_key,
        config=config,
    )


def repository_arn(server: DockyardServer, name: str) -> str:
    return f"arn:aws:ecr:{server.region}:{server.account_id}:repository/{name}"


def error_code(call: Callable[[], Any]) -> str | None:
    try:
        call()
    except botocore.exceptions.ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return None


def others_are_answered(server: DockyardServer, other: Any, busy: list[Future[Any]]) -> None:
    """While `busy` calls run (and once more after), /healthz and another account's request
    answer within PROMPT each; the busy calls must all end within ALL_DONE."""
    deadline = time.monotonic() + ALL_DONE
    while True:
        finished = all(future.done() for future in busy)
        health = requests.get(server.url + "/healthz", timeout=PROMPT)
        assert health.status_code == 200, health.text
        assert "repositories" in other.describe_repositories()
        if finished:
            return
        assert time.monotonic() < deadline, "calls evaluating a wildcard policy held the server"


def run_concurrently(server: DockyardServer, other: Any, calls: list[Callable[[], Any]]) -> list[Any]:
    pool = ThreadPoolExecutor(len(calls))
    try:
        busy = [pool.submit(call) for call in calls]
        others_are_answered(server, other, busy)
        return [future.result() for future in busy]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a stalled call must not hang the test


def test_a_pathological_resource_pattern_holds_up_no_one(server: DockyardServer) -> None:
    root = root_identity(server)
    ecr = client(server, root, "ecr")
    ecr.create_repository(repositoryName=LONG_NAME)
    matching = "a" * 255 + "b"
    ecr.create_repository(repositoryName=matching)
    name = f"wild-{suffix()}"
    user = Iam(AwsCli(server), root).user(
        name,
        inline=policy(
            {
                "Effect": "Allow",
                "Action": "ecr:DescribeImages",
                "Resource": repository_arn(server, PATHOLOGICAL),
            }
        ),
    )
    users_ecr = client(server, user, "ecr")
    other = client(server, ensure_account(server, SECOND_ACCOUNT_ID), "ecr")

    def describe_long() -> str | None:
        return error_code(lambda: users_ecr.describe_images(repositoryName=LONG_NAME))

    assert run_concurrently(server, other, [describe_long, describe_long]) == [
        "AccessDeniedException",
        "AccessDeniedException",
    ]
    # The same pattern still grants what it names.
    assert users_ecr.describe_images(repositoryName=matching)["imageDetails"] == []


def test_the_simulator_answers_a_pathological_pattern_without_holding_up_others(server: DockyardServer) -> None:
    root = root_identity(server)
    iam = client(server, root, "iam")
    other = client(server, ensure_account(server, SECOND_ACCOUNT_ID), "ecr")
    document = json.dumps(
        policy(
            {"Effect": "Allow", "Action": "ecr:*", "Resource": repository_arn(server, PATHOLOGICAL)},
            {"Effect": "Allow", "Action": "ecr:*a*a*a*a*a*a*a*b", "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": "ecr:ListImages",
                "Resource": "*",
                "Condition": {"StringLike": {"aws:PrincipalTag/team": PATHOLOGICAL}},
            },
            {
                "Effect": "Allow",
                "Action": "ecr:ListImages",
                "Resource": "*",
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:ecr:*:*:repository/{PATHOLOGICAL}"}},
            },
        )
    )
    arns = [repository_arn(server, LONG_NAME), repository_arn(server, "a" * 255 + "b")]
    actions = ["ecr:DescribeImages", "ecr:" + "a" * 124, "ecr:ListImages"]  # 128: the longest action name
    context = [
        {"ContextKeyName": "aws:PrincipalTag/team", "ContextKeyValues": [LONG_NAME], "ContextKeyType": "string"},
        {"ContextKeyName": "aws:SourceArn", "ContextKeyValues": [arns[0]], "ContextKeyType": "string"},
    ]

    def simulate() -> list[tuple[str, str, str]]:
        found = iam.simulate_custom_policy(
            PolicyInputList=[document], ActionNames=actions, ResourceArns=arns, ContextEntries=context
        )
        return [(r["EvalActionName"], r["EvalResourceName"], r["EvalDecision"]) for r in found["EvaluationResults"]]

    results = run_concurrently(server, other, [simulate, simulate])
    # Only the first statement grants anything: every action on the name ending in "b".
    expected = [(action, arn, "allowed" if arn == arns[1] else "implicitDeny") for action in actions for arn in arns]
    assert results == [expected, expected]
