"""Replication's CloudTrail events: a worker that takes over a dead one's job records what the
dead one recorded under the same eventID, so a reader counts each write once; another round of
the job (a push re-opened it) records new events."""

from __future__ import annotations

import uuid
from typing import Any

from dockyard.core.replication.events import replication_event
from dockyard.core.replication.jobs import ReplicationJob

DIGEST = "sha256:" + "ab" * 32


def job(due_at: float) -> ReplicationJob:
    return ReplicationJob(7, "us-west-2", "210987654321", "123456789012", "us-east-1", 3, "app", DIGEST, 0, due_at)


def event(
    round_key: str, moment: float, name: str = "ReplicateImage", error: tuple[str, str] | None = None
) -> dict[str, Any]:
    return replication_event(
        name,
        source_account="123456789012",
        source_region="us-east-1",
        destination_account="210987654321",
        destination_region="us-west-2",
        repository="app",
        digest=DIGEST,
        moment=moment,
        round_key=round_key,
        error=error,
    )


def test_a_takeover_records_the_same_event_id() -> None:
    first = event(job(1000.25).round_key, 1001.0)
    again = event(job(1000.25).round_key, 1040.0)
    assert first["eventID"] == again["eventID"]
    assert first["eventTime"] != again["eventTime"]
    assert uuid.UUID(first["eventID"]).version == 4
    # Across accounts the shared event ID is the event's own, as CloudTrail shares it.
    assert first["sharedEventID"] == first["eventID"]


def test_each_round_and_record_has_its_own_event_id() -> None:
    key = job(1000.25).round_key
    ids = {
        event(key, 1001.0)["eventID"],
        event(job(1010.5).round_key, 1011.0)["eventID"],
        event(key, 1001.0, name="CreateRepository")["eventID"],
        event(key, 1001.0, error=("AccessDenied", "denied"))["eventID"],
    }
    assert len(ids) == 4
