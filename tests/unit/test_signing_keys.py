"""Managed signing's key material: the data directory's key is created once, private (0600), and
shared by racing processes; a sealed private key opens only under that key and only for the row
it was sealed for; certificates carry what the Notary Project requires of a CA and a code signer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from dockyard.core.signing import keys


def test_master_key_is_created_once_and_private(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        found = set(pool.map(lambda _: keys.load_or_create_master_key(tmp_path), range(16)))
    assert len(found) == 1 and len(next(iter(found))) == 32
    assert (tmp_path / keys.KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [keys.KEY_FILE]


def test_a_sealed_key_opens_only_for_its_row_and_key(tmp_path: Path) -> None:
    master = keys.load_or_create_master_key(tmp_path)
    private = ec.generate_private_key(ec.SECP384R1())
    binding = keys.profile_binding("123456789012", "us-east-1", "release")
    sealed = keys.seal(master, private, binding)
    assert keys.unseal(master, sealed, binding).private_numbers() == private.private_numbers()
    with pytest.raises(keys.SealedKeyError):
        keys.unseal(master, sealed, keys.profile_binding("123456789012", "us-east-1", "other"))
    with pytest.raises(keys.SealedKeyError):
        keys.unseal(keys.load_or_create_master_key(tmp_path / "elsewhere"), sealed, binding)


def test_certificates_follow_the_notary_project_profile() -> None:
    root = keys.issue_root("123456789012", "us-east-1")
    leaf = keys.issue_signing_certificate(
        root.certificate_pem, root.private_key, "123456789012", "us-east-1", "release", timedelta(days=30)
    )
    ca = x509.load_pem_x509_certificate(root.certificate_pem.encode())
    signer = x509.load_pem_x509_certificate(leaf.certificate_pem.encode())
    signer.verify_directly_issued_by(ca)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    usage = signer.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert list(signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CODE_SIGNING
    ]
    assert isinstance(signer.public_key(), ec.EllipticCurvePublicKey)
    assert signer.public_key().curve.name == "secp384r1"  # type: ignore[union-attr]
    assert signer.not_valid_after_utc - signer.not_valid_before_utc <= timedelta(days=30, minutes=5)
