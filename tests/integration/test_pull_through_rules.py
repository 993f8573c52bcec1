"""Pull through cache rules through boto3 and the AWS CLI, on a server of their own with two
workers: create, describe (filters, pages), update, delete and validate with ECR's errors and
the per-registry limit; validation really authenticates to upstream registries the test starts
(Debian's docker-registry without auth and with htpasswd, and a Docker Hub-style Bearer realm)
with the credentials of a Secrets Manager secret."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
from botocore.exceptions import ClientError

from tests.integration.ecr_support import unique
from tests.support.clients import AwsCli, Boto3Clients
from tests.support.identities import Iam, ensure_account, root_identity
from tests.support.server import HOST, DockyardServer, ServerFactory, free_port

SECOND_ACCOUNT = "210987654321"
START_SECONDS = 30.0
POLL_SECONDS = 30.0
AUTHENTICATION_FAILED = (
    "The authentication to the upstream registry failed. Verify that the credentials provided in the pull "
    "through cache rule are correct, and try again."
)
REGISTRY_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: {host}:{port}
{auth}"""
HTPASSWD_AUTH = """\
auth:
  htpasswd:
    realm: upstream
    path: {path}
"""


def _start_registry(work: Path, auth: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("docker-registry")
    assert binary is not None, "docker-registry is not installed (APT_PACKAGES in scripts/test)"
    port = free_port()
    (work / "root").mkdir(parents=True, exist_ok=True)
    config = work / "config.yml"
    config.write_text(REGISTRY_CONFIG.format(root=work / "root", host=HOST, port=port, auth=auth))
    log = (work / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log, start_new_session=True)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            requests.get(f"{url}/v2/", timeout=5)
            return process, url
        except requests.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise AssertionError(f"docker-registry did not start: {(work / 'registry.log').read_text()}") from None
            time.sleep(0.1)


@pytest.fixture(scope="module")
def open_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = _start_registry(tmp_path_factory.mktemp("open-upstream"), "")
    yield url
    process.kill()
    process.wait()


@pytest.fixture(scope="module")
def htpasswd_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("htpasswd-upstream")
    password = work / "htpasswd"
    password.write_text(f"puller:{bcrypt.hashpw(b'right-token', bcrypt.gensalt()).decode()}\n")
    process, url = _start_registry(work, HTPASSWD_AUTH.format(path=password))
    yield url
    process.kill()
    process.wait()


class _BearerRegistry(BaseHTTPRequestHandler):
    """Docker Hub's flow: /v2/ challenges with a Bearer realm, the realm hands a token for Basic
    credentials, /v2/ takes the token."""

    token = secrets.token_hex(16)
    user = ("hubuser", "hub-token")

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        host = f"http://{self.headers['Host']}"
        given = self.headers.get("Authorization", "")
        if self.path.startswith("/token"):
            expected = "Basic " + base64.b64encode(":".join(self.user).encode()).decode()
            if given != expected or "service=registry.test" not in self.path:
                self._answer(401, {"details": "incorrect username or password"})
                return
            self._answer(200, {"token": self.token})
            return
        if self.path == "/v2/" and given == f"Bearer {self.token}":
            self._answer(200, {})
            return
        challenge = f'Bearer realm="{host}/token",service="registry.test"'
        self._answer(401, {"errors": [{"code": "UNAUTHORIZED"}]}, {"WWW-Authenticate": challenge})


@pytest.fixture(scope="module")
def bearer_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer((HOST, 0), _BearerRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{HOST}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardServer]:
    factory = ServerFactory(tmp_path_factory.mktemp("pull-through"))
    try:
        # The upstreams these tests start listen on loopback: the operator lets rules name it.
        yield factory(args=["--workers", "2", "--pull-through-upstream", HOST])
    finally:
        factory.close()


@pytest.fixture(scope="module")
def ecr(server: DockyardServer) -> Any:
    return Boto3Clients(server)("ecr")


@pytest.fixture(scope="module")
def sm(server: DockyardServer) -> Any:
    return Boto3Clients(server)("secretsmanager")


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = exc.value.response["Error"]
    return error["Code"], error["Message"]


def _secret(sm: Any, username: str, token: str) -> str:
    value = json.dumps({"username": username, "accessToken": token})
    return str(sm.create_secret(Name=unique("ecr-pullthroughcache/upstream"), SecretString=value)["ARN"])


def test_rules_and_secrets_lifecycle_through_the_cli(
    server: DockyardServer, htpasswd_upstream: str, tmp_path: Path
) -> None:
    # AWS CLI v1 fetches an http:// parameter's content unless told not to.
    config = tmp_path / "aws-config"
    config.write_text("[default]\ncli_follow_urlparam = false\n")
    cli = AwsCli(server)

    def aws(*args: str, check: bool = True) -> Any:
        return cli(*args, check=check, env={"AWS_CONFIG_FILE": str(config)})

    def secret(name: str, token: str) -> str:
        value = json.dumps({"username": "puller", "accessToken": token})
        return str(aws("secretsmanager", "create-secret", "--name", name, "--secret-string", value)["ARN"])

    prefix = unique("ghcr")
    name = f"ecr-pullthroughcache/{prefix}"
    arn = secret(name, "right-token")
    assert aws("secretsmanager", "describe-secret", "--secret-id", arn)["Name"] == name
    created = aws(
        "ecr",
        "create-pull-through-cache-rule",
        "--ecr-repository-prefix",
        prefix,
        "--upstream-registry-url",
        htpasswd_upstream,
        "--upstream-registry",
        "github-container-registry",
        "--credential-arn",
        arn,
    )
    assert created["ecrRepositoryPrefix"] == prefix and created["registryId"] == server.account_id
    assert created["upstreamRegistry"] == "github-container-registry" and created["credentialArn"] == arn
    assert created["upstreamRegistryUrl"] == htpasswd_upstream and "createdAt" in created
    described = aws("ecr", "describe-pull-through-cache-rules", "--ecr-repository-prefixes", prefix)
    [rule] = described["pullThroughCacheRules"]
    assert rule["credentialArn"] == arn and "updatedAt" in rule
    valid = aws("ecr", "validate-pull-through-cache-rule", "--ecr-repository-prefix", prefix)
    assert valid["isValid"] is True and "failure" not in valid and valid["credentialArn"] == arn

    # The rule reads the secret's current value: a wrong one put there fails validation.
    wrong_value = json.dumps({"username": "puller", "accessToken": "wrong-token"})
    aws("secretsmanager", "put-secret-value", "--secret-id", arn, "--secret-string", wrong_value)
    invalid = aws("ecr", "validate-pull-through-cache-rule", "--ecr-repository-prefix", prefix)
    assert invalid["isValid"] is False and invalid["failure"] == AUTHENTICATION_FAILED

    other = secret(f"{name}-2", "right-token")
    updated = aws("ecr", "update-pull-through-cache-rule", "--ecr-repository-prefix", prefix, "--credential-arn", other)
    assert updated["credentialArn"] == other and "updatedAt" in updated
    again = aws("ecr", "validate-pull-through-cache-rule", "--ecr-repository-prefix", prefix)
    assert again["isValid"] is True
    listed = aws("secretsmanager", "list-secrets", "--filters", f"Key=name,Values={name}")["SecretList"]
    assert {entry["ARN"] for entry in listed} == {arn, other}

    deleted = aws("ecr", "delete-pull-through-cache-rule", "--ecr-repository-prefix", prefix)
    assert deleted["ecrRepositoryPrefix"] == prefix and deleted["credentialArn"] == other
    gone = aws("ecr", "describe-pull-through-cache-rules", "--ecr-repository-prefixes", prefix, check=False)
    assert gone.returncode != 0 and "PullThroughCacheRuleNotFoundException" in gone.stderr
    for each in (arn, other):
        aws("secretsmanager", "delete-secret", "--secret-id", each, "--force-delete-without-recovery")
        missing = aws("secretsmanager", "describe-secret", "--secret-id", each, check=False)
        assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr


def test_validation_contacts_the_upstream(
    ecr: Any, sm: Any, open_upstream: str, htpasswd_upstream: str, bearer_upstream: str
) -> None:
    def validate(url: str, registry: str, credential: str | None) -> dict[str, Any]:
        prefix = unique("v")
        extra = {"credentialArn": credential} if credential else {}
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=prefix, upstreamRegistryUrl=url, upstreamRegistry=registry, **extra
        )
        try:
            return dict(ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=prefix))
        finally:
            ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix=prefix)

    assert validate(open_upstream, "quay", None)["isValid"] is True
    needs = validate(htpasswd_upstream, "quay", None)
    assert needs["isValid"] is False and "requires authentication" in needs["failure"]
    assert validate(htpasswd_upstream, "docker-hub", _secret(sm, "puller", "right-token"))["isValid"] is True
    bad_user = validate(htpasswd_upstream, "docker-hub", _secret(sm, "someone", "right-token"))
    assert bad_user == {**bad_user, "isValid": False, "failure": AUTHENTICATION_FAILED}
    hub = _secret(sm, *_BearerRegistry.user)
    assert validate(bearer_upstream, "docker-hub", hub)["isValid"] is True
    wrong = validate(bearer_upstream, "docker-hub", _secret(sm, "hubuser", "not-it"))
    assert wrong["isValid"] is False and wrong["failure"] == AUTHENTICATION_FAILED
    closed = f"http://{HOST}:{free_port()}"
    unreachable = validate(closed, "quay", None)
    assert unreachable["isValid"] is False and "Unable to reach the upstream registry" in unreachable["failure"]


def test_errors_as_ecr_names_them(server: DockyardServer, ecr: Any, sm: Any, open_upstream: str) -> None:
    prefix = unique("errs")
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl="public.ecr.aws")
    [shown] = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix])["pullThroughCacheRules"]
    assert shown["upstreamRegistry"] == "ecr-public"  # inferred from the URL, as ECR does
    with pytest.raises(ClientError) as exists:
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix + "/", upstreamRegistryUrl="quay.io")
    assert _error(exists)[0] == "PullThroughCacheRuleAlreadyExistsException"
    missing = unique("missing")
    for call in (
        lambda: ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix=missing),
        lambda: ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=missing),
        lambda: ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix, missing]),
        lambda: ecr.update_pull_through_cache_rule(ecrRepositoryPrefix=missing, credentialArn=_secret(sm, "a", "b")),
    ):
        with pytest.raises(ClientError) as not_found:
            call()
        assert _error(not_found) == (
            "PullThroughCacheRuleNotFoundException",
            f"The pull through cache rule with the prefix '{missing}' does not exist in the registry with id "
            f"'{server.account_id}'",
        )
    with pytest.raises(ClientError) as unsupported:
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=unique("u"), upstreamRegistryUrl="registry.example")
    assert _error(unsupported)[0] == "UnsupportedUpstreamRegistryException"
    with pytest.raises(ClientError) as needs_secret:
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=unique("u"), upstreamRegistryUrl="registry-1.docker.io")
    assert _error(needs_secret) == (
        "UnsupportedUpstreamRegistryException",
        "The specified upstream registry requires authentication. Specify a valid Secrets Manager ARN and try again.",
    )
    absent = f"arn:aws:secretsmanager:us-east-1:{server.account_id}:secret:ecr-pullthroughcache/none-abcdef"
    with pytest.raises(ClientError) as no_secret:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=unique("u"), upstreamRegistryUrl="ghcr.io", credentialArn=absent
        )
    assert _error(no_secret) == (
        "SecretNotFoundException",
        "The ARN of the secret specified in the pull through cache rule was not found",
    )
    doomed = _secret(sm, "u", "t")
    sm.delete_secret(SecretId=doomed, RecoveryWindowInDays=7)
    with pytest.raises(ClientError) as inaccessible:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=unique("u"), upstreamRegistryUrl="ghcr.io", credentialArn=doomed
        )
    assert _error(inaccessible)[0] == "UnableToAccessSecretException"
    key_file = server.data_dir / "secrets.key"
    readable = _secret(sm, "u", "t")
    kept = key_file.read_bytes()
    try:
        key_file.write_text(bytes(32).hex() + "\n")
        with pytest.raises(ClientError) as undecryptable:
            ecr.create_pull_through_cache_rule(
                ecrRepositoryPrefix=unique("u"), upstreamRegistryUrl="ghcr.io", credentialArn=readable
            )
        assert _error(undecryptable)[0] == "UnableToDecryptSecretValueException"
    finally:
        key_file.write_bytes(kept)
    not_ptc = readable.replace("ecr-pullthroughcache/", "other/")
    with pytest.raises(ClientError) as pattern:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=unique("u"), upstreamRegistryUrl="ghcr.io", credentialArn=not_ptc
        )
    assert _error(pattern)[0] == "InvalidParameterException" and "'credentialArn'" in _error(pattern)[1]
    with pytest.raises(ClientError) as root_prefix:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="ROOT",
            upstreamRegistryUrl=f"{server.account_id}.dkr.ecr.us-west-2.amazonaws.com",
            upstreamRepositoryPrefix="team",
        )
    assert _error(root_prefix)[0] == "InvalidParameterException"
    ecr_rule = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix=unique("mirror"),
        upstreamRegistryUrl=f"{server.account_id}.dkr.ecr.us-west-2.amazonaws.com",
        upstreamRepositoryPrefix="team",
    )
    assert ecr_rule["upstreamRegistry"] == "ecr" and ecr_rule["upstreamRepositoryPrefix"] == "team"
    ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix=ecr_rule["ecrRepositoryPrefix"])
    ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix=prefix)


def test_limit_and_pages_per_registry(server: DockyardServer, open_upstream: str) -> None:
    other = ensure_account(server, SECOND_ACCOUNT)
    ecr = Boto3Clients(server)(
        "ecr", aws_access_key_id=other.access_key_id, aws_secret_access_key=other.secret_access_key
    )
    prefixes = sorted(f"p{index:02d}" for index in range(50))
    for prefix in prefixes:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=prefix, upstreamRegistryUrl=open_upstream, upstreamRegistry="quay"
        )
    with pytest.raises(ClientError) as limit:
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="p50", upstreamRegistryUrl="quay.io")
    assert _error(limit) == (
        "LimitExceededException",
        f"The maximum number of pull through cache rules (50) for the registry with id '{SECOND_ACCOUNT}' "
        "has been reached",
    )
    pages = ecr.get_paginator("describe_pull_through_cache_rules").paginate(PaginationConfig={"PageSize": 7})
    listed = [rule["ecrRepositoryPrefix"] for page in pages for rule in page["pullThroughCacheRules"]]
    assert listed == prefixes
    assert all(
        rule["registryId"] == SECOND_ACCOUNT
        for rule in ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    )
    for prefix in prefixes:
        ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix=prefix)


def test_iam_governs_rule_actions(server: DockyardServer, ecr: Any) -> None:
    iam = Iam(AwsCli(server), root_identity(server))
    describe_only = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ecr:DescribePullThroughCacheRules", "Resource": "*"}],
    }
    user = iam.user(unique("ptc-reader"), inline=describe_only)
    as_user = Boto3Clients(server)(
        "ecr", aws_access_key_id=user.access_key_id, aws_secret_access_key=user.secret_access_key
    )
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        try:
            as_user.describe_pull_through_cache_rules()
            break
        except ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with pytest.raises(ClientError) as denied:
        as_user.create_pull_through_cache_rule(ecrRepositoryPrefix=unique("x"), upstreamRegistryUrl="quay.io")
    code, message = _error(denied)
    assert code == "AccessDeniedException" and "ecr:CreatePullThroughCacheRule" in message


def test_rules_reach_only_public_registries_and_hosts_the_operator_lists(ecr: Any, open_upstream: str) -> None:
    """A tenant writes a rule's URL: one naming the operator's own network (a metadata address, an
    internal service, another port on a listed host with its own port) is refused however the
    request names its upstream registry; public registries and listed hosts are taken."""
    listed_host_port = open_upstream.removeprefix("http://")
    for url, registry in (
        ("http://169.254.169.254", "docker-hub"),
        ("169.254.169.254", "quay"),
        ("http://10.0.0.7:5000", "github-container-registry"),
        ("internal.example.net", "quay"),
        ("http://quay.io", "quay"),  # a public registry, but not over https
    ):
        with pytest.raises(ClientError) as refused:
            ecr.create_pull_through_cache_rule(
                ecrRepositoryPrefix=unique("ssrf"), upstreamRegistryUrl=url, upstreamRegistry=registry
            )
        assert _error(refused)[0] == "UnsupportedUpstreamRegistryException", url
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=unique("public"), upstreamRegistryUrl="quay.io")
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix=unique("listed"), upstreamRegistryUrl=f"http://{listed_host_port}", upstreamRegistry="quay"
    )
