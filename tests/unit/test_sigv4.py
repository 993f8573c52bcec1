"""SigV4 verification against requests signed by the real boto3 / AWS CLI v1 and by botocore."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.httpsession import URLLib3Session
from botocore.utils import normalize_url_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from dockyard.auth.sigv4 import (
    MISMATCH_MESSAGE,
    SignatureError,
    SignatureInfo,
    error_for,
    parse_signature,
    verify_signature,
)

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FQoGZXIvYXdzEBYaDexample+token/with=chars"
SIGNED_AT = datetime(2026, 11, 23, 10, 15, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Arrived:
    """A request as the server saw it: raw path and query, headers in arrival order, body."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def starlette_headers(self) -> Headers:
        return Headers(raw=[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers])

    def with_header(self, name: str, value: str) -> Arrived:
        kept = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        return replace(self, headers=[*kept, (name, value)])

    def without_header(self, name: str) -> Arrived:
        return replace(self, headers=[(k, v) for k, v in self.headers if k.lower() != name.lower()])

    def header(self, name: str) -> str:
        return next(v for k, v in self.headers if k.lower() == name.lower())


class _Capture(http.server.BaseHTTPRequestHandler):
    arrived: list[Arrived] = []

    def do_GET(self) -> None:
        self._capture()

    def do_POST(self) -> None:
        self._capture()

    def _capture(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        path, _, query = self.path.partition("?")
        self.arrived.append(Arrived(self.command, path, query, list(self.headers.items()), body))
        if "x-amz-target" in self.headers:
            payload, content_type = b"{}", "application/x-amz-json-1.1"
        else:
            payload, content_type = b"<Response></Response>", "text/xml"
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


@contextlib.contextmanager
def frozen(moment: datetime) -> Iterator[None]:
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment.replace(tzinfo=None)):
        yield


def capture(call: Callable[[], object]) -> Arrived:
    """Run a client call against the capture server and return what arrived."""
    before = len(_Capture.arrived)
    with contextlib.suppress(Exception):  # our canned responses need not satisfy the client's parser
        call()
    assert len(_Capture.arrived) == before + 1
    return _Capture.arrived[-1]


def client(server: str, service: str, token: str | None = None, region: str = "us-east-1") -> object:
    return boto3.client(
        service,
        endpoint_url=server,
        region_name=region,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        aws_session_token=token,
    )


def parse(arrived: Arrived, now: datetime = SIGNED_AT, **kwargs: object) -> SignatureInfo:
    return parse_signature(arrived.method, arrived.path, arrived.query, arrived.starlette_headers(), now, **kwargs)


def verify(arrived: Arrived, secret: str = SECRET, now: datetime = SIGNED_AT, **kwargs: object) -> SignatureInfo:
    info = parse(arrived, now, **kwargs)
    verify_signature(
        info, secret, arrived.method, arrived.path, arrived.query, arrived.starlette_headers(), arrived.body, now
    )
    return info


def rejected(arrived: Arrived, secret: str = SECRET, now: datetime = SIGNED_AT, **kwargs: object) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        verify(arrived, secret, now, **kwargs)
    return caught.value


def send(request: AWSRequest) -> Arrived:
    return capture(lambda: URLLib3Session().send(request.prepare()))


def signed(
    server: str,
    method: str = "POST",
    target: str = "/",
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    service: str = "ecr",
    region: str = "us-east-1",
    when: datetime = SIGNED_AT,
    token: str | None = None,
) -> Arrived:
    """Sign with botocore's SigV4Auth at a fixed time and send it over the wire."""
    request = AWSRequest(method=method, url=server + target, headers=headers or {}, data=body)
    with frozen(when):
        SigV4Auth(Credentials(KEY_ID, SECRET, token), service, region).add_auth(request)
    return send(request)


def presigned(server: str, target: str, *, expires: int = 3600, when: datetime = SIGNED_AT) -> Arrived:
    request = AWSRequest(method="GET", url=server + target)
    with frozen(when):
        SigV4QueryAuth(Credentials(KEY_ID, SECRET), "ecr", "us-east-1", expires=expires).add_auth(request)
    return send(request)


# --- real clients ------------------------------------------------------------------------------


ECR_CALLS = {
    "describe_repositories": lambda c: c.describe_repositories(),
    "get_authorization_token": lambda c: c.get_authorization_token(),
    "put_image": lambda c: c.put_image(
        repositoryName="team/app", imageManifest='{"schemaVersion": 2, "note": "é ünïcode"}', imageTag="v1.0"
    ),
    "batch_get_image": lambda c: c.batch_get_image(repositoryName="app", imageIds=[{"imageTag": "latest"}]),
}
QUERY_CALLS = {
    ("sts", "get_caller_identity"): lambda c: c.get_caller_identity(),
    ("sts", "assume_role"): lambda c: c.assume_role(
        RoleArn="arn:aws:iam::123456789012:role/r", RoleSessionName="session"
    ),
    ("iam", "create_user"): lambda c: c.create_user(UserName="alice+ops@example", Path="/team a/"),
    ("iam", "list_users"): lambda c: c.list_users(),
}


@pytest.mark.parametrize("operation", sorted(ECR_CALLS))
def test_boto3_ecr_requests_verify(server: str, operation: str) -> None:
    with frozen(SIGNED_AT):
        arrived = capture(lambda: ECR_CALLS[operation](client(server, "ecr")))
    info = verify(arrived, services=("ecr",), regions=("us-east-1",))
    assert (info.access_key_id, info.region, info.service, info.date) == (KEY_ID, "us-east-1", "ecr", "20261123")
    assert info.amz_date == SIGNED_AT and not info.presigned and info.session_token is None
    assert "x-amz-target" in info.signed_headers and "host" in info.signed_headers


@pytest.mark.parametrize(("service", "operation"), sorted(QUERY_CALLS))
def test_boto3_query_protocol_requests_verify(server: str, service: str, operation: str) -> None:
    with frozen(SIGNED_AT):
        arrived = capture(lambda: QUERY_CALLS[service, operation](client(server, service)))
    assert arrived.method == "POST" and arrived.body
    info = verify(arrived, services=(service,))
    assert info.service == service


def test_boto3_session_token_is_read_and_signed(server: str) -> None:
    with frozen(SIGNED_AT):
        arrived = capture(lambda: client(server, "ecr", token=TOKEN).describe_repositories())
    assert verify(arrived).session_token == TOKEN
    assert rejected(arrived.with_header("X-Amz-Security-Token", TOKEN + "x")).kind == "mismatch"


def test_boto3_other_region_verifies(server: str) -> None:
    with frozen(SIGNED_AT):
        arrived = capture(lambda: client(server, "ecr", region="eu-west-3").describe_repositories())
    assert verify(arrived, regions=("eu-west-3", "us-east-1")).region == "eu-west-3"


@pytest.mark.parametrize(
    ("service", "argv"),
    [
        ("ecr", ["ecr", "describe-repositories"]),
        ("ecr", ["ecr", "get-login-password"]),
        ("sts", ["sts", "get-caller-identity"]),
        ("iam", ["iam", "list-users"]),
    ],
)
def test_aws_cli_v1_requests_verify(server: str, service: str, argv: list[str]) -> None:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": TOKEN,
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    before = len(_Capture.arrived)
    subprocess.run(["aws", "--endpoint-url", server, *argv], env=env, capture_output=True, timeout=60)
    assert len(_Capture.arrived) == before + 1
    arrived = _Capture.arrived[-1]
    info = verify(arrived, now=datetime.now(UTC), services=(service,))
    assert info.session_token == TOKEN and info.service == service
    assert rejected(arrived, secret=SECRET + "x", now=datetime.now(UTC)).kind == "mismatch"


def test_get_with_query_string_verifies(server: str) -> None:
    arrived = signed(server, "GET", "/v2/some%20repo/tags/list?n=10&last=a%2Fb&empty=&sp=x%20y", body=b"")
    assert arrived.query
    verify(arrived)
    assert rejected(replace(arrived, query=arrived.query.replace("n=10", "n=11"))).kind == "mismatch"
    assert rejected(replace(arrived, query=arrived.query + "&extra=1")).kind == "mismatch"
    assert rejected(replace(arrived, path="/v2/some%20repo/tags/list2")).kind == "mismatch"


def test_query_string_encoded_differently_still_verifies(server: str) -> None:
    # AWS canonicalises what it decodes, so '+' or lower-case escapes mean the same request.
    arrived = signed(server, "GET", "/?a=x%20y&b=%2F")
    verify(replace(arrived, query="b=%2f&a=x+y"))


def test_date_header_instead_of_x_amz_date_verifies(server: str) -> None:
    arrived = signed(server, headers={"Date": "placeholder", "Content-Type": "application/x-amz-json-1.1"})
    assert not any(name.lower() == "x-amz-date" for name, _ in arrived.headers)
    assert verify(arrived).amz_date == SIGNED_AT


def test_repeated_and_whitespace_header_values_verify(server: str) -> None:
    arrived = signed(server, headers={"X-Custom": "  a   b  "}, body=b"{}")
    verify(arrived)
    assert rejected(arrived.with_header("X-Custom", "a  c")).kind == "mismatch"


def test_plain_dict_headers_are_matched_case_insensitively(server: str) -> None:
    arrived = signed(server, body=b"{}")
    info = parse_signature("POST", "/", "", {k.upper(): v for k, v in arrived.headers}, SIGNED_AT)
    verify_signature(info, SECRET, "POST", "/", "", dict(arrived.headers), arrived.body, SIGNED_AT)


# --- tampering -----------------------------------------------------------------------------------


@pytest.fixture
def ecr_request(server: str) -> Arrived:
    with frozen(SIGNED_AT):
        return capture(lambda: client(server, "ecr", token=TOKEN).put_image(repositoryName="app", imageManifest="{}"))


def _retarget(arrived: Arrived, old: str, new: str) -> Arrived:
    return arrived.with_header("Authorization", arrived.header("Authorization").replace(old, new, 1))


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda a: replace(a, method="PUT"), id="method"),
        pytest.param(lambda a: replace(a, path="/v2/"), id="path"),
        pytest.param(lambda a: replace(a, query="a=1"), id="query"),
        pytest.param(lambda a: replace(a, body=a.body + b" "), id="body"),
        pytest.param(lambda a: replace(a, body=b""), id="body-removed"),
        pytest.param(
            lambda a: a.with_header("X-Amz-Target", "AmazonEC2ContainerRegistry_V20150921.DeleteRepository"),
            id="signed-header",
        ),
        pytest.param(lambda a: a.without_header("X-Amz-Target"), id="signed-header-removed"),
        pytest.param(lambda a: a.with_header("Host", "evil.example"), id="host"),
        pytest.param(lambda a: a.with_header("X-Amz-Date", "20261123T101501Z"), id="date"),
        pytest.param(lambda a: _retarget(a, "/us-east-1/", "/us-west-2/"), id="region"),
        pytest.param(lambda a: _retarget(a, "Signature=", "Signature=0"), id="signature"),
        pytest.param(lambda a: _retarget(a, "SignedHeaders=", "SignedHeaders=user-agent;"), id="signed-list"),
    ],
)
def test_any_signed_change_is_a_mismatch(ecr_request: Arrived, tamper: Callable[[Arrived], Arrived]) -> None:
    verify(ecr_request)
    error = rejected(tamper(ecr_request))
    assert error.kind == "mismatch"
    assert error.render("json") == ("InvalidSignatureException", MISMATCH_MESSAGE, 400)
    assert error.render("query") == ("SignatureDoesNotMatch", MISMATCH_MESSAGE, 403)


def test_path_is_normalised_like_aws(ecr_request: Arrived) -> None:
    verify(replace(ecr_request, path="//"))
    verify(replace(ecr_request, path="/./"))


def test_unsigned_headers_may_change(ecr_request: Arrived) -> None:
    assert "user-agent" not in verify(ecr_request).signed_headers
    verify(ecr_request.with_header("User-Agent", "something else").with_header("X-Forwarded-For", "1.2.3.4"))


def test_wrong_secret_is_a_mismatch(ecr_request: Arrived) -> None:
    assert rejected(ecr_request, secret=SECRET[:-1]).kind == "mismatch"


def test_matching_content_sha256_header_is_accepted(server: str) -> None:
    body = b'{"repositoryName": "app"}'
    arrived = signed(server, headers={"X-Amz-Content-Sha256": hashlib.sha256(body).hexdigest()}, body=body)
    assert "x-amz-content-sha256" in verify(arrived).signed_headers
    assert rejected(replace(arrived, body=b"{}")).kind == "mismatch"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("/us-east-1/", "/mars-1/", "Credential should be scoped to a valid region, not 'mars-1'. "),
        ("/ecr/", "/iam/", "Credential should be scoped to correct service: 'ecr'. "),
        (
            "/aws4_request",
            "/aws5_request",
            "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'. ",
        ),
        (
            "/20261123/",
            "/20261122/",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            "'20261122' != '20261123', from '20261123T101500Z'.",
        ),
    ],
)
def test_bad_scope_messages(ecr_request: Arrived, old: str, new: str, message: str) -> None:
    error = rejected(_retarget(ecr_request, old, new), services=("ecr",), regions=("us-east-1",))
    assert error.kind == "bad_scope"
    assert error.render("json") == ("InvalidSignatureException", message, 400)
    assert error.render("query") == ("SignatureDoesNotMatch", message, 403)


def test_all_scope_problems_are_reported_together(ecr_request: Arrived) -> None:
    credential = "Credential=AKID/20261122/mars-1/s3/aws5_request,"
    auth = ecr_request.header("Authorization")
    start, end = auth.index("Credential="), auth.index(",")
    tampered = ecr_request.with_header("Authorization", auth[:start] + credential + auth[end + 1 :])
    error = rejected(tampered, services=("ecr",), regions=("us-east-1",))
    assert error.message == (
        "Credential should be scoped to a valid region, not 'mars-1'. "
        "Credential should be scoped to correct service: 'ecr'. "
        "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'. "
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
        "'20261122' != '20261123', from '20261123T101500Z'."
    )


# --- the skew window -----------------------------------------------------------------------------


def test_skew_window_boundaries(ecr_request: Arrived) -> None:
    verify(ecr_request, now=SIGNED_AT + timedelta(minutes=15))
    verify(ecr_request, now=SIGNED_AT - timedelta(minutes=15))
    assert rejected(ecr_request, now=SIGNED_AT + timedelta(minutes=15, seconds=1)).kind == "expired"
    assert rejected(ecr_request, now=SIGNED_AT - timedelta(minutes=15, seconds=1)).kind == "not_yet_valid"


def test_expired_message(ecr_request: Arrived) -> None:
    error = rejected(ecr_request, now=datetime(2026, 11, 23, 10, 46, 0, 500000, tzinfo=UTC))
    message = "Signature expired: 20261123T101500Z is now earlier than 20261123T103100Z (20261123T104600Z - 15 min.)"
    assert error.render("json") == ("InvalidSignatureException", message, 400)
    assert error.render("query") == ("SignatureDoesNotMatch", message, 403)


def test_not_yet_current_message(ecr_request: Arrived) -> None:
    error = rejected(ecr_request, now=datetime(2026, 11, 23, 9, 44, 0))  # naive means UTC
    message = (
        "Signature not yet current: 20261123T101500Z is still later than 20261123T095900Z (20261123T094400Z + 15 min.)"
    )
    assert error.kind == "not_yet_valid"
    assert error.render("json") == ("InvalidSignatureException", message, 400)


def test_time_is_checked_again_at_verification(ecr_request: Arrived) -> None:
    info = parse(ecr_request)
    late = SIGNED_AT + timedelta(minutes=20)
    with pytest.raises(SignatureError) as caught:
        verify_signature(info, SECRET, "POST", "/", "", ecr_request.starlette_headers(), ecr_request.body, late)
    assert caught.value.kind == "expired"


# --- presigned URLs ------------------------------------------------------------------------------


def test_presigned_url_verifies_until_it_expires(server: str) -> None:
    arrived = presigned(server, "/v2/app/blobs/sha256:abc?x-id=1", expires=3600)
    info = verify(arrived, now=SIGNED_AT + timedelta(minutes=59))
    assert info.presigned and info.expires_in == 3600 and info.session_token is None
    verify(arrived, now=SIGNED_AT + timedelta(seconds=3600))
    error = rejected(arrived, now=SIGNED_AT + timedelta(seconds=3601))
    assert error.kind == "request_expired"
    assert error.render("json") == ("RequestExpired", "Request has expired.", 400)
    assert error.render("query") == ("RequestExpired", "Request has expired.", 400)
    assert rejected(arrived, now=SIGNED_AT - timedelta(minutes=16)).kind == "not_yet_valid"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda q: q.replace("x-id=1", "x-id=2"), id="param"),
        pytest.param(lambda q: q.replace("X-Amz-Expires=3600", "X-Amz-Expires=7200"), id="expires"),
        pytest.param(lambda q: q + "&more=1", id="added"),
        pytest.param(lambda q: q.replace("X-Amz-Signature=", "X-Amz-Signature=1"), id="signature"),
    ],
)
def test_presigned_tampering_is_a_mismatch(server: str, tamper: Callable[[str], str]) -> None:
    arrived = presigned(server, "/v2/app/blobs/sha256:abc?x-id=1")
    assert rejected(replace(arrived, query=tamper(arrived.query))).kind == "mismatch"
    assert rejected(replace(arrived, path="/v2/app/blobs/sha256:abd")).kind == "mismatch"


@pytest.mark.parametrize("http_method", ["GET", None])
def test_boto3_generate_presigned_url_verifies(server: str, http_method: str | None) -> None:
    sts = client(server, "sts", token=TOKEN)
    with frozen(SIGNED_AT):
        url = sts.generate_presigned_url("get_caller_identity", ExpiresIn=900, HttpMethod=http_method)
    assert "Action=GetCallerIdentity" in urlsplit(url).query
    # Without HttpMethod botocore signs for the operation's own method, POST.
    method = http_method or "POST"
    arrived = capture(lambda: urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10))
    info = verify(arrived, now=SIGNED_AT + timedelta(minutes=10), services=("sts",))
    assert info.presigned and info.session_token == TOKEN and info.service == "sts"
    other = "POST" if method == "GET" else "GET"
    assert rejected(replace(arrived, method=other), now=SIGNED_AT).kind == "mismatch"


def test_presigned_unsigned_payload_declaration(server: str) -> None:
    arrived = presigned(server, "/blob")
    # An S3-style declaration changes the canonical request, so it needs a matching signature.
    assert rejected(replace(arrived, query=arrived.query + "&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD")).kind == (
        "mismatch"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "X-Amz-Expires should be a number"),
        ("-1", "X-Amz-Expires must be non-negative"),
        ("604801", "X-Amz-Expires must be less than a week (in seconds) that is 604800"),
    ],
)
def test_presigned_bad_expires(server: str, value: str, message: str) -> None:
    arrived = presigned(server, "/blob")
    error = rejected(replace(arrived, query=arrived.query.replace("X-Amz-Expires=3600", f"X-Amz-Expires={value}")))
    assert error.render("query") == ("IncompleteSignature", message, 400)


def test_presigned_without_expires_uses_the_skew_window(server: str) -> None:
    arrived = presigned(server, "/blob")
    query = "&".join(p for p in arrived.query.split("&") if not p.startswith("X-Amz-Expires="))
    info = parse(replace(arrived, query=query), now=SIGNED_AT + timedelta(minutes=15))
    assert info.expires_in is None
    with pytest.raises(SignatureError) as caught:
        parse(replace(arrived, query=query), now=SIGNED_AT + timedelta(minutes=16))
    assert caught.value.kind == "expired"


# --- the signature binds the operation -----------------------------------------------------------

ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921."
JSON_TYPE = "application/x-amz-json-1.1"


def _unsigned(name: str) -> tuple[str, str, int]:
    return ("InvalidSignatureException", f"'{name}' must be a 'SignedHeader' in the AWS Authorization.", 400)


def _unsigned_query(name: str) -> tuple[str, str, int]:
    return ("SignatureDoesNotMatch", f"'{name}' must be a 'SignedHeader' in the AWS Authorization.", 403)


def presigned_post(
    server: str,
    *,
    headers: dict[str, str] | None = None,
    query: str = "",
    token: str | None = None,
    signer: type[SigV4QueryAuth] = SigV4QueryAuth,
) -> AWSRequest:
    """A presigned POST / (what a shared URL for an AWS API looks like); the caller sends it."""
    request = AWSRequest(method="POST", url=f"{server}/{'?' + query if query else ''}", headers=headers or {})
    with frozen(SIGNED_AT):
        signer(Credentials(KEY_ID, SECRET, token), "ecr", "us-east-1", expires=3600).add_auth(request)
    return request


def send_with(request: AWSRequest, *, headers: dict[str, str] | None = None, body: bytes = b"") -> Arrived:
    """Send a signed request after adding headers and a body its signer never saw."""
    for name, value in (headers or {}).items():
        request.headers[name] = value
    request.data = body
    return send(request)


def test_target_added_after_signing_is_refused(server: str) -> None:
    body = b'{"repositoryName": "app"}'
    arrived = signed(server, headers={"Content-Type": JSON_TYPE}, body=body)
    verify(arrived)  # what was signed: no operation at all
    tampered = arrived.with_header("X-Amz-Target", ECR_TARGET + "DescribeImages")
    error = rejected(tampered)
    assert error.kind == "unsigned_header"
    assert error.render("json") == _unsigned("x-amz-target")
    assert error.render("query") == _unsigned_query("x-amz-target")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Amz-Target", ECR_TARGET + "DeleteRepository"),
        ("X-Amz-Security-Token", TOKEN),
        ("X-Amz-Content-Sha256", hashlib.sha256(b'{"repositoryName": "app"}').hexdigest()),
        ("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD"),
        ("X-Amz-Date", "20261123T101500Z"),
        ("x-amz-anything", "1"),
    ],
)
def test_every_x_amz_header_sent_must_be_signed(server: str, name: str, value: str) -> None:
    arrived = signed(server, headers={"Content-Type": JSON_TYPE}, body=b'{"repositoryName": "app"}')
    arrived = arrived.with_header(name, value) if name != "X-Amz-Date" else arrived
    if name == "X-Amz-Date":
        # botocore always signs X-Amz-Date; a signer that leaves it out is refused all the same.
        auth = arrived.header("Authorization").replace(";x-amz-date", "")
        arrived = arrived.with_header("Authorization", auth)
    error = rejected(arrived)
    assert error.kind == "unsigned_header"
    assert error.render("json") == _unsigned(name.lower())


@pytest.mark.parametrize("operation", ["DescribeImages", "ListImages", "DescribeRepositories", "DeleteRepository"])
def test_presigned_url_signing_only_host_carries_no_operation(server: str, operation: str) -> None:
    request = presigned_post(server)
    assert "X-Amz-SignedHeaders=host&" in request.url
    verify(send_with(presigned_post(server)))  # as signed: POST / with nothing in it
    arrived = send_with(request, headers={"X-Amz-Target": ECR_TARGET + operation, "Content-Type": JSON_TYPE})
    error = rejected(arrived)
    assert error.kind == "unsigned_header"
    assert error.render("json") == _unsigned("x-amz-target")


def test_presigned_url_cannot_take_a_body_through_an_unsigned_payload_header(server: str) -> None:
    # Signed S3-style (payload UNSIGNED-PAYLOAD, only Host), then sent with an operation and a body.
    request = presigned_post(server, signer=S3SigV4QueryAuth)
    arrived = send_with(
        request,
        headers={"X-Amz-Target": ECR_TARGET + "DeleteRepository", "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"},
        body=b'{"repositoryName": "app", "force": true}',
    )
    error = rejected(arrived)
    assert error.kind == "unsigned_header"


class _UnsignedPayloadAuth(SigV4Auth):
    """A header-form signer that does not hash the payload (S3's option, nobody else's)."""

    def payload(self, request: AWSRequest) -> str:
        return "UNSIGNED-PAYLOAD"


def test_unsigned_payload_is_refused_in_every_form(server: str) -> None:
    body = b'{"repositoryName": "created-by-anyone"}'
    target = {"X-Amz-Target": ECR_TARGET + "CreateRepository", "Content-Type": JSON_TYPE}
    # Presigned, UNSIGNED-PAYLOAD declared in the (signed) query and used as the payload line.
    query = presigned_post(
        server, headers=target, query="X-Amz-Content-Sha256=UNSIGNED-PAYLOAD", signer=S3SigV4QueryAuth
    )
    assert "x-amz-target" in query.url
    # Presigned, UNSIGNED-PAYLOAD as a signed header.
    header = presigned_post(
        server, headers={**target, "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"}, signer=S3SigV4QueryAuth
    )
    assert "x-amz-content-sha256" in header.url
    for request in (query, header):
        error = rejected(send_with(request, body=body))
        assert error.kind == "mismatch"
        assert error.render("json") == ("InvalidSignatureException", MISMATCH_MESSAGE, 400)
        assert error.render("query") == ("SignatureDoesNotMatch", MISMATCH_MESSAGE, 403)
    # Authorization header form, UNSIGNED-PAYLOAD signed as payload and header.
    request = AWSRequest(
        method="POST", url=server + "/", headers={**target, "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"}, data=body
    )
    with frozen(SIGNED_AT):
        _UnsignedPayloadAuth(Credentials(KEY_ID, SECRET), "ecr", "us-east-1").add_auth(request)
    assert rejected(send(request)).kind == "mismatch"


def test_presigned_url_from_botocore_is_bound_to_its_operation(server: str) -> None:
    ecr = client(server, "ecr", token=TOKEN)
    with frozen(SIGNED_AT):
        url = ecr.generate_presigned_url("describe_repositories", ExpiresIn=900)
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["X-Amz-SignedHeaders"] == "content-type;host;x-amz-target"
    headers = {"X-Amz-Target": ECR_TARGET + "DescribeRepositories", "Content-Type": JSON_TYPE}

    def use(extra: dict[str, str], body: bytes = b"") -> Arrived:
        request = urllib.request.Request(url, data=body, headers={**headers, **extra}, method="POST")
        return capture(lambda: urllib.request.urlopen(request, timeout=10))

    info = verify(use({}))  # the URL as botocore meant it
    assert info.presigned and info.session_token == TOKEN
    assert rejected(use({"X-Amz-Target": ECR_TARGET + "DeleteRepository"})).kind == "mismatch"
    assert rejected(use({}, b'{"repositoryName": "app"}')).kind == "mismatch"
    error = rejected(use({"X-Amz-Security-Token": "another"}))
    assert error.kind == "unsigned_header"
    assert error.render("json") == _unsigned("x-amz-security-token")


def test_cloudtrail_requests_verify(server: str) -> None:
    with frozen(SIGNED_AT):
        arrived = capture(lambda: client(server, "cloudtrail").lookup_events(MaxResults=5))
    info = verify(arrived, services=("cloudtrail",))
    assert {"host", "x-amz-date", "x-amz-target"} <= set(info.signed_headers)
    assert rejected(arrived.with_header("X-Amz-Security-Token", TOKEN)).kind == "unsigned_header"


# --- malformed requests: AWS's exact errors ------------------------------------------------------


def headers_with(authorization: str | None, date: str | None = "20261123T101500Z") -> dict[str, str]:
    headers = {"Host": "localhost"}
    if authorization is not None:
        headers["Authorization"] = authorization
    if date is not None:
        headers["X-Amz-Date"] = date
    return headers


def parse_error(headers: dict[str, str], query: str = "") -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        parse_signature("POST", "/", query, headers, SIGNED_AT, services=("ecr",), regions=("us-east-1",))
    return caught.value


GOOD_CREDENTIAL = "Credential=AKID/20261123/us-east-1/ecr/aws4_request"


@pytest.mark.parametrize("authorization", [None, "", "Bearer abc", "AWS AKID:sig", "Basic QVdTOnNlY3JldA=="])
def test_missing_authentication(authorization: str | None) -> None:
    error = parse_error(headers_with(authorization))
    assert error.kind == "missing"
    assert error.render("json") == ("MissingAuthenticationTokenException", "Missing Authentication Token", 400)
    assert error.render("query") == ("MissingAuthenticationToken", "Request is missing Authentication Token", 403)


@pytest.mark.parametrize(
    ("authorization", "date", "message"),
    [
        (
            "AWS4-HMAC-SHA256",
            "20261123T101500Z",
            "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' "
            "parameter. Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, Signature=abc",
            None,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
            f"Authorization=AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, Signature=abc",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, Signature=",
            "20261123T101500Z",
            "Authorization header requires 'Signature' parameter. "
            f"Authorization=AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, Signature=",
        ),
        (
            "AWS4-HMAC-SHA256 Credential= AKID/20261123/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=a",
            "20261123T101500Z",
            "'AKID/20261123/us-east-1/ecr/aws4_request' not a valid key=value pair (missing equal-sign) in "
            "Authorization header: 'AWS4-HMAC-SHA256 Credential= AKID/20261123/us-east-1/ecr/aws4_request, "
            "SignedHeaders=host, Signature=a'.",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, Signature=a",
            "2026-11-23T10:15:00Z",
            "Date must be in ISO-8601 'basic format'. Got '2026-11-23T10:15:00Z'. "
            "See http://en.wikipedia.org/wiki/ISO_8601",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, Signature=a",
            "20261323T101500Z",
            "Date must be in ISO-8601 'basic format'. Got '20261323T101500Z'. "
            "See http://en.wikipedia.org/wiki/ISO_8601",
        ),
        (
            f"AWS4-HMAC-SHA512 {GOOD_CREDENTIAL}, SignedHeaders=host;x-amz-date, Signature=a",
            "20261123T101500Z",
            "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512' (only AWS4-HMAC-SHA256 for now). ",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20261123/us-east-1/ecr, SignedHeaders=host;x-amz-date, Signature=a",
            "20261123T101500Z",
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
            "got 'AKID/20261123/us-east-1/ecr'",
        ),
    ],
)
def test_incomplete_signature(authorization: str, date: str | None, message: str) -> None:
    error = parse_error(headers_with(authorization, date))
    assert error.render("json") == ("IncompleteSignatureException", message, 400)
    assert error.render("query") == ("IncompleteSignature", message, 400)


def test_trailing_slash_in_credential_is_ignored() -> None:
    auth = f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}/, SignedHeaders=host;x-amz-date, Signature=ab"
    info = parse_signature("POST", "/", "", headers_with(auth), SIGNED_AT)
    assert (info.access_key_id, info.signed_headers, info.signature) == ("AKID", ["host", "x-amz-date"], "ab")


def test_comma_free_authorization_is_accepted() -> None:
    auth = f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL} SignedHeaders=host;x-amz-date Signature=ab"
    assert parse_signature("POST", "/", "", headers_with(auth), SIGNED_AT).signature == "ab"


def test_host_must_be_signed() -> None:
    error = parse_error(headers_with(f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=x-amz-date, Signature=a"))
    message = "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
    assert error.kind == "unsigned_host"
    assert error.render("query") == ("SignatureDoesNotMatch", message, 403)


def test_both_header_and_query_authentication() -> None:
    error = parse_error(headers_with("AWS4-HMAC-SHA256 x=y"), query="X-Amz-Algorithm=AWS4-HMAC-SHA256")
    assert error.render("json") == (
        "InvalidSignatureException",
        "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
        400,
    )


def test_incomplete_query_string() -> None:
    error = parse_error({"Host": "h"}, query="X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20261123T101500Z")
    assert error.render("json") == (
        "IncompleteSignatureException",
        "AWS query-string parameters must include 'X-Amz-Credential'. AWS query-string parameters must include "
        "'X-Amz-Signature'. AWS query-string parameters must include 'X-Amz-SignedHeaders'. "
        "Re-examine the query-string parameters.",
        400,
    )


def test_errors_raised_by_the_caller_render_like_aws() -> None:
    invalid = "The security token included in the request is invalid."
    expired = "The security token included in the request is expired"
    assert SignatureError("unknown_key").render("json") == ("UnrecognizedClientException", invalid, 400)
    assert SignatureError("unknown_key").render("query") == ("InvalidClientTokenId", invalid, 403)
    assert SignatureError("invalid_token").render("json") == ("UnrecognizedClientException", invalid[:-1], 400)
    assert SignatureError("invalid_token").render("query") == ("InvalidClientTokenId", invalid, 403)
    assert error_for("expired_token", "json") == ("ExpiredTokenException", expired, 400)
    assert error_for("expired_token", "query") == ("ExpiredToken", expired, 403)
    assert error_for("mismatch", "query", "custom") == ("SignatureDoesNotMatch", "custom", 403)


def test_error_codes_unpack_as_a_tuple() -> None:
    code, message, status = error_for("missing", "query")
    assert (code, status) == ("MissingAuthenticationToken", 403) and message


# --- hostile input never escapes as anything but SignatureError ----------------------------------

_FRAGMENTS = st.sampled_from(
    [
        "AWS4-HMAC-SHA256",
        "AWS4-",
        "Credential=",
        "SignedHeaders=",
        "Signature=",
        "AKID/20261123/us-east-1/ecr/aws4_request",
        "AKID/20261123/us-east-1/ecr/aws4_request/",
        "host;x-amz-date",
        "host",
        ":authority",
        ",",
        " ",
        "/",
        "=",
        ";",
        "\t",
        "\ud800",
        "é",
        "\x00",
        "0" * 64,
    ]
)
_AUTHORIZATION = st.lists(st.one_of(_FRAGMENTS, st.text(max_size=8)), max_size=12).map("".join)
_DATES = st.one_of(
    st.sampled_from(["20261123T101500Z", "20261123T100000Z", "Mon, 23 Nov 2026 10:15:00 GMT", "", "\ud800"]),
    st.text(max_size=20),
)
_QUERY_FRAGMENTS = st.sampled_from(
    [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Algorithm=",
        "X-Amz-Credential=AKID%2F20261123%2Fus-east-1%2Fecr%2Faws4_request",
        "X-Amz-Date=20261123T101500Z",
        "X-Amz-Expires=60",
        "X-Amz-Expires=99999999999999999999999",
        "X-Amz-SignedHeaders=host",
        "X-Amz-Signature=00",
        "X-Amz-Security-Token=%FF%FE",
        "X-Amz-Content-Sha256=UNSIGNED-PAYLOAD",
        "%",
        "&",
        "=",
        "%ud800",
    ]
)
_QUERY = st.lists(st.one_of(_QUERY_FRAGMENTS, st.text(max_size=6)), max_size=8).map("&".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    authorization=st.one_of(st.none(), _AUTHORIZATION),
    date=st.one_of(st.none(), _DATES),
    extra=st.dictionaries(st.sampled_from(["host", "x-amz-content-sha256", "x-amz-security-token", "date"]), st.text()),
    query=_QUERY,
    path=st.one_of(st.just("/"), st.text(max_size=10)),
    method=st.sampled_from(["GET", "POST", "", "gét"]),
    body=st.binary(max_size=32),
    secret=st.text(max_size=10),
    offset=st.integers(min_value=-3600, max_value=3600),
)
def test_hostile_requests_only_raise_signature_error(
    authorization: str | None,
    date: str | None,
    extra: dict[str, str],
    query: str,
    path: str,
    method: str,
    body: bytes,
    secret: str,
    offset: int,
) -> None:
    headers = {**extra, **headers_with(authorization, date)}
    now = SIGNED_AT + timedelta(seconds=offset)
    try:
        info = parse_signature(method, path, query, headers, now, services=("ecr",), regions=("us-east-1",))
    except SignatureError as error:
        assert error.render("json").code and error.render("query").code
        return
    with pytest.raises(SignatureError):
        verify_signature(info, secret, method, path, query, headers, body, now)


_ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=12)  # surrogates included


def _one_of(*choices: str) -> st.SearchStrategy[str]:
    # Mostly plausible values, so that many examples get past parsing into verification.
    plausible = st.sampled_from(choices)
    return st.integers(min_value=0, max_value=3).flatmap(lambda pick: _ANY_TEXT if pick == 0 else plausible)


@settings(max_examples=400, deadline=None)
@given(
    algorithm=_one_of("AWS4-HMAC-SHA256"),
    key_id=_one_of("AKID", ""),
    scope_date=_one_of("20261123"),
    region=_one_of("us-east-1"),
    service=_one_of("ecr"),
    signed=st.lists(_one_of("host", "x-amz-date", "x-amz-target", "content-type", "x-amz-content-sha256"), max_size=5),
    signature=_one_of("0" * 64, "zz"),
    values=st.dictionaries(_one_of("host", "x-amz-target", "content-type", "x-amz-content-sha256"), _ANY_TEXT),
    token=st.one_of(st.none(), _ANY_TEXT),
    path=_one_of("/", "/v2/", "//a/../b"),
    query=_one_of("", "a=1&b=%20", "a=%ZZ", "%F0%9F"),
    secret=_ANY_TEXT,
    body=st.binary(max_size=16),
)
def test_well_formed_but_hostile_signatures_only_raise_signature_error(
    algorithm: str,
    key_id: str,
    scope_date: str,
    region: str,
    service: str,
    signed: list[str],
    signature: str,
    values: dict[str, str],
    token: str | None,
    path: str,
    query: str,
    secret: str,
    body: bytes,
) -> None:
    credential = f"{key_id}/{scope_date}/{region}/{service}/aws4_request"
    authorization = (
        f"{algorithm} Credential={credential}, SignedHeaders={';'.join(['host', *signed])}, Signature={signature}"
    )
    headers = {**values, "Authorization": authorization, "X-Amz-Date": "20261123T101500Z"}
    if token is not None:
        headers["X-Amz-Security-Token"] = token
    try:
        info = parse_signature("POST", path, query, headers, SIGNED_AT)
    except SignatureError:
        return
    with pytest.raises(SignatureError):
        verify_signature(info, secret, "POST", path, query, headers, body, SIGNED_AT)


def _signed_in_process() -> Arrived:
    request = AWSRequest(
        method="POST",
        url="http://registry.example/?q=1",
        headers={"X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.ListImages", "Content-Type": "x"},
        data=b'{"repositoryName":"app"}',
    )
    with frozen(SIGNED_AT):
        SigV4Auth(Credentials(KEY_ID, SECRET, TOKEN), "ecr", "us-east-1").add_auth(request)
    headers = [*request.headers.items(), ("Host", "registry.example")]
    return Arrived("POST", "/", "q=1", headers, request.body)


SIGNED_IN_PROCESS = _signed_in_process()


@settings(max_examples=300, deadline=None)
@given(
    target=st.sampled_from(["header", "path", "query", "body", "method"]),
    index=st.integers(min_value=0, max_value=10),
    position=st.integers(min_value=0, max_value=200),
    insert=st.text(alphabet=st.characters(blacklist_categories=()), min_size=1, max_size=4),
)
def test_any_mutation_of_a_signed_request_fails_cleanly(target: str, index: int, position: int, insert: str) -> None:
    arrived = SIGNED_IN_PROCESS
    verify(arrived)

    def mutate(text: str) -> str:
        at = position % (len(text) + 1)
        return text[:at] + insert + text[at:]

    if target == "header":
        name, value = arrived.headers[index % len(arrived.headers)]
        mutated = replace(arrived, headers=[(k, mutate(v) if k == name else v) for k, v in arrived.headers])
    elif target == "body":
        mutated = replace(arrived, body=mutate(arrived.body.decode()).encode("utf-8", "surrogatepass"))
    else:
        mutated = replace(arrived, **{target: mutate(getattr(arrived, target))})
    headers = dict(mutated.headers)
    try:
        info = parse_signature(mutated.method, mutated.path, mutated.query, headers, SIGNED_AT)
        verify_signature(info, SECRET, mutated.method, mutated.path, mutated.query, headers, mutated.body, SIGNED_AT)
    except SignatureError:
        return
    # Only what the canonical request cannot see may pass: the key id (the caller looks its secret
    # up, so another id means another secret), whitespace botocore trims, and dot-segments.
    if target == "path":
        assert normalize_url_path(mutated.path) == "/"
        return
    assert target == "header"
    changed = [(old, new) for (_, old), (_, new) in zip(arrived.headers, mutated.headers, strict=True) if old != new]
    assert len(changed) == 1
    old, new = changed[0]
    assert info.access_key_id != KEY_ID or old.split() == new.split()
