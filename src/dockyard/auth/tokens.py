"""ECR authorization tokens: the password behind ``docker login -u AWS``.

GetAuthorizationToken returns base64("AWS:" + password); clients then send the pair as HTTP Basic
credentials to the registry. The password here is self-describing and unforgeable: the claims,
compact JSON in base64url, a dot, and an HMAC-SHA256 of them under a server secret, so any node
holding the secret can check a token without a database. It is URL- and header-safe
(``[A-Za-z0-9_.-]``) and a few hundred characters long.

``sign``/``check`` are the same HMAC for other short-lived artefacts (e.g. the layer URLs of
GetDownloadUrlForLayer); ``purpose`` keeps one kind of signature from being replayed as another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import astuple, dataclass
from typing import Literal

TOKEN_PURPOSE = "ecr-authorization-token"
_VERSION = 1
_MAX_PASSWORD_LENGTH = 8192  # ours are far shorter; anything longer is not ours
_CLOCK_SKEW = 300  # seconds a token may appear to be issued in the future (other nodes' clocks)


@dataclass(frozen=True)
class TokenClaims:
    account_id: str
    region: str
    principal_arn: str
    principal_id: str
    access_key_id: str
    issued_at: int  # epoch seconds
    expires_at: int  # epoch seconds


class TokenError(Exception):
    """The password is not a valid token; ``reason`` tells the door how to answer."""

    def __init__(self, reason: Literal["invalid", "expired"], detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Literal["invalid", "expired"] = reason
        self.detail = detail


def sign(data: bytes, secret: bytes, *, purpose: str = "") -> str:
    """HMAC-SHA256 of ``data`` under ``secret``, base64url without padding."""
    return _b64encode(_mac(data, secret, purpose))


def check(data: bytes, signature: str, secret: bytes, *, purpose: str = "") -> bool:
    """Whether ``signature`` is ``sign(data, secret, purpose=purpose)``, in constant time."""
    try:
        provided = _b64decode(signature)
    except ValueError:
        return False
    return hmac.compare_digest(provided, _mac(data, secret, purpose))


def issue_password(claims: TokenClaims, server_secret: bytes) -> str:
    body = json.dumps([_VERSION, *astuple(claims)], separators=(",", ":"))
    payload = _b64encode(body.encode("ascii"))
    return f"{payload}.{sign(payload.encode('ascii'), server_secret, purpose=TOKEN_PURPOSE)}"


def authorization_token(password: str) -> str:
    """What GetAuthorizationToken returns: standard base64 of ``AWS:<password>``."""
    return base64.b64encode(f"AWS:{password}".encode()).decode("ascii")


def read_password(password: str, server_secret: bytes, now: float) -> TokenClaims:
    """The claims of a password this server issued, or ``TokenError`` (forged, garbled, expired)."""
    if not isinstance(password, str) or len(password) > _MAX_PASSWORD_LENGTH:
        raise TokenError("invalid", "not a token")
    payload, dot, signature = password.partition(".")
    if not dot or not payload.isascii():
        raise TokenError("invalid", "not a token")
    # The signature is checked before anything in the payload is decoded or believed.
    if not check(payload.encode("ascii"), signature, server_secret, purpose=TOKEN_PURPOSE):
        raise TokenError("invalid", "signature does not match")
    claims = _decode_claims(payload)
    if now >= claims.expires_at:
        raise TokenError("expired", "token has expired")
    if now + _CLOCK_SKEW < claims.issued_at:
        raise TokenError("invalid", "token is not valid yet")
    return claims


def parse_basic_auth(header_value: str) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic ...`` value, or None when it is not one."""
    if not isinstance(header_value, str):
        return None
    parts = header_value.split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(parts[1].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeError):
        return None
    user, colon, secret = decoded.partition(":")
    return (user, secret) if colon else None


def _decode_claims(payload: str) -> TokenClaims:
    try:
        fields = json.loads(_b64decode(payload).decode("utf-8"))
    except (ValueError, UnicodeError, RecursionError) as exc:
        raise TokenError("invalid", "garbled claims") from exc
    if not isinstance(fields, list) or len(fields) != 8 or fields[0] != _VERSION:
        raise TokenError("invalid", "unknown token version")
    strings, times = fields[1:6], fields[6:]
    if not all(isinstance(value, str) for value in strings) or not all(
        isinstance(value, int) and not isinstance(value, bool) for value in times
    ):
        raise TokenError("invalid", "garbled claims")
    return TokenClaims(*strings, *times)


def _mac(data: bytes, secret: bytes, purpose: str) -> bytes:
    # The purpose is length-prefixed so no (purpose, data) pair can collide with another.
    tag = purpose.encode("utf-8")
    message = len(tag).to_bytes(2, "big") + tag + data
    return hmac.new(secret, message, hashlib.sha256).digest()


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict base64url without padding; ValueError for anything else."""
    if not text.isascii() or "=" in text or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc
    if _b64encode(raw) != text:  # reject non-canonical spellings of the same bytes
        raise ValueError("not base64url")
    return raw
