"""Bad input gets a clear error in the caller's protocol, never a 500, and nothing is stored."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import sqlite3
from unittest import mock

import botocore.auth
import botocore.config
import pytest
import requests
from botocore.exceptions import ClientError

from dockyard.auth.tokens import TokenClaims, authorization_token, issue_password
from tests.support.clients import Boto3Clients
from tests.support.registry_http import OCI_MANIFEST, RegistryHttp, digest_of
from tests.support.server import DockyardServer

REPO = "bad-inputs"


@pytest.fixture(scope="module")
def registry(dockyard_server: DockyardServer, boto3_client: Boto3Clients) -> RegistryHttp:
    ecr = boto3_client("ecr")
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=REPO)
    return RegistryHttp.for_server(dockyard_server)


def oci_errors(response: requests.Response) -> list[str]:
    assert response.headers["Content-Type"].startswith("application/json"), response.text
    return [error["code"] for error in response.json()["errors"]]


def ecr_post(server: DockyardServer, target: str, body: bytes, signed: bool = True) -> requests.Response:
    """An ECR request signed like boto3 signs it, with whatever body we choose."""
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"AmazonEC2ContainerRegistry_V20150921.{target}",
    }
    request = AWSRequest("POST", server.url + "/", data=body, headers=headers)
    if signed:
        credentials = Credentials(server.access_key_id, server.secret_access_key)
        botocore.auth.SigV4Auth(credentials, "ecr", server.region).add_auth(request)
    return requests.post(server.url + "/", data=body, headers=dict(request.headers), timeout=30)


# --- The ECR API -------------------------------------------------------------------------------


def test_malformed_json_is_a_serialization_error(dockyard_server: DockyardServer) -> None:
    response = ecr_post(dockyard_server, "CreateRepository", b'{"repositoryName": "x"')
    assert response.status_code == 400
    assert response.json()["__type"] == "SerializationException"
    assert response.headers["x-amzn-RequestId"]


def test_wrong_member_type_is_a_serialization_error(dockyard_server: DockyardServer) -> None:
    response = ecr_post(dockyard_server, "DescribeRepositories", json.dumps({"maxResults": "ten"}).encode())
    assert response.status_code == 400
    assert response.json()["__type"] == "SerializationException"


def test_unsigned_request_is_missing_a_token(dockyard_server: DockyardServer) -> None:
    response = ecr_post(dockyard_server, "DescribeRepositories", b"{}", signed=False)
    assert response.status_code == 400
    assert response.json() == {
        "__type": "MissingAuthenticationTokenException",
        "message": "Missing Authentication Token",
    }


@pytest.mark.parametrize("name", ["../etc", "a/../../b", "UPPER", "x", "a//b", "a" * 257, "%2e%2e"])
def test_invalid_repository_names_are_refused(boto3_client: Boto3Clients, name: str) -> None:
    # Client-side validation off, so the server is the one that refuses.
    ecr = boto3_client("ecr", config=botocore.config.Config(parameter_validation=False))
    with pytest.raises(ClientError) as raised:
        ecr.create_repository(repositoryName=name)
    assert raised.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "repositoryName" in raised.value.response["Error"]["Message"]
    names = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
    assert name not in names


def test_wrong_secret_is_an_invalid_signature(boto3_client: Boto3Clients, dockyard_server: DockyardServer) -> None:
    ecr = boto3_client("ecr", aws_secret_access_key="x" * 40)
    with pytest.raises(ClientError) as raised:
        ecr.describe_repositories()
    assert raised.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert raised.value.response["Error"]["Message"].startswith("The request signature we calculated does not match")


def test_unknown_key_is_an_unrecognized_client(boto3_client: Boto3Clients) -> None:
    ecr = boto3_client("ecr", aws_access_key_id="AKIAUNKNOWNUNKNOWN00")
    with pytest.raises(ClientError) as raised:
        ecr.describe_repositories()
    assert raised.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert raised.value.response["Error"]["Message"] == "The security token included in the request is invalid."


def test_signature_replayed_too_late_has_expired(boto3_client: Boto3Clients) -> None:
    twenty_minutes_ago = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=20)
    ecr = boto3_client("ecr")
    with (
        mock.patch.object(botocore.auth, "get_current_datetime", return_value=twenty_minutes_ago),
        pytest.raises(ClientError) as raised,
    ):
        ecr.describe_repositories()
    assert raised.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert raised.value.response["Error"]["Message"].startswith("Signature expired: ")


# --- Registry tokens ----------------------------------------------------------------------------


def _server_secret(server: DockyardServer) -> bytes:
    database = sqlite3.connect(server.data_dir / "metadata.db")
    try:
        row = database.execute("SELECT value FROM server_values WHERE name = 'token_secret'").fetchone()
    finally:
        database.close()
    return bytes.fromhex(row[0])


def _basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"AWS:{password}".encode()).decode()}


def test_no_credentials_gets_a_basic_challenge(dockyard_server: DockyardServer) -> None:
    response = requests.get(dockyard_server.url + "/v2/", timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert oci_errors(response) == ["UNAUTHORIZED"]


def test_expired_token_is_refused(dockyard_server: DockyardServer, registry: RegistryHttp) -> None:
    now = int(datetime.datetime.now(datetime.UTC).timestamp())
    claims = TokenClaims(
        account_id=dockyard_server.account_id,
        region=dockyard_server.region,
        principal_arn=f"arn:aws:iam::{dockyard_server.account_id}:root",
        principal_id=dockyard_server.account_id,
        access_key_id=dockyard_server.access_key_id,
        issued_at=now - 13 * 3600,
        expires_at=now - 3600,
    )
    password = issue_password(claims, _server_secret(dockyard_server))
    assert base64.b64decode(authorization_token(password)).startswith(b"AWS:")
    response = requests.get(f"{dockyard_server.url}/v2/{REPO}/tags/list", headers=_basic(password), timeout=10)
    assert response.status_code == 403
    assert oci_errors(response) == ["DENIED"]
    assert "expired" in response.json()["errors"][0]["message"]


def test_forged_token_is_refused(dockyard_server: DockyardServer, registry: RegistryHttp) -> None:
    forged = registry.password[:-4] + ("AAAA" if not registry.password.endswith("AAAA") else "BBBB")
    response = requests.get(f"{dockyard_server.url}/v2/{REPO}/tags/list", headers=_basic(forged), timeout=10)
    assert response.status_code == 401
    assert oci_errors(response) == ["UNAUTHORIZED"]


@pytest.mark.parametrize(
    "header",
    ["Basic", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer abc", "Basic " + "A" * 9000],
)
def test_garbage_authorization_is_refused(dockyard_server: DockyardServer, header: str) -> None:
    response = requests.get(dockyard_server.url + "/v2/", headers={"Authorization": header}, timeout=10)
    assert response.status_code == 401


def test_token_from_another_region_is_refused(dockyard_server: DockyardServer, boto3_client: Boto3Clients) -> None:
    ecr = boto3_client("ecr", region_name="us-west-2")
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    headers = {"Authorization": "Basic " + token}
    response = requests.get(f"{dockyard_server.url}/v2/{REPO}/tags/list", headers=headers, timeout=10)
    assert response.status_code == 403
    assert oci_errors(response) == ["DENIED"]
    assert "region" in response.json()["errors"][0]["message"]


# --- The registry API ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v2/..%2f..%2fetc/manifests/latest",
        "/v2/../../etc/passwd/manifests/latest",
        f"/v2/{REPO}/manifests/..%2f..%2fmetadata.db",
        f"/v2/{REPO}/manifests/latest%00",
        f"/v2/{REPO}/blobs/sha256:..%2f..%2f..%2fmetadata.db",
        f"/v2/{REPO}/blobs/uploads/..%2f..%2fmetadata.db",
        f"/v2/{REPO}/blobs/uploads/..",
        "/v2/%00/tags/list",
    ],
)
def test_traversal_in_paths_is_refused(registry: RegistryHttp, path: str) -> None:
    response = registry.request("GET", path)
    assert response.status_code in (400, 404), (path, response.status_code, response.text)
    if response.status_code == 400 or response.headers.get("Content-Type", "").startswith("application/json"):
        assert oci_errors(response)


@pytest.mark.parametrize("digest", ["sha256:xyz", "sha256:" + "0" * 63, "md5:" + "0" * 32, "nodigest", ""])
def test_malformed_digest_on_upload_is_refused(registry: RegistryHttp, digest: str) -> None:
    started = registry.request("POST", f"/v2/{REPO}/blobs/uploads/")
    response = registry.request("PUT", started.headers["Location"], params={"digest": digest}, data=b"hello")
    assert response.status_code == 400
    assert oci_errors(response) == ["DIGEST_INVALID"]


def test_wrong_digest_stores_nothing(registry: RegistryHttp) -> None:
    data = b"the bytes that were sent"
    claimed = digest_of(b"some other bytes")
    started = registry.request("POST", f"/v2/{REPO}/blobs/uploads/")
    response = registry.request("PUT", started.headers["Location"], params={"digest": claimed}, data=data)
    assert response.status_code == 400
    assert oci_errors(response) == ["DIGEST_INVALID"]
    for digest in (claimed, digest_of(data)):
        assert registry.request("HEAD", f"/v2/{REPO}/blobs/{digest}").status_code == 404


def test_oversized_manifest_is_refused(registry: RegistryHttp) -> None:
    config = registry.push_blob(REPO, b"{}")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": [],
            "annotations": {"padding": "x" * (4 * 1024 * 1024)},
        }
    ).encode()
    response = registry.request(
        "PUT", f"/v2/{REPO}/manifests/huge", data=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code in (400, 413)
    assert registry.request("GET", f"/v2/{REPO}/manifests/huge").status_code == 404


def test_manifest_with_missing_blobs_is_refused(registry: RegistryHttp) -> None:
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_of(b"never pushed"),
                "size": 12,
            },
            "layers": [],
        }
    ).encode()
    response = registry.request(
        "PUT", f"/v2/{REPO}/manifests/missing", data=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 400
    assert oci_errors(response) == ["MANIFEST_BLOB_UNKNOWN"]
    assert registry.request("GET", f"/v2/{REPO}/manifests/missing").status_code == 404


@pytest.mark.parametrize(
    "body,content_type",
    [
        (b"{not json", OCI_MANIFEST),
        (b"[]", OCI_MANIFEST),
        (
            json.dumps({"schemaVersion": 1, "name": REPO, "tag": "v1", "fsLayers": []}).encode(),
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
        (
            json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": []}).encode(),
            OCI_MANIFEST,
        ),
    ],
)
def test_malformed_manifests_are_refused(registry: RegistryHttp, body: bytes, content_type: str) -> None:
    response = registry.request(
        "PUT", f"/v2/{REPO}/manifests/malformed", data=body, headers={"Content-Type": content_type}
    )
    assert response.status_code in (400, 415)
    assert set(oci_errors(response)) <= {"MANIFEST_INVALID", "UNSUPPORTED"}
    assert registry.request("GET", f"/v2/{REPO}/manifests/malformed").status_code == 404


def test_push_to_missing_repository_is_name_unknown(registry: RegistryHttp) -> None:
    response = registry.request("POST", "/v2/does-not-exist/blobs/uploads/")
    assert response.status_code == 404
    assert oci_errors(response) == ["NAME_UNKNOWN"]
    assert "does not exist in the registry" in response.json()["errors"][0]["message"]
