"""Verification of AWS Signature Version 4 on incoming requests.

Two steps, so the caller can look the secret up (asynchronously, in the database) in between:

    info = parse_signature(method, path, query_string, headers, now)   # no secret needed
    secret = await lookup(info.access_key_id)                           # caller raises unknown_key
    verify_signature(info, secret, method, path, query_string, headers, body, now)

Canonicalisation is botocore's own (``SigV4Auth``), fed with a request rebuilt from what arrived,
so a request signed by boto3 or the AWS CLI verifies by construction. The checks run in the order
AWS runs them, so a request that is wrong in several ways gets the error AWS would give.

A signature must bind the whole operation, as AWS requires of its non-S3 services (ECR, IAM, STS,
CloudTrail: the only ones Dockyard serves). So, beyond what botocore canonicalises:

- ``host`` and every ``x-amz-*`` header that arrived must be among the signed headers, in the header
  form and in presigned URLs alike: an ``X-Amz-Target`` (or session token, or payload hash) added
  after signing is refused, not ignored;
- the payload line is always the SHA-256 of the body that arrived. ``UNSIGNED-PAYLOAD`` is S3's
  alone: declared here (``X-Amz-Content-Sha256`` header or query parameter) it does not match, so a
  presigned URL cannot carry a body its signer did not hash.

Every failure is a ``SignatureError`` carrying a ``kind``; ``error_for`` (or ``SignatureError.render``)
turns it into the code, message and HTTP status of the AWS JSON 1.1 protocol (ECR) or of the AWS Query
protocol (IAM, STS), which name the same failures differently.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Literal, NamedTuple
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from botocore.auth import SigV4Auth
    from botocore.credentials import Credentials

# botocore (with urllib3, dateutil, ...) is a few MiB a process: it is imported with the first
# signature to verify, not with this module, which the settings (so the supervisor, and every
# worker forked from it) and the registry door import for the error types alone.

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
SKEW = timedelta(minutes=15)
MAX_EXPIRES = 604800  # seven days: a signing key is only valid that long

_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_TIMESTAMP_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_DIGITS_RE = re.compile(r"-?[0-9]+")
_AUTH_SPLIT_RE = re.compile(r"[,\s]+")
_RAW_PATH_RE = re.compile(r"/[^\x00-\x20\x7f?#]*")
# The URL we hand botocore is only a carrier for the path; its host is never signed (Host is).
_URL_PREFIX = "http://dockyard.invalid"

Protocol = Literal["json", "query"]
SignatureErrorKind = Literal[
    "missing",  # no Authorization header nor X-Amz-Algorithm, or not an AWS4 one
    "incomplete",  # a required part is absent or malformed
    "bad_date",  # X-Amz-Date / Date is not a timestamp
    "bad_credential",  # Credential is not keyid/date/region/service/term
    "bad_algorithm",  # an AWS4 algorithm other than AWS4-HMAC-SHA256
    "ambiguous",  # both header and query-string authentication
    "unsigned_host",  # Host is not among the signed headers
    "unsigned_header",  # an x-amz-* header arrived that is not among the signed headers
    "bad_scope",  # credential scope names the wrong region, service, terminator or date
    "expired",  # X-Amz-Date more than 15 minutes in the past
    "not_yet_valid",  # X-Amz-Date more than 15 minutes in the future
    "request_expired",  # presigned URL used after X-Amz-Date + X-Amz-Expires
    "unknown_key",  # the access key id is not known (raised by the caller)
    "invalid_token",  # the session token is not valid for the key (raised by the caller)
    "expired_token",  # the session token has expired (raised by the caller)
    "mismatch",  # the signature, or the declared payload hash, does not match
]

MISSING_TOKEN_JSON = "Missing Authentication Token"
MISSING_TOKEN_QUERY = "Request is missing Authentication Token"
MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
INVALID_KEY_MESSAGE = "The security token included in the request is invalid."
EXPIRED_TOKEN_MESSAGE = "The security token included in the request is expired"
REQUEST_EXPIRED_MESSAGE = "Request has expired."
AMBIGUOUS_MESSAGE = "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header."
UNSIGNED_HOST_MESSAGE = "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
# AWS names the unsigned header as the request spelled it; ASGI servers hand names over lower-cased.
UNSIGNED_HEADER_MESSAGE = "'{name}' must be a 'SignedHeader' in the AWS Authorization."
# Headers a signature must cover whenever they are sent: the SigV4 rule for "x-amz-*" headers.
_SIGNED_PREFIX = "x-amz-"


class AwsError(NamedTuple):
    code: str
    message: str
    status: int


class _Family(NamedTuple):
    json: AwsError  # message here is the default, used when the error carries none
    query: AwsError


_INCOMPLETE = _Family(AwsError("IncompleteSignatureException", "", 400), AwsError("IncompleteSignature", "", 400))
_MISMATCH = _Family(
    AwsError("InvalidSignatureException", MISMATCH_MESSAGE, 400),
    AwsError("SignatureDoesNotMatch", MISMATCH_MESSAGE, 403),
)
_FAMILIES: dict[str, _Family] = {
    "missing": _Family(
        AwsError("MissingAuthenticationTokenException", MISSING_TOKEN_JSON, 400),
        AwsError("MissingAuthenticationToken", MISSING_TOKEN_QUERY, 403),
    ),
    "incomplete": _INCOMPLETE,
    "bad_date": _INCOMPLETE,
    "bad_credential": _INCOMPLETE,
    "bad_algorithm": _INCOMPLETE,
    "ambiguous": _MISMATCH,
    "unsigned_host": _MISMATCH,
    "unsigned_header": _MISMATCH,
    "bad_scope": _MISMATCH,
    "expired": _MISMATCH,
    "not_yet_valid": _MISMATCH,
    "mismatch": _MISMATCH,
    "request_expired": _Family(
        AwsError("RequestExpired", REQUEST_EXPIRED_MESSAGE, 400),
        AwsError("RequestExpired", REQUEST_EXPIRED_MESSAGE, 400),
    ),
    "unknown_key": _Family(
        AwsError("UnrecognizedClientException", INVALID_KEY_MESSAGE, 400),
        AwsError("InvalidClientTokenId", INVALID_KEY_MESSAGE, 403),
    ),
    # The JSON services really do drop the full stop for a bad session token.
    "invalid_token": _Family(
        AwsError("UnrecognizedClientException", INVALID_KEY_MESSAGE.rstrip("."), 400),
        AwsError("InvalidClientTokenId", INVALID_KEY_MESSAGE, 403),
    ),
    "expired_token": _Family(
        AwsError("ExpiredTokenException", EXPIRED_TOKEN_MESSAGE, 400),
        AwsError("ExpiredToken", EXPIRED_TOKEN_MESSAGE, 403),
    ),
}


def error_for(kind: SignatureErrorKind, protocol: Protocol, message: str | None = None) -> AwsError:
    """The (code, message, HTTP status) AWS answers with for ``kind`` in ``protocol``.

    ``message`` overrides the default message; the parse step supplies one for every kind whose
    wording depends on the request (incomplete parts, skew, scope).
    """
    family = _FAMILIES[kind]
    base = family.json if protocol == "json" else family.query
    return base._replace(message=message) if message else base


class SignatureError(Exception):
    """The request is not (validly) signed; ``render`` gives AWS's wording for a protocol."""

    def __init__(self, kind: SignatureErrorKind, message: str | None = None) -> None:
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind: SignatureErrorKind = kind
        self.message = message

    def render(self, protocol: Protocol) -> AwsError:
        return error_for(self.kind, protocol, self.message)


@dataclass(frozen=True)
class SignatureInfo:
    """What a request claims about its signature; parsed and checked for shape, not yet verified."""

    access_key_id: str
    date: str  # yyyymmdd, from the credential scope
    region: str
    service: str
    signed_headers: list[str]  # lower-case, as listed by the client
    signature: str
    amz_date: datetime  # UTC
    session_token: str | None
    presigned: bool
    expires_in: int | None  # X-Amz-Expires, presigned form only

    @property
    def credential_scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


def parse_signature(
    method: str,
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    now: datetime,
    *,
    services: Collection[str] | None = None,
    regions: Collection[str] | None = None,
) -> SignatureInfo:
    """Read the signature of a request (Authorization header or presigned query string).

    ``path`` and ``query_string`` are as they arrived, still percent-encoded (e.g. starlette's
    ``scope["raw_path"]`` and ``scope["query_string"]`` decoded as latin-1). ``headers`` may be any
    mapping; names are compared case-insensitively and repeated headers (starlette's ``Headers``)
    are kept. When given, ``services`` (the first one names the expected service in the message)
    and ``regions`` restrict the credential scope.
    """
    del method  # part of the signature only; accepted for symmetry with verify_signature
    try:
        header_map = _header_lists(headers)
        query = _query_pairs(query_string)
        in_header = "authorization" in header_map
        in_query = any(name == "X-Amz-Algorithm" for name, _ in query)
        if in_header and in_query:
            raise SignatureError("ambiguous", AMBIGUOUS_MESSAGE)
        if in_query:
            return _parse_query(dict(reversed(query)), header_map, _utc(now), services, regions)
        authorization = header_map["authorization"][0] if in_header else ""
        if not authorization.strip().startswith("AWS4-"):
            raise SignatureError("missing")
        return _parse_header(authorization, header_map, _utc(now), services, regions)
    except SignatureError:
        raise
    except Exception as exc:  # hostile input must only ever surface as SignatureError
        raise SignatureError("incomplete", "The request signature does not conform to AWS standards.") from exc


def verify_signature(
    info: SignatureInfo,
    secret_access_key: str,
    method: str,
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> None:
    """Check the signature against the secret; raise ``SignatureError`` unless it matches.

    The time window is checked again so a slow secret lookup cannot stretch it.
    """
    _check_time(info.amz_date, info.expires_in, info.presigned, _utc(now))
    try:
        header_map = _header_lists(headers)
        query = _query_pairs(query_string)
        payload_hash = _payload_hash(header_map, query, body)
        expected = _expected_signature(info, secret_access_key, method, path, query, header_map, payload_hash)
        provided = info.signature.encode("utf-8", "surrogatepass")
    except SignatureError:
        raise
    except Exception as exc:  # whatever botocore cannot canonicalise cannot match either
        raise SignatureError("mismatch") from exc
    if not hmac.compare_digest(expected.encode("ascii"), provided):
        raise SignatureError("mismatch")


def _parse_header(
    authorization: str,
    header_map: dict[str, list[str]],
    now: datetime,
    services: Collection[str] | None,
    regions: Collection[str] | None,
) -> SignatureInfo:
    algorithm, params = _authorization_params(authorization)
    missing = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature")
        if not params.get(name)
    ]
    if "SignedHeaders" not in params:
        missing.append("Authorization header requires 'SignedHeaders' parameter.")
    amz_header = _first(header_map, "x-amz-date")
    raw_date = amz_header if amz_header is not None else _first(header_map, "date")
    if raw_date is None:
        missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if missing or raw_date is None:
        raise SignatureError("incomplete", " ".join(missing) + f" Authorization={authorization}")
    amz_date = _parse_timestamp(raw_date, allow_http_date=amz_header is None)
    _check_time(amz_date, None, False, now)
    signed_headers = _signed_header_list(params["SignedHeaders"])
    access_key_id, scope = _check_credential(algorithm, params["Credential"], signed_headers, header_map)
    _check_scope(scope, amz_date, services, regions)
    return SignatureInfo(
        access_key_id=access_key_id,
        date=scope[0],
        region=scope[1],
        service=scope[2],
        signed_headers=signed_headers,
        signature=params["Signature"],
        amz_date=amz_date,
        session_token=_first(header_map, "x-amz-security-token"),
        presigned=False,
        expires_in=None,
    )


def _parse_query(
    params: dict[str, str],
    header_map: dict[str, list[str]],
    now: datetime,
    services: Collection[str] | None,
    regions: Collection[str] | None,
) -> SignatureInfo:
    required = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-Date")
    missing = [f"AWS query-string parameters must include '{name}'." for name in required if not params.get(name)]
    if missing:
        raise SignatureError("incomplete", " ".join(missing) + " Re-examine the query-string parameters.")
    amz_date = _parse_timestamp(params["X-Amz-Date"], allow_http_date=False)
    expires_in = _parse_expires(params.get("X-Amz-Expires"))
    _check_time(amz_date, expires_in, True, now)
    signed_headers = _signed_header_list(params["X-Amz-SignedHeaders"])
    access_key_id, scope = _check_credential(
        params["X-Amz-Algorithm"], params["X-Amz-Credential"], signed_headers, header_map
    )
    _check_scope(scope, amz_date, services, regions)
    return SignatureInfo(
        access_key_id=access_key_id,
        date=scope[0],
        region=scope[1],
        service=scope[2],
        signed_headers=signed_headers,
        signature=params["X-Amz-Signature"],
        amz_date=amz_date,
        session_token=params.get("X-Amz-Security-Token"),
        presigned=True,
        expires_in=expires_in,
    )


def _authorization_params(authorization: str) -> tuple[str, dict[str, str]]:
    """Split ``AWS4-HMAC-SHA256 K=V, K=V`` as AWS does: commas and blanks both separate."""
    algorithm, *pairs = [token for token in _AUTH_SPLIT_RE.split(authorization.strip()) if token]
    params: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals:
            raise SignatureError(
                "incomplete",
                f"'{pair}' not a valid key=value pair (missing equal-sign) in Authorization header: '{authorization}'.",
            )
        params[name] = value  # the last occurrence wins, as on AWS
    return algorithm, params


def _check_credential(
    algorithm: str, credential: str, signed_headers: list[str], header_map: dict[str, list[str]]
) -> tuple[str, list[str]]:
    """AWS checks the signed headers, then the algorithm, then the credential's shape; returns
    (key id, scope)."""
    _check_signed_headers(signed_headers, header_map)
    if algorithm != ALGORITHM:
        raise SignatureError(
            "bad_algorithm", f"Unsupported AWS 'algorithm': '{algorithm}' (only {ALGORITHM} for now). "
        )
    parts = credential.rstrip("/").split("/")
    if len(parts) != 5:
        raise SignatureError(
            "bad_credential",
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
            f"got '{credential}'",
        )
    return parts[0], parts[1:]


def _check_signed_headers(signed_headers: list[str], header_map: dict[str, list[str]]) -> None:
    """Host, and every x-amz-* header that arrived, must be signed: the canonical request only sees
    signed headers, so an unsigned X-Amz-Target would choose the operation behind the signature."""
    if "host" not in signed_headers and ":authority" not in signed_headers:
        raise SignatureError("unsigned_host", UNSIGNED_HOST_MESSAGE)
    signed = set(signed_headers)
    for name in header_map:
        if name.startswith(_SIGNED_PREFIX) and name not in signed:
            raise SignatureError("unsigned_header", UNSIGNED_HEADER_MESSAGE.format(name=name))


def _check_scope(
    scope: list[str],
    amz_date: datetime,
    services: Collection[str] | None,
    regions: Collection[str] | None,
) -> None:
    date, region, service, terminator = scope
    problems = []
    if regions is not None and region not in regions:
        problems.append(f"Credential should be scoped to a valid region, not '{region}'. ")
    if services is not None and service not in services:
        problems.append(f"Credential should be scoped to correct service: '{next(iter(services), '')}'. ")
    if terminator != TERMINATOR:
        problems.append(f"Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{terminator}'. ")
    day = amz_date.strftime("%Y%m%d")
    if date != day:
        problems.append(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{date}' != '{day}', from '{amz_date.strftime(_TIMESTAMP_FORMAT)}'."
        )
    if problems:
        raise SignatureError("bad_scope", "".join(problems))


def _check_time(amz_date: datetime, expires_in: int | None, presigned: bool, now: datetime) -> None:
    """Header form: within 15 minutes of now. Presigned: not ahead by more than 15 minutes, and
    used within X-Amz-Expires seconds of X-Amz-Date (or 15 minutes when X-Amz-Expires is absent)."""
    now = now.replace(microsecond=0)
    stamp = amz_date.strftime(_TIMESTAMP_FORMAT)
    if amz_date > now + SKEW:
        raise SignatureError(
            "not_yet_valid",
            f"Signature not yet current: {stamp} is still later than {_stamp(now + SKEW)} ({_stamp(now)} + 15 min.)",
        )
    if presigned and expires_in is not None:
        if now > amz_date + timedelta(seconds=expires_in):
            raise SignatureError("request_expired")
    elif amz_date < now - SKEW:
        raise SignatureError(
            "expired",
            f"Signature expired: {stamp} is now earlier than {_stamp(now - SKEW)} ({_stamp(now)} - 15 min.)",
        )


def _parse_timestamp(value: str, *, allow_http_date: bool) -> datetime:
    """ISO-8601 basic format (what SigV4 signs); a Date header may also be an RFC 7231 date."""
    text = value.strip()
    try:
        if _TIMESTAMP_RE.fullmatch(text):
            return datetime.strptime(text, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        if allow_http_date:
            from email.utils import parsedate_to_datetime  # only Date headers, which botocore never sends

            return _utc(parsedate_to_datetime(text))  # "-0000" (botocore's choice) parses naive
    except (ValueError, TypeError, IndexError, OverflowError):
        pass
    raise SignatureError(
        "bad_date",
        f"Date must be in ISO-8601 'basic format'. Got '{value}'. See http://en.wikipedia.org/wiki/ISO_8601",
    )


def _parse_expires(value: str | None) -> int | None:
    if value is None:
        return None
    if not _DIGITS_RE.fullmatch(value):
        raise SignatureError("incomplete", "X-Amz-Expires should be a number")
    seconds = int(value)
    if seconds < 0:
        raise SignatureError("incomplete", "X-Amz-Expires must be non-negative")
    if seconds > MAX_EXPIRES:
        raise SignatureError("incomplete", f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_EXPIRES}")
    return seconds


def _payload_hash(header_map: dict[str, list[str]], query: list[tuple[str, str]], body: bytes) -> str:
    """The payload line of the canonical request: always the hash of the body that arrived.

    A declared X-Amz-Content-Sha256 (header, or query parameter of a presigned URL) must be that
    same hash; ``UNSIGNED-PAYLOAD`` or any other value cannot match, as on AWS's non-S3 services,
    where the Action (Query protocol) or the operation's input (JSON) is in the body.
    """
    actual = hashlib.sha256(body).hexdigest()
    declared = [
        *header_map.get("x-amz-content-sha256", ()),
        *(value for name, value in query if name.lower() == "x-amz-content-sha256"),
    ]
    if any(value.strip().lower() != actual for value in declared):
        raise SignatureError("mismatch")
    return actual


def _expected_signature(
    info: SignatureInfo,
    secret_access_key: str,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    header_map: dict[str, list[str]],
    payload_hash: str,
) -> str:
    if not _RAW_PATH_RE.fullmatch(path):
        # Not a raw request path; urlsplit would also silently drop tabs and newlines from it.
        raise SignatureError("mismatch")
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        method=method,
        url=_URL_PREFIX + path,
        params=[(name, value) for name, value in query if name != "X-Amz-Signature"],
    )
    for name in info.signed_headers:
        for value in header_map.get(name, ()):
            request.headers[name] = value  # HTTPHeaders appends, keeping repeated headers
    request.context["timestamp"] = info.amz_date.strftime(_TIMESTAMP_FORMAT)
    credentials = Credentials(info.access_key_id, secret_access_key, info.session_token)
    signer = _verifier_class()(credentials, info.service, info.region, payload_hash)
    canonical_request = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical_request), request)


@cache
def _verifier_class() -> Callable[[Credentials, str, str, str], SigV4Auth]:
    """botocore's signer, told exactly which headers were signed and what the payload hash is.

    botocore would otherwise drop headers it never signs itself (User-Agent, ...) and invent a Host
    header from the URL; a server must use the client's list and the headers that arrived. Defined
    on first use, as botocore is imported then.
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest, HTTPHeaders

    class Verifier(SigV4Auth):
        def __init__(self, credentials: Credentials, service: str, region: str, payload_hash: str) -> None:
            super().__init__(credentials, service, region)
            self.payload_hash = payload_hash

        def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
            signed = HTTPHeaders()
            for name, value in request.headers.items():
                signed[name.lower()] = value
            return signed

        def payload(self, request: AWSRequest) -> str:
            return self.payload_hash

    return Verifier


def _signed_header_list(value: str) -> list[str]:
    return [name.strip().lower() for name in value.split(";") if name.strip()]


def _header_lists(headers: Mapping[str, str]) -> dict[str, list[str]]:
    """Lower-cased names to every value; ``items()`` of starlette's Headers yields repeats."""
    result: dict[str, list[str]] = {}
    for name, value in headers.items():
        result.setdefault(name.lower(), []).append(value)
    return result


def _first(header_map: dict[str, list[str]], name: str) -> str | None:
    values = header_map.get(name)
    return values[0] if values else None


def _query_pairs(query_string: str) -> list[tuple[str, str]]:
    """Decoded (name, value) pairs; botocore re-encodes them canonically, as AWS does."""
    return parse_qsl(query_string, keep_blank_values=True)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime(_TIMESTAMP_FORMAT)
