"""Managed signing through real clients: AWS Signer signing profiles (boto3's `signer` client),
ECR's signing configuration (boto3's `ecr` client), images pushed over the registry API signed in
the background, and each signature verified by an independent implementation: joserfc for the
JWS envelope, cryptography's X.509 for the certificate chain, checked as the Notary Project's
signature specification asks (payload names the image, chain ends at the registry's root,
code-signing certificate, signing time within its validity)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from joserfc import jws
from joserfc.jwk import ECKey
from joserfc.jws import JWSRegistry

from tests.support.clients import Boto3Clients
from tests.support.registry_http import OCI_MANIFEST, RegistryHttp, digest_of
from tests.support.server import DockyardServer, ServerFactory

PLATFORM = "Notation-OCI-SHA384-ECDSA"
SIGNATURE_TYPE = "application/vnd.cncf.notary.signature"
SIGNING_TIMEOUT = 60.0
NOTARY_HEADERS = (
    "io.cncf.notary.signingScheme",
    "io.cncf.notary.signingTime",
    "io.cncf.notary.expiry",
    "io.cncf.notary.signingAgent",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardServer]:
    factory = ServerFactory(tmp_path_factory.mktemp("signing"))
    try:
        yield factory(args=["--workers", "2"])
    finally:
        factory.close()


@pytest.fixture(scope="module")
def clients(server: DockyardServer) -> Boto3Clients:
    return Boto3Clients(server)


@pytest.fixture(scope="module")
def registry(server: DockyardServer) -> RegistryHttp:
    return RegistryHttp.for_server(server)


def make_profile(signer: Any, name: str, **extra: Any) -> dict[str, Any]:
    return signer.put_signing_profile(profileName=name, platformId=PLATFORM, **extra)


def wait_for_signing(ecr: Any, repository: str, digest: str) -> list[dict[str, Any]]:
    """The image's signing statuses once none is IN_PROGRESS (bounded)."""
    deadline = time.monotonic() + SIGNING_TIMEOUT
    while True:
        found = ecr.describe_image_signing_status(repositoryName=repository, imageId={"imageDigest": digest})
        statuses = found["signingStatuses"]
        if statuses and all(s["status"] != "IN_PROGRESS" for s in statuses):
            return statuses
        assert time.monotonic() < deadline, f"signing of {repository}@{digest} did not finish: {statuses}"
        time.sleep(0.2)


def signatures_of(registry: RegistryHttp, repository: str, digest: str) -> list[dict[str, Any]]:
    response = registry.request("GET", f"/v2/{repository}/referrers/{digest}")
    assert response.status_code == 200, response.text
    return [m for m in response.json()["manifests"] if m.get("artifactType") == SIGNATURE_TYPE]


def load_envelope(registry: RegistryHttp, repository: str, descriptor: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """(the signature manifest, the JWS envelope it stores)."""
    response = registry.request(
        "GET", f"/v2/{repository}/manifests/{descriptor['digest']}", headers={"Accept": OCI_MANIFEST}
    )
    assert response.status_code == 200, response.text
    manifest = response.json()
    [layer] = manifest["layers"]
    blob = registry.request("GET", f"/v2/{repository}/blobs/{layer['digest']}")
    assert blob.status_code == 200
    assert digest_of(blob.content) == layer["digest"]
    return manifest, blob.content


def root_certificate(server: DockyardServer) -> x509.Certificate:
    response = requests.get(f"{server.url}/signer/roots/{server.account_id}/{server.region}.pem", timeout=30)
    assert response.status_code == 200, response.text
    return x509.load_pem_x509_certificate(response.content)


def b64url_json(text: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def verify_notary_signature(envelope: bytes, root: x509.Certificate, image_digest: str, image_size: int) -> None:
    """Verify a Notary Project JWS signature as a verifier with `root` in its trust store would."""
    document = json.loads(envelope)
    assert set(document) == {"payload", "protected", "header", "signature"}  # flattened JSON serialization
    protected = b64url_json(document["protected"])
    assert protected["alg"] == "ES384"
    assert protected["cty"] == "application/vnd.cncf.notary.payload.v1+json"
    assert protected["io.cncf.notary.signingScheme"] == "notary.x509"
    assert "io.cncf.notary.signingScheme" in protected["crit"]
    assert set(protected["crit"]) <= set(protected)

    chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in document["header"]["x5c"]]
    leaf, anchor = chain[0], chain[-1]
    assert anchor == root, "the chain does not end at the registry's root certificate"
    for child, parent in zip(chain, chain[1:], strict=False):
        child.verify_directly_issued_by(parent)
    root.verify_directly_issued_by(root)
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    root_usage = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert root_usage.critical and root_usage.value.key_cert_sign
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CODE_SIGNING
    ]
    signed_at = datetime.fromisoformat(protected["io.cncf.notary.signingTime"].replace("Z", "+00:00"))
    for certificate in chain:
        assert certificate.not_valid_before_utc <= signed_at <= certificate.not_valid_after_utc

    # The signature itself, by an independent JOSE implementation, with the leaf's public key.
    public_pem = leaf.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    registry = JWSRegistry(
        header_registry={name: JWSRegistry.default_header_registry["typ"] for name in NOTARY_HEADERS},
        algorithms=["ES384"],
    )
    verified = jws.deserialize_json(document, ECKey.import_key(public_pem), registry=registry)
    payload = json.loads(verified.payload)
    assert payload["targetArtifact"]["digest"] == image_digest
    assert payload["targetArtifact"]["size"] == image_size
    assert payload["targetArtifact"]["mediaType"] == OCI_MANIFEST


def test_signing_profiles_through_signer_api(clients: Boto3Clients, server: DockyardServer) -> None:
    signer = clients("signer")
    made = make_profile(
        signer, "release_profile", signatureValidityPeriod={"value": 12, "type": "MONTHS"}, tags={"team": "ci"}
    )
    arn = f"arn:aws:signer:{server.region}:{server.account_id}:/signing-profiles/release_profile"
    assert made["arn"] == arn
    assert made["profileVersionArn"] == f"{arn}/{made['profileVersion']}"

    got = signer.get_signing_profile(profileName="release_profile")
    assert got["status"] == "Active"
    assert got["platformId"] == PLATFORM
    assert got["signatureValidityPeriod"] == {"value": 12, "type": "MONTHS"}
    assert got["tags"] == {"team": "ci"}
    assert "release_profile" in [p["profileName"] for p in signer.list_signing_profiles()["profiles"]]

    with pytest.raises(ClientError) as missing:
        signer.get_signing_profile(profileName="no_such_profile")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as platform:
        signer.put_signing_profile(profileName="lambda_profile", platformId="AWSLambda-SHA384-ECDSA")
    assert platform.value.response["Error"]["Code"] == "ValidationException"

    # What a verifier asks before trusting a signature: nothing Dockyard signs is revoked.
    # (Signer's model sends it to the host "data-<endpoint>": an IP endpoint needs that prefix off.)
    verifier = clients("signer", config=Config(inject_host_prefix=False))
    revocation = verifier.get_revocation_status(
        signatureTimestamp=datetime.now(UTC),
        platformId=PLATFORM,
        profileVersionArn=made["profileVersionArn"],
        jobArn=f"arn:aws:signer:{server.region}:{server.account_id}:/signing-jobs/none",
        certificateHashes=["0" * 64],
    )
    assert revocation["revokedEntities"] == []

    signer.cancel_signing_profile(profileName="release_profile")
    assert signer.get_signing_profile(profileName="release_profile")["status"] == "Canceled"
    assert "release_profile" not in [p["profileName"] for p in signer.list_signing_profiles()["profiles"]]
    listed = signer.list_signing_profiles(includeCanceled=True)["profiles"]
    assert "release_profile" in [p["profileName"] for p in listed]
    with pytest.raises(ClientError) as taken:
        make_profile(signer, "release_profile")
    assert taken.value.response["Error"]["Code"] == "ValidationException"

    # The private key is never handed out, and is stored sealed: not as a PEM or DER key anywhere.
    assert "PRIVATE" not in json.dumps(got)
    assert b"PRIVATE KEY" not in (server.data_dir / "metadata.db").read_bytes()
    assert (server.data_dir / "signing-keys.key").stat().st_mode & 0o777 == 0o600


def test_signing_configuration_api(clients: Boto3Clients, server: DockyardServer) -> None:
    ecr = clients("ecr")
    with pytest.raises(ClientError) as missing:
        ecr.get_signing_configuration()
    assert missing.value.response["Error"]["Code"] == "SigningConfigurationNotFoundException"
    arn = f"arn:aws:signer:{server.region}:{server.account_id}:/signing-profiles/config_profile"
    rules = [{"signingProfileArn": arn, "repositoryFilters": [{"filter": "apps/*", "filterType": "WILDCARD_MATCH"}]}]
    put = ecr.put_signing_configuration(signingConfiguration={"rules": rules})
    assert put["signingConfiguration"]["rules"] == rules
    got = ecr.get_signing_configuration()
    assert got["registryId"] == server.account_id
    assert got["signingConfiguration"]["rules"] == rules
    deleted = ecr.delete_signing_configuration()
    assert deleted["signingConfiguration"]["rules"] == rules
    with pytest.raises(ClientError) as gone:
        ecr.delete_signing_configuration()
    assert gone.value.response["Error"]["Code"] == "SigningConfigurationNotFoundException"
    with pytest.raises(ClientError) as invalid:
        ecr.put_signing_configuration(
            signingConfiguration={"rules": [{"signingProfileArn": "arn:aws:signer:us-east-1:123:/signing-profiles/x"}]}
        )
    assert invalid.value.response["Error"]["Code"] == "InvalidParameterException"


def test_pushed_images_are_signed_and_verify(
    clients: Boto3Clients, server: DockyardServer, registry: RegistryHttp
) -> None:
    signer, ecr = clients("signer"), clients("ecr")
    profile = make_profile(signer, "push_profile")["arn"]
    other = make_profile(signer, "other_profile")["arn"]
    rules = [
        {"signingProfileArn": profile, "repositoryFilters": [{"filter": "signed/*", "filterType": "WILDCARD_MATCH"}]},
        {"signingProfileArn": other, "repositoryFilters": [{"filter": "signed/two", "filterType": "WILDCARD_MATCH"}]},
    ]
    ecr.put_signing_configuration(signingConfiguration={"rules": rules})
    for name in ("signed/one", "signed/two", "unsigned"):
        ecr.create_repository(repositoryName=name)
    root = root_certificate(server)
    try:
        digest, manifest = registry.push_image("signed/one", "v1", [b"layer one"])
        [status] = wait_for_signing(ecr, "signed/one", digest)
        assert status == {"signingProfileArn": profile, "status": "COMPLETE"}
        [descriptor] = signatures_of(registry, "signed/one", digest)
        signature_manifest, envelope = load_envelope(registry, "signed/one", descriptor)
        assert signature_manifest["artifactType"] == SIGNATURE_TYPE
        assert signature_manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
        assert signature_manifest["layers"][0]["mediaType"] == "application/jose+json"
        assert signature_manifest["subject"]["digest"] == digest
        verify_notary_signature(envelope, root, digest, len(manifest))

        # Two rules for one repository: one signature per profile, each verifying.
        digest, manifest = registry.push_image("signed/two", "v1", [b"layer two"])
        statuses = wait_for_signing(ecr, "signed/two", digest)
        assert sorted((s["signingProfileArn"], s["status"]) for s in statuses) == sorted(
            [(profile, "COMPLETE"), (other, "COMPLETE")]
        )
        found = signatures_of(registry, "signed/two", digest)
        assert len(found) == 2
        for descriptor in found:
            verify_notary_signature(load_envelope(registry, "signed/two", descriptor)[1], root, digest, len(manifest))

        # A repository no rule covers: no status, no signature.
        digest, _ = registry.push_image("unsigned", "v1", [b"layer three"])
        assert (
            ecr.describe_image_signing_status(repositoryName="unsigned", imageId={"imageDigest": digest})[
                "signingStatuses"
            ]
            == []
        )
        assert signatures_of(registry, "unsigned", digest) == []
    finally:
        ecr.delete_signing_configuration()


def test_canceled_profile_fails_later_pushes(
    clients: Boto3Clients, server: DockyardServer, registry: RegistryHttp
) -> None:
    signer, ecr = clients("signer"), clients("ecr")
    profile = make_profile(signer, "short_lived")["arn"]
    ecr.put_signing_configuration(signingConfiguration={"rules": [{"signingProfileArn": profile}]})
    ecr.create_repository(repositoryName="canceled/app")
    try:
        before, _ = registry.push_image("canceled/app", "v1", [b"before cancel"])
        assert wait_for_signing(ecr, "canceled/app", before)[0]["status"] == "COMPLETE"
        signer.cancel_signing_profile(profileName="short_lived")
        after, _ = registry.push_image("canceled/app", "v2", [b"after cancel"])
        [status] = wait_for_signing(ecr, "canceled/app", after)
        assert status["status"] == "FAILED"
        assert status["failureCode"] == "SigningProfileNotActive"
        assert "Canceled" in status["failureReason"]
        assert signatures_of(registry, "canceled/app", after) == []
        # The signature made before the cancel stays.
        assert len(signatures_of(registry, "canceled/app", before)) == 1
    finally:
        ecr.delete_signing_configuration()


def test_pusher_without_sign_payload_gets_failed_status(clients: Boto3Clients, server: DockyardServer) -> None:
    signer, ecr, iam = clients("signer"), clients("ecr"), clients("iam")
    profile = make_profile(signer, "guarded")["arn"]
    ecr.put_signing_configuration(signingConfiguration={"rules": [{"signingProfileArn": profile}]})
    ecr.create_repository(repositoryName="guarded/app")
    iam.create_user(UserName="pusher")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="pusher", PolicyName="ecr-only", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="pusher")["AccessKey"]
    pusher_ecr = clients("ecr", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    token = pusher_ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    pusher = RegistryHttp(server.url, base64.b64decode(token).decode().partition(":")[2])
    try:
        digest, _ = pusher.push_image("guarded/app", "v1", [b"pushed by a user who may not sign"])
        [status] = wait_for_signing(ecr, "guarded/app", digest)
        assert status["status"] == "FAILED"
        assert status["failureCode"] == "AccessDenied"
        assert "signer:SignPayload" in status["failureReason"]
        assert profile in status["failureReason"]
    finally:
        ecr.delete_signing_configuration()


def test_each_image_is_signed_once_by_two_workers(
    clients: Boto3Clients, server: DockyardServer, registry: RegistryHttp
) -> None:
    signer, ecr = clients("signer"), clients("ecr")
    profile = make_profile(signer, "busy_profile")["arn"]
    ecr.put_signing_configuration(signingConfiguration={"rules": [{"signingProfileArn": profile}]})
    ecr.create_repository(repositoryName="busy/app")
    root = root_certificate(server)
    try:
        pushed = [registry.push_image("busy/app", f"v{n}", [f"layer {n}".encode()]) for n in range(8)]
        for digest, manifest in pushed:
            assert wait_for_signing(ecr, "busy/app", digest) == [{"signingProfileArn": profile, "status": "COMPLETE"}]
            [descriptor] = signatures_of(registry, "busy/app", digest)
            verify_notary_signature(load_envelope(registry, "busy/app", descriptor)[1], root, digest, len(manifest))
        # Signatures are not signed in turn.
        described = ecr.describe_images(repositoryName="busy/app")["imageDetails"]
        assert len(described) == 16
    finally:
        ecr.delete_signing_configuration()
