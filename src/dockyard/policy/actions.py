"""Amazon ECR's IAM action catalogue.

Every operation of the ECR API (botocore's ``ecr`` 2015-09-21 model) is authorised as an
``ecr:`` action. Repository-scoped actions are checked against the repository's ARN; the
others (authentication, registry-wide settings, pull-through cache rules, creation
templates, ...) only support ``"Resource": "*"``, as the Service Authorization Reference
lists them. Two actions are permission-only: they guard work ECR does on the caller's
behalf (pull-through cache imports, cross-account replication) rather than an API call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from dockyard.policy.patterns import PatternSet

ResourceScope = Literal["repository", "*"]
AccessLevel = Literal["Read", "Write", "List", "Tagging", "Permissions management"]

SERVICE_PREFIX = "ecr"


@dataclass(frozen=True, slots=True)
class EcrAction:
    name: str  # "ecr:BatchGetImage"
    resource: ResourceScope
    access_level: AccessLevel
    permission_only: bool = False

    @property
    def operation(self) -> str:
        """The action name without its service prefix."""
        return self.name.partition(":")[2]


def _action(
    operation: str, resource: ResourceScope, access_level: AccessLevel, *, permission_only: bool = False
) -> EcrAction:
    return EcrAction(f"{SERVICE_PREFIX}:{operation}", resource, access_level, permission_only)


_CATALOGUE: tuple[EcrAction, ...] = (
    _action("BatchCheckLayerAvailability", "repository", "Read"),
    _action("BatchDeleteImage", "repository", "Write"),
    _action("BatchGetImage", "repository", "Read"),
    _action("BatchGetRepositoryScanningConfiguration", "repository", "Read"),
    _action("BatchImportUpstreamImage", "repository", "Write", permission_only=True),
    _action("CompleteLayerUpload", "repository", "Write"),
    _action("CreatePullThroughCacheRule", "*", "Write"),
    _action("CreateRepository", "repository", "Write"),
    _action("CreateRepositoryCreationTemplate", "*", "Write"),
    _action("DeleteLifecyclePolicy", "repository", "Write"),
    _action("DeletePullThroughCacheRule", "*", "Write"),
    _action("DeleteRegistryPolicy", "*", "Permissions management"),
    _action("DeleteRepository", "repository", "Write"),
    _action("DeleteRepositoryCreationTemplate", "*", "Write"),
    _action("DeleteRepositoryPolicy", "repository", "Permissions management"),
    _action("DeleteSigningConfiguration", "*", "Write"),
    _action("DeregisterPullTimeUpdateExclusion", "*", "Write"),
    _action("DescribeImageReplicationStatus", "repository", "Read"),
    _action("DescribeImageScanFindings", "repository", "Read"),
    _action("DescribeImageSigningStatus", "repository", "Read"),
    _action("DescribeImages", "repository", "List"),
    _action("DescribePullThroughCacheRules", "*", "List"),
    _action("DescribeRegistry", "*", "Read"),
    _action("DescribeRepositories", "repository", "Read"),
    _action("DescribeRepositoryCreationTemplates", "*", "Read"),
    _action("GetAccountSetting", "*", "Read"),
    _action("GetAuthorizationToken", "*", "Read"),
    _action("GetDownloadUrlForLayer", "repository", "Read"),
    _action("GetLifecyclePolicy", "repository", "Read"),
    _action("GetLifecyclePolicyPreview", "repository", "Read"),
    _action("GetRegistryPolicy", "*", "Read"),
    _action("GetRegistryScanningConfiguration", "*", "Read"),
    _action("GetRepositoryPolicy", "repository", "Read"),
    _action("GetSigningConfiguration", "*", "Read"),
    _action("InitiateLayerUpload", "repository", "Write"),
    _action("ListImages", "repository", "List"),
    _action("ListPullTimeUpdateExclusions", "*", "List"),
    _action("ListTagsForResource", "repository", "Read"),
    _action("PutAccountSetting", "*", "Write"),
    _action("PutImage", "repository", "Write"),
    _action("PutImageScanningConfiguration", "repository", "Write"),
    _action("PutImageTagMutability", "repository", "Write"),
    _action("PutLifecyclePolicy", "repository", "Write"),
    _action("PutRegistryPolicy", "*", "Permissions management"),
    _action("PutRegistryScanningConfiguration", "*", "Write"),
    _action("PutReplicationConfiguration", "*", "Write"),
    _action("PutSigningConfiguration", "*", "Write"),
    _action("RegisterPullTimeUpdateExclusion", "*", "Write"),
    _action("ReplicateImage", "repository", "Write", permission_only=True),
    _action("SetRepositoryPolicy", "repository", "Permissions management"),
    _action("StartImageScan", "repository", "Write"),
    _action("StartLifecyclePolicyPreview", "repository", "Write"),
    _action("TagResource", "repository", "Tagging"),
    _action("UntagResource", "repository", "Tagging"),
    _action("UpdateImageStorageClass", "repository", "Write"),
    _action("UpdatePullThroughCacheRule", "*", "Write"),
    _action("UpdateRepositoryCreationTemplate", "*", "Write"),
    _action("UploadLayerPart", "repository", "Write"),
    _action("ValidatePullThroughCacheRule", "*", "Read"),
)

ACTIONS: Mapping[str, EcrAction] = {action.name: action for action in _CATALOGUE}
_BY_LOWER_NAME: Mapping[str, EcrAction] = {action.name.lower(): action for action in _CATALOGUE}

# API operations authorised by an action of a different name.
_OPERATION_ACTIONS: Mapping[str, str] = {"ListImageReferrers": "ecr:BatchGetImage"}


def get_action(name: str) -> EcrAction | None:
    """The catalogue entry for an action name (action names are case-insensitive)."""
    return _BY_LOWER_NAME.get(name.lower())


def action_for_operation(operation: str) -> EcrAction:
    """The action that authorises an ECR API operation, e.g. "PutImage" -> ecr:PutImage."""
    name = _OPERATION_ACTIONS.get(operation, f"{SERVICE_PREFIX}:{operation}")
    action = ACTIONS.get(name)
    if action is None or action.permission_only:
        raise KeyError(f"{operation} is not an Amazon ECR API operation")
    return action


def expand(pattern: str) -> tuple[EcrAction, ...]:
    """Catalogue actions an Action element value such as "ecr:*" or "ecr:Batch*" covers."""
    compiled = PatternSet([pattern], "glob", ignore_case=True)
    return tuple(action for action in _CATALOGUE if compiled.matches(action.name))


def repository_arn(region: str, account_id: str, repository_name: str) -> str:
    return f"arn:aws:ecr:{region}:{account_id}:repository/{repository_name}"


def resource_for(action: EcrAction, *, region: str, account_id: str, repository_name: str | None) -> str:
    """The resource a request for ``action`` is authorised against: the repository's ARN for
    repository-scoped actions, otherwise "*"."""
    if action.resource == "repository" and repository_name is not None:
        return repository_arn(region, account_id, repository_name)
    return "*"
