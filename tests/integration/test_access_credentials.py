"""Credentials as AWS treats them, on every request: a deactivated key, a deleted user or a detached
policy takes effect on the very next registry request (a token names its principal only); temporary
credentials from AssumeRole and GetSessionToken work, bound their ECR tokens, and expire."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.clients import AwsCli, Boto3Clients, Skopeo
from tests.support.identities import (
    SECOND_ACCOUNT_ID,
    Iam,
    Identity,
    Registry,
    allow,
    aws_error,
    denied,
    ensure_account,
    expire_sessions,
    login_password,
    policy,
    root_identity,
    suffix,
)
from tests.support.images import build_image
from tests.support.server import DockyardServer

READ_ONLY = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
POWER_USER = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser"


@pytest.fixture(scope="module")
def repository(
    tmp_path_factory: pytest.TempPathFactory,
    dockyard_server: DockyardServer,
    aws: AwsCli,
    boto3_client: Boto3Clients,
    skopeo: Skopeo,
) -> str:
    name = f"creds-{suffix()}"
    boto3_client("ecr").create_repository(repositoryName=name)
    image = build_image(tmp_path_factory.mktemp("creds") / "layout", "v1", [1024], seed=name)
    password = login_password(aws, root_identity(dockyard_server))
    assert Registry(skopeo, dockyard_server.registry).push(image, name, password).returncode == 0
    return name


@pytest.fixture
def iam(aws: AwsCli, dockyard_server: DockyardServer) -> Iam:
    return Iam(aws, root_identity(dockyard_server))


def _pull(skopeo: Skopeo, server: DockyardServer, repository: str, password: str) -> bool:
    result = Registry(skopeo, server.registry).inspect(repository, "v1", password)
    assert result.returncode == 0 or denied(result), result.stderr
    return result.returncode == 0


def _epoch(value: float | str) -> float:
    """A timestamp as the AWS CLI prints it: epoch seconds (ECR) or ISO 8601 (STS)."""
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _credentials(name: str, account_id: str, issued: dict[str, str]) -> Identity:
    return Identity(
        name, account_id, issued["AccessKeyId"], issued["SecretAccessKey"], session_token=issued["SessionToken"]
    )


def test_a_deactivated_key_is_refused_on_the_next_request(
    iam: Iam, aws: AwsCli, skopeo: Skopeo, dockyard_server: DockyardServer, repository: str
) -> None:
    user = iam.user(f"deact-{suffix()}", managed=("AmazonEC2ContainerRegistryReadOnly",))
    password = login_password(aws, user)
    assert _pull(skopeo, dockyard_server, repository, password)
    iam("update-access-key", "--user-name", user.name, "--access-key-id", user.access_key_id, "--status", "Inactive")
    assert not _pull(skopeo, dockyard_server, repository, password)
    api = aws("ecr", "describe-repositories", env=user.env(), check=False)
    assert aws_error(api) == (
        "An error occurred (UnrecognizedClientException) when calling the DescribeRepositories operation: "
        "The security token included in the request is invalid."
    )
    iam("update-access-key", "--user-name", user.name, "--access-key-id", user.access_key_id, "--status", "Active")
    assert _pull(skopeo, dockyard_server, repository, password)


def test_a_deleted_user_is_refused_on_the_next_request(
    iam: Iam, aws: AwsCli, skopeo: Skopeo, dockyard_server: DockyardServer, repository: str
) -> None:
    user = iam.user(f"gone-{suffix()}", managed=("AmazonEC2ContainerRegistryReadOnly",))
    password = login_password(aws, user)
    assert _pull(skopeo, dockyard_server, repository, password)
    iam("delete-access-key", "--user-name", user.name, "--access-key-id", user.access_key_id)
    iam("detach-user-policy", "--user-name", user.name, "--policy-arn", READ_ONLY)
    iam("delete-user", "--user-name", user.name)
    assert not _pull(skopeo, dockyard_server, repository, password)


def test_a_changed_policy_applies_to_the_next_request(
    iam: Iam, aws: AwsCli, skopeo: Skopeo, dockyard_server: DockyardServer, repository: str
) -> None:
    user = iam.user(f"changed-{suffix()}", managed=("AmazonEC2ContainerRegistryReadOnly",))
    password = login_password(aws, user)
    assert _pull(skopeo, dockyard_server, repository, password)
    aws("ecr", "describe-repositories", env=user.env())  # the signed caller is now cached too
    iam("detach-user-policy", "--user-name", user.name, "--policy-arn", READ_ONLY)
    assert not _pull(skopeo, dockyard_server, repository, password)
    refused = aws("ecr", "describe-repositories", env=user.env(), check=False)
    assert "is not authorized to perform: ecr:DescribeRepositories" in aws_error(refused)
    # A group's policy counts as the user's own.
    group = f"readers-{suffix()}"
    iam("create-group", "--group-name", group)
    iam("attach-group-policy", "--group-name", group, "--policy-arn", READ_ONLY)
    iam("add-user-to-group", "--group-name", group, "--user-name", user.name)
    assert _pull(skopeo, dockyard_server, repository, password)
    # An explicit deny in an inline policy wins over the group's allow.
    deny = policy({"Effect": "Deny", "Action": "ecr:BatchGetImage", "Resource": "*"})
    iam("put-user-policy", "--user-name", user.name, "--policy-name", "deny", "--policy-document", json.dumps(deny))
    assert not _pull(skopeo, dockyard_server, repository, password)


def test_assumed_role_credentials_work_and_expire(
    iam: Iam, aws: AwsCli, skopeo: Skopeo, dockyard_server: DockyardServer, repository: str, tmp_path: Path
) -> None:
    user = iam.user(f"assumer-{suffix()}")
    role = f"pusher-{suffix()}"
    trust = policy({"Effect": "Allow", "Principal": {"AWS": user.arn}, "Action": "sts:AssumeRole"})
    role_arn = iam("create-role", "--role-name", role, "--assume-role-policy-document", json.dumps(trust))["Role"][
        "Arn"
    ]
    iam("attach-role-policy", "--role-name", role, "--policy-arn", POWER_USER)
    assumed = aws(
        "sts", "assume-role", "--role-arn", role_arn, "--role-session-name", "build-42", "--duration-seconds", "900",
        env=user.env(),
    )  # fmt: skip
    account = dockyard_server.account_id
    assert assumed["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{account}:assumed-role/{role}/build-42"
    assert assumed["AssumedRoleUser"]["AssumedRoleId"].startswith("AROA")
    credentials = assumed["Credentials"]
    assert credentials["AccessKeyId"].startswith("ASIA")
    session = _credentials("session", account, credentials)
    identity = aws("sts", "get-caller-identity", env=session.env())
    assert identity["Arn"] == f"arn:aws:sts::{account}:assumed-role/{role}/build-42"
    assert identity["UserId"] == assumed["AssumedRoleUser"]["AssumedRoleId"]
    # The ECR token lasts no longer than the credentials it was obtained with.
    token = aws("ecr", "get-authorization-token", env=session.env())["authorizationData"][0]
    expiration = _epoch(credentials["Expiration"])
    assert abs(_epoch(token["expiresAt"]) - expiration) < 1
    password = login_password(aws, session)
    image = build_image(tmp_path / "layout", "assumed", [512], seed=role)
    assert Registry(skopeo, dockyard_server.registry).push(image, repository, password).returncode == 0
    refused = aws("ecr", "delete-repository", "--repository-name", repository, env=session.env(), check=False)
    assert f"User: arn:aws:sts::{account}:assumed-role/{role}/build-42 is not authorized" in aws_error(refused)
    # Fifteen minutes later (the shortest session STS grants): nothing works any more.
    expire_sessions(dockyard_server, credentials["AccessKeyId"])
    expired = Registry(skopeo, dockyard_server.registry).inspect(repository, "v1", password)
    assert expired.returncode != 0 and "expired" in expired.stderr.lower(), expired.stderr
    api = aws("ecr", "describe-repositories", env=session.env(), check=False)
    assert aws_error(api) == (
        "An error occurred (ExpiredTokenException) when calling the DescribeRepositories operation: "
        "The security token included in the request is expired"
    )
    sts = aws("sts", "get-caller-identity", env=session.env(), check=False)
    assert aws_error(sts) == (
        "An error occurred (ExpiredToken) when calling the GetCallerIdentity operation: "
        "The security token included in the request is expired"
    )


def test_assume_role_is_refused_without_trust(iam: Iam, aws: AwsCli, dockyard_server: DockyardServer) -> None:
    trusted = iam.user(f"trusted-{suffix()}")
    untrusted = iam.user(f"untrusted-{suffix()}", inline=policy(allow("sts:AssumeRole")))
    role = f"narrow-{suffix()}"
    trust = policy({"Effect": "Allow", "Principal": {"AWS": trusted.arn}, "Action": "sts:AssumeRole"})
    role_arn = iam("create-role", "--role-name", role, "--assume-role-policy-document", json.dumps(trust))["Role"][
        "Arn"
    ]
    refused = aws(
        "sts", "assume-role", "--role-arn", role_arn, "--role-session-name", "s1", env=untrusted.env(), check=False
    )
    assert aws_error(refused) == (
        "An error occurred (AccessDenied) when calling the AssumeRole operation: "
        f"User: {untrusted.arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn} "
        "because no resource-based policy allows the sts:AssumeRole action"
    )
    as_root = aws("sts", "assume-role", "--role-arn", role_arn, "--role-session-name", "s1", check=False)
    assert aws_error(as_root) == (
        "An error occurred (AccessDenied) when calling the AssumeRole operation: "
        "Roles may not be assumed by root accounts."
    )
    too_long = aws(
        "sts", "assume-role", "--role-arn", role_arn, "--role-session-name", "s1", "--duration-seconds", "7200",
        env=trusted.env(), check=False,
    )  # fmt: skip
    assert aws_error(too_long) == (
        "An error occurred (ValidationError) when calling the AssumeRole operation: "
        "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
    )
    missing = aws(
        "sts",
        "assume-role",
        "--role-arn",
        f"{role_arn}-nope",
        "--role-session-name",
        "s1",
        env=trusted.env(),
        check=False,
    )
    assert "(AccessDenied)" in aws_error(missing)


def test_cross_account_assume_role(iam: Iam, aws: AwsCli, dockyard_server: DockyardServer) -> None:
    second = Iam(aws, ensure_account(dockyard_server, SECOND_ACCOUNT_ID))
    allowed = second.user(f"xacct-{suffix()}", inline=policy(allow("sts:AssumeRole")))
    not_allowed = second.user(f"xacct-no-{suffix()}")
    role = f"shared-{suffix()}"
    trust = policy({"Effect": "Allow", "Principal": {"AWS": SECOND_ACCOUNT_ID}, "Action": "sts:AssumeRole"})
    role_arn = iam("create-role", "--role-name", role, "--assume-role-policy-document", json.dumps(trust))["Role"][
        "Arn"
    ]
    assumed = aws("sts", "assume-role", "--role-arn", role_arn, "--role-session-name", "x1", env=allowed.env())
    session = _credentials("x", dockyard_server.account_id, assumed["Credentials"])
    assert aws("sts", "get-caller-identity", env=session.env())["Account"] == dockyard_server.account_id
    refused = aws(
        "sts", "assume-role", "--role-arn", role_arn, "--role-session-name", "x1", env=not_allowed.env(), check=False
    )
    assert aws_error(refused).endswith("because no identity-based policy allows the sts:AssumeRole action")


def test_session_token_credentials(
    iam: Iam, aws: AwsCli, skopeo: Skopeo, dockyard_server: DockyardServer, repository: str
) -> None:
    user = iam.user(f"session-{suffix()}", managed=("AmazonEC2ContainerRegistryReadOnly",))
    issued = aws("sts", "get-session-token", "--duration-seconds", "3600", env=user.env())["Credentials"]
    session = _credentials("session", dockyard_server.account_id, issued)
    assert aws("sts", "get-caller-identity", env=session.env())["Arn"] == user.arn
    token = aws("ecr", "get-authorization-token", env=session.env())["authorizationData"][0]
    expiration = _epoch(issued["Expiration"])
    assert abs(_epoch(token["expiresAt"]) - expiration) < 1
    password = login_password(aws, session)
    assert _pull(skopeo, dockyard_server, repository, password)
    # Without MFA, GetSessionToken credentials may not call IAM, nor GetSessionToken again.
    no_iam = aws("iam", "get-user", env=session.env(), check=False)
    assert aws_error(no_iam) == (
        "An error occurred (InvalidClientTokenId) when calling the GetUser operation: "
        "The security token included in the request is invalid."
    )
    again = aws("sts", "get-session-token", env=session.env(), check=False)
    assert aws_error(again) == (
        "An error occurred (AccessDenied) when calling the GetSessionToken operation: "
        "Cannot call GetSessionToken with session credentials"
    )
    forged = Identity("forged", session.account_id, session.access_key_id, session.secret_access_key, "bm90LWl0")
    wrong = aws("sts", "get-caller-identity", env=forged.env(), check=False)
    assert aws_error(wrong) == (
        "An error occurred (InvalidClientTokenId) when calling the GetCallerIdentity operation: "
        "The security token included in the request is invalid."
    )
    expire_sessions(dockyard_server, issued["AccessKeyId"])
    assert not _pull(skopeo, dockyard_server, repository, password)
