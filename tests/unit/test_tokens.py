"""ECR authorization tokens: issue, read back, refuse forgeries, expire."""

from __future__ import annotations

import base64
import contextlib
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.auth.tokens import (
    TOKEN_PURPOSE,
    TokenClaims,
    TokenError,
    authorization_token,
    check,
    issue_password,
    parse_basic_auth,
    read_password,
    sign,
)

SECRET = b"\x01" * 32
OTHER_SECRET = b"\x02" * 32
ISSUED = 1_795_000_000
CLAIMS = TokenClaims(
    account_id="123456789012",
    region="us-east-1",
    principal_arn="arn:aws:iam::123456789012:user/division/team/alice",
    principal_id="AIDAJQABLZS4A3QDU576Q",
    access_key_id="AKIAIOSFODNN7EXAMPLE",
    issued_at=ISSUED,
    expires_at=ISSUED + 12 * 3600,
)


@pytest.fixture
def password() -> str:
    return issue_password(CLAIMS, SECRET)


def reason(password: str, secret: bytes = SECRET, now: float = ISSUED + 60) -> str:
    with pytest.raises(TokenError) as caught:
        read_password(password, secret, now)
    return caught.value.reason


def test_round_trip(password: str) -> None:
    assert read_password(password, SECRET, ISSUED + 60) == CLAIMS


def test_password_is_short_and_url_and_header_safe(password: str) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", password)
    assert len(password) < 400


def test_non_ascii_claims_round_trip() -> None:
    claims = TokenClaims("123456789012", "eu-west-3", "arn:aws:iam::123456789012:user/zoë", "AIDA", "", 1, 2**40)
    assert read_password(issue_password(claims, SECRET), SECRET, 100) == claims


def test_authorization_token_is_what_docker_login_sends_back(password: str) -> None:
    token = authorization_token(password)
    assert base64.b64decode(token, validate=True) == f"AWS:{password}".encode()
    assert parse_basic_auth(f"Basic {token}") == ("AWS", password)


def test_expiry_boundary(password: str) -> None:
    assert read_password(password, SECRET, CLAIMS.expires_at - 0.001) == CLAIMS
    assert reason(password, now=CLAIMS.expires_at) == "expired"
    assert reason(password, now=CLAIMS.expires_at + 86400) == "expired"


def test_token_from_the_future_is_invalid(password: str) -> None:
    assert read_password(password, SECRET, ISSUED - 300) == CLAIMS  # another node's clock may lag
    assert reason(password, now=ISSUED - 301) == "invalid"


def test_other_secret_is_invalid(password: str) -> None:
    assert reason(password, secret=OTHER_SECRET) == "invalid"


def test_forged_claims_are_invalid(password: str) -> None:
    payload, signature = password.split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    fields[1] = "999999999999"  # another account
    forged = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    assert reason(f"{forged}.{signature}") == "invalid"


def test_expired_token_cannot_be_extended(password: str) -> None:
    payload, signature = password.split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    fields[7] += 10**6
    extended = base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode()).rstrip(b"=").decode()
    assert reason(f"{extended}.{signature}", now=CLAIMS.expires_at + 1) == "invalid"


def test_every_single_character_change_is_invalid(password: str) -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    for index, char in enumerate(password):
        replacement = alphabet[(alphabet.index(char) + 1) % len(alphabet)]
        assert reason(password[:index] + replacement + password[index + 1 :]) == "invalid", index


@pytest.mark.parametrize(
    "garbage",
    ["", ".", "..", "abc", "abc.", ".abc", "a.b.c", "é.é", "\ud800.x", "x" * 100_000, "AWS:secret", "=.="],
)
def test_garbage_is_invalid(garbage: str) -> None:
    assert reason(garbage) == "invalid"


def signed_payload(raw: bytes) -> str:
    payload = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"{payload}.{sign(payload.encode(), SECRET, purpose=TOKEN_PURPOSE)}"


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff\xfe",
        b"{}",
        b"[]",
        b'[2,"a","b","c","d","e",1,2]',  # unknown version
        b'[1,"a","b","c","d","e",1]',  # too short
        b'[1,"a","b","c","d",5,1,2]',  # wrong type
        b'[1,"a","b","c","d","e",true,2]',  # bool is not a time
        b'[1,"a","b","c","d","e",1.5,2]',
        b"[" * 5000,  # nesting deep enough to exhaust the recursion limit
    ],
)
def test_correctly_signed_but_garbled_claims_are_invalid(raw: bytes) -> None:
    assert reason(signed_payload(raw), now=0) == "invalid"


def test_a_signature_for_another_purpose_is_not_a_token(password: str) -> None:
    payload = password.split(".")[0]
    assert reason(f"{payload}.{sign(payload.encode(), SECRET)}") == "invalid"
    assert reason(f"{payload}.{sign(payload.encode(), SECRET, purpose='layer-download')}") == "invalid"


def test_sign_and_check() -> None:
    data = b"123456789012/us-east-1/app/sha256:abc/1795000000"
    signature = sign(data, SECRET, purpose="layer-download")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", signature)
    assert check(data, signature, SECRET, purpose="layer-download")
    assert not check(data + b"x", signature, SECRET, purpose="layer-download")
    assert not check(data, signature, OTHER_SECRET, purpose="layer-download")
    assert not check(data, signature, SECRET)
    assert not check(data, signature + "A", SECRET, purpose="layer-download")
    assert not check(data, signature[:-1] + "=", SECRET, purpose="layer-download")
    assert not check(data, "é", SECRET, purpose="layer-download")


def test_purpose_and_data_cannot_be_shifted_into_each_other() -> None:
    assert sign(b"bc", SECRET, purpose="a") != sign(b"c", SECRET, purpose="ab")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Basic QVdTOnBhc3M=", ("AWS", "pass")),
        ("basic   QVdTOnBhc3M=  ", ("AWS", "pass")),
        ("BASIC\tQVdTOnBhc3M=", ("AWS", "pass")),
        ("Basic QVdTOnA6YXNz", ("AWS", "p:ass")),  # only the first colon separates
        ("Basic OnBhc3M=", ("", "pass")),
        ("Basic QVdTOg==", ("AWS", "")),
        ("Basic QVdT", None),  # no colon
        ("Basic", None),
        ("Basic ", None),
        ("Bearer QVdTOnBhc3M=", None),
        ("Basic QVdTOnBhc3M", None),  # bad padding
        ("Basic QVdTOn!hc3M=", None),
        ("Basic //79", None),  # not UTF-8
        ("Basic é", None),
        ("", None),
    ],
)
def test_parse_basic_auth(header: str, expected: tuple[str, str] | None) -> None:
    assert parse_basic_auth(header) == expected


@settings(max_examples=500)
@given(st.text(alphabet=st.characters(blacklist_categories=())), st.floats(allow_nan=True))
def test_read_password_only_raises_token_error(text: str, now: float) -> None:
    try:
        read_password(text, SECRET, now)
    except TokenError as error:
        assert error.reason in ("invalid", "expired")


@settings(max_examples=300)
@given(st.binary(max_size=200), st.floats(allow_nan=False))
def test_signed_arbitrary_payloads_only_raise_token_error(raw: bytes, now: float) -> None:
    with contextlib.suppress(TokenError):
        read_password(signed_payload(raw), SECRET, now)


@settings(max_examples=500)
@given(
    st.one_of(
        st.text(alphabet=st.characters(blacklist_categories=())),
        st.binary().map(lambda raw: "Basic " + base64.b64encode(raw).decode()),
    )
)
def test_parse_basic_auth_never_raises(header: str) -> None:
    result = parse_basic_auth(header)
    assert result is None or (isinstance(result, tuple) and len(result) == 2)


@settings(max_examples=200)
@given(
    st.builds(
        TokenClaims,
        st.text(),
        st.text(),
        st.text(),
        st.text(),
        st.text(),
        st.integers(min_value=0, max_value=2**40),
        st.integers(min_value=2**40 + 1, max_value=2**41),
    )
)
def test_any_claims_round_trip(claims: TokenClaims) -> None:
    assert read_password(issue_password(claims, SECRET), SECRET, claims.issued_at) == claims
