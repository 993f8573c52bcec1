"""AWS managed policies for Amazon ECR, with their version history.

Version 1 of FullAccess, PowerUser and ReadOnly is the document the ECR User Guide of 2015
prints; the later versions and their dates are those of AWS's managed-policy reference (AWS
keeps every version of its managed policies, and evaluates the newest, the default). PullOnly
(October 2024) has a single version. All live under the ``aws`` pseudo-account at path "/".

The ECR Public policies (``AmazonElasticContainerRegistryPublic*``) grant ``ecr-public:``
actions of another API, and the ECR service-linked role policies cannot be attached to users,
so neither is served here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dockyard.policy.language import Policy, parse_identity_policy

MANAGED_POLICY_ARN_PREFIX = "arn:aws:iam::aws:policy/"


def _document(*statements: Mapping[str, Any]) -> str:
    """A policy's JSON text, laid out as AWS serves managed policies."""
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, indent=2)


def _allow(*actions: str) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": list(actions), "Resource": "*"}


def _when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass(frozen=True, slots=True)
class ManagedPolicyVersion:
    version_id: str
    document: str  # the policy JSON text, as AWS serves it
    created_at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class ManagedPolicy:
    """An AWS managed policy: its versions, oldest first; the last is the default."""

    name: str
    description: str
    versions: Sequence[ManagedPolicyVersion]
    path: str = "/"
    policy: Policy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.versions:
            raise ValueError(f"managed policy {self.name} has no version")
        object.__setattr__(self, "policy", parse_identity_policy(self.default.document, managed=True))

    @property
    def arn(self) -> str:
        return f"{MANAGED_POLICY_ARN_PREFIX}{self.name}"

    @property
    def default(self) -> ManagedPolicyVersion:
        return self.versions[-1]

    @property
    def default_version_id(self) -> str:
        return self.default.version_id

    @property
    def document(self) -> str:
        """The default version's document: the one IAM evaluates."""
        return self.default.document

    @property
    def created_at(self) -> float:
        return self.versions[0].created_at

    @property
    def updated_at(self) -> float:
        return self.default.created_at

    def version(self, version_id: str) -> ManagedPolicyVersion | None:
        return next((found for found in self.versions if found.version_id == version_id), None)


def _versions(*history: tuple[str, str]) -> tuple[ManagedPolicyVersion, ...]:
    """Versions v1, v2, ... from (creation time, document) pairs, oldest first."""
    return tuple(
        ManagedPolicyVersion(f"v{number}", document, _when(created))
        for number, (created, document) in enumerate(history, start=1)
    )


_PULL = (
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:GetRepositoryPolicy",
    "ecr:DescribeRepositories",
    "ecr:ListImages",
)
_PUSH = ("ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage")
# What the 2019 versions added for the console's read-only views.
_READ_2019 = (
    "ecr:GetLifecyclePolicy",
    "ecr:GetLifecyclePolicyPreview",
    "ecr:ListTagsForResource",
    "ecr:DescribeImageScanFindings",
)
_READ_V1 = (*_PULL, "ecr:BatchGetImage")
_READ_V2 = (*_PULL, "ecr:DescribeImages", "ecr:BatchGetImage")
_READ_V3 = (*_READ_V2, *_READ_2019)
_REPLICATION_ROLE = {
    "Effect": "Allow",
    "Action": ["iam:CreateServiceLinkedRole"],
    "Resource": "*",
    "Condition": {"StringEquals": {"iam:AWSServiceName": ["replication.ecr.amazonaws.com"]}},
}

_POLICIES = (
    ManagedPolicy(
        "AmazonEC2ContainerRegistryFullAccess",
        "Provides administrative access to Amazon ECR resources",
        _versions(
            ("2015-12-21T17:06:00+00:00", _document(_allow("ecr:*"))),
            ("2017-11-10T17:54:49+00:00", _document(_allow("ecr:*", "cloudtrail:LookupEvents"))),
            ("2020-12-05T00:04:19+00:00", _document(_allow("ecr:*", "cloudtrail:LookupEvents"), _REPLICATION_ROLE)),
        ),
    ),
    ManagedPolicy(
        "AmazonEC2ContainerRegistryPowerUser",
        "Provides full access to Amazon EC2 Container Registry repositories, "
        "but does not allow repository deletion or policy changes.",
        _versions(
            ("2015-12-21T17:05:00+00:00", _document(_allow(*_READ_V1, *_PUSH))),
            ("2016-10-11T22:28:07+00:00", _document(_allow(*_READ_V2, *_PUSH))),
            ("2019-12-10T20:48:08+00:00", _document(_allow(*_READ_V3, *_PUSH))),
        ),
    ),
    ManagedPolicy(
        "AmazonEC2ContainerRegistryReadOnly",
        "Provides read-only access to Amazon EC2 Container Registry repositories.",
        _versions(
            ("2015-12-21T17:04:00+00:00", _document(_allow(*_READ_V1))),
            ("2016-10-11T22:08:43+00:00", _document(_allow(*_READ_V2))),
            ("2019-12-10T20:56:32+00:00", _document(_allow(*_READ_V3))),
        ),
    ),
    ManagedPolicy(
        "AmazonEC2ContainerRegistryPullOnly",
        "Provides access to pull images from Amazon EC2 Container Registry repositories.",
        _versions(
            (
                "2024-10-04T16:58:49+00:00",
                _document(
                    _allow(
                        "ecr:GetAuthorizationToken",
                        "ecr:BatchGetImage",
                        "ecr:GetDownloadUrlForLayer",
                        "ecr:BatchImportUpstreamImage",
                    )
                ),
            ),
        ),
    ),
)

MANAGED_POLICIES: Mapping[str, ManagedPolicy] = {policy.arn: policy for policy in _POLICIES}
_BY_NAME: Mapping[str, ManagedPolicy] = {policy.name: policy for policy in _POLICIES}


def get_managed_policy(name_or_arn: str) -> ManagedPolicy | None:
    """An AWS managed ECR policy by its name or its ARN."""
    return MANAGED_POLICIES.get(name_or_arn) or _BY_NAME.get(name_or_arn)
