"""The Secrets Manager API on the ECR endpoint, through boto3 and the AWS CLI, on a server of its
own with two workers: secrets, versions and stages, the deletion window, values sealed at rest,
audit events without the value, and IAM enforcement of secretsmanager:* actions."""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.integration.ecr_support import unique
from tests.support.clients import AwsCli, Boto3Clients
from tests.support.identities import Iam, admin, root_identity
from tests.support.server import DockyardServer, ServerFactory

ARN = re.compile(r"^arn:aws:secretsmanager:us-east-1:123456789012:secret:(?P<name>.+)-[A-Za-z0-9]{6}$")
POLL_SECONDS = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardServer]:
    factory = ServerFactory(tmp_path_factory.mktemp("secrets"))
    try:
        yield factory(args=["--workers", "2", "--log-level", "debug"])
    finally:
        factory.close()


@pytest.fixture(scope="module")
def sm(server: DockyardServer) -> Any:
    return Boto3Clients(server)("secretsmanager")


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = exc.value.response["Error"]
    return error["Code"], error["Message"]


def test_create_read_update_and_stages(sm: Any) -> None:
    name = unique("app/db")
    created = sm.create_secret(Name=name, SecretString='{"password":"one"}', Description="first")
    assert ARN.match(created["ARN"]) and ARN.match(created["ARN"])["name"] == name
    assert created["Name"] == name and created["VersionId"]
    for secret_id in (name, created["ARN"], created["ARN"][:-7]):
        value = sm.get_secret_value(SecretId=secret_id)
        assert value["SecretString"] == '{"password":"one"}' and value["VersionStages"] == ["AWSCURRENT"]
    first = created["VersionId"]
    put = sm.put_secret_value(SecretId=name, SecretString="two")
    assert put["VersionStages"] == ["AWSCURRENT"] and put["VersionId"] != first
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "two"
    previous = sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")
    assert previous["SecretString"] == '{"password":"one"}' and previous["VersionId"] == first
    assert sm.get_secret_value(SecretId=name, VersionId=first)["SecretString"] == '{"password":"one"}'
    updated = sm.update_secret(SecretId=name, SecretString="three", Description="second")
    described = sm.describe_secret(SecretId=name)
    assert described["Description"] == "second"
    assert described["VersionIdsToStages"] == {updated["VersionId"]: ["AWSCURRENT"], put["VersionId"]: ["AWSPREVIOUS"]}
    binary = sm.create_secret(Name=unique("bin"), SecretBinary=b"\x00\x01secret")
    assert sm.get_secret_value(SecretId=binary["ARN"])["SecretBinary"] == b"\x00\x01secret"
    # A retried request (same ClientRequestToken, same value) changes nothing; another value is refused.
    token = "a" * 40
    again = [sm.put_secret_value(SecretId=name, SecretString="four", ClientRequestToken=token) for _ in range(2)]
    assert again[0]["VersionId"] == again[1]["VersionId"] == token
    with pytest.raises(ClientError) as refused:
        sm.put_secret_value(SecretId=name, SecretString="five", ClientRequestToken=token)
    assert _code(refused)[0] == "ResourceExistsException"


def test_errors_as_secrets_manager_words_them(sm: Any, server: DockyardServer) -> None:
    name = unique("errors")
    sm.create_secret(Name=name, SecretString="x")
    with pytest.raises(ClientError) as exists:
        sm.create_secret(Name=name, SecretString="x")
    assert _code(exists) == (
        "ResourceExistsException",
        f"The operation failed because the secret {name} already exists.",
    )
    with pytest.raises(ClientError) as missing:
        sm.get_secret_value(SecretId=unique("missing"))
    assert _code(missing) == ("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
    with pytest.raises(ClientError) as both:
        sm.create_secret(Name=unique("both"), SecretString="x", SecretBinary=b"y")
    assert _code(both)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as no_stage:
        sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")
    assert _code(no_stage) == (
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret value for staging label: AWSPREVIOUS",
    )
    unchecked = Boto3Clients(server)("secretsmanager", config=Config(parameter_validation=False))
    with pytest.raises(ClientError) as invalid:
        unchecked.create_secret(Name="")
    assert _code(invalid) == (
        "ValidationException",
        "1 validation error detected: Value '' at 'name' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1",
    )


def test_deletion_window_restore_and_force_delete(sm: Any, server: DockyardServer) -> None:
    name = unique("deleted")
    arn = sm.create_secret(Name=name, SecretString="gone soon")["ARN"]
    for days, message in ((6, "between 7 and 30"), (31, "between 7 and 30")):
        with pytest.raises(ClientError) as window:
            sm.delete_secret(SecretId=name, RecoveryWindowInDays=days)
        assert _code(window)[0] == "InvalidParameterException" and message in _code(window)[1]
    with pytest.raises(ClientError) as conflicting:
        sm.delete_secret(SecretId=name, RecoveryWindowInDays=7, ForceDeleteWithoutRecovery=True)
    assert _code(conflicting)[0] == "InvalidParameterException"
    before = time.time()
    scheduled = sm.delete_secret(SecretId=name)
    assert scheduled["ARN"] == arn
    assert abs(scheduled["DeletionDate"].timestamp() - (before + 30 * 86400)) < 120
    with pytest.raises(ClientError) as refused:
        sm.get_secret_value(SecretId=name)
    assert _code(refused) == (
        "InvalidRequestException",
        "You can't perform this operation on the secret because it was marked for deletion.",
    )
    assert "DeletedDate" in sm.describe_secret(SecretId=name)
    listed = [entry["Name"] for entry in sm.list_secrets(Filters=[{"Key": "name", "Values": [name]}])["SecretList"]]
    assert listed == []
    planned = sm.list_secrets(IncludePlannedDeletion=True, Filters=[{"Key": "name", "Values": [name]}])
    assert [entry["Name"] for entry in planned["SecretList"]] == [name]
    with pytest.raises(ClientError) as taken:
        sm.create_secret(Name=name, SecretString="again")
    assert _code(taken)[0] == "InvalidRequestException"
    assert sm.restore_secret(SecretId=name)["ARN"] == arn
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "gone soon"
    # The AWS CLI's --force-delete-without-recovery: gone at once, the name free again.
    aws = AwsCli(server)
    aws("secretsmanager", "delete-secret", "--secret-id", name, "--force-delete-without-recovery")
    with pytest.raises(ClientError) as gone:
        sm.describe_secret(SecretId=name)
    assert _code(gone)[0] == "ResourceNotFoundException"
    assert sm.create_secret(Name=name, SecretString="new")["ARN"] != arn


def test_list_filters_pages_and_tags(sm: Any, server: DockyardServer) -> None:
    stem = unique("listed")
    names = [f"{stem}/{index}" for index in range(5)]
    for index, name in enumerate(names):
        sm.create_secret(Name=name, SecretString="v", Tags=[{"Key": "team", "Value": f"t{index % 2}"}])
    pages: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = sm.list_secrets(MaxResults=2, Filters=[{"Key": "name", "Values": [stem]}], **token)
        pages += [entry["Name"] for entry in page["SecretList"]]
        if "NextToken" not in page:
            break
        token = {"NextToken": page["NextToken"]}
    assert sorted(pages) == names
    sm.tag_resource(SecretId=names[0], Tags=[{"Key": "owner", "Value": "me"}])
    tagged = sm.list_secrets(Filters=[{"Key": "tag-key", "Values": ["owner"]}, {"Key": "name", "Values": [stem]}])
    assert [entry["Name"] for entry in tagged["SecretList"]] == [names[0]]
    sm.untag_resource(SecretId=names[0], TagKeys=["owner"])
    assert {"Key": "owner", "Value": "me"} not in sm.describe_secret(SecretId=names[0]).get("Tags", [])
    by_cli = AwsCli(server)("secretsmanager", "list-secrets", "--filters", f"Key=name,Values={stem}")
    assert sorted(entry["Name"] for entry in by_cli["SecretList"]) == names


def _all_bytes(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in directory.rglob("*") if path.is_file())


def test_values_are_sealed_at_rest_and_never_audited_or_logged(sm: Any, server: DockyardServer) -> None:
    plaintext = f"plaintext-{os.urandom(8).hex()}"
    name = unique("sealed")
    sm.create_secret(Name=name, SecretString=plaintext)
    sm.put_secret_value(SecretId=name, SecretString=plaintext + "-2")
    assert sm.get_secret_value(SecretId=name)["SecretString"] == plaintext + "-2"
    key_file = server.data_dir / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    database = b"".join(path.read_bytes() for path in server.data_dir.glob("metadata.db*"))
    assert name.encode() in database and plaintext.encode() not in database
    aws = AwsCli(server)

    def events(event_name: str) -> list[dict[str, Any]]:
        found = aws(
            "cloudtrail", "lookup-events", "--lookup-attributes", f"AttributeKey=EventName,AttributeValue={event_name}"
        )["Events"]
        return [json.loads(event["CloudTrailEvent"]) for event in found if name in event["CloudTrailEvent"]]

    deadline = time.monotonic() + POLL_SECONDS
    while time.monotonic() < deadline and not (events("CreateSecret") and events("GetSecretValue")):
        time.sleep(0.5)
    created, read = events("CreateSecret"), events("GetSecretValue")
    assert created and read
    assert created[0]["eventSource"] == "secretsmanager.amazonaws.com"
    assert created[0]["requestParameters"]["secretString"] == "HIDDEN_DUE_TO_SECURITY_REASONS"
    assert created[0]["requestParameters"]["name"] == name
    assert read[0]["readOnly"] is True and read[0]["responseElements"] is None
    trail = _all_bytes(server.data_dir / "audit")
    assert plaintext.encode() not in trail
    assert plaintext not in server.stderr() and plaintext not in server.stdout_path.read_text(errors="replace")


def test_iam_enforces_secretsmanager_actions(sm: Any, server: DockyardServer) -> None:
    name = unique("guarded")
    arn = sm.create_secret(Name=name, SecretString="guarded value")["ARN"]
    iam = Iam(AwsCli(server), root_identity(server))
    describe_only = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["secretsmanager:DescribeSecret"], "Resource": "*"}],
    }
    user = iam.user(unique("reader"), inline=describe_only)
    as_user = Boto3Clients(server)(
        "secretsmanager", aws_access_key_id=user.access_key_id, aws_secret_access_key=user.secret_access_key
    )
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        try:
            assert as_user.describe_secret(SecretId=name)["ARN"] == arn
            break
        except ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with pytest.raises(ClientError) as denied:
        as_user.get_secret_value(SecretId=name)
    code, message = _code(denied)
    assert code == "AccessDeniedException"
    assert "secretsmanager:GetSecretValue" in message and user.arn in message
    iam.client().put_user_policy(
        UserName=user.name,
        PolicyName="read",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": arn}],
            }
        ),
    )
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        try:
            assert as_user.get_secret_value(SecretId=name)["SecretString"] == "guarded value"
            break
        except ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_rotating_the_key_keeps_every_value_readable(sm: Any, server: DockyardServer) -> None:
    name = unique("rotated")
    sm.create_secret(Name=name, SecretString="before rotation")
    sm.put_secret_value(SecretId=name, SecretString="after rotation")
    key_file = server.data_dir / "secrets.key"
    old_ring = key_file.read_text().split()
    answer = admin(server, "rotate-secrets-key")
    assert answer["ValuesResealed"] >= 2 and answer["RetiredKeys"] == len(old_ring)
    new_ring = key_file.read_text().split()
    assert len(new_ring) == 1 and new_ring[0] not in old_ring
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sm.get_secret_value(SecretId=name)["SecretString"] == "after rotation"
    assert sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")["SecretString"] == "before rotation"
