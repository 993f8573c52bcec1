"""Notary Project signatures: the JWS envelope (flattened JSON serialization, scheme notary.x509,
ES384) over a target artifact's descriptor, and the OCI manifest that stores it beside the image.

The envelope's protected header carries alg, cty (the Notary payload type), crit, the signing
scheme, the signing time and the expiry the profile's validity period gives; its unprotected
header the certificate chain (x5c, leaf first, the root last), as the Notary Project's JWS
envelope specification lays out. The manifest is an OCI image manifest of artifactType
application/vnd.cncf.notary.signature with the empty config, the envelope as its one layer and
the image as its subject, so the referrers API lists it."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dockyard.core.signing.keys import der_of

# cryptography is imported with the first signature, not at start-up (issue 19: memory at rest).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
ENVELOPE_MEDIA_TYPE = "application/jose+json"
PAYLOAD_MEDIA_TYPE = "application/vnd.cncf.notary.payload.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
SIGNING_SCHEME = "notary.x509"
SIGNING_AGENT = "Dockyard managed signing"
THUMBPRINTS_ANNOTATION = "io.cncf.notary.x509chain.thumbprint#S256"
_P384_BYTES = 48


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=False).encode()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Target:
    """The image being signed, as its descriptor."""

    media_type: str
    digest: str
    size: int

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def build_envelope(
    target: Target,
    private_key: ec.EllipticCurvePrivateKey,
    chain_pem: list[str],
    signing_time: datetime,
    validity: timedelta,
) -> bytes:
    """The JWS envelope signing `target` with `private_key`; `chain_pem` is leaf first, root last."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    protected = {
        "alg": "ES384",
        "cty": PAYLOAD_MEDIA_TYPE,
        "crit": ["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"],
        "io.cncf.notary.signingScheme": SIGNING_SCHEME,
        "io.cncf.notary.signingTime": _rfc3339(signing_time),
        "io.cncf.notary.expiry": _rfc3339(signing_time + validity),
    }
    payload = {"targetArtifact": target.descriptor()}
    encoded_protected = _b64url(_compact(protected))
    encoded_payload = _b64url(_compact(payload))
    signing_input = f"{encoded_protected}.{encoded_payload}".encode("ascii")
    # JWS wants ECDSA signatures as the raw R || S, each padded to the curve's size, not DER.
    r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(hashes.SHA384())))
    signature = r.to_bytes(_P384_BYTES, "big") + s.to_bytes(_P384_BYTES, "big")
    envelope = {
        "payload": encoded_payload,
        "protected": encoded_protected,
        "header": {
            "x5c": [base64.b64encode(der_of(pem)).decode("ascii") for pem in chain_pem],
            "io.cncf.notary.signingAgent": SIGNING_AGENT,
        },
        "signature": _b64url(signature),
    }
    return _compact(envelope)


def thumbprints(chain_pem: list[str]) -> list[str]:
    return [hashlib.sha256(der_of(pem)).hexdigest() for pem in chain_pem]


def build_signature_manifest(target: Target, envelope: bytes, chain_pem: list[str]) -> bytes:
    """The OCI manifest that stores `envelope` as a referrer of `target`."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE_ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": digest_of(EMPTY_CONFIG),
            "size": len(EMPTY_CONFIG),
            "data": base64.b64encode(EMPTY_CONFIG).decode("ascii"),
        },
        "layers": [{"mediaType": ENVELOPE_MEDIA_TYPE, "digest": digest_of(envelope), "size": len(envelope)}],
        "subject": target.descriptor(),
        "annotations": {THUMBPRINTS_ANNOTATION: json.dumps(thumbprints(chain_pem), separators=(",", ":"))},
    }
    return _compact(manifest)
