"""One rule for group, role and policy names in the core (every door calls it, so the console can
store nothing `aws iam` refuses), and how the console words the core's policy-document refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.core.identity import iam_common, iam_entities, iam_policies
from dockyard.core.identity.iam_entities import NewRole
from dockyard.core.identity.iam_errors import MalformedPolicyDocument, ValidationError
from dockyard.core.identity.iam_policies import NewPolicy
from dockyard.core.services import Services
from dockyard.doors.console.iam import plain_policy_problem, pretty_json
from dockyard.doors.console.iam_roles import trusted_entities
from tests.support.console_app import Console, console_app, root

TRUST = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "123456789012"}, "Action": "sts:AssumeRole"}]}'  # noqa: E501
ALLOW = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}'


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Console]:
    yield from console_app(tmp_path)


@pytest.mark.parametrize(
    ("problem", "maximum", "noun"),
    [
        (iam_common.group_name_problem, 128, "group name"),
        (iam_common.role_name_problem, 64, "role name"),
        (iam_common.policy_name_problem, 128, "policy name"),
    ],
)
def test_name_rules_in_plain_words(problem: object, maximum: int, noun: str) -> None:
    assert callable(problem)
    assert problem("team+a=b,c.d@e_f-g") is None
    assert problem("x" * maximum) is None
    assert problem("") == f"Enter a {noun}."
    assert problem("x" * (maximum + 1)) == (
        f"A {noun} can be at most {maximum} characters long; this one has {maximum + 1}."
    )
    assert "no spaces" in str(problem("has space"))
    assert problem("é") is not None  # IAM's \w is ASCII only


def test_the_core_refuses_what_the_api_refuses(app: Console) -> None:
    async def attempts(svc: Services) -> list[str]:
        refused: list[str] = []
        calls = [
            iam_entities.create_group(svc, root(), "has space"),
            iam_entities.create_group(svc, root(), "g" * 129),
            iam_entities.create_role(svc, root(), NewRole(name="r" * 65, trust_policy=TRUST)),
            iam_policies.create_policy(svc, root(), NewPolicy(name="a/b", document=ALLOW)),
        ]
        for call in calls:
            try:
                await call
            except ValidationError as exc:
                refused.append(exc.message)
        await iam_entities.create_user(svc, root(), "someone")
        try:
            await iam_policies.put_inline_policy(svc, root(), "user", "someone", "bad name", ALLOW)
        except ValidationError as exc:
            refused.append(exc.message)
        return refused

    messages = app.run(attempts)
    assert messages == [
        "1 validation error detected: Value 'has space' at 'groupName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [\\w+=,.@-]+",
        f"1 validation error detected: Value '{'g' * 129}' at 'groupName' failed to satisfy constraint: "
        "Member must have length less than or equal to 128",
        f"1 validation error detected: Value '{'r' * 65}' at 'roleName' failed to satisfy constraint: "
        "Member must have length less than or equal to 64",
        "1 validation error detected: Value 'a/b' at 'policyName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [\\w+=,.@-]+",
        "1 validation error detected: Value 'bad name' at 'policyName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [\\w+=,.@-]+",
    ]


def test_policy_refusals_in_plain_words() -> None:
    syntax = MalformedPolicyDocument("Syntax errors in policy.")
    assert plain_policy_problem(syntax, '{"Version": ') == (
        "This is not valid JSON (line 1, column 13): Expecting value. (IAM: Syntax errors in policy.)"
    )
    assert plain_policy_problem(syntax, "  ") == "Enter the policy document (JSON). (IAM: Syntax errors in policy.)"
    resource = MalformedPolicyDocument("Has prohibited field Resource")
    assert plain_policy_problem(resource, TRUST).startswith("A trust policy has no Resource element")
    arn = "arn:aws:iam::123456789012:user/gone"
    missing = MalformedPolicyDocument(f'Invalid principal in policy: "AWS":"{arn}"')
    assert plain_policy_problem(missing, TRUST).startswith(f"No IAM user or role {arn} exists")
    no_resource = MalformedPolicyDocument("Policy statement must contain resources.")
    text = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*"}]}'
    assert plain_policy_problem(no_resource, text, managed=True) == (
        "Statement[0] has no Resource (IAM: Policy statement must contain resources.)"
    )


def test_trusted_entities_and_layout() -> None:
    text = (
        '{"Statement": [{"Effect": "Allow", "Principal": {"AWS": ["123456789012", '
        '"arn:aws:iam::210987654321:root", "arn:aws:iam::123456789012:role/ci"], '
        '"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}, '
        '{"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole"}]}'
    )
    assert trusted_entities(text) == [
        "AWS account 123456789012",
        "AWS account 210987654321",
        "IAM principal arn:aws:iam::123456789012:role/ci",
        "AWS service ec2.amazonaws.com",
    ]
    assert trusted_entities("not json") == []
    assert pretty_json('{"a": [1]}') == '{\n  "a": [\n    1\n  ]\n}'
    assert pretty_json("{") == "{"
