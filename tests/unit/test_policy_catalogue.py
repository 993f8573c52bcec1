"""ECR's action catalogue and the AWS managed policies."""

from __future__ import annotations

import json

import botocore.session
import pytest

from dockyard.policy.actions import (
    ACTIONS,
    action_for_operation,
    expand,
    get_action,
    repository_arn,
    resource_for,
)
from dockyard.policy.evaluate import Principal, Request, evaluate
from dockyard.policy.managed import MANAGED_POLICIES, get_managed_policy

ACCOUNT = "123456789012"
REPO = repository_arn("us-east-1", ACCOUNT, "app")
USER = Principal.iam_user(ACCOUNT, "alice", "AIDAALICEALICEALICE1")

# The seed's "Supported Resource-Level Permissions for Amazon ECR API Actions" table.
SEED_REPOSITORY_ACTIONS = [
    "BatchCheckLayerAvailability",
    "BatchDeleteImage",
    "BatchGetImage",
    "CompleteLayerUpload",
    "DeleteRepository",
    "DeleteRepositoryPolicy",
    "DescribeRepositories",
    "GetDownloadUrlForLayer",
    "GetRepositoryPolicy",
    "InitiateLayerUpload",
    "ListImages",
    "PutImage",
    "SetRepositoryPolicy",
    "UploadLayerPart",
]
REGISTRY_LEVEL_ACTIONS = [
    "GetAuthorizationToken",
    "DescribeRegistry",
    "GetRegistryPolicy",
    "PutRegistryPolicy",
    "DeleteRegistryPolicy",
    "GetRegistryScanningConfiguration",
    "PutRegistryScanningConfiguration",
    "PutReplicationConfiguration",
    "CreateRepositoryCreationTemplate",
    "DeleteRepositoryCreationTemplate",
    "DescribeRepositoryCreationTemplates",
    "UpdateRepositoryCreationTemplate",
    "CreatePullThroughCacheRule",
    "DescribePullThroughCacheRules",
]


def ecr_operations() -> list[str]:
    return sorted(botocore.session.get_session().get_service_model("ecr").operation_names)


@pytest.mark.parametrize("operation", ecr_operations())
def test_every_ecr_operation_has_an_action(operation: str) -> None:
    action = action_for_operation(operation)
    assert action.name.startswith("ecr:")
    assert not action.permission_only


def test_operations_authorised_by_another_action() -> None:
    assert action_for_operation("ListImageReferrers").name == "ecr:BatchGetImage"


def test_permission_only_actions_are_not_operations() -> None:
    for name in ("ecr:BatchImportUpstreamImage", "ecr:ReplicateImage"):
        action = ACTIONS[name]
        assert action.permission_only
        with pytest.raises(KeyError):
            action_for_operation(action.operation)
    with pytest.raises(KeyError):
        action_for_operation("NoSuchOperation")


@pytest.mark.parametrize("operation", SEED_REPOSITORY_ACTIONS)
def test_seed_resource_level_actions_take_a_repository(operation: str) -> None:
    assert ACTIONS[f"ecr:{operation}"].resource == "repository"


@pytest.mark.parametrize("operation", REGISTRY_LEVEL_ACTIONS)
def test_registry_level_actions_need_star(operation: str) -> None:
    assert ACTIONS[f"ecr:{operation}"].resource == "*"


def test_lookup_is_case_insensitive() -> None:
    action = get_action("ECR:batchgetimage")
    assert action is not None and action.name == "ecr:BatchGetImage"
    assert action.operation == "BatchGetImage"
    assert get_action("ecr:Nope") is None


def test_expand_wildcards() -> None:
    assert len(expand("ecr:*")) == len(ACTIONS)
    assert expand("*") == expand("ecr:*")
    assert {a.name for a in expand("ecr:Batch*")} == {
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchDeleteImage",
        "ecr:BatchGetImage",
        "ecr:BatchGetRepositoryScanningConfiguration",
        "ecr:BatchImportUpstreamImage",
    }
    assert [a.name for a in expand("ECR:putimage")] == ["ecr:PutImage"]
    assert expand("s3:*") == ()


def test_resource_for() -> None:
    assert resource_for(ACTIONS["ecr:PutImage"], region="us-east-1", account_id=ACCOUNT, repository_name="app") == REPO
    assert (
        resource_for(
            ACTIONS["ecr:GetAuthorizationToken"], region="us-east-1", account_id=ACCOUNT, repository_name="app"
        )
        == "*"
    )
    assert (
        resource_for(ACTIONS["ecr:DescribeRepositories"], region="us-east-1", account_id=ACCOUNT, repository_name=None)
        == "*"
    )
    assert REPO == "arn:aws:ecr:us-east-1:123456789012:repository/app"


# --- managed policies ----------------------------------------------------------------------------


def test_managed_policy_identities() -> None:
    assert sorted(MANAGED_POLICIES) == [
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryFullAccess",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    ]
    read_only = get_managed_policy("AmazonEC2ContainerRegistryReadOnly")
    assert read_only is get_managed_policy("arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
    assert read_only is not None
    assert read_only.description == "Provides read-only access to Amazon EC2 Container Registry repositories."
    assert read_only.path == "/"
    assert get_managed_policy("AdministratorAccess") is None


def test_managed_policy_documents() -> None:
    def actions(name: str) -> list[str]:
        policy = get_managed_policy(name)
        assert policy is not None
        document = json.loads(policy.document)
        assert document["Version"] == "2012-10-17"
        [statement] = document["Statement"]
        assert statement["Effect"] == "Allow" and statement["Resource"] == "*"
        return statement["Action"]

    assert actions("AmazonEC2ContainerRegistryFullAccess") == ["ecr:*"]
    read_only = [
        "ecr:GetAuthorizationToken",
        "ecr:BatchCheckLayerAvailability",
        "ecr:GetDownloadUrlForLayer",
        "ecr:GetRepositoryPolicy",
        "ecr:DescribeRepositories",
        "ecr:ListImages",
        "ecr:BatchGetImage",
    ]
    assert actions("AmazonEC2ContainerRegistryReadOnly") == read_only
    push = ["ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"]
    assert actions("AmazonEC2ContainerRegistryPowerUser") == read_only + push
    assert actions("AmazonEC2ContainerRegistryPullOnly") == [
        "ecr:GetAuthorizationToken",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchImportUpstreamImage",
    ]


def allows(policy_name: str, action: str) -> bool:
    policy = get_managed_policy(policy_name)
    assert policy is not None
    resource = resource_for(ACTIONS[action], region="us-east-1", account_id=ACCOUNT, repository_name="app")
    return evaluate(Request(USER, action, resource, ACCOUNT), [policy.policy], None).allowed


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_full_access_allows_every_action(action: str) -> None:
    assert allows("AmazonEC2ContainerRegistryFullAccess", action)


@pytest.mark.parametrize(
    ("policy_name", "allowed", "denied"),
    [
        (
            "AmazonEC2ContainerRegistryReadOnly",
            ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:ListImages", "ecr:DescribeRepositories"],
            ["ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:DeleteRepository", "ecr:SetRepositoryPolicy"],
        ),
        (
            "AmazonEC2ContainerRegistryPowerUser",
            ["ecr:PutImage", "ecr:CompleteLayerUpload", "ecr:BatchGetImage", "ecr:GetRepositoryPolicy"],
            ["ecr:DeleteRepository", "ecr:SetRepositoryPolicy", "ecr:DeleteRepositoryPolicy", "ecr:BatchDeleteImage"],
        ),
        (
            "AmazonEC2ContainerRegistryPullOnly",
            [
                "ecr:GetAuthorizationToken",
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
                "ecr:BatchImportUpstreamImage",
            ],
            ["ecr:BatchCheckLayerAvailability", "ecr:ListImages", "ecr:PutImage", "ecr:DescribeRepositories"],
        ),
    ],
)
def test_managed_policy_decisions(policy_name: str, allowed: list[str], denied: list[str]) -> None:
    for action in allowed:
        assert allows(policy_name, action), action
    for action in denied:
        assert not allows(policy_name, action), action
