"""Evaluation: the decision rules, wildcards, principals, Not* elements, variables, messages,
and the ECR User Guide's repository policy examples evaluated for the principals they name."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dockyard.policy.evaluate import Decision, Principal, Request, access_denied_message, evaluate
from dockyard.policy.language import Policy, parse_identity_policy, parse_resource_policy
from dockyard.policy.managed import get_managed_policy

OWNER = "123456789012"
OTHER = "210987654321"
REPO = f"arn:aws:ecr:us-east-1:{OWNER}:repository/app"

ALICE = Principal.iam_user(OWNER, "alice", "AIDAALICEALICEALICE1")
BOB = Principal.iam_user(OWNER, "bob", "AIDABOBBOBBOBBOBBOB1")
BUILDER = Principal.assumed_role(OWNER, "builder", "ci-42", "AROABUILDERBUILDER01")
ROOT = Principal.root(OWNER)
FOREIGN_USER = Principal.iam_user(OTHER, "carol", "AIDACAROLCAROLCAROL1")
FOREIGN_ROOT = Principal.root(OTHER)
ANONYMOUS = Principal.anonymous()

PULL = ["ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability"]
PUSH = ["ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"]


def identity(*statements: dict[str, Any], version: str = "2012-10-17") -> Policy:
    return parse_identity_policy(json.dumps({"Version": version, "Statement": list(statements)}))


def repository(*statements: dict[str, Any], version: str = "2008-10-17") -> Policy:
    return parse_resource_policy(json.dumps({"Version": version, "Statement": list(statements)}))


def request(principal: Principal, action: str = "ecr:BatchGetImage", resource: str = REPO, **context: Any) -> Request:
    account = resource.split(":")[4] if resource != "*" else OWNER
    return Request(principal, action, resource, account, context)


def decide(req: Request, identities: list[Policy] | None = None, resource: Policy | None = None) -> Decision:
    return evaluate(req, identities or [], resource)


def allow(action: str | list[str] = "ecr:*", resource: str | list[str] = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: str | list[str] = "ecr:*", resource: str | list[str] = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


# --- the decision rules ---------------------------------------------------------------------------


def test_default_deny() -> None:
    assert decide(request(ALICE)) == Decision(False, "no_identity_allow", None)


def test_identity_allow_same_account() -> None:
    assert decide(request(ALICE), [identity(allow(Sid="Pull"))]) == Decision(True, "allowed", "Pull")


def test_explicit_identity_deny_wins_over_any_allow() -> None:
    decision = decide(
        request(ALICE),
        [identity(allow()), identity(deny("ecr:BatchGetImage", Sid="NoPull"))],
        repository({"Effect": "Allow", "Principal": "*", "Action": "ecr:*"}),
    )
    assert decision == Decision(False, "explicit_deny_identity", "NoPull")


def test_explicit_resource_deny_wins_over_identity_allow() -> None:
    policy = repository({"Sid": "DenyPull", "Effect": "Deny", "Principal": "*", "Action": PULL})
    assert decide(request(ALICE), [identity(allow())], policy) == Decision(False, "explicit_deny_resource", "DenyPull")


def test_identity_deny_is_reported_before_resource_deny() -> None:
    policy = repository({"Effect": "Deny", "Principal": "*", "Action": "ecr:*"})
    assert decide(request(ALICE), [identity(deny())], policy).reason == "explicit_deny_identity"


def test_root_of_the_resource_account_needs_no_policy() -> None:
    assert decide(request(ROOT, "ecr:DeleteRepository")) == Decision(True, "allowed", None)
    assert decide(request(ROOT, "ecr:GetAuthorizationToken", "*")).allowed


def test_repository_policy_deny_binds_the_root_user() -> None:
    policy = repository({"Sid": "DenyPull", "Effect": "Deny", "Principal": "*", "Action": PULL})
    assert decide(request(ROOT), [], policy) == Decision(False, "explicit_deny_resource", "DenyPull")
    assert decide(request(ROOT, "ecr:PutImage"), [], policy).allowed


def test_same_account_resource_policy_allow_suffices() -> None:
    policy = repository(
        {"Sid": "Alice", "Effect": "Allow", "Principal": {"AWS": ALICE.arn}, "Action": "ecr:BatchGetImage"}
    )
    assert decide(request(ALICE), [], policy) == Decision(True, "allowed", "Alice")
    assert decide(request(BOB), [], policy) == Decision(False, "no_identity_allow", None)


def test_identity_allow_is_reported_first_when_both_allow() -> None:
    policy = repository({"Sid": "Everyone", "Effect": "Allow", "Principal": "*", "Action": "ecr:*"})
    assert decide(request(ALICE), [identity(allow(Sid="Mine"))], policy).matched_statement == "Mine"


def test_cross_account_needs_both_sides() -> None:
    foreign_identity = identity(allow(Sid="Theirs"))
    grant = repository({"Sid": "Grant", "Effect": "Allow", "Principal": {"AWS": OTHER}, "Action": PULL})
    assert decide(request(FOREIGN_USER), [foreign_identity], None) == Decision(False, "no_resource_allow", None)
    assert decide(request(FOREIGN_USER), [], grant) == Decision(False, "no_identity_allow", None)
    assert decide(request(FOREIGN_USER), [foreign_identity], grant) == Decision(True, "allowed", "Grant")


def test_cross_account_root_carries_its_own_identity_allow() -> None:
    grant = repository({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"}, "Action": PULL})
    assert decide(request(FOREIGN_ROOT), [], grant).allowed
    assert decide(request(FOREIGN_ROOT)) == Decision(False, "no_resource_allow", None)


def test_anonymous_needs_a_public_resource_policy() -> None:
    public = repository({"Effect": "Allow", "Principal": "*", "Action": PULL})
    account_only = repository({"Effect": "Allow", "Principal": {"AWS": OWNER}, "Action": PULL})
    assert decide(request(ANONYMOUS), [], public).allowed
    assert decide(request(ANONYMOUS), [], account_only) == Decision(False, "no_resource_allow", None)
    assert decide(request(ANONYMOUS)) == Decision(False, "no_resource_allow", None)


# --- wildcards ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("*", "ecr:PutImage", True),
        ("ecr:*", "ecr:PutImage", True),
        ("ecr:*", "s3:GetObject", False),
        ("ecr:Batch*", "ecr:BatchGetImage", True),
        ("ecr:Batch*", "ecr:PutImage", False),
        ("ecr:Put?mage", "ecr:PutImage", True),
        ("ecr:Put?mage", "ecr:PutIimage", False),
        ("ECR:batchgetimage", "ecr:BatchGetImage", True),  # actions are case-insensitive
        ("ecr:*Image", "ecr:BatchGetImage", True),
        ("ecr:Get*", "ecr:getauthorizationtoken", True),
    ],
)
def test_action_wildcards(pattern: str, action: str, expected: bool) -> None:
    assert decide(request(ALICE, action), [identity(allow(pattern))]).allowed is expected


@pytest.mark.parametrize(
    ("pattern", "resource", "expected"),
    [
        ("*", REPO, True),
        ("*", "*", True),
        (f"arn:aws:ecr:us-east-1:{OWNER}:repository/*", REPO, True),
        (f"arn:aws:ecr:*:{OWNER}:repository/*", REPO, True),
        ("arn:aws:ecr:*", REPO, True),
        (f"arn:aws:ecr:us-east-1:{OWNER}:*", REPO, True),
        (f"arn:aws:ecr:us-east-1:{OWNER}:repository/ap?", REPO, True),
        (f"arn:aws:ecr:us-east-1:{OWNER}:repository/a?", REPO, False),
        (f"arn:aws:ecr:us-east-1:{OWNER}:repository/App", REPO, False),  # resources are case-sensitive
        (f"arn:aws:ecr:us-west-2:{OWNER}:repository/*", REPO, False),
        (f"arn:aws:ecr:us-east-1:{OWNER}:repository/*", "*", False),  # "*"-only actions need Resource "*"
    ],
)
def test_resource_wildcards(pattern: str, resource: str, expected: bool) -> None:
    assert decide(request(ALICE, resource=resource), [identity(allow(resource=pattern))]).allowed is expected


def test_namespaced_repository_wildcard() -> None:
    policy = identity(allow(resource=f"arn:aws:ecr:us-east-1:{OWNER}:repository/team/*"))
    assert decide(request(ALICE, resource=f"arn:aws:ecr:us-east-1:{OWNER}:repository/team/web"), [policy]).allowed
    assert not decide(request(ALICE, resource=f"arn:aws:ecr:us-east-1:{OWNER}:repository/teamweb"), [policy]).allowed


# --- Not* elements ---------------------------------------------------------------------------------


def test_not_action() -> None:
    policy = identity({"Effect": "Allow", "NotAction": ["ecr:Delete*", "ecr:SetRepositoryPolicy"], "Resource": "*"})
    assert decide(request(ALICE, "ecr:PutImage"), [policy]).allowed
    assert not decide(request(ALICE, "ecr:DeleteRepository"), [policy]).allowed
    assert not decide(request(ALICE, "ecr:setrepositorypolicy"), [policy]).allowed


def test_deny_with_not_action() -> None:
    policies = [identity(allow()), identity({"Effect": "Deny", "NotAction": PULL, "Resource": "*"})]
    assert decide(request(ALICE, "ecr:BatchGetImage"), policies).allowed
    assert decide(request(ALICE, "ecr:PutImage"), policies).reason == "explicit_deny_identity"


def test_not_resource() -> None:
    policy = identity(
        {"Effect": "Allow", "Action": "ecr:*", "NotResource": f"arn:aws:ecr:*:{OWNER}:repository/secret*"}
    )
    assert decide(request(ALICE), [policy]).allowed
    assert not decide(request(ALICE, resource=f"arn:aws:ecr:us-east-1:{OWNER}:repository/secrets"), [policy]).allowed
    assert decide(request(ALICE, "ecr:GetAuthorizationToken", "*"), [policy]).allowed


def test_not_principal_deny_spares_only_fully_listed_principals() -> None:
    everyone = identity(allow())
    user_and_account = repository(
        {"Effect": "Deny", "NotPrincipal": {"AWS": [ALICE.arn, OWNER]}, "Action": "ecr:*"},
        {"Effect": "Allow", "Principal": "*", "Action": "ecr:*"},
    )
    assert decide(request(ALICE), [everyone], user_and_account).allowed
    assert decide(request(BOB), [everyone], user_and_account).reason == "explicit_deny_resource"
    # Listing the user without its account does not spare it.
    user_only = repository({"Effect": "Deny", "NotPrincipal": {"AWS": ALICE.arn}, "Action": "ecr:*"})
    assert decide(request(ALICE), [everyone], user_only).reason == "explicit_deny_resource"


def test_not_principal_with_role_session_needs_session_role_and_account() -> None:
    everyone = identity(allow())
    without_session = repository(
        {"Effect": "Deny", "NotPrincipal": {"AWS": [BUILDER.role_arn, OWNER]}, "Action": "ecr:*"}
    )
    complete = repository(
        {"Effect": "Deny", "NotPrincipal": {"AWS": [BUILDER.arn, BUILDER.role_arn, OWNER]}, "Action": "ecr:*"}
    )
    assert decide(request(BUILDER), [everyone], without_session).reason == "explicit_deny_resource"
    assert decide(request(BUILDER), [everyone], complete).allowed


def test_not_principal_star_excludes_everyone() -> None:
    policy = repository({"Effect": "Deny", "NotPrincipal": "*", "Action": "ecr:*"})
    assert decide(request(ALICE), [identity(allow())], policy).allowed


# --- principals in resource policies ---------------------------------------------------------------


def grants(principal_element: Any, who: Principal, action: str = "ecr:BatchGetImage") -> bool:
    policy = repository({"Effect": "Allow", "Principal": principal_element, "Action": "ecr:*"})
    # cross-account callers bring their own identity allow so only the principal match decides
    identity_policies = [identity(allow())] if who.account_id != OWNER else []
    return decide(request(who, action), identity_policies, policy).allowed


@pytest.mark.parametrize(
    ("element", "who", "expected"),
    [
        ("*", ALICE, True),
        ("*", ANONYMOUS, True),
        ({"AWS": "*"}, FOREIGN_USER, True),
        ({"AWS": OTHER}, FOREIGN_USER, True),
        ({"AWS": OTHER}, FOREIGN_ROOT, True),
        ({"AWS": f"arn:aws:iam::{OTHER}:root"}, FOREIGN_USER, True),
        ({"AWS": OWNER}, FOREIGN_USER, False),
        ({"AWS": ALICE.arn}, ALICE, True),
        ({"AWS": ALICE.arn}, BOB, False),
        ({"AWS": "AIDAALICEALICEALICE1"}, ALICE, True),
        ({"AWS": f"arn:aws:iam::{OWNER}:role/builder"}, BUILDER, True),
        ({"AWS": BUILDER.arn}, BUILDER, True),
        ({"AWS": f"arn:aws:sts::{OWNER}:assumed-role/builder/other"}, BUILDER, False),
        ({"AWS": "AROABUILDERBUILDER01"}, BUILDER, True),
        ({"Service": "codebuild.amazonaws.com"}, ALICE, False),
        ({"AWS": [BOB.arn, ALICE.arn]}, ALICE, True),
        ({"AWS": OWNER}, ANONYMOUS, False),
    ],
)
def test_principal_matching(element: Any, who: Principal, expected: bool) -> None:
    assert grants(element, who) is expected


def test_role_with_path_matches_its_sessions() -> None:
    session = Principal.assumed_role(OWNER, "deployer", "s", "AROADEPLOYERDEPLOY01", path="/ci/")
    assert session.role_arn == f"arn:aws:iam::{OWNER}:role/ci/deployer"
    assert grants({"AWS": f"arn:aws:iam::{OWNER}:role/ci/deployer"}, session)


def test_federated_user() -> None:
    fed = Principal.federated_user(OWNER, "dana")
    assert grants({"AWS": f"arn:aws:sts::{OWNER}:federated-user/dana"}, fed)
    assert not grants({"AWS": ALICE.arn}, fed)


# --- policy variables in Resource ---------------------------------------------------------------------


def home(suffix: str) -> str:
    return f"arn:aws:ecr:us-east-1:{OWNER}:repository/{suffix}"


def test_username_variable_in_resource() -> None:
    policy = identity(allow(resource=home("${aws:username}/*")))
    assert decide(request(ALICE, resource=home("alice/app")), [policy]).allowed
    assert not decide(request(ALICE, resource=home("bob/app")), [policy]).allowed
    # assumed roles have no aws:username, so the statement matches nothing for them
    assert not decide(
        request(BUILDER, resource=home("alice/app")), [identity(allow(resource=home("${aws:username}/*")))]
    ).allowed


def test_other_variables_in_resource() -> None:
    by_account = identity(allow(resource="arn:aws:ecr:*:${aws:PrincipalAccount}:repository/*"))
    assert decide(request(ALICE), [by_account]).allowed
    by_userid = identity(allow(resource=home("${aws:userid}")))
    assert decide(request(ALICE, resource=home("AIDAALICEALICEALICE1")), [by_userid]).allowed
    with_default = identity(allow(resource=home("${aws:username, 'shared'}")))
    assert decide(request(BUILDER, resource=home("shared")), [with_default]).allowed


def test_special_character_variables_are_literal() -> None:
    policy = identity(allow(resource=home("literal${*}star${?}${$}")))
    assert decide(request(ALICE, resource=home("literal*star?$")), [policy]).allowed
    assert not decide(request(ALICE, resource=home("literalXstarY$")), [policy]).allowed


def test_variables_are_literal_in_2008_policies() -> None:
    policy = identity(allow(resource=home("${aws:username}")), version="2008-10-17")
    assert not decide(request(ALICE, resource=home("alice")), [policy]).allowed
    assert decide(request(ALICE, resource=home("${aws:username}")), [policy]).allowed


def test_context_variables_resolve_case_insensitively() -> None:
    policy = identity(allow(resource=home("${ecr:ResourceTag/Project}")))
    assert decide(request(ALICE, resource=home("web"), **{"ECR:RESOURCETAG/project": "web"}), [policy]).allowed


# --- AccessDenied messages ------------------------------------------------------------------------------


def message_for(req: Request, identities: list[Policy] | None = None, resource: Policy | None = None) -> str:
    return access_denied_message(req, decide(req, identities, resource))


def test_access_denied_messages() -> None:
    user = "User: arn:aws:iam::123456789012:user/alice is not authorized to perform: ecr:BatchGetImage on resource: "
    assert message_for(request(ALICE)) == (
        user + REPO + " because no identity-based policy allows the ecr:BatchGetImage action"
    )
    assert message_for(request(ALICE), [identity(deny())]) == (
        user + REPO + " with an explicit deny in an identity-based policy"
    )
    denying = repository({"Effect": "Deny", "Principal": "*", "Action": "ecr:*"})
    assert message_for(request(ALICE), [identity(allow())], denying) == (
        user + REPO + " with an explicit deny in a resource-based policy"
    )
    assert message_for(request(FOREIGN_USER), [identity(allow())]) == (
        "User: arn:aws:iam::210987654321:user/carol is not authorized to perform: ecr:BatchGetImage on resource: "
        + REPO
        + " because no resource-based policy allows the ecr:BatchGetImage action"
    )


def test_access_denied_message_for_role_session_and_star_resource() -> None:
    assert message_for(request(BUILDER, "ecr:GetAuthorizationToken", "*")) == (
        "User: arn:aws:sts::123456789012:assumed-role/builder/ci-42 is not authorized to perform: "
        "ecr:GetAuthorizationToken on resource: * because no identity-based policy allows the "
        "ecr:GetAuthorizationToken action"
    )


def test_no_message_for_allowed_requests() -> None:
    with pytest.raises(ValueError):
        access_denied_message(request(ROOT), Decision(True, "allowed", None))


# --- the ECR User Guide's repository policy examples ----------------------------------------------------


def seed_policy(text: str) -> Policy:
    return parse_resource_policy(text.replace("aws_account_id", OWNER))


ALLOW_IAM_USERS = seed_policy("""{
  "Version": "2008-10-17",
  "Statement": [
    {
      "Sid": "AllowPushPull",
      "Effect": "Allow",
      "Principal": {
        "AWS": [
          "arn:aws:iam::aws_account_id:user/push-pull-user-1",
          "arn:aws:iam::aws_account_id:user/push-pull-user-2"
        ]
      },
      "Action": [
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchGetImage",
        "ecr:BatchCheckLayerAvailability",
        "ecr:PutImage",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload"
      ]
    }
  ]
}""")


def test_seed_allow_iam_users_within_the_account() -> None:
    for name in ("push-pull-user-1", "push-pull-user-2"):
        user = Principal.iam_user(OWNER, name, "AIDAPUSHPULLUSER0001")
        for action in PULL + PUSH:
            assert decide(request(user, action), [], ALLOW_IAM_USERS) == Decision(True, "allowed", "AllowPushPull")
        assert not decide(request(user, "ecr:DeleteRepository"), [], ALLOW_IAM_USERS).allowed
    assert decide(request(BOB, "ecr:PutImage"), [], ALLOW_IAM_USERS).reason == "no_identity_allow"


def test_seed_allow_another_account_to_push() -> None:
    policy = parse_resource_policy("""{
      "Version": "2008-10-17",
      "Statement": [
        {
          "Sid": "AllowCrossAccountPush",
          "Effect": "Allow",
          "Principal": {
            "AWS": "arn:aws:iam::210987654321:root"
          },
          "Action": [
            "ecr:GetDownloadUrlForLayer",
            "ecr:PutImage",
            "ecr:InitiateLayerUpload",
            "ecr:UploadLayerPart",
            "ecr:CompleteLayerUpload"
          ]
        }
      ]
    }""")
    power_user = get_managed_policy("AmazonEC2ContainerRegistryPowerUser")
    assert power_user is not None
    for action in PUSH + ["ecr:GetDownloadUrlForLayer"]:
        assert decide(request(FOREIGN_USER, action), [power_user.policy], policy).allowed
        assert decide(request(FOREIGN_ROOT, action), [], policy).allowed
    # the other account's user still needs its own identity allow
    assert decide(request(FOREIGN_USER, "ecr:PutImage"), [], policy).reason == "no_identity_allow"
    # BatchGetImage was not granted to the other account
    assert decide(request(FOREIGN_USER, "ecr:BatchGetImage"), [power_user.policy], policy).reason == "no_resource_allow"
    # a third account is not named
    third = Principal.iam_user("333333333333", "eve", "AIDAEVEEVEEVEEVEEVE1")
    assert decide(request(third, "ecr:PutImage"), [power_user.policy], policy).reason == "no_resource_allow"


def test_seed_allow_everyone_to_pull() -> None:
    policy = parse_resource_policy("""{
      "Version": "2008-10-17",
      "Statement": [
        {
          "Sid": "AllowPull",
          "Effect": "Allow",
          "Principal": "*",
          "Action": [
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchGetImage",
            "ecr:BatchCheckLayerAvailability"
          ]
        }
      ]
    }""")
    anyone = identity(allow())
    for who in (ALICE, BUILDER, FOREIGN_USER, FOREIGN_ROOT):
        for action in PULL:
            assert decide(request(who, action), [anyone], policy).allowed
    assert decide(request(FOREIGN_USER, "ecr:PutImage"), [anyone], policy).reason == "no_resource_allow"
    assert decide(request(BOB, "ecr:BatchGetImage"), [], policy).allowed  # same account: the grant suffices


def test_seed_pull_users_and_admin_user() -> None:
    policy = seed_policy("""{
      "Version": "2008-10-17",
      "Statement": [
        {
          "Sid": "AllowPull",
          "Effect": "Allow",
          "Principal": {
            "AWS": [
              "arn:aws:iam::aws_account_id:user/pull-user-1",
              "arn:aws:iam::aws_account_id:user/pull-user-2"
            ]
          },
          "Action": [
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchGetImage",
            "ecr:BatchCheckLayerAvailability"
          ]
        },
        {
          "Sid": "AllowAll",
          "Effect": "Allow",
          "Principal": {
            "AWS": "arn:aws:iam::aws_account_id:user/admin-user"
          },
          "Action": [
            "ecr:*"
          ]
        }
      ]
    }""")
    puller = Principal.iam_user(OWNER, "pull-user-2", "AIDAPULLUSERPULLUSE2")
    admin = Principal.iam_user(OWNER, "admin-user", "AIDAADMINADMINADMIN1")
    for action in PULL:
        assert decide(request(puller, action), [], policy) == Decision(True, "allowed", "AllowPull")
    for action in PUSH:
        assert not decide(request(puller, action), [], policy).allowed
    for action in PULL + PUSH + ["ecr:DeleteRepository", "ecr:SetRepositoryPolicy"]:
        assert decide(request(admin, action), [], policy) == Decision(True, "allowed", "AllowAll")


def test_seed_deny_all() -> None:
    policy = parse_resource_policy("""{
      "Version": "2008-10-17",
      "Statement": [
        {
          "Sid": "DenyPull",
          "Effect": "Deny",
          "Principal": "*",
          "Action": [
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchGetImage",
            "ecr:BatchCheckLayerAvailability"
          ]
        }
      ]
    }""")
    full = get_managed_policy("AmazonEC2ContainerRegistryFullAccess")
    assert full is not None
    for who in (ALICE, BUILDER, ROOT, FOREIGN_USER):
        for action in PULL:
            assert decide(request(who, action), [full.policy], policy) == Decision(
                False, "explicit_deny_resource", "DenyPull"
            )
    assert decide(request(ALICE, "ecr:PutImage"), [full.policy], policy).allowed


def test_repository_policy_naming_the_own_account_delegates_to_identity_policies() -> None:
    account_grant = repository({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OWNER}:root"}, "Action": PULL})
    assert not decide(request(ALICE), [], account_grant).allowed
    assert decide(request(ALICE), [identity(allow(PULL))], account_grant).allowed
    user_grant = repository({"Effect": "Allow", "Principal": {"AWS": ALICE.arn}, "Action": PULL})
    assert decide(request(ALICE), [], user_grant).allowed
    account_deny = repository({"Effect": "Deny", "Principal": {"AWS": OWNER}, "Action": PULL})
    assert not decide(request(ALICE), [identity(allow(PULL))], account_deny).allowed
