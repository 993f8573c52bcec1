"""A SigV4 signature binds the operation (issue 12, "Trust"), replayed over raw HTTP against
`dockyard serve --workers 2`: an X-Amz-Target added after signing, a presigned URL that signs only
Host, and UNSIGNED-PAYLOAD with a body its signer never saw are each refused with AWS's error, and
nothing changes; boto3 and the AWS CLI keep working for ECR, IAM and STS, session tokens included."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import httpx
import pytest
from botocore.auth import S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.clients import AwsCli, Boto3Clients
from tests.support.identities import aws_error, suffix
from tests.support.server import DockyardServer, ServerFactory

ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921."
JSON_TYPE = "application/x-amz-json-1.1"
FORM_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
SIGNATURE_ERRORS = {"InvalidSignatureException", "IncompleteSignatureException", "MissingAuthenticationTokenException"}
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)


def unsigned(name: str) -> str:
    return f"'{name}' must be a 'SignedHeader' in the AWS Authorization."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardServer]:
    factory = ServerFactory(tmp_path_factory.mktemp("sigv4-binding"))
    # No metrics listener: its fixed default address would collide with other servers on the machine.
    yield factory(args=["--workers", "2", "--metrics-address", "off"])
    factory.close()


@pytest.fixture(scope="module")
def boto(server: DockyardServer) -> Boto3Clients:
    return Boto3Clients(server)


@pytest.fixture(scope="module")
def cli(server: DockyardServer) -> AwsCli:
    return AwsCli(server)


@pytest.fixture
def repository(boto: Boto3Clients) -> str:
    name = f"bind-{suffix()}"
    boto("ecr").create_repository(repositoryName=name)
    return name


def credentials(server: DockyardServer, token: str | None = None) -> Credentials:
    return Credentials(server.access_key_id, server.secret_access_key, token)


def header_signed(
    server: DockyardServer, headers: dict[str, str], body: bytes, service: str = "ecr", token: str | None = None
) -> AWSRequest:
    request = AWSRequest(method="POST", url=server.url + "/", headers=headers, data=body)
    SigV4Auth(credentials(server, token), service, server.region).add_auth(request)
    return request


def presigned(
    server: DockyardServer,
    headers: dict[str, str] | None = None,
    *,
    query: str = "",
    service: str = "ecr",
    signer: type[SigV4QueryAuth] = SigV4QueryAuth,
) -> AWSRequest:
    """A shared URL for POST / (no body signed in: botocore's presigned URLs carry none)."""
    url = server.url + "/" + (f"?{query}" if query else "")
    request = AWSRequest(method="POST", url=url, headers=headers or {})
    signer(credentials(server), service, server.region, expires=900).add_auth(request)
    return request


def send(request: AWSRequest, *, extra: dict[str, str] | None = None, body: bytes | None = None) -> httpx.Response:
    """Send what was signed, with headers first and a body the signer may never have seen."""
    headers = {**(extra or {}), **{k: v for k, v in request.headers.items()}}
    content = request.body if body is None else body
    return httpx.post(request.url, headers=headers, content=content or b"", timeout=60)


def json_error(response: httpx.Response) -> tuple[int, str, str]:
    document: dict[str, Any] = response.json()
    assert "__type" in document, f"not refused: {response.status_code} {response.text}"
    return response.status_code, document["__type"], document.get("message", "")


def query_error(response: httpx.Response) -> tuple[int, str, str]:
    root = ET.fromstring(response.content)
    namespace = root.tag.partition("}")[0] + "}"
    error = root.find(f"{namespace}Error")
    assert error is not None, response.text
    return response.status_code, error.findtext(f"{namespace}Code", ""), error.findtext(f"{namespace}Message", "")


def still_there(boto: Boto3Clients, cli: AwsCli, repository: str) -> None:
    found = boto("ecr").describe_repositories(repositoryNames=[repository])["repositories"]
    assert [r["repositoryName"] for r in found] == [repository]
    listed = cli("ecr", "describe-repositories", "--repository-names", repository)["repositories"]
    assert [r["repositoryName"] for r in listed] == [repository]


def test_target_header_added_after_signing_is_refused(
    server: DockyardServer, boto: Boto3Clients, cli: AwsCli, repository: str
) -> None:
    body = json.dumps({"repositoryName": repository, "force": True}).encode()
    request = header_signed(server, {"Content-Type": JSON_TYPE}, body)
    for operation in ("DescribeImages", "DeleteRepository"):
        response = send(request, extra={"X-Amz-Target": ECR_TARGET + operation})
        assert json_error(response) == (400, "InvalidSignatureException", unsigned("x-amz-target"))
    still_there(boto, cli, repository)
    # Ordinary ECR clients sign X-Amz-Target: they are unaffected.
    assert cli("ecr", "get-login-password")
    assert boto("ecr").list_images(repositoryName=repository)["imageIds"] == []


@pytest.mark.parametrize("operation", ["DescribeImages", "ListImages", "GetRepositoryPolicy", "DeleteRepository"])
def test_presigned_url_signing_only_host_is_not_a_credential_for_every_action(
    server: DockyardServer, boto: Boto3Clients, cli: AwsCli, repository: str, operation: str
) -> None:
    # Signed S3-style (Host only, payload not hashed), then sent with an operation and a body.
    request = presigned(server, signer=S3SigV4QueryAuth)
    assert "X-Amz-SignedHeaders=host&" in request.url
    response = send(
        request,
        extra={"X-Amz-Target": ECR_TARGET + operation, "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"},
        body=json.dumps({"repositoryName": repository, "force": True}).encode(),
    )
    assert json_error(response) == (400, "InvalidSignatureException", unsigned("x-amz-target"))
    # botocore's own host-only URL (payload hashed: empty) cannot take an operation either.
    response = send(presigned(server), extra={"X-Amz-Target": ECR_TARGET + "DescribeRepositories"})
    assert json_error(response) == (400, "InvalidSignatureException", unsigned("x-amz-target"))
    still_there(boto, cli, repository)


def test_unsigned_payload_in_a_presigned_query_creates_nothing(server: DockyardServer, boto: Boto3Clients) -> None:
    name = f"evil-{suffix()}"
    request = presigned(
        server,
        {"X-Amz-Target": ECR_TARGET + "CreateRepository", "Content-Type": JSON_TYPE},
        query="X-Amz-Content-Sha256=UNSIGNED-PAYLOAD",
        signer=S3SigV4QueryAuth,
    )
    response = send(request, body=json.dumps({"repositoryName": name}).encode())
    assert json_error(response) == (400, "InvalidSignatureException", MISMATCH)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        boto("ecr").describe_repositories(repositoryNames=[name])
    assert caught.value.response["Error"]["Code"] == "RepositoryNotFoundException"
    # botocore's presigned ECR URL signs content-type, host and x-amz-target (and an empty body):
    # used as meant, it passes authentication; with a body its signer did not hash, it does not.
    url = boto("ecr").generate_presigned_url("describe_repositories", ExpiresIn=300)
    headers = {"X-Amz-Target": ECR_TARGET + "DescribeRepositories", "Content-Type": JSON_TYPE}
    response = httpx.post(url, headers=headers, timeout=60)
    assert response.status_code == 200 or json_error(response)[1] not in SIGNATURE_ERRORS, response.text
    response = httpx.post(url, headers=headers, content=b"{}", timeout=60)
    assert json_error(response) == (400, "InvalidSignatureException", MISMATCH)


def test_query_protocol_action_must_be_in_a_signed_payload(
    server: DockyardServer, boto: Boto3Clients, cli: AwsCli
) -> None:
    user = f"evil-{suffix()}"
    body = f"Action=CreateUser&UserName={user}&Version=2010-05-08".encode()
    # A host-only shared URL with the payload hash declared after signing.
    request = presigned(server, service="iam", signer=S3SigV4QueryAuth)
    response = send(request, extra={"X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD", "Content-Type": FORM_TYPE}, body=body)
    assert query_error(response) == (403, "SignatureDoesNotMatch", unsigned("x-amz-content-sha256"))
    # UNSIGNED-PAYLOAD signed into the URL: the body is still not what was signed.
    request = presigned(server, query="X-Amz-Content-Sha256=UNSIGNED-PAYLOAD", service="iam", signer=S3SigV4QueryAuth)
    response = send(request, extra={"Content-Type": FORM_TYPE}, body=body)
    assert query_error(response) == (403, "SignatureDoesNotMatch", MISMATCH)
    result = cli("iam", "get-user", "--user-name", user, check=False)
    assert "(NoSuchEntity)" in aws_error(result)
    # Ordinary IAM and STS clients sign the body: they are unaffected.
    created = f"ok-{suffix()}"
    cli("iam", "create-user", "--user-name", created)
    assert boto("iam").get_user(UserName=created)["User"]["UserName"] == created
    assert cli("sts", "get-caller-identity")["Account"] == server.account_id
    assert boto("sts").get_caller_identity()["Account"] == server.account_id


def test_session_token_must_be_signed_and_session_clients_still_work(
    server: DockyardServer, boto: Boto3Clients, cli: AwsCli, repository: str
) -> None:
    issued = boto("sts").get_session_token(DurationSeconds=900)["Credentials"]
    key, secret, token = issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"]
    session = {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": token}
    # Ordinary clients: the AWS CLI and boto3 sign the token.
    assert cli("ecr", "get-login-password", env=session)
    listed = cli("ecr", "describe-repositories", "--repository-names", repository, env=session)
    assert listed["repositories"][0]["repositoryName"] == repository
    ecr = boto("ecr", aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token)
    assert ecr.describe_repositories(repositoryNames=[repository])["repositories"]
    sts = boto("sts", aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token)
    assert sts.get_caller_identity()["Account"] == server.account_id
    # A token sent beside a signature that does not cover it is refused.
    body = json.dumps({"repositoryName": repository}).encode()
    request = AWSRequest(
        method="POST",
        url=server.url + "/",
        headers={"Content-Type": JSON_TYPE, "X-Amz-Target": ECR_TARGET + "DeleteRepository"},
        data=body,
    )
    SigV4Auth(Credentials(key, secret), "ecr", server.region).add_auth(request)
    response = send(request, extra={"X-Amz-Security-Token": token})
    assert json_error(response) == (400, "InvalidSignatureException", unsigned("x-amz-security-token"))
    still_there(boto, cli, repository)
