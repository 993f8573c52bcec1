"""Where the identity door's checks live: the core refuses GetSessionToken's credentials for IAM
(every AWS door gets the rule from authentication), throttling is its own error, and an AWS
Query body is parsed once per request, for the operation's name and its parameters alike."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from sqlalchemy import insert
from starlette.requests import Request
from starlette.types import Message

from dockyard.auth.sigv4 import SignatureError
from dockyard.config import Settings
from dockyard.core.identity.caller import Caller, CredentialKind, root_caller
from dockyard.core.identity.principals import CredentialsRejected, check_service, token_hash
from dockyard.core.services import Services
from dockyard.doors import aws_query, iam
from dockyard.doors.throttle import RateLimit, RateLimiter, Throttled, TokenBuckets
from dockyard.observe.context import CONTEXT_KEY, RequestContext
from dockyard.store import schema
from dockyard.store.database import upgrade_async

OWNER = "123456789012"
REGION = "us-east-1"
KEY = "AKIADOORCHECKS000001"
SECRET = "door-checks-secret"
SESSION_KEY = "ASIADOORCHECKS000001"
SESSION_SECRET = "door-checks-session-secret"
TOKEN = "door-checks-session-token"


def _caller(kind: CredentialKind) -> Caller:
    return dataclasses.replace(root_caller(OWNER, REGION), credential_kind=kind)


def test_the_core_refuses_get_session_token_credentials_for_iam() -> None:
    with pytest.raises(CredentialsRejected) as refused:
        check_service(_caller("session-token"), "iam")
    assert refused.value.kind == "invalid_token"


@pytest.mark.parametrize(
    ("kind", "service"),
    [
        ("session-token", "sts"),
        ("session-token", "ecr"),
        ("session-token", "cloudtrail"),
        ("permanent", "iam"),
        ("assumed-role", "iam"),
    ],
)
def test_the_core_lets_other_credentials_and_services_through(kind: CredentialKind, service: str) -> None:
    check_service(_caller(kind), service)


def test_throttling_is_not_a_signature_error() -> None:
    assert not issubclass(Throttled, SignatureError)
    assert Throttled().render("json") == ("ThrottlingException", "Rate exceeded", 400)
    assert Throttled().render("query") == ("Throttling", "Rate exceeded", 400)


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Services]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'dockyard.db'}"
    await upgrade_async(url)
    services = Services.from_settings(Settings(data_dir=tmp_path, database_url=url))
    async with services.db.write() as conn:
        await conn.execute(insert(schema.accounts).values(account_id=OWNER, created_at=0.0))
        await conn.execute(
            insert(schema.access_keys).values(
                access_key_id=KEY, secret_access_key=SECRET, account_id=OWNER, status="Active", created_at=0.0
            )
        )
        await conn.execute(
            insert(schema.sts_sessions).values(
                access_key_id=SESSION_KEY,
                secret_access_key=SESSION_SECRET,
                token_hash=token_hash(TOKEN),
                account_id=OWNER,
                kind="session-token",
                source_arn=f"arn:aws:iam::{OWNER}:root",
                created_at=0.0,
                expires_at=time.time() + 3600,
            )
        )
    yield services
    await services.close()


def _signed_request(
    service: str, form: Mapping[str, str], credentials: Credentials, limiter: RateLimiter | None = None
) -> Request:
    """A Query request signed as botocore signs it, with the context the middleware would open."""
    body = "&".join(f"{name}={value}" for name, value in form.items()).encode()
    headers = {"Host": "localhost", "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    signed = AWSRequest(method="POST", url="http://localhost/", data=body, headers=headers)
    SigV4Auth(credentials, service, REGION).add_auth(signed)
    context = RequestContext(
        request_id="request-1",
        received_at=time.time(),
        started=0.0,
        door="iam",
        operation="",
        source="",
        limiter=limiter,
    )
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(name.lower().encode(), str(value).encode()) for name, value in signed.headers.items()],
        CONTEXT_KEY: context,
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def _context(request: Request) -> RequestContext:
    context: RequestContext = request.scope[CONTEXT_KEY]
    return context


async def test_the_query_body_is_parsed_once(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    parse = aws_query.parse_form

    def counting(body: bytes) -> dict[str, str]:
        calls.append(body)
        return parse(body)

    monkeypatch.setattr(aws_query, "parse_form", counting)
    monkeypatch.setattr(iam, "parse_form", counting)
    request = _signed_request("sts", {"Action": "GetCallerIdentity", "Version": "2011-06-15"}, Credentials(KEY, SECRET))
    response = await iam.IdentityDoor(svc).handle(request)
    assert response.status_code == 200, response.body
    assert len(calls) == 1
    # Throttling and audit name the operation from that one parse.
    assert _context(request).operation == "GetCallerIdentity"


async def test_the_identity_door_renders_the_cores_refusal(svc: Services) -> None:
    session = Credentials(SESSION_KEY, SESSION_SECRET, TOKEN)
    refused = await iam.IdentityDoor(svc).handle(
        _signed_request("iam", {"Action": "GetUser", "Version": "2010-05-08"}, session)
    )
    assert refused.status_code == 403
    assert b"<Code>InvalidClientTokenId</Code>" in refused.body
    assert b"<Message>The security token included in the request is invalid.</Message>" in refused.body
    allowed = await iam.IdentityDoor(svc).handle(
        _signed_request("sts", {"Action": "GetCallerIdentity", "Version": "2011-06-15"}, session)
    )
    assert allowed.status_code == 200, allowed.body


async def test_the_identity_door_renders_throttling(svc: Services) -> None:
    limiter = TokenBuckets({"GetCallerIdentity": RateLimit(0.001, 1)})
    door = iam.IdentityDoor(svc)
    form = {"Action": "GetCallerIdentity", "Version": "2011-06-15"}
    first = await door.handle(_signed_request("sts", form, Credentials(KEY, SECRET), limiter))
    assert first.status_code == 200, first.body
    request = _signed_request("sts", form, Credentials(KEY, SECRET), limiter)
    throttled = await door.handle(request)
    assert throttled.status_code == 400
    assert b"<Code>Throttling</Code><Message>Rate exceeded</Message>" in throttled.body
    assert _context(request).throttled
