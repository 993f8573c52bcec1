"""IAM and STS through the real AWS CLI: users with paths, access keys, groups, roles, customer managed
policies and their versions, AWS managed policies, attachments, inline policies, the simulator, and
AWS's errors for each (codes and messages as the CLI prints them)."""

from __future__ import annotations

import json

import pytest

from tests.support.clients import AwsCli
from tests.support.identities import (
    AUTH_ONLY,
    Iam,
    Identity,
    admin,
    allow,
    aws_error,
    policy,
    root_identity,
    suffix,
)
from tests.support.server import DockyardServer

MANAGED_ECR = (
    "AmazonEC2ContainerRegistryFullAccess",
    "AmazonEC2ContainerRegistryPowerUser",
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonEC2ContainerRegistryReadOnly",
)


@pytest.fixture
def iam(aws: AwsCli, dockyard_server: DockyardServer) -> Iam:
    return Iam(aws, root_identity(dockyard_server))


def test_get_caller_identity_names_each_kind_of_principal(
    iam: Iam, aws: AwsCli, dockyard_server: DockyardServer
) -> None:
    account = dockyard_server.account_id
    assert aws("sts", "get-caller-identity") == {
        "UserId": account,
        "Account": account,
        "Arn": f"arn:aws:iam::{account}:root",
    }
    name = f"who-{suffix()}"
    user = iam.user(name, path="/team/a/")
    created = iam("get-user", "--user-name", name)["User"]
    assert aws("sts", "get-caller-identity", env=user.env()) == {
        "UserId": created["UserId"],
        "Account": account,
        "Arn": f"arn:aws:iam::{account}:user/team/a/{name}",
    }


def test_users_with_paths(iam: Iam) -> None:
    name = f"alice-{suffix()}"
    created = iam("create-user", "--user-name", name, "--path", "/developers/")["User"]
    assert set(created) == {"Path", "UserName", "UserId", "Arn", "CreateDate"}
    assert created["Path"] == "/developers/"
    assert created["Arn"].endswith(f":user/developers/{name}")
    assert created["UserId"].startswith("AIDA") and len(created["UserId"]) == 21
    # IAM names are unique whatever their case, and found whatever their case.
    assert iam("get-user", "--user-name", name.upper())["User"] == created
    taken = iam("create-user", "--user-name", name.upper(), check=False)
    assert aws_error(taken) == (
        f"An error occurred (EntityAlreadyExists) when calling the CreateUser operation: "
        f"User with name {name.upper()} already exists."
    )
    listed = iam("list-users", "--path-prefix", "/developers/")["Users"]
    assert created in listed
    iam("update-user", "--user-name", name, "--new-path", "/ops/", "--new-user-name", f"{name}-2")
    moved = iam("get-user", "--user-name", f"{name}-2")["User"]
    assert moved["Arn"].endswith(f":user/ops/{name}-2") and moved["UserId"] == created["UserId"]
    iam("delete-user", "--user-name", f"{name}-2")
    missing = iam("get-user", "--user-name", f"{name}-2", check=False)
    assert aws_error(missing) == (
        f"An error occurred (NoSuchEntity) when calling the GetUser operation: "
        f"The user with name {name}-2 cannot be found."
    )


def test_invalid_names_are_refused_by_validation(iam: Iam) -> None:
    result = iam("create-user", "--user-name", "has space", check=False)
    assert aws_error(result) == (
        "An error occurred (ValidationError) when calling the CreateUser operation: 1 validation error detected: "
        "Value 'has space' at 'userName' failed to satisfy constraint: Member must satisfy regular expression "
        "pattern: [\\w+=,.@-]+"
    )


def test_access_keys_two_per_user(iam: Iam) -> None:
    name = f"keys-{suffix()}"
    iam("create-user", "--user-name", name)
    first = iam("create-access-key", "--user-name", name)["AccessKey"]
    assert set(first) == {"UserName", "AccessKeyId", "Status", "SecretAccessKey", "CreateDate"}
    assert first["AccessKeyId"].startswith("AKIA") and len(first["AccessKeyId"]) == 20
    assert first["Status"] == "Active" and len(first["SecretAccessKey"]) == 40
    second = iam("create-access-key", "--user-name", name)["AccessKey"]
    third = iam("create-access-key", "--user-name", name, check=False)
    assert aws_error(third) == (
        "An error occurred (LimitExceeded) when calling the CreateAccessKey operation: "
        "Cannot exceed quota for AccessKeysPerUser: 2"
    )
    listed = iam("list-access-keys", "--user-name", name)["AccessKeyMetadata"]
    assert {key["AccessKeyId"] for key in listed} == {first["AccessKeyId"], second["AccessKeyId"]}
    assert all("SecretAccessKey" not in key for key in listed)
    iam("update-access-key", "--user-name", name, "--access-key-id", first["AccessKeyId"], "--status", "Inactive")
    statuses = {
        k["AccessKeyId"]: k["Status"] for k in iam("list-access-keys", "--user-name", name)["AccessKeyMetadata"]
    }
    assert statuses == {first["AccessKeyId"]: "Inactive", second["AccessKeyId"]: "Active"}
    conflict = iam("delete-user", "--user-name", name, check=False)
    assert aws_error(conflict) == (
        "An error occurred (DeleteConflict) when calling the DeleteUser operation: "
        "Cannot delete entity, must delete access keys first."
    )
    for key in (first, second):
        iam("delete-access-key", "--user-name", name, "--access-key-id", key["AccessKeyId"])
    gone = iam("delete-access-key", "--user-name", name, "--access-key-id", first["AccessKeyId"], check=False)
    assert aws_error(gone) == (
        "An error occurred (NoSuchEntity) when calling the DeleteAccessKey operation: "
        f"The Access Key with id {first['AccessKeyId']} cannot be found."
    )
    iam("delete-user", "--user-name", name)


def test_a_user_manages_its_own_keys_without_naming_itself(iam: Iam, aws: AwsCli) -> None:
    own_keys = policy(allow(["iam:ListAccessKeys", "iam:CreateAccessKey"], "arn:aws:iam::*:user/${aws:username}"))
    user = iam.user(f"self-{suffix()}", inline=own_keys)
    listed = aws("iam", "list-access-keys", env=user.env())["AccessKeyMetadata"]
    assert [key["AccessKeyId"] for key in listed] == [user.access_key_id]
    assert listed[0]["UserName"] == user.name
    other = aws("iam", "list-access-keys", "--user-name", "someone-else", env=user.env(), check=False)
    assert "(AccessDenied)" in aws_error(other)


def test_groups_and_membership(iam: Iam) -> None:
    group, user = f"devs-{suffix()}", f"member-{suffix()}"
    created = iam("create-group", "--group-name", group, "--path", "/eng/")["Group"]
    assert created["Arn"].endswith(f":group/eng/{group}") and created["GroupId"].startswith("AGPA")
    iam("create-user", "--user-name", user)
    iam("add-user-to-group", "--group-name", group, "--user-name", user)
    described = iam("get-group", "--group-name", group)
    assert described["Group"] == created
    assert [u["UserName"] for u in described["Users"]] == [user]
    assert [g["GroupName"] for g in iam("list-groups-for-user", "--user-name", user)["Groups"]] == [group]
    assert created in iam("list-groups")["Groups"]
    refused = iam("delete-group", "--group-name", group, check=False)
    assert aws_error(refused) == (
        "An error occurred (DeleteConflict) when calling the DeleteGroup operation: "
        "Cannot delete entity, must remove users from group first."
    )
    in_group = iam("delete-user", "--user-name", user, check=False)
    assert "Cannot delete entity, must remove users from group first." in aws_error(in_group)
    iam("remove-user-from-group", "--group-name", group, "--user-name", user)
    assert iam("get-group", "--group-name", group)["Users"] == []
    iam("delete-group", "--group-name", group)
    iam("delete-user", "--user-name", user)


def test_roles_with_trust_policies(iam: Iam, dockyard_server: DockyardServer) -> None:
    name = f"builder-{suffix()}"
    trust = policy(
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{dockyard_server.account_id}:root"},
            "Action": "sts:AssumeRole",
        }
    )
    created = iam(
        "create-role",
        "--role-name",
        name,
        "--path",
        "/ci/",
        "--description",
        "builds images",
        "--max-session-duration",
        "7200",
        "--assume-role-policy-document",
        json.dumps(trust),
    )["Role"]
    assert created["Arn"].endswith(f":role/ci/{name}") and created["RoleId"].startswith("AROA")
    assert created["AssumeRolePolicyDocument"] == trust  # the CLI decodes the URL-encoded document
    assert created["MaxSessionDuration"] == 7200 and created["Description"] == "builds images"
    assert iam("get-role", "--role-name", name)["Role"] == created
    assert name in [role["RoleName"] for role in iam("list-roles", "--path-prefix", "/ci/")["Roles"]]
    with_resource = policy({"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole", "Resource": "*"})
    bad = iam(
        "update-assume-role-policy", "--role-name", name, "--policy-document", json.dumps(with_resource), check=False
    )
    assert aws_error(bad) == (
        "An error occurred (MalformedPolicyDocument) when calling the UpdateAssumeRolePolicy operation: "
        "Has prohibited field Resource"
    )
    ghost = policy(
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{dockyard_server.account_id}:user/nobody-{suffix()}"},
            "Action": "sts:AssumeRole",
        }
    )
    unknown = iam("update-assume-role-policy", "--role-name", name, "--policy-document", json.dumps(ghost), check=False)
    assert "(MalformedPolicyDocument)" in aws_error(unknown) and "Invalid principal in policy" in aws_error(unknown)
    iam(
        "attach-role-policy",
        "--role-name",
        name,
        "--policy-arn",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    )
    refused = iam("delete-role", "--role-name", name, check=False)
    assert aws_error(refused) == (
        "An error occurred (DeleteConflict) when calling the DeleteRole operation: "
        "Cannot delete entity, must detach all policies first."
    )
    iam(
        "detach-role-policy",
        "--role-name",
        name,
        "--policy-arn",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    )
    iam("delete-role", "--role-name", name)


def test_aws_managed_policies_are_listed_with_their_version_history(iam: Iam) -> None:
    listed = iam("list-policies", "--scope", "AWS")["Policies"]
    names = {p["PolicyName"] for p in listed}
    assert set(MANAGED_ECR) <= names
    arn = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryFullAccess"
    full = iam("get-policy", "--policy-arn", arn)["Policy"]
    assert full["Arn"] == arn
    assert full["DefaultVersionId"] == "v3" and full["IsAttachable"] is True
    # Created with ECR's first policies; updated when its default version was.
    assert full["CreateDate"].startswith("2015-12-21T17:")
    assert full["UpdateDate"] == "2020-12-05T00:04:19Z"
    versions = iam("list-policy-versions", "--policy-arn", arn)["Versions"]
    assert [(v["VersionId"], v["IsDefaultVersion"]) for v in versions] == [
        ("v3", True),
        ("v2", False),
        ("v1", False),
    ]
    assert versions[1]["CreateDate"] == "2017-11-10T17:54:49Z"

    def document(version_id: str) -> object:
        found = iam("get-policy-version", "--policy-arn", arn, "--version-id", version_id)["PolicyVersion"]
        assert found["IsDefaultVersion"] is (version_id == "v3")
        return found["Document"]

    # v1 is the seed's document; the default is today's.
    assert document("v1") == policy(allow(["ecr:*"]))
    assert document("v2") == policy(allow(["ecr:*", "cloudtrail:LookupEvents"]))
    today = document("v3")
    assert isinstance(today, dict)
    assert today["Statement"][0]["Action"] == ["ecr:*", "cloudtrail:LookupEvents"]
    assert today["Statement"][1]["Action"] == ["iam:CreateServiceLinkedRole"]
    read_only = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
    assert [v["VersionId"] for v in iam("list-policy-versions", "--policy-arn", read_only)["Versions"]] == [
        "v3",
        "v2",
        "v1",
    ]
    assert not {p["PolicyName"] for p in iam("list-policies", "--scope", "Local")["Policies"]} & set(MANAGED_ECR)


def test_customer_managed_policies_and_versions(iam: Iam, dockyard_server: DockyardServer) -> None:
    name = f"pull-{suffix()}"
    v1 = policy(allow(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]))
    created = iam(
        "create-policy",
        "--policy-name",
        name,
        "--path",
        "/ecr/",
        "--policy-document",
        json.dumps(v1),
        "--description",
        "d",
    )["Policy"]
    arn = f"arn:aws:iam::{dockyard_server.account_id}:policy/ecr/{name}"
    assert created["Arn"] == arn and created["DefaultVersionId"] == "v1" and created["AttachmentCount"] == 0
    taken = iam("create-policy", "--policy-name", name, "--policy-document", json.dumps(v1), check=False)
    assert aws_error(taken) == (
        "An error occurred (EntityAlreadyExists) when calling the CreatePolicy operation: "
        f"A policy called {name} already exists. Duplicate names are not allowed."
    )
    assert iam("get-policy", "--policy-arn", arn)["Policy"]["Description"] == "d"
    for number in range(2, 6):
        version = iam("create-policy-version", "--policy-arn", arn, "--policy-document", json.dumps(v1))[
            "PolicyVersion"
        ]
        assert version["VersionId"] == f"v{number}" and version["IsDefaultVersion"] is False
    sixth = iam("create-policy-version", "--policy-arn", arn, "--policy-document", json.dumps(v1), check=False)
    assert aws_error(sixth) == (
        "An error occurred (LimitExceeded) when calling the CreatePolicyVersion operation: A managed policy can have "
        "up to 5 versions. Before you create a new version, you must delete an existing version."
    )
    iam("set-default-policy-version", "--policy-arn", arn, "--version-id", "v3")
    assert iam("get-policy", "--policy-arn", arn)["Policy"]["DefaultVersionId"] == "v3"
    default = iam("delete-policy-version", "--policy-arn", arn, "--version-id", "v3", check=False)
    assert aws_error(default) == (
        "An error occurred (DeleteConflict) when calling the DeletePolicyVersion operation: "
        "Cannot delete the default version of a policy."
    )
    missing = iam("get-policy-version", "--policy-arn", arn, "--version-id", "v9", check=False)
    assert aws_error(missing) == (
        "An error occurred (NoSuchEntity) when calling the GetPolicyVersion operation: "
        f"Policy {arn} version v9 does not exist or is not attachable."
    )
    versions = iam("list-policy-versions", "--policy-arn", arn)["Versions"]
    assert sorted(v["VersionId"] for v in versions) == ["v1", "v2", "v3", "v4", "v5"]
    assert [v["VersionId"] for v in versions if v["IsDefaultVersion"]] == ["v3"]
    user = f"holder-{suffix()}"
    iam("create-user", "--user-name", user)
    iam("attach-user-policy", "--user-name", user, "--policy-arn", arn)
    assert iam("get-policy", "--policy-arn", arn)["Policy"]["AttachmentCount"] == 1
    assert iam("list-attached-user-policies", "--user-name", user)["AttachedPolicies"] == [
        {"PolicyName": name, "PolicyArn": arn}
    ]
    attached = iam("delete-policy", "--policy-arn", arn, check=False)
    assert aws_error(attached) == (
        "An error occurred (DeleteConflict) when calling the DeletePolicy operation: "
        "Cannot delete a policy attached to entities."
    )
    iam("detach-user-policy", "--user-name", user, "--policy-arn", arn)
    not_attached = iam("detach-user-policy", "--user-name", user, "--policy-arn", arn, check=False)
    assert aws_error(not_attached) == (
        f"An error occurred (NoSuchEntity) when calling the DetachUserPolicy operation: Policy {arn} was not found."
    )
    for version_id in ("v1", "v2", "v4", "v5"):
        iam("delete-policy-version", "--policy-arn", arn, "--version-id", version_id)
    iam("delete-policy", "--policy-arn", arn)
    absent = iam("attach-user-policy", "--user-name", user, "--policy-arn", arn, check=False)
    assert aws_error(absent) == (
        "An error occurred (NoSuchEntity) when calling the AttachUserPolicy operation: "
        f"Policy {arn} does not exist or is not attachable."
    )


def test_malformed_policy_documents(iam: Iam) -> None:
    name = f"bad-{suffix()}"
    cases = {
        "{not json": "Syntax errors in policy.",
        json.dumps(
            policy(allow("ecr:*"), version="2008-10-17")
        ): "Policy document must be version 2012-10-17 or greater.",
        json.dumps(policy({"Effect": "Allow", "Action": "ecr:*"})): "Policy statement must contain resources.",
        json.dumps(
            policy(allow("BatchGetImage"))
        ): "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
    }
    for document, message in cases.items():
        result = iam("create-policy", "--policy-name", name, "--policy-document", document, check=False)
        assert aws_error(result) == (
            f"An error occurred (MalformedPolicyDocument) when calling the CreatePolicy operation: {message}"
        )


def test_inline_policies_of_users_groups_and_roles(iam: Iam, dockyard_server: DockyardServer) -> None:
    tag = suffix()
    iam("create-user", "--user-name", f"in-{tag}")
    iam("create-group", "--group-name", f"ing-{tag}")
    trust = policy({"Effect": "Allow", "Principal": {"AWS": dockyard_server.account_id}, "Action": "sts:AssumeRole"})
    iam("create-role", "--role-name", f"inr-{tag}", "--assume-role-policy-document", json.dumps(trust))
    document = policy(allow("ecr:ListImages"))
    for kind, option in (("user", "--user-name"), ("group", "--group-name"), ("role", "--role-name")):
        owner = {"user": f"in-{tag}", "group": f"ing-{tag}", "role": f"inr-{tag}"}[kind]
        iam(f"put-{kind}-policy", option, owner, "--policy-name", "list", "--policy-document", json.dumps(document))
        got = iam(f"get-{kind}-policy", option, owner, "--policy-name", "list")
        assert got == {f"{kind.title()}Name": owner, "PolicyName": "list", "PolicyDocument": document}
        assert iam(f"list-{kind}-policies", option, owner)["PolicyNames"] == ["list"]
        if kind != "group":
            conflict = iam(f"delete-{kind}", option, owner, check=False)
            assert aws_error(conflict).endswith("Cannot delete entity, must delete policies first.")
        iam(f"delete-{kind}-policy", option, owner, "--policy-name", "list")
        missing = iam(f"get-{kind}-policy", option, owner, "--policy-name", "list", check=False)
        assert aws_error(missing).endswith(f"The {kind} policy with name list cannot be found.")
    oversized = policy(*[allow(f"ecr:ListImages{index:04d}") for index in range(120)])
    too_big = iam(
        "put-user-policy",
        "--user-name",
        f"in-{tag}",
        "--policy-name",
        "big",
        "--policy-document",
        json.dumps(oversized),
        check=False,
    )
    assert aws_error(too_big).endswith(f"Maximum policy size of 2048 bytes exceeded for user in-{tag}")


def test_iam_calls_are_authorised_as_iam_actions(iam: Iam, aws: AwsCli, dockyard_server: DockyardServer) -> None:
    reader = iam.user(f"reader-{suffix()}", inline=policy(allow(["iam:Get*", "iam:List*"])))
    assert any(u["UserName"] == reader.name for u in aws("iam", "list-users", env=reader.env())["Users"])
    refused = aws("iam", "create-user", "--user-name", f"x-{suffix()}", "--path", "/p/", env=reader.env(), check=False)
    target = aws_error(refused).split("on resource: ")[1].split(" ")[0]
    assert aws_error(refused) == (
        f"An error occurred (AccessDenied) when calling the CreateUser operation: User: {reader.arn} is not "
        f"authorized to perform: iam:CreateUser on resource: {target} "
        "because no identity-based policy allows the iam:CreateUser action"
    )
    assert target.startswith(f"arn:aws:iam::{dockyard_server.account_id}:user/p/x-")
    denied = iam.user(f"nothing-{suffix()}")
    result = aws("iam", "get-user", "--user-name", denied.name, env=denied.env(), check=False)
    assert "(AccessDenied)" in aws_error(result)


def test_simulate_principal_policy(iam: Iam, dockyard_server: DockyardServer) -> None:
    user = iam.user(
        f"sim-{suffix()}",
        managed=("AmazonEC2ContainerRegistryReadOnly",),
        inline=policy({"Sid": "NoDelete", "Effect": "Deny", "Action": "ecr:BatchDeleteImage", "Resource": "*"}),
    )
    repo = f"arn:aws:ecr:{dockyard_server.region}:{dockyard_server.account_id}:repository/app"
    results = iam(
        "simulate-principal-policy",
        "--policy-source-arn",
        user.arn,
        "--action-names",
        "ecr:BatchGetImage",
        "ecr:PutImage",
        "ecr:BatchDeleteImage",
        "--resource-arns",
        repo,
    )["EvaluationResults"]
    decisions = {r["EvalActionName"]: r["EvalDecision"] for r in results}
    assert decisions == {
        "ecr:BatchGetImage": "allowed",
        "ecr:PutImage": "implicitDeny",
        "ecr:BatchDeleteImage": "explicitDeny",
    }
    by_action = {r["EvalActionName"]: r for r in results}
    assert by_action["ecr:BatchGetImage"]["MatchedStatements"] == [
        {"SourcePolicyId": "AmazonEC2ContainerRegistryReadOnly", "SourcePolicyType": "aws-managed"}
    ]
    assert by_action["ecr:BatchDeleteImage"]["MatchedStatements"] == [
        {"SourcePolicyId": "inline", "SourcePolicyType": "user"}
    ]
    assert by_action["ecr:BatchGetImage"]["EvalResourceName"] == repo


def test_simulate_custom_policy_with_a_repository_policy(iam: Iam, dockyard_server: DockyardServer) -> None:
    caller = iam.user(f"simc-{suffix()}")
    repo = f"arn:aws:ecr:{dockyard_server.region}:{dockyard_server.account_id}:repository/app"
    grant = policy({"Effect": "Allow", "Principal": {"AWS": caller.arn}, "Action": "ecr:BatchGetImage"})
    tls_only = policy({**allow("ecr:ListImages"), "Condition": {"Bool": {"aws:SecureTransport": "true"}}})
    results = iam(
        "simulate-custom-policy",
        "--policy-input-list",
        json.dumps(tls_only),
        "--action-names",
        "ecr:BatchGetImage",
        "ecr:ListImages",
        "--resource-arns",
        repo,
        "--resource-policy",
        json.dumps(grant),
        "--caller-arn",
        caller.arn,
        "--context-entries",
        "ContextKeyName=aws:SecureTransport,ContextKeyValues=true,ContextKeyType=boolean",
    )["EvaluationResults"]
    decisions = {r["EvalActionName"]: r["EvalDecision"] for r in results}
    assert decisions == {"ecr:BatchGetImage": "allowed", "ecr:ListImages": "allowed"}
    matched = {r["EvalActionName"]: r["MatchedStatements"] for r in results}
    assert matched["ecr:BatchGetImage"] == [{"SourcePolicyId": "ResourcePolicy", "SourcePolicyType": "resource"}]
    assert matched["ecr:ListImages"] == [{"SourcePolicyId": "PolicyInputList.1", "SourcePolicyType": "IAM Policy"}]
    plain = iam(
        "simulate-custom-policy",
        "--policy-input-list",
        json.dumps(tls_only),
        "--action-names",
        "ecr:ListImages",
    )["EvaluationResults"][0]
    assert plain["EvalDecision"] == "implicitDeny"


def test_auth_only_policy_gets_a_token_and_nothing_else(iam: Iam, aws: AwsCli) -> None:
    user = iam.user(f"auth-{suffix()}", inline=AUTH_ONLY)
    token = aws("ecr", "get-authorization-token", env=user.env())["authorizationData"][0]
    assert token["authorizationToken"]
    refused = aws("ecr", "describe-registry", env=user.env(), check=False)
    assert "(AccessDeniedException)" in aws_error(refused)


def test_admin_commands_manage_identities(aws: AwsCli, dockyard_server: DockyardServer) -> None:
    """`dockyard admin` does what the IAM API does, for people without the AWS CLI."""
    name = f"cli-{suffix()}"
    created = admin(dockyard_server, "create-user", name, "--path", "/ops/")["User"]
    assert created["Arn"] == f"arn:aws:iam::{dockyard_server.account_id}:user/ops/{name}"
    key = admin(dockyard_server, "create-access-key", name)["AccessKey"]
    admin(dockyard_server, "attach-policy", "user", name, "AmazonEC2ContainerRegistryReadOnly")
    user = Identity(name, dockyard_server.account_id, key["AccessKeyId"], key["SecretAccessKey"], arn=created["Arn"])
    assert aws("sts", "get-caller-identity", env=user.env())["Arn"] == created["Arn"]
    assert "repositories" in aws("ecr", "describe-repositories", env=user.env())
    attached = aws("iam", "list-attached-user-policies", "--user-name", name)["AttachedPolicies"]
    assert attached == [
        {
            "PolicyName": "AmazonEC2ContainerRegistryReadOnly",
            "PolicyArn": "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
        }
    ]
    admin(dockyard_server, "update-access-key", key["AccessKeyId"], "--user-name", name, "--status", "Inactive")
    refused = aws("sts", "get-caller-identity", env=user.env(), check=False)
    assert "(InvalidClientTokenId)" in aws_error(refused)


def test_admin_commands_for_roles_groups_and_policies(aws: AwsCli, dockyard_server: DockyardServer) -> None:
    """Roles, groups and policies through `dockyard admin`, used through the real AWS CLI."""
    tag = suffix()
    account = dockyard_server.account_id
    user, role, group = f"adm-user-{tag}", f"adm-role-{tag}", f"adm-group-{tag}"
    created = admin(dockyard_server, "create-user", user)["User"]
    key = admin(dockyard_server, "create-access-key", user)["AccessKey"]
    me = Identity(user, account, key["AccessKeyId"], key["SecretAccessKey"], arn=created["Arn"])
    # Naming the account (not the user) delegates to the account's identity policies.
    trust = policy({"Effect": "Allow", "Principal": {"AWS": account}, "Action": "sts:AssumeRole"})
    role_arn = admin(dockyard_server, "create-role", role, json.dumps(trust), "--description", "CI")["Role"]["Arn"]
    assert role_arn == f"arn:aws:iam::{account}:role/{role}"
    assert role in [r["RoleName"] for r in admin(dockyard_server, "list-roles")["Roles"]]
    admin(dockyard_server, "attach-policy", "role", role, "AmazonEC2ContainerRegistryReadOnly")
    # The user may assume the role once a policy of its own allows it: through a group.
    admin(dockyard_server, "create-group", group)
    admin(dockyard_server, "add-user-to-group", group, user)
    assume = policy(allow("sts:AssumeRole", role_arn))
    admin(dockyard_server, "create-policy", f"assume-{tag}", json.dumps(assume))
    admin(dockyard_server, "attach-policy", "group", group, f"assume-{tag}")
    local = [p["PolicyName"] for p in admin(dockyard_server, "list-policies", "--scope", "Local")["Policies"]]
    assert f"assume-{tag}" in local
    assert group in [g["GroupName"] for g in admin(dockyard_server, "list-groups")["Groups"]]
    assumed = aws("sts", "assume-role", "--role-arn", role_arn, "--role-session-name", "ci", env=me.env())
    assert assumed["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{account}:assumed-role/{role}/ci"
    # Out of the group, the user's own policies no longer allow it.
    admin(dockyard_server, "remove-user-from-group", group, user)
    refused = aws("sts", "assume-role", "--role-arn", role_arn, "--role-session-name", "ci", env=me.env(), check=False)
    assert aws_error(refused).endswith("because no identity-based policy allows the sts:AssumeRole action")
    # Clean-up in IAM's order: policies detached before what they are attached to goes.
    admin(dockyard_server, "detach-policy", "group", group, f"assume-{tag}")
    admin(dockyard_server, "delete-policy", f"assume-{tag}")
    admin(dockyard_server, "delete-group", group)
    admin(dockyard_server, "detach-policy", "role", role, "AmazonEC2ContainerRegistryReadOnly")
    admin(dockyard_server, "put-policy", "role", role, "inline", json.dumps(policy(allow("ecr:ListImages"))))
    admin(dockyard_server, "delete-inline-policy", "role", role, "inline")
    admin(dockyard_server, "delete-role", role)
    assert role not in [r["RoleName"] for r in admin(dockyard_server, "list-roles")["Roles"]]
    missing = aws("iam", "get-role", "--role-name", role, check=False)
    assert aws_error(missing) == (
        "An error occurred (NoSuchEntity) when calling the GetRole operation: "
        f"The role with name {role} cannot be found."
    )
