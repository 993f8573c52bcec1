"""ECR's action catalogue and the AWS managed policies."""

from __future__ import annotations

import json
from datetime import UTC, datetime

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


def _actions(name: str, version_id: str | None = None) -> list[str]:
    """The actions of a managed policy's version (default: its default version), checking its shape."""
    policy = get_managed_policy(name)
    assert policy is not None
    version = policy.default if version_id is None else policy.version(version_id)
    assert version is not None
    document = json.loads(version.document)
    assert document["Version"] == "2012-10-17"
    statement = document["Statement"][0]
    assert statement["Effect"] == "Allow" and statement["Resource"] == "*"
    return statement["Action"]


_SEED_READ_ONLY = [
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:GetRepositoryPolicy",
    "ecr:DescribeRepositories",
    "ecr:ListImages",
    "ecr:BatchGetImage",
]
_PUSH = ["ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"]


def test_managed_policy_version_one_is_the_seed() -> None:
    assert _actions("AmazonEC2ContainerRegistryFullAccess", "v1") == ["ecr:*"]
    assert _actions("AmazonEC2ContainerRegistryReadOnly", "v1") == _SEED_READ_ONLY
    assert _actions("AmazonEC2ContainerRegistryPowerUser", "v1") == _SEED_READ_ONLY + _PUSH


def test_managed_policy_default_versions_are_todays() -> None:
    today_read = [
        *_SEED_READ_ONLY[:6],
        "ecr:DescribeImages",
        "ecr:BatchGetImage",
        "ecr:GetLifecyclePolicy",
        "ecr:GetLifecyclePolicyPreview",
        "ecr:ListTagsForResource",
        "ecr:DescribeImageScanFindings",
    ]
    assert _actions("AmazonEC2ContainerRegistryReadOnly") == today_read
    assert _actions("AmazonEC2ContainerRegistryPowerUser") == today_read + _PUSH
    assert _actions("AmazonEC2ContainerRegistryFullAccess") == ["ecr:*", "cloudtrail:LookupEvents"]
    full = get_managed_policy("AmazonEC2ContainerRegistryFullAccess")
    assert full is not None
    assert json.loads(full.document)["Statement"][1] == {
        "Effect": "Allow",
        "Action": ["iam:CreateServiceLinkedRole"],
        "Resource": "*",
        "Condition": {"StringEquals": {"iam:AWSServiceName": ["replication.ecr.amazonaws.com"]}},
    }
    assert _actions("AmazonEC2ContainerRegistryPullOnly") == [
        "ecr:GetAuthorizationToken",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchImportUpstreamImage",
    ]


def test_managed_policy_version_history() -> None:
    def history(name: str) -> list[tuple[str, str]]:
        policy = get_managed_policy(name)
        assert policy is not None
        return [
            (version.version_id, datetime.fromtimestamp(version.created_at, UTC).isoformat())
            for version in policy.versions
        ]

    assert history("AmazonEC2ContainerRegistryReadOnly") == [
        ("v1", "2015-12-21T17:04:00+00:00"),
        ("v2", "2016-10-11T22:08:43+00:00"),
        ("v3", "2019-12-10T20:56:32+00:00"),
    ]
    assert history("AmazonEC2ContainerRegistryPullOnly") == [("v1", "2024-10-04T16:58:49+00:00")]
    read_only = get_managed_policy("AmazonEC2ContainerRegistryReadOnly")
    assert read_only is not None
    assert read_only.default_version_id == "v3"
    assert read_only.created_at == read_only.versions[0].created_at
    assert read_only.updated_at == read_only.versions[-1].created_at
    assert read_only.version("v4") is None


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
            [
                "ecr:GetAuthorizationToken",
                "ecr:BatchGetImage",
                "ecr:ListImages",
                "ecr:DescribeRepositories",
                "ecr:DescribeImages",
                "ecr:DescribeImageScanFindings",
                "ecr:GetLifecyclePolicy",
                "ecr:ListTagsForResource",
            ],
            ["ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:DeleteRepository", "ecr:SetRepositoryPolicy"],
        ),
        (
            "AmazonEC2ContainerRegistryPowerUser",
            [
                "ecr:PutImage",
                "ecr:CompleteLayerUpload",
                "ecr:BatchGetImage",
                "ecr:GetRepositoryPolicy",
                "ecr:DescribeImages",
                "ecr:GetLifecyclePolicyPreview",
            ],
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
