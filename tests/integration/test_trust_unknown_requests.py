"""Requests no door answers, as ECR answers them: an X-Amz-Target naming no operation gets
UnknownOperationException with no message member at all (AWS's JSON services send only the type, so
SDKs show their own placeholder), and a proxy's CONNECT gets 405 rather than a redirect."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import botocore.auth
import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.server import DockyardServer, ServerFactory

JSON_TYPE = "application/x-amz-json-1.1"
ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921."
CLOUDTRAIL_TARGET = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardServer]:
    factory = ServerFactory(tmp_path_factory.mktemp("unknown-requests"))
    try:
        yield factory(args=["--workers", "2", "--metrics-address", "off"])
    finally:
        factory.close()


def signed(server: DockyardServer, service: str, target: str) -> requests.Response:
    headers = {"Content-Type": JSON_TYPE, "X-Amz-Target": target}
    request = AWSRequest("POST", server.url + "/", data=b"{}", headers=headers)
    credentials = Credentials(server.access_key_id, server.secret_access_key)
    botocore.auth.SigV4Auth(credentials, service, server.region).add_auth(request)
    return requests.post(server.url + "/", data=b"{}", headers=dict(request.headers), timeout=60)


@pytest.mark.parametrize(
    ("service", "target"),
    [
        ("ecr", ECR_TARGET + "NoSuchOperation"),
        ("ecr", "SomeOtherService_20200101.ListThings"),
        ("cloudtrail", CLOUDTRAIL_TARGET + "CreateTrail"),
    ],
)
def test_unknown_operation_is_named_by_type_alone(server: DockyardServer, service: str, target: str) -> None:
    response = signed(server, service, target)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == JSON_TYPE
    assert response.json() == {"__type": "UnknownOperationException"}


def _status_line(server: DockyardServer, request: bytes) -> tuple[bytes, bytes]:
    """The status line and headers the server answers a raw request with."""
    with socket.create_connection((server.host, server.port), timeout=30) as conn:
        conn.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
    head = received.split(b"\r\n\r\n", 1)[0]
    status, _, headers = head.partition(b"\r\n")
    return status, headers.lower()


def test_proxy_connect_is_not_allowed(server: DockyardServer) -> None:
    status, headers = _status_line(
        server, b"CONNECT registry.example.com:443 HTTP/1.1\r\nHost: registry.example.com:443\r\n\r\n"
    )
    assert status.split(b" ")[1] == b"405", status
    assert b"\r\nallow: " in b"\r\n" + headers
    assert b"location:" not in headers
