"""`--tls-cert/--tls-key`: the same doors over HTTPS, and the URIs handed out say https."""

from __future__ import annotations

import base64
import datetime
import ipaddress
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.clients import Boto3Clients
from tests.support.server import ServerFactory


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_serves_https(dockyard_server_factory: ServerFactory, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = dockyard_server_factory(args=["--tls-cert", str(cert), "--tls-key", str(key)], start=False)
    server.scheme = "https"
    server.start()
    ecr = Boto3Clients(server)("ecr", verify=str(cert))
    created = ecr.create_repository(repositoryName="secure")["repository"]
    assert created["repositoryUri"] == f"{server.hostport}/secure"
    data = ecr.get_authorization_token()["authorizationData"][0]
    assert data["proxyEndpoint"] == f"https://{server.hostport}"
    challenge = requests.get(f"{server.url}/v2/", verify=str(cert), timeout=10)
    assert challenge.status_code == 401
    assert challenge.headers["WWW-Authenticate"].startswith('Basic realm="https://')
    password = base64.b64decode(data["authorizationToken"]).decode().partition(":")[2]
    listed = requests.get(f"{server.url}/v2/secure/tags/list", auth=("AWS", password), verify=str(cert), timeout=10)
    assert listed.status_code == 200
    assert listed.json() == {"name": "secure", "tags": []}
