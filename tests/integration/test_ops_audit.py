"""The audit trail: every ECR call and registry push, pull and delete is a CloudTrail event, searchable
with `aws cloudtrail lookup-events` (attributes, time range, pages), and no secret ever appears in an
event or a log line."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.integration.ops_support import Pusher
from tests.support.clients import AwsCli, Boto3Clients
from tests.support.server import DockyardServer, ServerFactory

EVENT_FIELDS = {
    "eventVersion",
    "userIdentity",
    "eventTime",
    "eventSource",
    "eventName",
    "awsRegion",
    "sourceIPAddress",
    "userAgent",
    "requestParameters",
    "responseElements",
    "requestID",
    "eventID",
    "readOnly",
    "eventType",
    "recipientAccountId",
}


def lookup(aws: AwsCli, *args: str) -> list[dict[str, Any]]:
    return aws("cloudtrail", "lookup-events", *args)["Events"]


def by_name(aws: AwsCli, name: str, *args: str) -> list[dict[str, Any]]:
    return lookup(aws, "--lookup-attributes", f"AttributeKey=EventName,AttributeValue={name}", *args)


def eventually(find: Any, timeout: float = 15.0) -> Any:
    """Read-only events reach the trail within a second; another worker's may take that long."""
    deadline = time.monotonic() + timeout
    while True:
        found = find()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_lookup_events_finds_ecr_calls_by_name_and_time_with_pages(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory()
    aws = AwsCli(server)
    started = datetime.now(UTC) - timedelta(seconds=5)
    ecr = Boto3Clients(server)("ecr")
    for n in range(5):
        ecr.create_repository(repositoryName=f"audited-{n}")
    created = aws("ecr", "create-repository", "--repository-name", "audited-cli")["repository"]
    failed = aws("ecr", "create-repository", "--repository-name", "audited-cli", check=False)
    assert failed.returncode != 0

    events = by_name(aws, "CreateRepository", "--start-time", started.isoformat())
    assert len(events) == 7
    names = [json.loads(e["CloudTrailEvent"])["requestParameters"]["repositoryName"] for e in events]
    assert names[:2] == ["audited-cli", "audited-cli"], "newest first"
    assert sorted(names[2:]) == [f"audited-{n}" for n in range(5)]
    latest = [json.loads(e["CloudTrailEvent"]) for e in events[:2]]
    assert sorted(str(e.get("errorCode")) for e in latest) == ["None", "RepositoryAlreadyExistsException"]
    refused = next(e for e in latest if "errorCode" in e)
    assert refused["errorMessage"].startswith("The repository with name 'audited-cli' already exists")
    assert refused["responseElements"] is None
    success = next(e for e in latest if "errorCode" not in e)
    assert set(success) >= EVENT_FIELDS
    assert success["eventSource"] == "ecr.amazonaws.com" and success["awsRegion"] == server.region
    assert success["readOnly"] is False and success["eventType"] == "AwsApiCall"
    assert success["userIdentity"]["type"] == "Root"
    assert success["userIdentity"]["accessKeyId"] == server.access_key_id
    assert success["userAgent"].startswith("aws-cli/")
    assert success["responseElements"]["repository"]["repositoryArn"] == created["repositoryArn"]
    summary = next(e for e in events[:2] if "errorCode" not in json.loads(e["CloudTrailEvent"]))
    assert summary["EventSource"] == "ecr.amazonaws.com" and summary["Username"] == "root"
    assert summary["Resources"] == [{"ResourceType": "AWS::ECR::Repository", "ResourceName": "audited-cli"}]

    # The CLI follows NextToken page by page, and hands out its own token with --max-items.
    paged = by_name(aws, "CreateRepository", "--start-time", started.isoformat(), "--page-size", "2")
    assert [e["EventId"] for e in paged] == [e["EventId"] for e in events]
    first = aws(
        "cloudtrail",
        "lookup-events",
        "--lookup-attributes",
        "AttributeKey=EventName,AttributeValue=CreateRepository",
        "--start-time",
        started.isoformat(),
        "--max-items",
        "3",
        "--page-size",
        "2",
    )
    assert len(first["Events"]) == 3 and first["NextToken"]
    rest = by_name(aws, "CreateRepository", "--start-time", started.isoformat(), "--starting-token", first["NextToken"])
    assert [e["EventId"] for e in first["Events"] + rest] == [e["EventId"] for e in events]

    assert by_name(aws, "CreateRepository", "--end-time", started.isoformat()) == []
    by_resource = lookup(aws, "--lookup-attributes", "AttributeKey=ResourceName,AttributeValue=audited-3")
    assert [e["EventName"] for e in by_resource] == ["CreateRepository"]
    by_key = lookup(aws, "--lookup-attributes", f"AttributeKey=AccessKeyId,AttributeValue={server.access_key_id}")
    assert len(by_key) >= 7


def test_lookup_events_refuses_what_cloudtrail_refuses(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory()
    trail = Boto3Clients(server)("cloudtrail")
    with pytest.raises(ClientError) as caught:
        trail.lookup_events(
            LookupAttributes=[
                {"AttributeKey": "EventName", "AttributeValue": "A"},
                {"AttributeKey": "EventName", "AttributeValue": "B"},
            ]
        )
    assert caught.value.response["Error"]["Code"] == "InvalidLookupAttributesException"
    with pytest.raises(ClientError) as caught:
        trail.lookup_events(StartTime=datetime.now(UTC), EndTime=datetime.now(UTC) - timedelta(days=1))
    assert caught.value.response["Error"]["Code"] == "InvalidTimeRangeException"
    with pytest.raises(ClientError) as caught:
        trail.lookup_events(MaxResults=51)
    assert caught.value.response["Error"]["Code"] == "InvalidMaxResultsException"
    with pytest.raises(ClientError) as caught:
        trail.lookup_events(NextToken="garbage")
    assert caught.value.response["Error"]["Code"] == "InvalidNextTokenException"


def test_registry_pushes_pulls_and_deletes_are_events(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory()
    aws = AwsCli(server)
    Boto3Clients(server)("ecr").create_repository(repositoryName="traced")
    pusher = Pusher.for_server(server)
    image = pusher.push_unique("traced", "v1", [os.urandom(3000)])
    assert pusher.request("GET", "/v2/traced/manifests/v1").status_code == 200
    assert pusher.request("DELETE", f"/v2/traced/manifests/{image.digest}").status_code == 202

    put = json.loads(by_name(aws, "PutImage")[0]["CloudTrailEvent"])
    assert put["requestParameters"] == {"registryId": server.account_id, "repositoryName": "traced", "imageTag": "v1"}
    assert put["responseElements"]["image"]["imageId"] == {"imageDigest": image.digest, "imageTag": "v1"}
    assert put["userAgent"].startswith("python-requests/") and put["readOnly"] is False
    uploads = {
        e["EventName"] for e in lookup(aws, "--lookup-attributes", "AttributeKey=ResourceName,AttributeValue=traced")
    }
    assert {"InitiateLayerUpload", "UploadLayerPart", "CompleteLayerUpload", "PutImage", "BatchDeleteImage"} <= uploads
    pulled = eventually(lambda: by_name(aws, "BatchGetImage"))
    pull = json.loads(pulled[0]["CloudTrailEvent"])
    assert pull["requestParameters"]["imageIds"] == [{"imageTag": "v1"}]
    assert pull["readOnly"] is True and pull["responseElements"] is None
    deleted = json.loads(by_name(aws, "BatchDeleteImage")[0]["CloudTrailEvent"])
    assert deleted["requestParameters"]["imageIds"] == [{"imageDigest": image.digest}]


def secrets_of(server: DockyardServer, password: str) -> list[str]:
    return [server.secret_access_key, password, password[:40]]


def all_text(paths: list[Path]) -> str:
    return "".join(p.read_text(errors="replace") for p in paths if p.is_file())


def test_no_secret_reaches_an_event_or_a_log(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory(args=["--log-level", "debug"])
    aws = AwsCli(server)
    password = aws("ecr", "get-login-password")
    token = Boto3Clients(server)("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    Boto3Clients(server)("ecr").create_repository(repositoryName="secretive")
    pusher = Pusher(server.url, password)
    pusher.push_unique("secretive", "v1", [os.urandom(100)])
    requests.get(f"{server.url}/v2/secretive/manifests/v1", headers={"Authorization": "Basic bm9wZTpub3Bl"}, timeout=10)
    events = eventually(lambda: by_name(aws, "GetAuthorizationToken"))
    assert all(json.loads(e["CloudTrailEvent"])["responseElements"] is None for e in events)
    deadline = time.monotonic() + 5
    audit_files = sorted((server.data_dir / "audit").glob("*.jsonl"))
    while time.monotonic() < deadline and "secretive" not in all_text(audit_files):
        time.sleep(0.2)
        audit_files = sorted((server.data_dir / "audit").glob("*.jsonl"))
    trail = all_text(audit_files)
    logs = server.stderr()
    assert "secretive" in trail and "GetAuthorizationToken" in trail
    for secret in [*secrets_of(server, password), token, "bm9wZTpub3Bl"]:
        assert secret not in trail, "a secret reached the audit trail"
        assert secret not in logs, "a secret reached the log"
    for line in logs.splitlines():
        if line.strip():
            json.loads(line)  # every log line is one JSON object


def test_iam_and_sts_calls_are_events_without_their_secrets(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory()
    iam = Boto3Clients(server)("iam")
    iam.create_user(UserName="auditor")
    key = iam.create_access_key(UserName="auditor")["AccessKey"]
    Boto3Clients(server)("sts").get_caller_identity()
    trail = Boto3Clients(server)("cloudtrail")

    def events(name: str) -> list[dict[str, Any]]:
        found = trail.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}])
        return [json.loads(e["CloudTrailEvent"]) for e in found["Events"]]

    created = events("CreateAccessKey")[0]
    assert created["eventSource"] == "iam.amazonaws.com"
    assert created["requestParameters"] == {"userName": "auditor"}
    assert created["responseElements"]["accessKey"]["accessKeyId"] == key["AccessKeyId"]
    assert created["responseElements"]["accessKey"]["secretAccessKey"] == "HIDDEN_DUE_TO_SECURITY_REASONS"
    assert key["SecretAccessKey"] not in all_text(sorted((server.data_dir / "audit").glob("*.jsonl")))
    assert events("CreateUser")[0]["resources"][0]["type"] == "AWS::IAM::User"
    identity = eventually(lambda: events("GetCallerIdentity"))
    assert identity[0]["eventSource"] == "sts.amazonaws.com" and identity[0]["readOnly"] is True


def console_sign_in(server: DockyardServer, secret: str) -> requests.Response:
    """Sign in to the web console as a browser does: the form's CSRF token, then the key pair."""
    browser = requests.Session()
    page = browser.get(f"{server.url}/console/sign-in", timeout=10)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    form = {"csrf_token": found.group(1), "access_key_id": server.access_key_id, "secret_access_key": secret}
    return browser.post(f"{server.url}/console/sign-in", data=form, allow_redirects=False, timeout=10)


def test_console_sign_ins_are_events(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory()
    aws = AwsCli(server)
    assert console_sign_in(server, "not-the-secret").status_code == 401
    assert console_sign_in(server, server.secret_access_key).status_code == 303

    events = [json.loads(e["CloudTrailEvent"]) for e in by_name(aws, "ConsoleLogin")]
    assert [e["responseElements"] for e in events] == [{"ConsoleLogin": "Success"}, {"ConsoleLogin": "Failure"}]
    success, failure = events
    assert set(success) >= EVENT_FIELDS
    assert success["eventSource"] == "signin.amazonaws.com" and success["eventType"] == "AwsConsoleSignIn"
    assert success["userIdentity"]["arn"] == f"arn:aws:iam::{server.account_id}:root"
    assert success["userIdentity"]["accessKeyId"] == server.access_key_id
    assert success["recipientAccountId"] == server.account_id and "errorMessage" not in success
    assert failure["errorMessage"] == "Failed authentication"
    trail = all_text(sorted((server.data_dir / "audit").glob("*.jsonl")))
    assert server.secret_access_key not in trail and "not-the-secret" not in trail
