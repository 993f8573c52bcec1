"""The CloudTrail events replication leaves in the destination registry's account: ECR records
the CreateRepository and ReplicateImage calls its replication makes there, failed ones with
their error, so that the destination's owner sees what was written into (or refused by) it."""

from __future__ import annotations

from typing import Any

from dockyard.audit.events import ECR_SOURCE, EVENT_VERSION, event_time
from dockyard.observe.ids import new_ordered_id


def replication_event(
    name: str,
    *,
    source_account: str,
    source_region: str,
    destination_account: str,
    destination_region: str,
    repository: str,
    digest: str | None,
    moment: float,
    error: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """A CreateRepository or ReplicateImage event, as the replication service's call."""
    arn = f"arn:aws:ecr:{destination_region}:{destination_account}:repository/{repository}"
    parameters: dict[str, Any] = {
        "repositoryName": repository,
        "registryId": destination_account,
        "sourceRegistryId": source_account,
        "sourceRegion": source_region,
    }
    if digest is not None:
        parameters["imageDigest"] = digest
    event: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": {"type": "AWSService", "accountId": source_account, "invokedBy": ECR_SOURCE},
        "eventTime": event_time(moment),
        "eventSource": ECR_SOURCE,
        "eventName": name,
        "awsRegion": destination_region,
        "sourceIPAddress": ECR_SOURCE,
        "userAgent": ECR_SOURCE,
        "requestParameters": parameters,
        "responseElements": None,
        "eventID": new_ordered_id(),
        "readOnly": False,
        "resources": [{"accountId": destination_account, "type": "AWS::ECR::Repository", "ARN": arn}],
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": destination_account,
        "sharedEventID": None,
        "eventCategory": "Management",
    }
    if error is not None:
        event["errorCode"], event["errorMessage"] = error
    if source_account != destination_account:
        event["sharedEventID"] = event["eventID"]
    else:
        del event["sharedEventID"]
    return event
