"""Lifecycle policies through the AWS CLI: put, get, delete, preview, validation as ECR words it, and
runs that expire images, on demand (`dockyard lifecycle run`) and on the server's schedule."""

from __future__ import annotations

import base64
import json
import os
import time

import pytest
from botocore.exceptions import ClientError

from tests.integration.ops_support import Pusher, dockyard, dockyard_json
from tests.support.clients import AwsCli, Boto3Clients
from tests.support.server import ServerFactory

KEEP_ONE_UNTAGGED = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "Keep only one untagged image, expire all others",
            "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
            "action": {"type": "expire"},
        }
    ]
}
INVALID_PREFIX = (
    "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: "
)


def error_of(result: object) -> str:
    stderr = getattr(result, "stderr")  # noqa: B009 - CommandResult
    assert getattr(result, "returncode") != 0, stderr  # noqa: B009
    return stderr


def test_put_get_delete_and_preview_with_the_aws_cli(aws: AwsCli) -> None:
    name = "ops-lifecycle-api"
    aws("ecr", "create-repository", "--repository-name", name)
    text = json.dumps(KEEP_ONE_UNTAGGED)

    missing = error_of(aws("ecr", "get-lifecycle-policy", "--repository-name", name, check=False))
    assert "(LifecyclePolicyNotFoundException)" in missing
    assert (
        f"Lifecycle policy does not exist for the repository with name '{name}' in the registry with id "
        f"'{aws.server.account_id}'" in missing
    )

    put = aws("ecr", "put-lifecycle-policy", "--repository-name", name, "--lifecycle-policy-text", text)
    assert put == {"registryId": aws.server.account_id, "repositoryName": name, "lifecyclePolicyText": text}
    got = aws("ecr", "get-lifecycle-policy", "--repository-name", name)
    assert got["lifecyclePolicyText"] == text
    assert got["lastEvaluatedAt"] in (0, 0.0, "1970-01-01T00:00:00+00:00"), "never evaluated yet"

    started = aws("ecr", "start-lifecycle-policy-preview", "--repository-name", name)
    assert started["status"] == "IN_PROGRESS" and started["lifecyclePolicyText"] == text
    preview = aws("ecr", "get-lifecycle-policy-preview", "--repository-name", name)
    assert preview["status"] == "COMPLETE"
    assert preview["previewResults"] == [] and preview["summary"] == {"expiringImageTotalCount": 0}

    deleted = aws("ecr", "delete-lifecycle-policy", "--repository-name", name)
    assert deleted["lifecyclePolicyText"] == text
    gone = error_of(aws("ecr", "delete-lifecycle-policy", "--repository-name", name, check=False))
    assert "(LifecyclePolicyNotFoundException)" in gone
    no_policy = error_of(aws("ecr", "start-lifecycle-policy-preview", "--repository-name", name, check=False))
    assert "(LifecyclePolicyNotFoundException)" in no_policy


def test_policies_are_validated_as_ecr_validates_them(aws: AwsCli) -> None:
    name = "ops-lifecycle-invalid"
    aws("ecr", "create-repository", "--repository-name", name)
    rule = KEEP_ONE_UNTAGGED["rules"][0]
    cases = {
        # countUnit belongs to sinceImagePushed only: the selection fits neither form of the schema.
        "instance failed to match exactly one schema (matched 0 out of 2)": {
            "rules": [rule | {"selection": rule["selection"] | {"countUnit": "days"}}]
        },
        "Only one rule can select Untagged images.": {"rules": [rule, rule | {"rulePriority": 2}]},
        'object has missing required properties (["action"])': {
            "rules": [{k: v for k, v in rule.items() if k != "action"}]
        },
        "Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED.": {
            "rules": [rule | {"selection": rule["selection"] | {"tagStatus": "tagged"}}]
        },
    }
    for reason, document in cases.items():
        stderr = error_of(
            aws(
                "ecr",
                "put-lifecycle-policy",
                "--repository-name",
                name,
                "--lifecycle-policy-text",
                json.dumps(document),
                check=False,
            )
        )
        assert "(InvalidParameterException)" in stderr
        assert f"{INVALID_PREFIX}{reason}'" in stderr
    preview = error_of(
        aws(
            "ecr",
            "start-lifecycle-policy-preview",
            "--repository-name",
            name,
            "--lifecycle-policy-text",
            json.dumps(cases["Only one rule can select Untagged images."]),
            check=False,
        )
    )
    assert f"{INVALID_PREFIX}Only one rule can select Untagged images.'" in preview


def push_generations(pusher: Pusher, repository: str, count: int) -> list[str]:
    """Push `count` images to the tag latest, one after another: all but the last end up untagged."""
    digests = []
    for n in range(count):
        digests.append(pusher.push_unique(repository, "latest", [os.urandom(512 + n)]).digest)
        time.sleep(0.01)
    return digests


def test_a_run_expires_images_and_records_it_in_the_audit_trail(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory(args=["--lifecycle-interval", "0"])
    aws = AwsCli(server)
    ecr = Boto3Clients(server)("ecr")
    name = "lifecycle-run"
    ecr.create_repository(repositoryName=name)
    pusher = Pusher.for_server(server)
    digests = push_generations(pusher, name, 4)
    kept_tagged = pusher.push_unique(name, "v1", [os.urandom(300)]).digest
    untagged_old, newest_untagged = digests[:2], digests[2]
    aws(
        "ecr",
        "put-lifecycle-policy",
        "--repository-name",
        name,
        "--lifecycle-policy-text",
        json.dumps(KEEP_ONE_UNTAGGED),
    )

    aws("ecr", "start-lifecycle-policy-preview", "--repository-name", name)
    preview = aws("ecr", "get-lifecycle-policy-preview", "--repository-name", name)
    assert preview["status"] == "COMPLETE"
    assert [r["imageDigest"] for r in preview["previewResults"]] == untagged_old
    assert all(r["action"] == {"type": "EXPIRE"} and r["appliedRulePriority"] == 1 for r in preview["previewResults"])
    assert preview["summary"]["expiringImageTotalCount"] == 2
    aws("ecr", "wait", "lifecycle-policy-preview-complete", "--repository-name", name)
    first = ecr.get_lifecycle_policy_preview(repositoryName=name, maxResults=1)
    second = ecr.get_lifecycle_policy_preview(repositoryName=name, maxResults=1, nextToken=first["nextToken"])
    assert [r["imageDigest"] for r in first["previewResults"] + second["previewResults"]] == untagged_old
    assert "nextToken" not in second
    assert ecr.get_lifecycle_policy_preview(repositoryName=name, filter={"tagStatus": "TAGGED"})["previewResults"] == []
    with pytest.raises(ClientError) as bad_token:
        ecr.get_lifecycle_policy_preview(repositoryName=name, nextToken=base64.urlsafe_b64encode(b'"x"').decode())
    assert bad_token.value.response["Error"]["Code"] == "InvalidParameterException"

    dry = dockyard_json(server, "lifecycle", "run", "--dry-run")
    assert [e["imageDigest"] for r in dry["repositories"] for e in r["expired"]] == untagged_old
    assert len(ecr.list_images(repositoryName=name)["imageIds"]) == 5, "a dry run changes nothing"

    ran = dockyard(server, "lifecycle", "run")
    assert "2 images expired" in ran.stdout
    remaining = {i["imageDigest"] for i in ecr.list_images(repositoryName=name)["imageIds"]}
    assert remaining == {newest_untagged, digests[3], kept_tagged}
    assert aws("ecr", "get-lifecycle-policy", "--repository-name", name)["lastEvaluatedAt"] not in (0, 0.0)

    events = aws(
        "cloudtrail",
        "lookup-events",
        "--lookup-attributes",
        "AttributeKey=EventName,AttributeValue=PolicyExecutionEvent",
    )["Events"]
    assert len(events) == 1
    record = json.loads(events[0]["CloudTrailEvent"])
    assert record["eventType"] == "AwsServiceEvent" and record["eventSource"] == "ecr.amazonaws.com"
    details = record["serviceEventDetails"]
    assert details["repositoryName"] == name
    expired = [a["lifecycleEventImage"]["digest"] for a in details["lifecycleEventImageActions"]]
    assert sorted(expired) == sorted(untagged_old)
    assert all(a["rulePriority"] == 1 for a in details["lifecycleEventImageActions"])


def test_the_server_applies_policies_on_its_schedule(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory(args=["--lifecycle-interval", "1"])
    ecr = Boto3Clients(server)("ecr")
    name = "lifecycle-scheduled"
    ecr.create_repository(repositoryName=name)
    digests = push_generations(Pusher.for_server(server), name, 3)
    ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps(KEEP_ONE_UNTAGGED))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        remaining = {i["imageDigest"] for i in ecr.list_images(repositoryName=name)["imageIds"]}
        if remaining == set(digests[1:]):
            break
        time.sleep(0.5)
    assert remaining == set(digests[1:]), "the oldest untagged image was not expired on schedule"
    events = Boto3Clients(server)("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "PolicyExecutionEvent"}]
    )["Events"]
    assert len(events) == 1, "one run expired something, once"
    actions = json.loads(events[0]["CloudTrailEvent"])["serviceEventDetails"]["lifecycleEventImageActions"]
    assert [a["lifecycleEventImage"]["digest"] for a in actions] == [digests[0]]
