"""The console's session cookie and CSRF protection, in process (Starlette's TestClient)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dockyard.core.identity import accounts, iam_entities
from dockyard.core.identity.caller import root_caller
from dockyard.core.services import Services
from dockyard.doors.console import session as session_module
from dockyard.doors.console.session import (
    COOKIE_NAME,
    SessionCodec,
    anonymous_session,
    session_key,
    signed_in_session,
)
from dockyard.doors.console.web import safe_next
from tests.support.console_app import ACCOUNT, REGION, ROOT_KEY, ROOT_SECRET, Console, console_app


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    yield from console_app(tmp_path)


def set_cookie(response: Any) -> str:
    return str(response.headers["set-cookie"])


# --- the codec ---------------------------------------------------------------------------------


def test_codec_round_trip_and_tampering() -> None:
    codec = SessionCodec(session_key(b"k" * 32), lifetime=600)
    session = signed_in_session("AKIAEXAMPLE", 600, now=1000.0)
    value = codec.dumps(session)
    assert codec.loads(value, now=1001.0) == session
    assert "AKIAEXAMPLE" not in value or codec.loads(value + "x", now=1001.0) is None
    assert codec.loads(value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1], now=1001.0) is None
    other = SessionCodec(session_key(b"o" * 32), lifetime=600)
    assert other.loads(value, now=1001.0) is None
    assert codec.loads("", now=1001.0) is None
    assert codec.loads("not-a-cookie", now=1001.0) is None


def test_codec_refuses_an_expired_session() -> None:
    codec = SessionCodec(session_key(b"k" * 32), lifetime=600)
    session = signed_in_session("AKIAEXAMPLE", 600, now=1000.0)
    assert codec.loads(codec.dumps(session), now=1599.0) is not None
    assert codec.loads(codec.dumps(session), now=1600.0) is None


def test_sign_in_rotates_the_csrf_token() -> None:
    anonymous = anonymous_session(now=1000.0)
    signed_in = signed_in_session("AKIAEXAMPLE", 600, now=1000.0)
    assert anonymous.csrf_token != signed_in.csrf_token
    assert not anonymous.signed_in and signed_in.signed_in
    assert signed_in.csrf_matches(signed_in.csrf_token)
    assert not signed_in.csrf_matches(anonymous.csrf_token)
    assert not signed_in.csrf_matches("")
    assert not signed_in.csrf_matches(None)


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("/console/repositories/x/-/images", "/console/repositories/x/-/images"),
        ("https://evil.example/console/", "/console/repositories"),
        ("//evil.example/console/", "/console/repositories"),
        ("/elsewhere", "/console/repositories"),
        ("/console/\\evil", "/console/repositories"),
        (None, "/console/repositories"),
    ],
)
def test_after_sign_in_only_console_pages(wanted: str | None, expected: str) -> None:
    assert safe_next(wanted) == expected


# --- signing in and out ------------------------------------------------------------------------


def test_pages_need_a_session(console: Console) -> None:
    response = console.client.get("/console/repositories", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/sign-in?next=%2Fconsole%2Frepositories")


def test_sign_in_sets_a_locked_down_cookie(console: Console) -> None:
    response = console.sign_in()
    assert response.status_code == 303
    assert response.headers["location"] == "/console/repositories"
    cookie = set_cookie(response)
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie
    assert "Path=/console" in cookie
    max_age = re.search(r"Max-Age=(\d+)", cookie)
    assert max_age is not None and 43190 <= int(max_age.group(1)) <= 43200
    assert "Secure" not in cookie  # plain HTTP
    assert ROOT_SECRET not in cookie
    page = console.client.get("/console/repositories")
    assert page.status_code == 200
    assert "Root user" in page.text


def test_cookie_is_secure_over_tls(tmp_path: Path) -> None:
    for console in console_app(tmp_path, base_url="https://testserver"):
        assert "Secure" in set_cookie(console.client.get("/console/sign-in"))
        assert "Secure" in set_cookie(console.sign_in())


def test_a_wrong_secret_is_refused_and_never_echoed(console: Console) -> None:
    wrong = "w" * 40
    response = console.sign_in(secret=wrong)
    assert response.status_code == 401
    assert "not valid" in response.text
    assert wrong not in response.text
    assert ROOT_KEY in response.text  # the key id stays filled in, the secret does not
    assert console.client.get("/console/repositories", follow_redirects=False).status_code == 303


def test_unknown_key_is_refused(console: Console) -> None:
    assert console.sign_in(key_id="AKIANOSUCHKEY0000000").status_code == 401


def test_sign_in_without_the_form_token_is_refused(console: Console) -> None:
    console.client.get("/console/sign-in")
    form = {"access_key_id": ROOT_KEY, "secret_access_key": ROOT_SECRET}
    refused = console.client.post("/console/sign-in", data=form, follow_redirects=False)
    assert refused.status_code == 403
    forged = console.client.post("/console/sign-in", data={**form, "csrf_token": "forged"}, follow_redirects=False)
    assert forged.status_code == 403
    assert console.client.get("/console/repositories", follow_redirects=False).status_code == 303


def test_every_post_needs_the_session_token(console: Console) -> None:
    before_sign_in = console.csrf()
    assert console.sign_in().status_code == 303
    data = {"repository_name": "csrf-test"}
    # No token, a made-up one, and the one the session had before signing in (it was rotated).
    for token in (None, "forged", before_sign_in):
        form = data if token is None else {**data, "csrf_token": token}
        refused = console.client.post("/console/repositories/create", data=form, follow_redirects=False)
        assert refused.status_code == 403, token
        assert "This form has expired" in refused.text
    listing = console.client.get("/console/repositories")
    assert "csrf-test" not in listing.text
    token = console.csrf("/console/repositories/create")
    created = console.client.post(
        "/console/repositories/create", data={**data, "csrf_token": token}, follow_redirects=False
    )
    assert created.status_code == 303
    assert "csrf-test" in console.client.get("/console/repositories").text


def test_sign_out_needs_the_token_and_ends_the_session(console: Console) -> None:
    console.sign_in()
    console.client.post("/console/sign-out", data={"csrf_token": "forged"})
    assert console.client.get("/console/repositories", follow_redirects=False).status_code == 200
    token = console.csrf("/console/repositories")
    out = console.client.post("/console/sign-out", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    assert "Max-Age=0" in set_cookie(out) or "expires=" in set_cookie(out).lower()
    console.client.cookies.clear()
    assert console.client.get("/console/repositories", follow_redirects=False).status_code == 303


def test_a_copy_of_a_signed_out_cookie_is_refused(console: Console) -> None:
    console.sign_in()
    copied = console.client.cookies[COOKIE_NAME]
    token = console.csrf("/console/repositories")
    console.client.post("/console/sign-out", data={"csrf_token": token}, follow_redirects=False)
    console.client.cookies.set(COOKIE_NAME, copied, path="/console")
    replayed = console.client.get("/console/repositories", follow_redirects=False)
    assert replayed.status_code == 303
    assert "/console/sign-in" in replayed.headers["location"]


def test_an_old_cookie_is_useless_once_expired(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    console.sign_in()
    assert console.client.get("/console/repositories", follow_redirects=False).status_code == 200
    later = time.time() + 12 * 3600 + 1
    # Only the session's clock moves on: the client's cookie jar still sends the cookie.
    monkeypatch.setattr(session_module, "time", SimpleNamespace(time=lambda: later))
    expired = console.client.get("/console/repositories", follow_redirects=False)
    assert expired.status_code == 303
    assert "reason=expired" in expired.headers["location"]


def test_a_deactivated_key_ends_its_sessions(console: Console) -> None:
    root = root_caller(ACCOUNT, REGION)

    async def make_user(svc: Services) -> dict[str, Any]:
        await iam_entities.create_user(svc, root, "bob")
        return (await accounts.create_access_key(svc, root, "bob"))["AccessKey"]

    key = console.run(make_user)
    assert console.sign_in(key["AccessKeyId"], key["SecretAccessKey"]).status_code == 303
    denied = console.client.get("/console/repositories")
    assert denied.status_code == 200  # no repositories yet: nothing to be denied on

    async def deactivate(svc: Services) -> None:
        await accounts.update_access_key(svc, root, "bob", key["AccessKeyId"], "Inactive")

    console.run(deactivate)
    ended = console.client.get("/console/repositories", follow_redirects=False)
    assert ended.status_code == 303
    assert "reason=revoked" in ended.headers["location"]
    assert console.sign_in(key["AccessKeyId"], key["SecretAccessKey"]).status_code == 401


def test_denied_actions_show_aws_access_denied(console: Console) -> None:
    root = root_caller(ACCOUNT, REGION)

    async def make_user(svc: Services) -> dict[str, Any]:
        await iam_entities.create_user(svc, root, "carol")
        return (await accounts.create_access_key(svc, root, "carol"))["AccessKey"]

    key = console.run(make_user)
    console.sign_in(key["AccessKeyId"], key["SecretAccessKey"])
    token = console.csrf("/console/repositories/create")
    refused = console.client.post("/console/repositories/create", data={"csrf_token": token, "repository_name": "nope"})
    assert refused.status_code == 403
    assert "AccessDeniedException" in refused.text
    assert (
        f"User: arn:aws:iam::{ACCOUNT}:user/carol is not authorized to perform: ecr:CreateRepository on resource: "
        f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/nope because no identity-based policy allows the "
        "ecr:CreateRepository action"
    ) in refused.text


def test_pages_are_never_cached_or_framed(console: Console) -> None:
    console.sign_in()
    page = console.client.get("/console/repositories")
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_a_new_access_key_secret_is_shown_once(console: Console) -> None:
    root = root_caller(ACCOUNT, REGION)

    async def make_user(svc: Services) -> None:
        await iam_entities.create_user(svc, root, "dave")

    console.run(make_user)
    console.sign_in()
    token = console.csrf("/console/iam/users/dave")
    created = console.client.post("/console/iam/users/dave/keys", data={"csrf_token": token})
    assert created.status_code == 200
    assert created.headers["cache-control"] == "no-store"
    secret = re.search(r'id="new-secret-access-key">([^<]+)<', created.text)
    assert secret is not None
    assert secret.group(1) not in console.client.get("/console/iam/users/dave").text
    assert secret.group(1) not in set_cookie(created) if "set-cookie" in created.headers else True
