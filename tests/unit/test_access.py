"""core/access.authorize: the engine's decision on a caller's loaded policies, AWS's messages,
role trust policies (necessary, and delegating when they name an account) and session policies."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from dockyard.core.errors import AccessDeniedException
from dockyard.core.identity.access import Resource, authorize, decide, request_tag_context
from dockyard.core.identity.caller import Caller, root_caller
from dockyard.policy.language import parse_identity_policy

OWNER = "123456789012"
OTHER = "210987654321"
REPO = f"arn:aws:ecr:us-east-1:{OWNER}:repository/app"
ROLE = f"arn:aws:iam::{OWNER}:role/deployer"


def identity(*statements: dict[str, Any]) -> Any:
    return parse_identity_policy(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))


def allow(action: str = "ecr:*", resource: str = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def user(name: str, account: str = OWNER, *policies: Any) -> Caller:
    return Caller(
        account_id=account,
        arn=f"arn:aws:iam::{account}:user/{name}",
        user_id=f"AIDA{name.upper():0<17}"[:21],
        type="IAMUser",
        username=name,
        access_key_id="AKIAEXAMPLE",
        region="us-east-1",
        policies=tuple(policies),
    )


def repository(policy: dict[str, Any] | None = None, account: str = OWNER) -> Resource:
    text = json.dumps({"Version": "2012-10-17", "Statement": [policy]}) if policy else None
    return Resource(arn=REPO.replace(OWNER, account), account_id=account, policy_text=text)


async def test_no_policy_is_denied_with_aws_message() -> None:
    with pytest.raises(AccessDeniedException) as caught:
        await authorize(user("bob"), "ecr:BatchGetImage", repository())
    assert caught.value.message == (
        f"User: arn:aws:iam::{OWNER}:user/bob is not authorized to perform: ecr:BatchGetImage on resource: "
        f"{REPO} because no identity-based policy allows the ecr:BatchGetImage action"
    )


async def test_identity_allow_and_root() -> None:
    await authorize(user("bob", OWNER, identity(allow("ecr:BatchGetImage"))), "ecr:BatchGetImage", repository())
    await authorize(root_caller(OWNER, "us-east-1"), "ecr:DeleteRepository", repository())


async def test_resource_deny_binds_everyone() -> None:
    deny = {"Sid": "DenyPull", "Effect": "Deny", "Principal": "*", "Action": "ecr:BatchGetImage"}
    with pytest.raises(AccessDeniedException) as caught:
        await authorize(root_caller(OWNER, "us-east-1"), "ecr:BatchGetImage", repository(deny))
    assert caught.value.message.endswith("with an explicit deny in a resource-based policy")


async def test_cross_account_needs_both_sides() -> None:
    grant = {"Effect": "Allow", "Principal": {"AWS": OTHER}, "Action": "ecr:BatchGetImage"}
    foreign = user("carol", OTHER, identity(allow()))
    await authorize(foreign, "ecr:BatchGetImage", repository(grant))
    with pytest.raises(AccessDeniedException) as caught:
        await authorize(foreign, "ecr:BatchGetImage", repository())
    assert caught.value.message.endswith("because no resource-based policy allows the ecr:BatchGetImage action")
    with pytest.raises(AccessDeniedException):
        await authorize(user("dave", OTHER), "ecr:BatchGetImage", repository(grant))


async def test_request_context_reaches_conditions() -> None:
    only_tls = identity({**allow(), "Condition": {"Bool": {"aws:SecureTransport": "true"}}})
    bob = user("bob", OWNER, only_tls)
    with pytest.raises(AccessDeniedException):
        await authorize(bob, "ecr:BatchGetImage", repository())
    await authorize(dataclasses.replace(bob, secure_transport=True), "ecr:BatchGetImage", repository())
    from_net = identity({**allow(), "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}})
    await authorize(
        dataclasses.replace(user("eve", OWNER, from_net), source_ip="10.1.2.3"), "ecr:ListImages", repository()
    )


async def test_request_tags_reach_conditions() -> None:
    """aws:RequestTag/<key> and aws:TagKeys, for CreateRepository and TagResource with tags."""
    team_only = identity(
        {
            **allow("ecr:CreateRepository"),
            "Condition": {
                "StringEquals": {"aws:RequestTag/team": "web"},
                "ForAllValues:StringEquals": {"aws:TagKeys": ["team", "cost-centre"]},
            },
        }
    )
    bob = user("bob", OWNER, team_only)
    await authorize(bob, "ecr:CreateRepository", repository(), request_tag_context({"team": "web"}))
    for tags in ({"team": "db"}, {"team": "web", "owner": "bob"}, {}):
        with pytest.raises(AccessDeniedException):
            await authorize(bob, "ecr:CreateRepository", repository(), request_tag_context(tags))
    assert request_tag_context(["team", "owner"]) == {"aws:TagKeys": ("team", "owner")}


def trust(principal: Any) -> Resource:
    text = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}],
        }
    )
    return Resource(arn=ROLE, account_id=OWNER, policy_text=text, policy_kind="trust")


def allowed(caller: Caller, resource: Resource) -> bool:
    return decide(caller, "sts:AssumeRole", resource)[1].allowed


def test_a_trust_policy_is_necessary_even_with_an_identity_allow() -> None:
    may_assume = identity(allow("sts:AssumeRole"))
    assert not allowed(user("bob", OWNER, may_assume), trust({"AWS": f"arn:aws:iam::{OWNER}:user/alice"}))


def test_a_trust_policy_naming_the_user_suffices() -> None:
    assert allowed(user("alice"), trust({"AWS": f"arn:aws:iam::{OWNER}:user/alice"}))


def test_a_trust_policy_naming_the_account_delegates_to_identity_policies() -> None:
    account = trust({"AWS": f"arn:aws:iam::{OWNER}:root"})
    assert not allowed(user("bob"), account)
    assert allowed(user("bob", OWNER, identity(allow("sts:AssumeRole", ROLE))), account)


def test_cross_account_assume_role_needs_both() -> None:
    account = trust({"AWS": OTHER})
    assert not allowed(user("carol", OTHER), account)
    assert allowed(user("carol", OTHER, identity(allow("sts:AssumeRole"))), account)
    assert not allowed(user("carol", OTHER, identity(allow("sts:AssumeRole"))), trust({"AWS": OWNER}))


async def test_a_session_policy_narrows_the_role() -> None:
    role_session = Caller(
        account_id=OWNER,
        arn=f"arn:aws:sts::{OWNER}:assumed-role/deployer/s",
        user_id="AROAEXAMPLEEXAMPLE123:s",
        type="AssumedRole",
        username=None,
        access_key_id="ASIAEXAMPLE",
        region="us-east-1",
        role_arn=ROLE,
        credential_kind="assumed-role",
        policies=(identity(allow()),),
        session_policy=identity(allow("ecr:BatchGetImage")),
    )
    await authorize(role_session, "ecr:BatchGetImage", repository())
    with pytest.raises(AccessDeniedException) as caught:
        await authorize(role_session, "ecr:PutImage", repository())
    assert caught.value.message.endswith("because no session policy allows the ecr:PutImage action")
