"""Malformed input from anyone, signed or not: bodies too big are refused with 413 before they are
read (the server's memory stays flat), and JSON nested 100,000 deep or holding lone UTF-16
surrogates gets each API's own 4xx error, never a 500."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import botocore.auth
import botocore.session
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from dockyard.doors.bodies import CLOUDTRAIL_BODY_LIMIT, ECR_BODY_LIMIT, QUERY_BODY_LIMIT
from dockyard.doors.ecr import OPERATIONS
from tests.support.registry_http import RegistryHttp
from tests.support.server import DockyardServer, ServerFactory

ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921."
CLOUDTRAIL_TARGET = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101."
JSON_TYPE = "application/x-amz-json-1.1"
FORM_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
MIB = 1024 * 1024
HUGE = 400 * MIB
RSS_GROWTH_BOUND = 100 * MIB
DEEP = "[" * 100_000
SURROGATE_BODY = '{"repositoryName":"fuzz\\ud800","registryId":"\\udfff"}'
REPO = "trust-bodies"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardServer]:
    factory = ServerFactory(tmp_path_factory.mktemp("trust-bodies"))
    try:
        yield factory(args=["--workers", "2", "--metrics-address", "off"])
    finally:
        factory.close()


@pytest.fixture(scope="module")
def repository(server: DockyardServer) -> str:
    response = signed(server, "ecr", "CreateRepository", json.dumps({"repositoryName": REPO}))
    assert response.status_code == 200, response.text
    return REPO


# --- requests ------------------------------------------------------------------------------------


def signed(server: DockyardServer, service: str, operation: str, body: str | bytes) -> requests.Response:
    """A request signed as botocore signs one for `service`, carrying exactly `body`."""
    data = body.encode() if isinstance(body, str) else body
    if service == "ecr":
        headers = {"Content-Type": JSON_TYPE, "X-Amz-Target": ECR_TARGET + operation}
    elif service == "cloudtrail":
        headers = {"Content-Type": JSON_TYPE, "X-Amz-Target": CLOUDTRAIL_TARGET + operation}
    else:
        headers = {"Content-Type": FORM_TYPE}
    request = AWSRequest("POST", server.url + "/", data=data, headers=headers)
    credentials = Credentials(server.access_key_id, server.secret_access_key)
    botocore.auth.SigV4Auth(credentials, service, server.region).add_auth(request)
    return requests.post(server.url + "/", data=data, headers=dict(request.headers), timeout=60)


def query(server: DockyardServer, service: str, action: str, **params: str) -> requests.Response:
    version = "2010-05-08" if service == "iam" else "2011-06-15"
    return signed(server, service, action, urlencode({"Action": action, "Version": version, **params}))


def token_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def json_error(response: requests.Response, status: int | None = None) -> str:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    if status is not None:
        assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"].startswith(JSON_TYPE)
    return response.json()["__type"]


def query_error(response: requests.Response) -> str:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    assert response.text.startswith("<ErrorResponse"), response.text[:500]
    return response.text.split("<Code>", 1)[1].split("</Code>", 1)[0]


# --- memory --------------------------------------------------------------------------------------


def group_rss(server: DockyardServer) -> int:
    """Resident bytes of the server and its workers (its process group)."""
    assert server.process is not None
    group = server.process.pid
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The command name may hold spaces or parentheses: fields follow its last ')'.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group:
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return total


def raw_headers(server: DockyardServer, door: str, extra: dict[str, str]) -> bytes:
    headers = {"Host": server.hostport, **extra}
    if door == "ecr":
        headers |= {"Content-Type": JSON_TYPE, "X-Amz-Target": ECR_TARGET + "UploadLayerPart"}
    elif door == "cloudtrail":
        headers |= {"Content-Type": JSON_TYPE, "X-Amz-Target": CLOUDTRAIL_TARGET + "LookupEvents"}
    else:
        headers |= {"Content-Type": FORM_TYPE}
    lines = ["POST / HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


def read_response(sock: socket.socket, deadline: float) -> tuple[int, bytes]:
    """The status and body of the one response on `sock` (read until its length or close)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data) < _response_length(data):
        sock.settimeout(max(deadline - time.monotonic(), 0.1))
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _response_length(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(data) + 1  # no length: read until the server closes


def send_unsigned(server: DockyardServer, door: str, chunked: bool) -> tuple[int, bytes]:
    """POST / without credentials announcing (or streaming, chunked) a 400 MiB body; stop sending
    as soon as the server answers. Returns the answer."""
    deadline = time.monotonic() + 120
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(HUGE)}
        sock.sendall(raw_headers(server, door, framing))
        piece = b"A" * MIB
        frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
        sent = 0
        while sent < HUGE and time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the answer came before the body was all sent
            try:
                sock.sendall(frame)
            except OSError:
                break  # the server closed its end after answering
            sent += len(piece)
        if chunked and sent >= HUGE:
            with contextlib.suppress(OSError):
                sock.sendall(b"0\r\n\r\n")
        return read_response(sock, deadline)


@pytest.mark.parametrize("door", ["ecr", "query", "cloudtrail"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_body_is_refused_with_413_without_being_held(
    server: DockyardServer, door: str, chunked: bool
) -> None:
    before = group_rss(server)
    status, body = send_unsigned(server, door, chunked)
    grown = group_rss(server) - before
    assert grown < RSS_GROWTH_BOUND, f"server RSS grew by {grown // MIB} MiB"
    assert status == 413, body[:500]
    if door == "query":
        assert b"<Code>RequestEntityTooLarge</Code>" in body
    else:
        assert json.loads(body)["__type"] == "RequestEntityTooLargeException"
    assert server.healthy()


def test_the_ecr_limit_admits_a_full_layer_part_and_refuses_a_byte_more(
    server: DockyardServer, repository: str
) -> None:
    started = signed(server, "ecr", "InitiateLayerUpload", json.dumps({"repositoryName": repository}))
    assert started.status_code == 200, started.text
    part = {
        "repositoryName": repository,
        "uploadId": started.json()["uploadId"],
        "partFirstByte": 0,
        "partLastByte": 10 * MIB - 1,
        "layerPartBlob": base64.b64encode(os.urandom(10 * MIB)).decode(),
    }
    accepted = signed(server, "ecr", "UploadLayerPart", json.dumps(part))
    assert accepted.status_code == 200, accepted.text[:500]
    padded = json.dumps(part).encode()
    padded += b" " * (ECR_BODY_LIMIT + 1 - len(padded))
    refused = signed(server, "ecr", "UploadLayerPart", padded)
    assert json_error(refused, 413) == "RequestEntityTooLargeException"


@pytest.mark.parametrize(
    ("door", "limit"), [("iam", QUERY_BODY_LIMIT), ("sts", QUERY_BODY_LIMIT), ("cloudtrail", CLOUDTRAIL_BODY_LIMIT)]
)
def test_a_signed_body_one_byte_over_the_limit_is_refused(server: DockyardServer, door: str, limit: int) -> None:
    if door == "cloudtrail":
        body = b"{}" + b" " * (limit - 1)
        assert json_error(signed(server, "cloudtrail", "LookupEvents", body), 413) == "RequestEntityTooLargeException"
        return
    form = urlencode({"Action": "GetCallerIdentity", "Version": "2011-06-15", "Pad": ""}).encode()
    response = signed(server, door, "GetCallerIdentity", form + b"x" * (limit + 1 - len(form)))
    assert response.status_code == 413
    assert query_error(response) == "RequestEntityTooLarge"


# --- JSON: every ECR operation -------------------------------------------------------------------


def ecr_operations() -> list[str]:
    """The operations of botocore's ECR model that Dockyard serves (the others, such as
    pull-through cache rules, are refused as UnknownOperationException before the body is read)."""
    modelled = botocore.session.get_session().get_service_model("ecr").operation_names
    return sorted(set(modelled) & set(OPERATIONS))


@pytest.mark.parametrize("operation", ecr_operations())
def test_every_ecr_operation_answers_deep_nesting_and_lone_surrogates_with_a_serialization_error(
    server: DockyardServer, operation: str
) -> None:
    for body in (DEEP, '{"x":' + DEEP, SURROGATE_BODY):
        assert json_error(signed(server, "ecr", operation, body), 400) == "SerializationException"


def test_documents_inside_ecr_requests_are_refused_with_ecr_errors(server: DockyardServer, repository: str) -> None:
    base = {"repositoryName": repository}
    lifecycle_deep = "[" * 30_000
    policy_deep = "[" * 10_000
    cases = [
        ("PutImage", {**base, "imageManifest": DEEP, "imageTag": "deep"}),
        ("PutImage", {**base, "imageManifest": '{"schemaVersion":2,"x":"\\ud800"}', "imageTag": "surrogate"}),
        ("PutLifecyclePolicy", {**base, "lifecyclePolicyText": lifecycle_deep}),
        ("StartLifecyclePolicyPreview", {**base, "lifecyclePolicyText": lifecycle_deep}),
        ("SetRepositoryPolicy", {**base, "policyText": policy_deep}),
        ("PutRegistryPolicy", {"policyText": policy_deep}),
        (
            "CreateRepositoryCreationTemplate",
            {"prefix": "deep-lifecycle", "appliedFor": ["CREATE_ON_PUSH"], "lifecyclePolicy": lifecycle_deep},
        ),
        (
            "CreateRepositoryCreationTemplate",
            {"prefix": "deep-policy", "appliedFor": ["CREATE_ON_PUSH"], "repositoryPolicy": policy_deep},
        ),
    ]
    for operation, params in cases:
        response = signed(server, "ecr", operation, json.dumps(params))
        assert json_error(response, 400) in ("InvalidParameterException", "LifecyclePolicyPreviewInProgressException")
    deep_token = token_of("[" * 5_000)
    for operation, params in [
        ("DescribeRepositories", {}),
        ("DescribeImages", base),
        ("ListImages", base),
        ("DescribeRepositoryCreationTemplates", {}),
        ("GetLifecyclePolicyPreview", base),
    ]:
        response = signed(server, "ecr", operation, json.dumps({**params, "nextToken": deep_token}))
        assert json_error(response, 400) in ("InvalidParameterException", "LifecyclePolicyPreviewNotFoundException")


# --- JSON: IAM, STS, CloudTrail, the registry ----------------------------------------------------


def test_iam_and_sts_policy_documents_too_deep_are_malformed(server: DockyardServer) -> None:
    deep = "[" * 100_000
    created = query(server, "iam", "CreatePolicy", PolicyName="deep", PolicyDocument=deep)
    assert query_error(created) == "MalformedPolicyDocument"
    role = query(server, "iam", "CreateRole", RoleName="deep", AssumeRolePolicyDocument=deep)
    assert query_error(role) == "MalformedPolicyDocument"
    simulated = query(
        server, "iam", "SimulateCustomPolicy", **{"PolicyInputList.member.1": deep, "ActionNames.member.1": "ecr:*"}
    )
    assert query_error(simulated) == "InvalidInput"
    arn = f"arn:aws:iam::{server.account_id}:role/none"
    assumed = query(server, "sts", "AssumeRole", RoleArn=arn, RoleSessionName="s", Policy="[" * 2_000)
    assert 400 <= assumed.status_code < 500, assumed.text[:500]


def test_cloudtrail_bodies_and_tokens_too_deep_or_with_surrogates_are_refused(server: DockyardServer) -> None:
    deep = "[" * 50_000  # within CloudTrail's 64 KiB body limit
    for body in (deep, '{"NextToken":' + deep, '{"NextToken":"\\ud800"}'):
        assert json_error(signed(server, "cloudtrail", "LookupEvents", body), 400) == "SerializationException"
    deep_token = json.dumps({"NextToken": token_of("[" * 5_000)})
    assert json_error(signed(server, "cloudtrail", "LookupEvents", deep_token), 400) == "InvalidNextTokenException"


def test_a_manifest_too_deep_is_manifest_invalid(server: DockyardServer, repository: str) -> None:
    registry = RegistryHttp.for_server(server)
    for body in (DEEP.encode(), b'{"schemaVersion":2,"annotations":{"a":"\\ud800"}}'):
        response = registry.request(
            "PUT",
            f"/v2/{repository}/manifests/deep",
            data=body,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert response.status_code == 400, response.text[:500]
        assert [error["code"] for error in response.json()["errors"]] == ["MANIFEST_INVALID"]
