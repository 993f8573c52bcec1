"""Key material for managed signing: a self-issued root CA per registry (account and region), a
code-signing certificate per signing profile, and private keys encrypted at rest.

Keys are ECDSA on P-384 (the platform Notation-OCI-SHA384-ECDSA signs with ES384). Certificates
follow the Notary Project's requirements: the root has a critical basicConstraints with cA and a
critical keyUsage with keyCertSign; a signing certificate has a critical keyUsage with only
digitalSignature and an extendedKeyUsage of id-kp-codeSigning alone.

Private keys never enter the database in the clear: each is sealed with AES-GCM under a key kept
in the data directory (mode 0600), bound to the row it belongs to, so a ciphertext copied to
another row does not open."""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

# cryptography costs every process several MiB at rest (issue 19): it is imported by the
# functions that issue, seal and open keys, with the first signing request.
if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

KEY_FILE = "signing-keys.key"
_NONCE = 12
ROOT_YEARS = 30
# A certificate is dated a little in the past so a verifier whose clock lags still accepts it.
_BACKDATE = timedelta(minutes=5)


class SealedKeyError(Exception):
    """A sealed private key that does not open under this data directory's key."""


def load_or_create_master_key(data_dir: Path) -> bytes:
    """The data directory's AES-256 key, created on first use. Several processes may race to
    create it: the file appears whole (a hard link of a finished file), and the loser reads it."""
    path = data_dir / KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        return _read_key(path)
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = data_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(AESGCM.generate_key(bit_length=256))
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) != 32:
        raise SealedKeyError(f"{path} does not hold a 256-bit key")
    return key


def seal(master: bytes, private_key: ec.EllipticCurvePrivateKey, binding: str) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(master).encrypt(nonce, der, binding.encode())


def unseal(master: bytes, sealed: bytes, binding: str) -> ec.EllipticCurvePrivateKey:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        der = AESGCM(master).decrypt(sealed[:_NONCE], sealed[_NONCE:], binding.encode())
    except InvalidTag as exc:
        raise SealedKeyError(f"the private key of {binding} does not open under this data directory's key") from exc
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SealedKeyError(f"the private key of {binding} is not an ECDSA key")
    return key


def root_binding(account_id: str, region: str) -> str:
    return f"signing_roots/{account_id}/{region}"


def profile_binding(account_id: str, region: str, name: str) -> str:
    return f"signing_profiles/{account_id}/{region}/{name}"


@dataclass(frozen=True)
class Issued:
    certificate_pem: str
    private_key: ec.EllipticCurvePrivateKey


def _name(account_id: str, region: str, common_name: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    # Notation's trust policies name identities by C, ST and O at least.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, region),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Dockyard"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, account_id),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def issue_root(account_id: str, region: str, moment: datetime | None = None) -> Issued:
    """A self-issued CA certificate for the registry `account_id` in `region`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    start = (moment or datetime.now(UTC)) - _BACKDATE
    key = ec.generate_private_key(ec.SECP384R1())
    name = _name(account_id, region, "Dockyard Signer Root CA")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=365 * ROOT_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )
    return Issued(certificate.public_bytes(serialization.Encoding.PEM).decode(), key)


def issue_signing_certificate(
    root_pem: str,
    root_key: ec.EllipticCurvePrivateKey,
    account_id: str,
    region: str,
    profile_name: str,
    valid_for: timedelta,
    moment: datetime | None = None,
) -> Issued:
    """A code-signing certificate for the signing profile `profile_name`, issued by the root;
    valid for `valid_for` (the profile's signature validity period) but never past the root."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    root = x509.load_pem_x509_certificate(root_pem.encode())
    start = (moment or datetime.now(UTC)) - _BACKDATE
    end = min(start + _BACKDATE + valid_for, root.not_valid_after_utc)
    key = ec.generate_private_key(ec.SECP384R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(account_id, region, profile_name))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(root_key, hashes.SHA384())
    )
    return Issued(certificate.public_bytes(serialization.Encoding.PEM).decode(), key)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def der_of(pem: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
