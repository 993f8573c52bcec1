"""The CloudTrail events replication leaves in the destination registry's account: ECR records
the CreateRepository and ReplicateImage calls its replication makes there, failed ones with
their error, so that the destination's owner sees what was written into (or refused by) it.

An event's ID is derived from the job's round (jobs.ReplicationJob.round_key) and what it
records, so a worker that takes over the job of one that died after recording an event records
it under the same ID: the trail may then hold it twice, as CloudTrail's delivery may, and
readers count it once by its eventID."""

from __future__ import annotations

import hashlib
from typing import Any

from dockyard.audit.events import ECR_SOURCE, EVENT_VERSION, event_time


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
    round_key: str,
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
        "eventID": _event_id(round_key, name, digest, error),
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


def _event_id(round_key: str, name: str, digest: str | None, error: tuple[str, str] | None) -> str:
    """A UUID-shaped ID that is the same for the same record of the same round."""
    text = hashlib.sha256(f"{round_key}|{name}|{digest}|{error and error[0]}".encode()).hexdigest()
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{'89ab'[int(text[16], 16) & 3]}{text[17:20]}-{text[20:32]}"
