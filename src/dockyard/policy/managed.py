"""AWS managed policies for Amazon ECR.

FullAccess, PowerUser and ReadOnly are the documents the ECR User Guide prints; PullOnly
(added to AWS in October 2024) is today's version 1 document. All live under the ``aws``
pseudo-account at path "/".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dockyard.policy.language import Policy, parse_identity_policy

MANAGED_POLICY_ARN_PREFIX = "arn:aws:iam::aws:policy/"

_FULL_ACCESS = """{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "ecr:*"
      ],
      "Resource": "*"
    }
  ]
}"""

_POWER_USER = """{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "ecr:GetAuthorizationToken",
        "ecr:BatchCheckLayerAvailability",
        "ecr:GetDownloadUrlForLayer",
        "ecr:GetRepositoryPolicy",
        "ecr:DescribeRepositories",
        "ecr:ListImages",
        "ecr:BatchGetImage",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:PutImage"
      ],
      "Resource": "*"
    }
  ]
}"""

_READ_ONLY = """{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "ecr:GetAuthorizationToken",
        "ecr:BatchCheckLayerAvailability",
        "ecr:GetDownloadUrlForLayer",
        "ecr:GetRepositoryPolicy",
        "ecr:DescribeRepositories",
        "ecr:ListImages",
        "ecr:BatchGetImage"
      ],
      "Resource": "*"
    }
  ]
}"""

_PULL_ONLY = """{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "ecr:GetAuthorizationToken",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchImportUpstreamImage"
      ],
      "Resource": "*"
    }
  ]
}"""


@dataclass(frozen=True, slots=True)
class ManagedPolicy:
    name: str
    description: str
    document: str  # the policy JSON text, as AWS serves it
    path: str = "/"
    default_version_id: str = "v1"
    policy: Policy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy", parse_identity_policy(self.document, managed=True))

    @property
    def arn(self) -> str:
        return f"{MANAGED_POLICY_ARN_PREFIX}{self.name}"


_POLICIES = (
    ManagedPolicy(
        "AmazonEC2ContainerRegistryFullAccess",
        "Provides administrative access to Amazon ECR resources",
        _FULL_ACCESS,
    ),
    ManagedPolicy(
        "AmazonEC2ContainerRegistryPowerUser",
        "Provides full access to Amazon EC2 Container Registry repositories, "
        "but does not allow repository deletion or policy changes.",
        _POWER_USER,
    ),
    ManagedPolicy(
        "AmazonEC2ContainerRegistryReadOnly",
        "Provides read-only access to Amazon EC2 Container Registry repositories.",
        _READ_ONLY,
    ),
    ManagedPolicy(
        "AmazonEC2ContainerRegistryPullOnly",
        "Provides access to pull images from Amazon EC2 Container Registry repositories.",
        _PULL_ONLY,
    ),
)

MANAGED_POLICIES: Mapping[str, ManagedPolicy] = {policy.arn: policy for policy in _POLICIES}
_BY_NAME: Mapping[str, ManagedPolicy] = {policy.name: policy for policy in _POLICIES}


def get_managed_policy(name_or_arn: str) -> ManagedPolicy | None:
    """An AWS managed ECR policy by its name or its ARN."""
    return MANAGED_POLICIES.get(name_or_arn) or _BY_NAME.get(name_or_arn)
