"""Account settings and pull-time update exclusions through boto3 and the AWS CLI, on a server of
their own (two workers: a change made through one must hold on the other; SQLite and PostgreSQL):
each setting changes what it names, and an excluded principal's pulls leave lastRecordedPullTime
alone."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.integration.ecr_support import error_of, unique
from tests.support.clients import AwsCli, Boto3Clients
from tests.support.identities import (
    AUTH_ONLY,
    SECOND_ACCOUNT_ID,
    Iam,
    Identity,
    aws_error,
    policy,
    root_identity,
)
from tests.support.registry_http import RegistryHttp
from tests.support.server import DockyardServer, ServerFactory, clean_environ, dockyard_command
from tests.support.services import PostgresCluster, postgres_cluster  # noqa: F401

POLL_SECONDS = 60.0
REGISTRY_POLICY_V1_ONLY = (
    "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid registry policy provided'"
)


@dataclass
class Account:
    server: DockyardServer
    aws: AwsCli
    clients: Boto3Clients
    iam: Iam
    database_url: str | None = None

    @property
    def ecr(self) -> Any:
        return self.clients("ecr")

    def ecr_as(self, identity: Identity) -> Any:
        return self.clients(
            "ecr", aws_access_key_id=identity.access_key_id, aws_secret_access_key=identity.secret_access_key
        )

    def registry_as(self, identity: Identity) -> RegistryHttp:
        token = self.ecr_as(identity).get_authorization_token()["authorizationData"][0]["authorizationToken"]
        return RegistryHttp(self.server.url, base64.b64decode(token).decode().partition(":")[2])

    def user(self, prefix: str, inline: dict[str, Any] | None = None) -> Identity:
        return self.iam.user(unique(prefix), inline=inline)


_databases = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def account(request: pytest.FixtureRequest, dockyard_server_factory: ServerFactory) -> Iterator[Account]:
    args = ["--workers", "2"]
    database_url = None
    if request.param == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        database_url = cluster.create_database(f"account_{next(_databases)}_{unique('db')[-10:]}")
        args += ["--database-url", database_url]
    server = dockyard_server_factory(args=args)
    aws = AwsCli(server)
    yield Account(server, aws, Boto3Clients(server), Iam(aws, root_identity(server)), database_url)


def _second_account(account: Account) -> Identity:
    """Account SECOND_ACCOUNT_ID on the server's database, with its root user's access key."""
    command = [*dockyard_command(), "admin", "--data-dir", str(account.server.data_dir)]
    if account.database_url:
        command += ["--database-url", account.database_url]
    done = subprocess.run(
        [*command, "create-account", SECOND_ACCOUNT_ID],
        capture_output=True,
        text=True,
        env=clean_environ(),
        timeout=120,
        check=True,
    )
    key = json.loads(done.stdout)["AccessKey"]
    return Identity("root", SECOND_ACCOUNT_ID, key["AccessKeyId"], key["SecretAccessKey"])


def poll(condition: Callable[[], Any], what: str) -> Any:
    """The first truthy value of `condition`, tried until POLL_SECONDS pass."""
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# --- account settings -------------------------------------------------------------------------


def test_account_settings_defaults_changes_and_errors(account: Account) -> None:
    ecr = account.ecr
    defaults = {"BASIC_SCAN_TYPE_VERSION": "AWS_NATIVE", "REGISTRY_POLICY_SCOPE": "V2", "BLOB_MOUNTING": "ENABLED"}
    for name, value in defaults.items():
        answer = ecr.get_account_setting(name=name)
        assert (answer["name"], answer["value"]) == (name, value)

    assert account.aws("ecr", "put-account-setting", "--name", "REGISTRY_POLICY_SCOPE", "--value", "V1") == {
        "name": "REGISTRY_POLICY_SCOPE",
        "value": "V1",
    }
    # Kept by the database: whichever worker answers sees it.
    for _ in range(4):
        assert account.aws("ecr", "get-account-setting", "--name", "REGISTRY_POLICY_SCOPE")["value"] == "V1"
    put = ecr.put_account_setting(name="BLOB_MOUNTING", value="DISABLED")
    assert (put["name"], put["value"]) == ("BLOB_MOUNTING", "DISABLED")
    assert ecr.get_account_setting(name="BLOB_MOUNTING")["value"] == "DISABLED"
    assert ecr.put_account_setting(name="BASIC_SCAN_TYPE_VERSION", value="AWS_NATIVE")["value"] == "AWS_NATIVE"

    refusals = [
        (lambda: ecr.get_account_setting(name="NO_SUCH_SETTING"), "'name'"),
        (lambda: ecr.put_account_setting(name="NO_SUCH_SETTING", value="V1"), "'name'"),
        # ECR retired Clair: AWS_NATIVE is the only basic scan type left.
        (lambda: ecr.put_account_setting(name="BASIC_SCAN_TYPE_VERSION", value="CLAIR"), "'value'"),
        (lambda: ecr.put_account_setting(name="REGISTRY_POLICY_SCOPE", value="V3"), "'value'"),
        (lambda: ecr.put_account_setting(name="BLOB_MOUNTING", value="enabled"), "'value'"),
    ]
    for call, member in refusals:
        with pytest.raises(ClientError) as refused:
            call()
        code, message = error_of(refused)
        assert code == "InvalidParameterException" and message.startswith(f"Invalid parameter at {member}")
    with pytest.raises(ClientError) as too_long:
        ecr.get_account_setting(name="N" * 65)
    assert error_of(too_long) == (
        "InvalidParameterException",
        "Invalid parameter at 'name' failed to satisfy constraint: 'Member must have length less than or equal to 64'",
    )
    assert ecr.get_account_setting(name="REGISTRY_POLICY_SCOPE")["value"] == "V1"


def test_account_settings_are_authorised_as_their_actions(account: Account) -> None:
    nobody = account.user("settings-nobody", AUTH_ONLY)
    reader = account.user(
        "settings-reader", policy({"Effect": "Allow", "Action": "ecr:GetAccountSetting", "Resource": "*"})
    )
    denied = account.aws("ecr", "get-account-setting", "--name", "BLOB_MOUNTING", env=nobody.env(), check=False)
    assert aws_error(denied) == (
        "An error occurred (AccessDeniedException) when calling the GetAccountSetting operation: "
        f"User: {nobody.arn} is not authorized to perform: ecr:GetAccountSetting on resource: * "
        "because no identity-based policy allows the ecr:GetAccountSetting action"
    )
    assert account.ecr_as(reader).get_account_setting(name="BLOB_MOUNTING")["value"] == "ENABLED"
    with pytest.raises(ClientError) as refused:
        account.ecr_as(reader).put_account_setting(name="BLOB_MOUNTING", value="DISABLED")
    assert error_of(refused) == (
        "AccessDeniedException",
        f"User: {reader.arn} is not authorized to perform: ecr:PutAccountSetting on resource: * "
        "because no identity-based policy allows the ecr:PutAccountSetting action",
    )


def _registry_policy(account: Account, principal: str, actions: list[str], effect: str = "Allow") -> str:
    server = account.server
    return json.dumps(
        policy(
            {
                "Sid": "Registry",
                "Effect": effect,
                "Principal": {"AWS": principal},
                "Action": actions,
                "Resource": f"arn:aws:ecr:{server.region}:{server.account_id}:repository/*",
            }
        )
    )


def test_registry_policy_scope_decides_what_the_registry_policy_governs(account: Account) -> None:
    ecr = account.ecr
    repository = unique("scope")
    ecr.create_repository(repositoryName=repository)
    RegistryHttp.for_server(account.server).push_image(repository, "v1", [b"scope layer"])
    # A user whose own policies only let it log in: the registry policy alone may let it read.
    reader = account.user("scope-reader", AUTH_ONLY)
    reader_ecr = account.ecr_as(reader)
    reads = ["ecr:DescribeImages", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]

    def can_read() -> bool:
        try:
            reader_ecr.describe_images(repositoryName=repository)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "AccessDeniedException"
            return False
        return True

    # V2, the default: a registry policy may name any ECR action, and governs every request.
    ecr.put_registry_policy(policyText=_registry_policy(account, reader.arn, reads))
    assert can_read()
    pulled = account.registry_as(reader).request("GET", f"/v2/{repository}/manifests/v1")
    assert pulled.status_code == 200, pulled.text
    # Its denies bind the registry's own administrators too.
    deny = _registry_policy(account, "*", ["ecr:DeleteRepository"], effect="Deny")
    ecr.put_registry_policy(policyText=deny)
    with pytest.raises(ClientError) as denied:
        ecr.delete_repository(repositoryName=repository, force=True)
    assert error_of(denied)[0] == "AccessDeniedException"
    assert "with an explicit deny in a resource-based policy" in error_of(denied)[1]
    assert not can_read()

    # V1: only replication and pull-through cache actions, which this registry never performs.
    ecr.put_registry_policy(policyText=_registry_policy(account, reader.arn, reads))
    account.aws("ecr", "put-account-setting", "--name", "REGISTRY_POLICY_SCOPE", "--value", "V1")
    assert not can_read()
    refused = account.registry_as(reader).request("GET", f"/v2/{repository}/manifests/v1")
    assert refused.status_code in (401, 403)
    with pytest.raises(ClientError) as invalid:
        ecr.put_registry_policy(policyText=_registry_policy(account, reader.arn, ["ecr:BatchGetImage"]))
    assert error_of(invalid) == ("InvalidParameterException", REGISTRY_POLICY_V1_ONLY)
    ecr.put_registry_policy(policyText=_registry_policy(account, reader.arn, ["ecr:CreateRepository"]))
    ecr.put_registry_policy(policyText=deny.replace("ecr:DeleteRepository", "ecr:ReplicateImage"))

    # Back to V2: the stored policy governs again.
    ecr.put_account_setting(name="REGISTRY_POLICY_SCOPE", value="V2")
    ecr.put_registry_policy(policyText=_registry_policy(account, reader.arn, reads))
    assert can_read()
    ecr.delete_registry_policy()
    assert not can_read()


def test_blob_mounting_setting_decides_whether_a_push_mounts(account: Account) -> None:
    client = RegistryHttp.for_server(account.server)
    source, target = unique("mount-source"), unique("mount-target")
    for name in (source, target):
        account.ecr.create_repository(repositoryName=name)
    digest = client.push_blob(source, b"a layer two repositories share")

    def mount() -> requests.Response:
        return client.request("POST", f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": source})

    account.ecr.put_account_setting(name="BLOB_MOUNTING", value="DISABLED")
    for _ in range(4):  # both workers
        started = mount()
        assert started.status_code == 202 and "/blobs/uploads/" in started.headers["Location"]
    assert client.request("HEAD", f"/v2/{target}/blobs/{digest}").status_code == 404
    account.aws("ecr", "put-account-setting", "--name", "BLOB_MOUNTING", "--value", "ENABLED")
    mounted = mount()
    assert mounted.status_code == 201 and mounted.headers["Location"].endswith(digest)


# --- pull-time update exclusions --------------------------------------------------------------


def test_pull_time_exclusions_register_list_deregister(account: Account) -> None:
    ecr = account.ecr
    base = f"arn:aws:iam::{account.server.account_id}"
    arns = [f"{base}:user/ci/scanner", f"{base}:role/trivy", f"{base}:user/snyk"]
    for arn in arns:
        answer = ecr.register_pull_time_update_exclusion(principalArn=arn)
        assert answer["principalArn"] == arn and answer["createdAt"].timestamp() == pytest.approx(time.time(), abs=120)
    with pytest.raises(ClientError) as again:
        ecr.register_pull_time_update_exclusion(principalArn=arns[0])
    assert error_of(again)[0] == "ExclusionAlreadyExistsException"
    for bad in ("arn:aws:iam::123:user/short-account", f"{base}:group/devs", f"{base}:root"):
        with pytest.raises(ClientError) as invalid:
            ecr.register_pull_time_update_exclusion(principalArn=bad)
        code, message = error_of(invalid)
        assert code == "InvalidParameterException"
        assert message.startswith(
            "Invalid parameter at 'principalArn' failed to satisfy constraint: 'Member must satisfy"
        )

    assert ecr.list_pull_time_update_exclusions()["pullTimeUpdateExclusions"] == sorted(arns)
    first = ecr.list_pull_time_update_exclusions(maxResults=2)
    assert first["pullTimeUpdateExclusions"] == sorted(arns)[:2]
    rest = ecr.list_pull_time_update_exclusions(maxResults=2, nextToken=first["nextToken"])
    assert rest["pullTimeUpdateExclusions"] == sorted(arns)[2:] and "nextToken" not in rest
    listed = account.aws("ecr", "list-pull-time-update-exclusions")
    assert listed["pullTimeUpdateExclusions"] == sorted(arns)

    removed = account.aws("ecr", "deregister-pull-time-update-exclusion", "--principal-arn", arns[1])
    assert removed == {"principalArn": arns[1]}
    gone = account.aws("ecr", "deregister-pull-time-update-exclusion", "--principal-arn", arns[1], check=False)
    assert "ExclusionNotFoundException" in aws_error(gone)
    assert ecr.list_pull_time_update_exclusions()["pullTimeUpdateExclusions"] == sorted([arns[0], arns[2]])

    nobody = account.user("exclusions-nobody", AUTH_ONLY)
    with pytest.raises(ClientError) as denied:
        account.ecr_as(nobody).register_pull_time_update_exclusion(principalArn=nobody.arn)
    assert error_of(denied) == (
        "AccessDeniedException",
        f"User: {nobody.arn} is not authorized to perform: ecr:RegisterPullTimeUpdateExclusion on resource: * "
        "because no identity-based policy allows the ecr:RegisterPullTimeUpdateExclusion action",
    )


def test_pull_time_exclusions_cap_at_one_hundred(account: Account) -> None:
    ecr = account.ecr
    base = f"arn:aws:iam::{account.server.account_id}:role/scanner-"
    for index in range(100):
        ecr.register_pull_time_update_exclusion(principalArn=f"{base}{index}")
    with pytest.raises(ClientError) as full:
        ecr.register_pull_time_update_exclusion(principalArn=f"{base}100")
    assert error_of(full)[0] == "LimitExceededException"
    everything = ecr.list_pull_time_update_exclusions(maxResults=1000)
    assert len(everything["pullTimeUpdateExclusions"]) == 100 and "nextToken" not in everything


def test_an_excluded_principal_pulls_without_moving_last_recorded_pull_time(account: Account) -> None:
    ecr = account.ecr
    repository = unique("pull-times")
    ecr.create_repository(repositoryName=repository)
    owner = RegistryHttp.for_server(account.server)
    for tag in ("scanned", "used", "later"):
        owner.push_image(repository, tag, [f"layer of {tag}".encode()])
    pull_actions = ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    scanner = account.user("scanner", policy({"Effect": "Allow", "Action": pull_actions, "Resource": "*"}))
    registered = ecr.register_pull_time_update_exclusion(principalArn=scanner.arn)
    assert registered["principalArn"] == scanner.arn

    def pull_time(tag: str) -> Any:
        details = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
        return details[0].get("lastRecordedPullTime")

    # The scanner pulls through the registry and through the ECR API, several times over.
    scanner_registry = account.registry_as(scanner)
    for _ in range(4):
        got = scanner_registry.request("GET", f"/v2/{repository}/manifests/scanned")
        assert got.status_code == 200, got.text
    account.ecr_as(scanner).batch_get_image(repositoryName=repository, imageIds=[{"imageTag": "scanned"}])
    # Anyone else's pull is recorded; once it is, the scanner's would have been too.
    for _ in range(4):
        assert owner.request("GET", f"/v2/{repository}/manifests/used").status_code == 200
    poll(lambda: pull_time("used"), "the owner's pull to be recorded")
    assert pull_time("scanned") is None

    # Deregistered, the scanner's pulls count again.
    account.aws("ecr", "deregister-pull-time-update-exclusion", "--principal-arn", scanner.arn)
    assert scanner_registry.request("GET", f"/v2/{repository}/manifests/later").status_code == 200
    poll(lambda: pull_time("later"), "the scanner's pull to be recorded once it is no longer excluded")


def test_each_registry_has_its_own_policy_scope(account: Account) -> None:
    """One registry on V1 leaves another's V2 registry policy governing."""
    other_root = _second_account(account)
    other = Account(account.server, account.aws, account.clients, Iam(account.aws, other_root))
    other_ecr = other.ecr_as(other_root)
    repository = unique("scoped")
    other_ecr.create_repository(repositoryName=repository)
    reader = other.user("other-reader", AUTH_ONLY)
    document = json.loads(_registry_policy(account, reader.arn, ["ecr:DescribeImages"]))
    document["Statement"][0]["Resource"] = f"arn:aws:ecr:{account.server.region}:{SECOND_ACCOUNT_ID}:repository/*"
    other_ecr.put_registry_policy(policyText=json.dumps(document))
    # The first registry has a repository and a policy too, and goes back to V1.
    account.ecr.create_repository(repositoryName=unique("first"))
    account.ecr.put_registry_policy(policyText=_registry_policy(account, reader.arn, ["ecr:CreateRepository"]))
    account.ecr.put_account_setting(name="REGISTRY_POLICY_SCOPE", value="V1")
    assert other_ecr.get_account_setting(name="REGISTRY_POLICY_SCOPE")["value"] == "V2"
    assert other.ecr_as(reader).describe_images(repositoryName=repository)["imageDetails"] == []


def test_an_excluded_role_covers_its_sessions(account: Account) -> None:
    ecr = account.ecr
    repository = unique("role-pulls")
    ecr.create_repository(repositoryName=repository)
    owner = RegistryHttp.for_server(account.server)
    for tag in ("scanned", "used"):
        owner.push_image(repository, tag, [f"role layer of {tag}".encode()])
    assumer = account.user("assumer", policy({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}))
    iam = account.iam.client()
    trust = policy({"Effect": "Allow", "Principal": {"AWS": assumer.arn}, "Action": "sts:AssumeRole"})
    role = iam.create_role(RoleName=unique("trivy"), Path="/scanners/", AssumeRolePolicyDocument=json.dumps(trust))
    pulls = ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    iam.put_role_policy(
        RoleName=role["Role"]["RoleName"],
        PolicyName="pull",
        PolicyDocument=json.dumps(policy({"Effect": "Allow", "Action": pulls, "Resource": "*"})),
    )
    ecr.register_pull_time_update_exclusion(principalArn=role["Role"]["Arn"])
    sts = account.clients(
        "sts", aws_access_key_id=assumer.access_key_id, aws_secret_access_key=assumer.secret_access_key
    )
    credentials = sts.assume_role(RoleArn=role["Role"]["Arn"], RoleSessionName="nightly-scan")["Credentials"]
    session = Identity(
        "session",
        account.server.account_id,
        credentials["AccessKeyId"],
        credentials["SecretAccessKey"],
        credentials["SessionToken"],
    )
    session_ecr = account.clients(
        "ecr",
        aws_access_key_id=session.access_key_id,
        aws_secret_access_key=session.secret_access_key,
        aws_session_token=session.session_token,
    )
    session_ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": "scanned"}])
    token = session_ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    session_registry = RegistryHttp(account.server.url, base64.b64decode(token).decode().partition(":")[2])
    for _ in range(4):
        assert session_registry.request("GET", f"/v2/{repository}/manifests/scanned").status_code == 200

    def pull_time(tag: str) -> Any:
        details = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
        return details[0].get("lastRecordedPullTime")

    for _ in range(4):
        assert owner.request("GET", f"/v2/{repository}/manifests/used").status_code == 200
    poll(lambda: pull_time("used"), "the owner's pull to be recorded")
    assert pull_time("scanned") is None


def test_a_v2_registry_policy_governs_registry_wide_actions_too(account: Account) -> None:
    """Under V2 the registry policy governs every ECR action, the registry-wide ones included
    (scanning configuration, creation templates, DescribeRegistry, signing and replication
    configuration); under V1 it governs none of them."""
    ecr = account.ecr
    registry_wide = {
        "ecr:DescribeRegistry": lambda: ecr.describe_registry(),
        "ecr:GetRegistryScanningConfiguration": lambda: ecr.get_registry_scanning_configuration(),
        "ecr:DescribeRepositoryCreationTemplates": lambda: ecr.describe_repository_creation_templates(),
        "ecr:GetSigningConfiguration": lambda: ecr.get_signing_configuration(),
    }
    document = json.loads(_registry_policy(account, "*", list(registry_wide), effect="Deny"))
    document["Statement"][0]["Resource"] = "*"
    ecr.put_registry_policy(policyText=json.dumps(document))
    try:
        for action, call in registry_wide.items():
            with pytest.raises(ClientError) as denied:
                call()
            assert error_of(denied)[0] == "AccessDeniedException", action
            assert "with an explicit deny in a resource-based policy" in error_of(denied)[1], action
    finally:
        ecr.delete_registry_policy()
    ecr.describe_registry()
    ecr.get_registry_scanning_configuration()
