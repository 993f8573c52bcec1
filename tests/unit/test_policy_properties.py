"""Property tests: invariants of the evaluation logic over generated policies and requests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.policy.evaluate import Decision, Principal, Request, evaluate
from dockyard.policy.language import Policy, parse_identity_policy, parse_resource_policy

OWNER = "111111111111"
OTHER = "222222222222"
ACCOUNTS = [OWNER, OTHER]
ACTIONS = ["ecr:BatchGetImage", "ecr:PutImage", "ecr:GetAuthorizationToken", "ecr:DeleteRepository", "ecr:ListImages"]
UNRELATED_ACTION = "ecr:TotallyUnrelatedAction"  # matched by no generated request
ACTION_PATTERNS = [*ACTIONS, "*", "ecr:*", "ecr:Batch*", "ecr:Put?mage", "ecr:Get*", "ECR:listimages"]
REPOSITORIES = [f"arn:aws:ecr:us-east-1:{account}:repository/{name}" for account in ACCOUNTS for name in ("app", "lib")]
RESOURCE_PATTERNS = [
    "*",
    *REPOSITORIES,
    "arn:aws:ecr:us-east-1:*:repository/*",
    f"arn:aws:ecr:*:{OWNER}:repository/a*",
    "arn:aws:ecr:us-east-1:${aws:PrincipalAccount}:repository/*",
]
CONDITIONS: list[dict[str, Any]] = [
    {"StringEquals": {"aws:username": "alice"}},
    {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    {"Bool": {"aws:SecureTransport": "true"}},
    {"StringLike": {"aws:PrincipalArn": f"arn:aws:iam::{OWNER}:*"}},
    {"StringNotEqualsIfExists": {"aws:username": "bob"}},
    {"ForAnyValue:StringEquals": {"aws:TagKeys": ["team"]}},
]


def principals_for(account: str) -> list[Principal]:
    return [
        Principal.root(account),
        Principal.iam_user(account, "alice", "AIDAALICEALICEALICE1"),
        Principal.iam_user(account, "bob", "AIDABOBBOBBOBBOBBOB1"),
        Principal.assumed_role(account, "builder", "s1", "AROABUILDERBUILDER01"),
    ]


PRINCIPALS = [p for account in ACCOUNTS for p in principals_for(account)] + [Principal.anonymous()]
PRINCIPAL_ELEMENTS: list[Any] = [
    "*",
    {"AWS": "*"},
    *({"AWS": account} for account in ACCOUNTS),
    *({"AWS": f"arn:aws:iam::{account}:root"} for account in ACCOUNTS),
    *({"AWS": p.arn} for p in PRINCIPALS if p.type == "IAMUser"),
    {"AWS": f"arn:aws:iam::{OWNER}:role/builder"},
]


def one_or_many(values: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(values), st.lists(st.sampled_from(values), min_size=1, max_size=3))


@st.composite
def statements(draw: st.DrawFn, resource_policy: bool) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": draw(st.sampled_from(["Allow", "Deny"]))}
    statement["NotAction" if draw(st.integers(0, 5)) == 0 else "Action"] = draw(one_or_many(ACTION_PATTERNS))
    if resource_policy:
        statement["NotPrincipal" if draw(st.integers(0, 7)) == 0 else "Principal"] = draw(
            st.sampled_from(PRINCIPAL_ELEMENTS)
        )
    else:
        statement["NotResource" if draw(st.integers(0, 5)) == 0 else "Resource"] = draw(one_or_many(RESOURCE_PATTERNS))
    if draw(st.booleans()):
        statement["Condition"] = draw(st.sampled_from(CONDITIONS))
    return statement


def build(statement_list: list[dict[str, Any]], resource_policy: bool) -> Policy:
    numbered = [{"Sid": f"S{index}", **statement} for index, statement in enumerate(statement_list)]
    text = json.dumps({"Version": "2012-10-17", "Statement": numbered})
    return parse_resource_policy(text) if resource_policy else parse_identity_policy(text)


@dataclass
class Scenario:
    request: Request
    identity_statements: list[list[dict[str, Any]]]
    resource_statements: list[dict[str, Any]] | None

    def policies(self) -> tuple[list[Policy], Policy | None]:
        identities = [build(statements, False) for statements in self.identity_statements]
        resource = build(self.resource_statements, True) if self.resource_statements else None
        return identities, resource

    def decide(self) -> Decision:
        identities, resource = self.policies()
        return evaluate(self.request, identities, resource)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    principal = draw(st.sampled_from(PRINCIPALS))
    resource = draw(st.sampled_from([*REPOSITORIES, "*"]))
    resource_account = resource.split(":")[4] if resource != "*" else draw(st.sampled_from(ACCOUNTS))
    context = {
        "aws:SourceIp": draw(st.sampled_from(["10.1.2.3", "192.168.0.9"])),
        "aws:SecureTransport": draw(st.sampled_from(["true", "false"])),
    }
    if draw(st.booleans()):
        context["aws:TagKeys"] = draw(st.lists(st.sampled_from(["team", "owner"]), max_size=2))
    request = Request(principal, draw(st.sampled_from(ACTIONS)), resource, resource_account, context)
    # Root users and anonymous callers have no identity policies of their own.
    identity_count = 0 if principal.type in ("Root", "Anonymous") else draw(st.integers(0, 3))
    identity_statements = [draw(st.lists(statements(False), min_size=1, max_size=4)) for _ in range(identity_count)]
    resource_statements = draw(st.none() | st.lists(statements(True), min_size=1, max_size=4))
    return Scenario(request, identity_statements, resource_statements)


def outcome(decision: Decision) -> tuple[bool, str]:
    return decision.allowed, decision.reason


@settings(max_examples=150)
@given(scenarios())
def test_an_explicit_identity_deny_always_wins(scenario: Scenario) -> None:
    deny_all = {"Effect": "Deny", "Action": "*", "Resource": "*"}
    scenario.identity_statements = [*scenario.identity_statements, [deny_all]]
    assert outcome(scenario.decide()) == (False, "explicit_deny_identity")


@settings(max_examples=150)
@given(scenarios())
def test_an_explicit_resource_deny_always_wins(scenario: Scenario) -> None:
    deny_all = {"Effect": "Deny", "Principal": "*", "Action": "*"}
    scenario.resource_statements = [*(scenario.resource_statements or []), deny_all]
    decision = scenario.decide()
    assert not decision.allowed
    assert decision.reason in ("explicit_deny_identity", "explicit_deny_resource")


@settings(max_examples=150)
@given(scenarios(), st.randoms(use_true_random=False))
def test_statement_and_policy_order_never_matter(scenario: Scenario, random: Any) -> None:
    before = outcome(scenario.decide())
    for statement_list in scenario.identity_statements:
        random.shuffle(statement_list)
    random.shuffle(scenario.identity_statements)
    if scenario.resource_statements:
        random.shuffle(scenario.resource_statements)
    assert outcome(scenario.decide()) == before


@settings(max_examples=150)
@given(scenarios())
def test_nothing_is_allowed_without_a_matching_allow(scenario: Scenario) -> None:
    scenario.identity_statements = [
        [s for s in statements if s["Effect"] == "Deny"]
        or [{"Effect": "Deny", "Action": UNRELATED_ACTION, "Resource": "*"}]
        for statements in scenario.identity_statements
    ]
    if scenario.resource_statements:
        scenario.resource_statements = [s for s in scenario.resource_statements if s["Effect"] == "Deny"] or None
    decision = scenario.decide()
    principal = scenario.request.principal
    root_of_owner = principal.type == "Root" and principal.account_id == scenario.request.resource_account
    if decision.allowed:
        assert root_of_owner
        assert decision.matched_statement is None


@settings(max_examples=150)
@given(scenarios(), st.integers(0, 3))
def test_an_allow_for_an_unrelated_action_changes_nothing(scenario: Scenario, where: int) -> None:
    before = outcome(scenario.decide())
    if where < len(scenario.identity_statements):
        scenario.identity_statements[where].append({"Effect": "Allow", "Action": UNRELATED_ACTION, "Resource": "*"})
    elif where == 3:
        scenario.identity_statements.append([{"Effect": "Allow", "Action": UNRELATED_ACTION, "Resource": "*"}])
    else:
        extra = {"Effect": "Allow", "Principal": "*", "Action": [UNRELATED_ACTION]}
        scenario.resource_statements = [*(scenario.resource_statements or []), extra]
    after = outcome(scenario.decide())
    # A resource policy that only allows something unrelated behaves like no resource policy.
    assert after == before
