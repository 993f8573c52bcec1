"""Parsing and validation: IAM's MalformedPolicyDocument messages and ECR's policy checks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dockyard.policy.language import (
    INVALID_REGISTRY_POLICY,
    INVALID_REPOSITORY_POLICY,
    LEGACY_PARSING_FAILED,
    MISSING_ACTIONS,
    MISSING_RESOURCES,
    MISSING_VENDOR,
    PRINCIPAL_NOT_ALLOWED,
    SID_NOT_ALPHANUMERIC,
    SID_NOT_UNIQUE,
    SYNTAX_ERROR,
    TOO_MANY_COLONS,
    VERSION_TOO_OLD,
    PolicyError,
    parse_identity_policy,
    parse_resource_policy,
)
from dockyard.policy.text import ecr_policy_text

REPO = "arn:aws:ecr:us-east-1:123456789012:repository/app"


def doc(*statements: dict[str, Any], version: str | None = "2012-10-17", **top: Any) -> str:
    document: dict[str, Any] = dict(top)
    if version is not None:
        document["Version"] = version
    document["Statement"] = list(statements)
    return json.dumps(document)


def allow(**extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": "ecr:BatchGetImage", "Resource": REPO, **extra}


def identity_error(text: str, *, managed: bool = False) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        parse_identity_policy(text, managed=managed)
    return caught.value


def resource_error(text: str, kind: str = "repository") -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        parse_resource_policy(text, kind=kind)  # type: ignore[arg-type]
    return caught.value


# --- identity policies: what parses ----------------------------------------------------------


def test_identity_policy_parses_into_statements() -> None:
    policy = parse_identity_policy(
        doc(allow(Sid="Read"), {"Effect": "Deny", "NotAction": ["ecr:Get*"], "NotResource": "*"}, Id="MyPolicy")
    )
    assert policy.kind == "identity"
    assert policy.version == "2012-10-17"
    assert policy.id == "MyPolicy"
    assert [s.label for s in policy.statements] == ["Read", "Statement[1]"]
    assert [s.effect for s in policy.allows] == ["Allow"]
    assert policy.denies[0].not_action and policy.denies[0].not_resource
    assert policy.statements[0].principals is None


def test_statement_may_be_a_single_object() -> None:
    text = json.dumps({"Version": "2012-10-17", "Statement": allow()})
    assert len(parse_identity_policy(text).statements) == 1


@pytest.mark.parametrize("version", [None, "2008-10-17"])
def test_inline_policies_accept_legacy_or_missing_version(version: str | None) -> None:
    assert parse_identity_policy(doc(allow(), version=version)).version == version


@pytest.mark.parametrize("version", [None, "2008-10-17"])
def test_managed_policies_require_the_current_version(version: str | None) -> None:
    assert identity_error(doc(allow(), version=version), managed=True).message == VERSION_TOO_OLD


def test_unknown_operator_with_empty_block_is_tolerated() -> None:
    policy = parse_identity_policy(doc(allow(Condition={"NoSuchOperator": {}})))
    assert policy.statements[0].conditions == ()


def test_condition_values_may_be_json_scalars() -> None:
    policy = parse_identity_policy(
        doc(allow(Condition={"Bool": {"aws:SecureTransport": True}, "NumericLessThan": {"ecr:n": [3, 4.5]}}))
    )
    assert [c.values for c in policy.statements[0].conditions] == [("true",), ("3", "4.5")]


# --- identity policies: IAM's messages -------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        '{"Version": "2012-10-17", "Statement": [], "Extra": 1}',
        doc(allow(), version="2020-01-01"),
        json.dumps({"Version": "2012-10-17"}),
        json.dumps({"Version": "2012-10-17", "Statement": []}),
        json.dumps({"Version": "2012-10-17", "Statement": "nope"}),
        doc(allow(Unknown=1)),
        doc({"Action": "ecr:BatchGetImage", "Resource": "*"}),
        doc(allow(Effect="Permit")),
        doc(allow(NotAction="ecr:PutImage")),
        doc(allow(NotResource="*")),
        doc(allow(Action=["ecr:BatchGetImage", 3])),
        doc(allow(Sid=7)),
        doc(allow(Condition={"StringEqualz": {"aws:username": "x"}})),
        doc(allow(Condition={"StringEquals": {"aws:username": {"nested": 1}}})),
        doc(allow(Condition={"StringEquals": "x"})),
        doc(allow(Condition={"NullIfExists": {"aws:username": "true"}})),
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": NaN}]}',
    ],
)
def test_syntax_errors(text: str) -> None:
    error = identity_error(text)
    assert error.message == SYNTAX_ERROR
    assert error.detail != SYNTAX_ERROR  # the detail says which element is wrong


def test_syntax_error_detail_names_the_element() -> None:
    assert "Statement[0]" in identity_error(doc(allow(Unknown=1))).detail
    assert "StringEqualz" in identity_error(doc(allow(Condition={"StringEqualz": {"k:k": "v"}}))).detail


@pytest.mark.parametrize("element", ["Principal", "NotPrincipal"])
def test_identity_policy_may_not_name_a_principal(element: str) -> None:
    assert identity_error(doc(allow(**{element: {"AWS": "123456789012"}}))).message == PRINCIPAL_NOT_ALLOWED


@pytest.mark.parametrize(
    "statement",
    [
        allow(Effect="allow"),  # Effect is case-insensitive for syntax, exact for legacy parsing
        allow(Condition={"DateGreaterThan": {"aws:CurrentTime": "yesterday"}}),
        allow(Condition={"ForAnyValue:DateLessThanIfExists": {"aws:CurrentTime": ["2020-01-01", "soon"]}}),
        allow(Resource="arn:aws:ecr::"),
    ],
)
def test_legacy_parsing_failures(statement: dict[str, Any]) -> None:
    assert identity_error(doc(statement)).message == LEGACY_PARSING_FAILED


def test_sids_must_be_alphanumeric() -> None:
    assert identity_error(doc(allow(Sid="allow-pull"))).message == SID_NOT_ALPHANUMERIC


def test_sids_must_be_unique() -> None:
    assert identity_error(doc(allow(Sid="A"), allow(Sid="A"))).message == SID_NOT_UNIQUE


@pytest.mark.parametrize("actions", [None, []])
def test_statements_need_actions(actions: list[str] | None) -> None:
    statement = {"Effect": "Allow", "Resource": "*"}
    if actions is not None:
        statement["Action"] = actions  # type: ignore[assignment]
    assert identity_error(doc(statement)).message == MISSING_ACTIONS


@pytest.mark.parametrize("resources", [None, []])
def test_statements_need_resources(resources: list[str] | None) -> None:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": "ecr:*"}
    if resources is not None:
        statement["Resource"] = resources
    assert identity_error(doc(statement)).message == MISSING_RESOURCES


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ("my-repo", 'Resource my-repo must be in ARN format or "*".'),
        (
            "arn:aws-cn:ecr:us-east-1:123456789012:repository/x",
            'Partition "aws-cn" is not valid for resource "arn:aws-cn:ecr:us-east-1:123456789012:repository/x".',
        ),
        ("arn:aws", "Resource vendor must be fully qualified and cannot contain regexes."),
        (
            "arn:aws:iam:us-east-1:123456789012:user/x",
            "IAM resource arn:aws:iam:us-east-1:123456789012:user/x cannot contain region information.",
        ),
    ],
)
def test_resource_format_messages(resource: str, message: str) -> None:
    assert identity_error(doc(allow(Resource=resource))).message == message


def test_iam_resource_paths_are_checked() -> None:
    message = identity_error(doc(allow(Resource="arn:aws:iam::123456789012:thing/x"))).message
    assert message.startswith('IAM resource path must either be "*" or start with user/, federated-user/, role/')


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("BatchGetImage", MISSING_VENDOR),
        ("ecr:Batch:GetImage", TOO_MANY_COLONS),
        ("e cr:BatchGetImage", "Vendor e cr is not valid"),
    ],
)
def test_action_format_messages(action: str, message: str) -> None:
    assert identity_error(doc(allow(Action=action))).message == message


def test_checks_run_in_iams_order() -> None:
    # A principal is reported before a missing resource, a missing action before a bad resource.
    assert identity_error(doc({"Effect": "Allow", "Principal": "*", "Action": "x"})).message == PRINCIPAL_NOT_ALLOWED
    assert identity_error(doc({"Effect": "Allow", "Resource": "bad"})).message == MISSING_ACTIONS
    assert identity_error(doc(allow(Resource="bad", Action="nocolon"))).message.startswith("Resource bad")


# --- ECR repository policies ----------------------------------------------------------------


def repo_statement(**extra: Any) -> dict[str, Any]:
    return {"Sid": "AllowPull", "Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage", **extra}


def test_repository_policy_parses_principals() -> None:
    policy = parse_resource_policy(
        doc(
            repo_statement(
                Principal={
                    "AWS": [
                        "123456789012",
                        "arn:aws:iam::210987654321:root",
                        "arn:aws:iam::123456789012:user/ci/pusher",
                        "arn:aws:iam::123456789012:role/builder",
                        "arn:aws:sts::123456789012:assumed-role/builder/session-1",
                        "AIDAEXAMPLEEXAMPLE01",
                    ],
                    "Service": "codebuild.amazonaws.com",
                }
            ),
            version="2008-10-17",
        )
    )
    principals = policy.statements[0].principals
    assert principals is not None
    assert principals.accounts == {"123456789012", "210987654321"}
    assert "arn:aws:iam::123456789012:user/ci/pusher" in principals.arns
    assert principals.unique_ids == {"AIDAEXAMPLEEXAMPLE01"}
    assert principals.services == {"codebuild.amazonaws.com"}
    assert policy.statements[0].resources is None
    assert policy.iam_principal_arns() == (
        "arn:aws:iam::123456789012:role/builder",
        "arn:aws:iam::123456789012:user/ci/pusher",
    )


@pytest.mark.parametrize(
    ("text", "detail_fragment"),
    [
        ("{", "not valid JSON"),
        (doc({"Effect": "Allow", "Action": "ecr:*"}), "no Principal"),
        (doc(repo_statement(Resource="*")), "Resource"),
        (doc(repo_statement(NotResource="*")), "NotResource"),
        (doc(repo_statement(Principal={"AWS": "arn:aws:iam::123456789012:*"})), "not a valid principal"),
        (doc(repo_statement(Principal={"AWS": "arn:aws:iam::123456789012:user/*"})), "wildcards"),
        (doc(repo_statement(Principal={"AWS": "12345"})), "not a valid principal"),
        (doc(repo_statement(Principal={"AWS": []})), "must not be empty"),
        (doc(repo_statement(Principal={"Service": "not a service"})), "service principal"),
        (doc(repo_statement(Principal={"CanonicalUser": "abc"})), "not supported"),
        (doc(repo_statement(Principal={"Person": "abc"})), "unknown principal type"),
        (doc(repo_statement(Principal="everyone")), "Principal"),
        (doc(repo_statement(Effect="allow")), "Effect"),
        (doc(repo_statement(Action=[])), "no Action"),
        (doc(repo_statement(Action="BatchGetImage")), MISSING_VENDOR),
        (doc(repo_statement(Condition={"StringEqualz": {"aws:username": "x"}})), "StringEqualz"),
        (doc(repo_statement(Condition={"DateLessThan": {"aws:CurrentTime": "never"}})), "ISO 8601"),
        (doc(repo_statement(), version="2010-01-01"), "Version"),
    ],
)
def test_invalid_repository_policies(text: str, detail_fragment: str) -> None:
    error = resource_error(text)
    assert error.message == INVALID_REPOSITORY_POLICY
    assert str(error) == INVALID_REPOSITORY_POLICY
    assert detail_fragment in error.detail


def test_registry_policy_allows_resources_and_registry_actions() -> None:
    policy = parse_resource_policy(
        doc(
            {
                "Sid": "ReplicationAccessCrossAccount",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
                "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
                "Resource": "arn:aws:ecr:us-west-2:123456789012:repository/*",
            }
        ),
        kind="registry",
    )
    assert policy.kind == "registry"
    assert policy.statements[0].resources is not None


def test_registry_policy_rejects_other_actions() -> None:
    error = resource_error(doc(repo_statement(Action=["ecr:BatchGetImage"])), kind="registry")
    assert error.message == INVALID_REGISTRY_POLICY
    assert "ecr:ReplicateImage" in error.detail


def test_registry_policy_accepts_wildcards_covering_registry_actions() -> None:
    assert parse_resource_policy(doc(repo_statement(Action="ecr:*")), kind="registry").kind == "registry"


# --- policy text as ECR returns it --------------------------------------------------------------


def test_ecr_policy_text_uses_jacksons_layout() -> None:
    text = json.dumps(
        {
            "Version": "2008-10-17",
            "Statement": [
                {
                    "Sid": "new statement",
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::012345678901:role/CodeDeployDemo"},
                    "Action": ["ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
                    "Condition": {},
                },
                {"Effect": "Deny", "Principal": "*", "Action": [], "Sid": "Ünïcode"},
            ],
        }
    )
    assert ecr_policy_text(text) == (
        "{\n"
        '  "Version" : "2008-10-17",\n'
        '  "Statement" : [ {\n'
        '    "Sid" : "new statement",\n'
        '    "Effect" : "Allow",\n'
        '    "Principal" : {\n'
        '      "AWS" : "arn:aws:iam::012345678901:role/CodeDeployDemo"\n'
        "    },\n"
        '    "Action" : [ "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage" ],\n'
        '    "Condition" : { }\n'
        "  }, {\n"
        '    "Effect" : "Deny",\n'
        '    "Principal" : "*",\n'
        '    "Action" : [ ],\n'
        '    "Sid" : "Ünïcode"\n'
        "  } ]\n"
        "}"
    )
    assert json.loads(ecr_policy_text(text)) == json.loads(text)
