"""Condition operators: every family, IfExists, the set operators, Null and policy variables."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from dockyard.policy.conditions import compile_condition, parse_date, split_operator
from dockyard.policy.evaluate import Principal, Request, evaluate
from dockyard.policy.language import parse_identity_policy

ACCOUNT = "123456789012"
ALICE = Principal.iam_user(ACCOUNT, "alice", "AIDAALICEALICEALICE1")


class Lookup:
    def __init__(self, context: Mapping[str, str | list[str]]) -> None:
        self._values = {k.lower(): (v,) if isinstance(v, str) else tuple(v) for k, v in context.items()}

    def values(self, key: str) -> tuple[str, ...] | None:
        return self._values.get(key)


def check(operator: str, values: str | list[str], context_value: str | list[str] | None, key: str = "k:k") -> bool:
    policy_values = (values,) if isinstance(values, str) else tuple(values)
    condition = compile_condition(operator, key, policy_values, variables=True)
    context = {} if context_value is None else {key: context_value}
    return condition.evaluate(Lookup(context))


def allowed(condition: dict[str, Any], context: Mapping[str, Any], principal: Principal = ALICE) -> bool:
    policy = parse_identity_policy(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*", "Condition": condition}],
            }
        )
    )
    return evaluate(Request(principal, "ecr:ListImages", "*", ACCOUNT, context), [policy], None).allowed


# --- strings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "values", "value", "expected"),
    [
        ("StringEquals", "prod", "prod", True),
        ("StringEquals", "prod", "Prod", False),
        ("StringEquals", ["dev", "prod"], "prod", True),
        ("StringEquals", "p*", "prod", False),  # no wildcards in StringEquals
        ("StringNotEquals", "prod", "dev", True),
        ("StringNotEquals", ["dev", "prod"], "prod", False),
        ("StringEqualsIgnoreCase", "PROD", "prod", True),
        ("StringNotEqualsIgnoreCase", "PROD", "prod", False),
        ("StringNotEqualsIgnoreCase", "PROD", "dev", True),
        ("StringLike", "team-*", "team-a", True),
        ("StringLike", "team-?", "team-ab", False),
        ("StringLike", "team-??", "team-ab", True),
        ("StringLike", "Team-*", "team-a", False),  # StringLike is case-sensitive
        ("StringNotLike", "team-*", "other", True),
        ("StringNotLike", ["x*", "team-*"], "team-a", False),
    ],
)
def test_string_operators(operator: str, values: str | list[str], value: str, expected: bool) -> None:
    assert check(operator, values, value) is expected


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        ("StringEquals", False),
        ("StringNotEquals", True),
        ("StringLike", False),
        ("StringNotLike", True),
        ("NumericEquals", False),
        ("NumericNotEquals", True),
        ("DateEquals", False),
        ("DateNotEquals", True),
        ("IpAddress", False),
        ("NotIpAddress", True),
        ("ArnLike", False),
        ("ArnNotLike", True),
        ("Bool", False),
    ],
)
def test_missing_key_fails_positive_and_satisfies_negated_operators(operator: str, expected: bool) -> None:
    assert check(operator, "1", None) is expected


# --- numbers and dates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("NumericEquals", "10", True),
        ("NumericEquals", "10.0", True),
        ("NumericNotEquals", "10", False),
        ("NumericLessThan", "9.5", True),
        ("NumericLessThan", "10", False),
        ("NumericLessThanEquals", "10", True),
        ("NumericGreaterThan", "11", True),
        ("NumericGreaterThan", "10", False),
        ("NumericGreaterThanEquals", "10", True),
        ("NumericEquals", "ten", False),
    ],
)
def test_numeric_operators(operator: str, value: str, expected: bool) -> None:
    assert check(operator, "10", value) is expected


@pytest.mark.parametrize(
    ("operator", "policy_value", "value", "expected"),
    [
        ("DateEquals", "2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z", True),
        ("DateEquals", "2024-05-01T12:00:00Z", "1714564800", True),  # epoch seconds, same instant
        ("DateNotEquals", "2024-05-01T12:00:00Z", "2024-05-01T12:00:01Z", True),
        ("DateLessThan", "2024-05-01T12:00:00Z", "2024-05-01T11:59:59Z", True),
        ("DateLessThan", "2024-05-01", "2024-05-01T00:00:00Z", False),
        ("DateLessThanEquals", "1714564800", "2024-05-01T12:00:00+00:00", True),
        ("DateGreaterThan", "2024-05-01T12:00:00Z", "2024-05-01T14:00:00+01:00", True),
        ("DateGreaterThanEquals", "2024-05-01T12:00:00Z", "2024-05-01T12:00:00.000Z", True),
        ("DateGreaterThan", "2024-05-01T12:00:00Z", "not a date", False),
    ],
)
def test_date_operators(operator: str, policy_value: str, value: str, expected: bool) -> None:
    assert check(operator, policy_value, value) is expected


def test_date_parsing() -> None:
    assert parse_date("1970-01-01T00:00:00Z") == 0
    assert parse_date("86400") == 86400
    assert parse_date("2024-13-01") is None


def test_current_time_is_supplied_when_absent() -> None:
    assert allowed({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}, {})
    assert not allowed({"DateLessThan": {"aws:EpochTime": "1577836800"}}, {})
    assert not allowed(
        {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}, {"aws:CurrentTime": "2019-12-31T00:00:00Z"}
    )


# --- booleans, binary, IP addresses -----------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "value", "expected"),
    [
        ("true", "true", True),
        ("true", "false", False),
        ("TRUE", "True", True),
        ("false", "false", True),
        ("yes", "yes", False),
    ],
)
def test_bool(values: str, value: str, expected: bool) -> None:
    assert check("Bool", values, value) is expected


def test_bool_with_json_boolean_and_context_boolean() -> None:
    assert allowed({"Bool": {"aws:SecureTransport": True}}, {"aws:SecureTransport": True})
    assert not allowed({"Bool": {"aws:SecureTransport": False}}, {"aws:SecureTransport": "true"})


def test_binary_equals_compares_decoded_bytes() -> None:
    assert check("BinaryEquals", "QmluYXJ5VmFsdWU=", "QmluYXJ5VmFsdWU=")
    assert not check("BinaryEquals", "QmluYXJ5VmFsdWU=", "T3RoZXI=")
    assert not check("BinaryEquals", "QmluYXJ5VmFsdWU=", "%%%")


@pytest.mark.parametrize(
    ("operator", "values", "address", "expected"),
    [
        ("IpAddress", "203.0.113.0/24", "203.0.113.7", True),
        ("IpAddress", "203.0.113.0/24", "203.0.114.7", False),
        ("IpAddress", "203.0.113.7", "203.0.113.7", True),  # a bare address is a /32
        ("IpAddress", ["10.0.0.0/8", "2001:db8::/32"], "2001:db8:1::5", True),
        ("IpAddress", "2001:db8::/32", "2001:db9::5", False),
        ("IpAddress", "203.0.113.0/24", "::ffff:203.0.113.9", True),
        ("IpAddress", "203.0.113.0/24", "not-an-ip", False),
        ("NotIpAddress", "203.0.113.0/24", "198.51.100.1", True),
        ("NotIpAddress", "203.0.113.0/24", "203.0.113.1", False),
    ],
)
def test_ip_address(operator: str, values: str | list[str], address: str, expected: bool) -> None:
    assert check(operator, values, address, key="aws:SourceIp") is expected


# --- ARNs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "pattern", "arn", "expected"),
    [
        ("ArnEquals", "arn:aws:iam::123456789012:role/builder", "arn:aws:iam::123456789012:role/builder", True),
        ("ArnLike", "arn:aws:iam::*:role/builder", "arn:aws:iam::123456789012:role/builder", True),
        ("ArnLike", "arn:aws:iam::123456789012:role/*", "arn:aws:iam::123456789012:role/team/builder", True),
        # a wildcard stays inside its component: "*" in the account field cannot swallow a colon
        ("ArnLike", "arn:aws:ecr:us-east-1:*:repository/x", "arn:aws:ecr:us-east-1:1:2:repository/x", False),
        ("ArnLike", "arn:aws:iam::123456789012:role/builder", "arn:aws:iam::123456789012:role/Builder", False),
        ("ArnLike", "arn:aws:iam::12345678901?:root", "arn:aws:iam::123456789012:root", True),
        ("ArnNotEquals", "arn:aws:iam::123456789012:role/builder", "arn:aws:iam::123456789012:role/other", True),
        ("ArnNotLike", "arn:aws:iam::*:role/builder", "arn:aws:iam::999999999999:role/builder", False),
    ],
)
def test_arn_operators(operator: str, pattern: str, arn: str, expected: bool) -> None:
    assert check(operator, pattern, arn, key="aws:PrincipalArn") is expected


# --- Null, IfExists, set operators -----------------------------------------------------------


def test_null() -> None:
    assert check("Null", "true", None)
    assert not check("Null", "true", "x")
    assert check("Null", "false", "x")
    assert not check("Null", "false", None)
    assert check("Null", "true", [])  # an empty set counts as absent


def test_if_exists() -> None:
    assert check("StringEqualsIfExists", "prod", None)
    assert check("StringEqualsIfExists", "prod", "prod")
    assert not check("StringEqualsIfExists", "prod", "dev")
    assert check("NumericLessThanIfExists", "5", None)
    assert check("IpAddressIfExists", "10.0.0.0/8", None)


@pytest.mark.parametrize(
    ("operator", "values", "context_value", "expected"),
    [
        ("ForAllValues:StringEquals", ["a", "b", "c"], ["a", "b"], True),
        ("ForAllValues:StringEquals", ["a", "b"], ["a", "z"], False),
        ("ForAllValues:StringEquals", ["a"], None, True),  # vacuously true when absent
        ("ForAllValues:StringEquals", ["a"], [], True),
        ("ForAnyValue:StringEquals", ["a", "b"], ["z", "b"], True),
        ("ForAnyValue:StringEquals", ["a"], ["y", "z"], False),
        ("ForAnyValue:StringEquals", ["a"], None, False),
        ("ForAnyValue:StringLike", ["team*"], ["x", "team-a"], True),
        ("ForAllValues:StringNotLike", ["secret*"], ["a", "b"], True),
        ("ForAllValues:StringNotLike", ["secret*"], ["a", "secret-b"], False),
        ("ForAnyValue:StringNotEquals", ["a"], ["a", "b"], True),
        ("ForAnyValue:StringEqualsIfExists", ["a"], None, True),
        ("StringEquals", ["a"], ["z", "a"], True),  # multi-valued key without a set operator
        ("StringNotEquals", ["a"], ["z", "a"], False),
    ],
)
def test_set_operators(operator: str, values: list[str], context_value: list[str] | None, expected: bool) -> None:
    assert check(operator, values, context_value, key="aws:TagKeys") is expected


def test_split_operator() -> None:
    name = split_operator("ForAnyValue:StringLikeIfExists")
    assert name is not None
    assert (name.base, name.set_operator, name.if_exists) == ("StringLike", "ForAnyValue", True)
    assert split_operator("NullIfExists") is None
    assert split_operator("stringequals") is None  # operator names are case-sensitive
    assert split_operator("IfExists") is None


# --- combining conditions, key case, variables -----------------------------------------------


def test_keys_and_operators_are_and_values_are_or() -> None:
    condition = {
        "StringEquals": {"aws:RequestedRegion": ["us-east-1", "eu-west-1"], "ecr:ResourceTag/team": "core"},
        "Bool": {"aws:SecureTransport": "true"},
    }
    context = {"aws:RequestedRegion": "eu-west-1", "ecr:ResourceTag/team": "core", "aws:SecureTransport": "true"}
    assert allowed(condition, context)
    assert not allowed(condition, {**context, "aws:SecureTransport": "false"})
    assert not allowed(condition, {**context, "ecr:ResourceTag/team": "web"})
    assert not allowed(condition, {**context, "aws:RequestedRegion": "ap-south-1"})


def test_condition_keys_are_case_insensitive() -> None:
    assert allowed({"IpAddress": {"AWS:SOURCEIP": "10.0.0.0/8"}}, {"aws:sourceip": "10.1.1.1"})


def test_principal_keys_are_filled_and_cannot_be_spoofed() -> None:
    assert allowed({"StringEquals": {"aws:username": "alice", "aws:PrincipalType": "User"}}, {})
    assert allowed({"StringEquals": {"aws:PrincipalAccount": ACCOUNT, "aws:userid": "AIDAALICEALICEALICE1"}}, {})
    assert allowed({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/alice"}}, {})
    assert not allowed({"StringEquals": {"aws:username": "bob"}}, {"aws:username": "bob"})


def test_assumed_role_principal_keys() -> None:
    role = Principal.assumed_role(ACCOUNT, "builder", "ci", "AROABUILDERBUILDER01")
    assert allowed({"StringEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/builder"}}, {}, role)
    assert allowed(
        {"StringEquals": {"aws:PrincipalType": "AssumedRole", "aws:userid": "AROABUILDERBUILDER01:ci"}}, {}, role
    )
    assert allowed({"Null": {"aws:username": "true"}}, {"aws:username": "spoof"}, role)


def test_root_principal_type_is_account() -> None:
    assert allowed(
        {"StringEquals": {"aws:PrincipalType": "Account", "aws:userid": ACCOUNT}}, {}, Principal.root(ACCOUNT)
    )


def test_policy_variables_in_condition_values() -> None:
    condition = {"StringEquals": {"ecr:ResourceTag/owner": "${aws:username}"}}
    assert allowed(condition, {"ecr:ResourceTag/owner": "alice"})
    assert not allowed(condition, {"ecr:ResourceTag/owner": "bob"})
    like = {"StringLike": {"ecr:ResourceTag/path": "home/${aws:username}/*"}}
    assert allowed(like, {"ecr:ResourceTag/path": "home/alice/projects"})
    arn = {"ArnLike": {"aws:SourceArn": "arn:aws:iam::${aws:PrincipalAccount}:*"}}
    assert allowed(arn, {"aws:SourceArn": f"arn:aws:iam::{ACCOUNT}:role/x"})
    # an unresolvable variable matches nothing, so its negation holds
    role = Principal.assumed_role(ACCOUNT, "builder", "ci", "AROABUILDERBUILDER01")
    assert not allowed(condition, {"ecr:ResourceTag/owner": "alice"}, role)
    assert allowed(
        {"StringNotEquals": {"ecr:ResourceTag/owner": "${aws:username}"}}, {"ecr:ResourceTag/owner": "x"}, role
    )
    # a default stands in for a missing key
    assert allowed(
        {"StringEquals": {"ecr:ResourceTag/owner": "${aws:username, 'nobody'}"}},
        {"ecr:ResourceTag/owner": "nobody"},
        role,
    )


def test_variables_are_not_expanded_in_numeric_conditions() -> None:
    assert not check("NumericEquals", "${k:k}", "5")
