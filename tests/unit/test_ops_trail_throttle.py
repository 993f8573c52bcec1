"""The audit trail's files (durability, rotation, search, pages), token buckets and log scrubbing."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest

from dockyard.audit.events import event_time, lifecycle_events
from dockyard.audit.trail import AuditTrail, InvalidToken, Query
from dockyard.commands.operations import expand_rate_limit_presets
from dockyard.doors.throttle import RateLimit, TokenBuckets, parse_rate_limits
from dockyard.observe.ids import new_ordered_id
from dockyard.observe.logs import REDACTED, redact, scrub

ACCOUNT = "123456789012"


def event(
    n: int, name: str = "CreateRepository", when: float | None = None, account: str = ACCOUNT
) -> dict[str, object]:
    return {
        "eventVersion": "1.08",
        "userIdentity": {"type": "Root", "accountId": account, "arn": f"arn:aws:iam::{account}:root"},
        "eventTime": event_time(when if when is not None else time.time()),
        "eventSource": "ecr.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "requestParameters": {"repositoryName": f"repo{n}"},
        "eventID": f"{n:08d}-0000-0000-0000-000000000000",
        "readOnly": name.startswith("Describe"),
        "resources": [{"type": "AWS::ECR::Repository", "ARN": f"arn:aws:ecr:us-east-1:{account}:repository/repo{n}"}],
        "recipientAccountId": account,
    }


def test_durable_events_are_on_disk_when_recording_returns(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path, flush_seconds=60).start()
    try:
        asyncio.run(trail.record_durably(event(1)))
        lines = [json.loads(line) for f in trail.files() for line in f.read_text().splitlines()]
        assert [e["eventID"] for e in lines] == [event(1)["eventID"]]
        trail.record(event(2, "DescribeRepositories"))
        trail.flush()
        assert sum(len(f.read_text().splitlines()) for f in trail.files()) == 2
    finally:
        trail.close()


def test_read_only_events_reach_the_disk_within_the_flush_interval(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path, flush_seconds=0.2).start()
    try:
        trail.record(event(1, "DescribeRepositories"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(f.read_text() for f in trail.files()):
            time.sleep(0.05)
        assert any(f.read_text() for f in trail.files())
    finally:
        trail.close()


def test_files_rotate_past_their_size_and_search_spans_them(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path, max_file_bytes=2000).start()
    try:
        for n in range(40):
            trail.record(event(n))
            trail.flush()
        assert len(trail.files()) > 3
        query = Query(ACCOUNT, "us-east-1", time.time() - 60, time.time() + 60, limit=7)
        seen: list[str] = []
        token = None
        while True:
            page, token = trail.lookup(Query(**{**query.__dict__, "next_token": token}))
            assert len(page) <= 7
            seen += [e["eventID"] for e in page]
            if token is None:
                break
        assert sorted(seen) == sorted(str(event(n)["eventID"]) for n in range(40))
        assert len(seen) == len(set(seen))
    finally:
        trail.close()


def test_lookup_filters_by_attribute_time_and_account(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path).start()
    try:
        old = time.time() - 3600
        trail.record(event(1, "CreateRepository", when=old))
        trail.record(event(2, "DeleteRepository"))
        trail.record(event(3, "CreateRepository"))
        trail.record(event(4, "CreateRepository", account="210987654321"))
        trail.flush()
        recent = Query(
            ACCOUNT, "us-east-1", time.time() - 60, time.time() + 60, attribute=("EventName", "CreateRepository")
        )
        assert [e["eventID"] for e in trail.lookup(recent)[0]] == [event(3)["eventID"]]
        by_resource = Query(ACCOUNT, "us-east-1", 0, time.time() + 60, attribute=("ResourceName", "repo1"))
        assert [e["eventID"] for e in trail.lookup(by_resource)[0]] == [event(1)["eventID"]]
        with pytest.raises(InvalidToken):
            trail.lookup(Query(ACCOUNT, "us-east-1", 0, time.time(), next_token="not a token"))
    finally:
        trail.close()


def test_old_files_are_removed_after_the_retention(tmp_path: Path) -> None:
    stale = tmp_path / "20000101T000000Z-1-0001.jsonl"
    stale.write_text(json.dumps(event(1)) + "\n")
    old = time.time() - 10 * 86400
    import os

    os.utime(stale, (old, old))
    trail = AuditTrail(tmp_path, retention_days=1).start()
    trail.close()
    assert not stale.exists()


def test_token_buckets_allow_the_burst_then_the_rate() -> None:
    clock = [0.0]
    buckets = TokenBuckets({"GetAuthorizationToken": RateLimit(1, 50)}, clock=lambda: clock[0])
    assert all(buckets.try_take(ACCOUNT, "GetAuthorizationToken") for _ in range(50))
    assert not buckets.try_take(ACCOUNT, "GetAuthorizationToken")
    assert buckets.try_take("210987654321", "GetAuthorizationToken"), "buckets are per account"
    assert buckets.try_take(ACCOUNT, "DescribeRepositories"), "operations without a limit are not limited"
    clock[0] += 1.0
    assert buckets.try_take(ACCOUNT, "GetAuthorizationToken")
    assert not buckets.try_take(ACCOUNT, "GetAuthorizationToken")


def test_rate_limit_specs() -> None:
    limits = parse_rate_limits(["BatchGetImage=2000:4000,PutImage=10", "GetAuthorizationToken=off", "*=100:200"])
    assert limits["BatchGetImage"] == RateLimit(2000, 4000)
    assert limits["PutImage"] == RateLimit(10, 10)
    assert limits["*"] == RateLimit(100, 200)
    assert "GetAuthorizationToken" not in limits
    assert parse_rate_limits([]) == {"GetAuthorizationToken": RateLimit(1, 50)}
    with pytest.raises(ValueError):
        parse_rate_limits(["PutImage"])
    with pytest.raises(ValueError):
        parse_rate_limits(["PutImage=0"])


def test_secrets_are_scrubbed_from_text_and_structures() -> None:
    text = scrub("Authorization: Basic QVdTOnNlY3JldHRva2Vu and X-Amz-Security-Token=FQoGZXIvYXdzE password=hunter2")
    assert "QVdTOnNlY3JldHRva2Vu" not in text and "FQoGZXIvYXdzE" not in text and "hunter2" not in text
    document = redact(
        {
            "credentials": {"accessKeyId": "ASIAEXAMPLE", "secretAccessKey": "s3cr3t", "sessionToken": "tok"},
            "authorizationData": [{"authorizationToken": "QVdT", "proxyEndpoint": "https://x"}],
            "Password": "p",
        }
    )
    assert document["credentials"]["accessKeyId"] == "ASIAEXAMPLE"
    assert document["credentials"]["secretAccessKey"] == REDACTED
    assert document["credentials"]["sessionToken"] == REDACTED
    assert document["authorizationData"][0]["authorizationToken"] == REDACTED
    assert document["Password"] == REDACTED


def test_event_ids_are_uuids_that_sort_in_creation_order() -> None:
    made = [new_ordered_id() for _ in range(5000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(uuid.UUID(text).version == 4 and str(uuid.UUID(text)) == text for text in made)


def test_the_ecr_preset_spells_out_ecrs_published_quotas() -> None:
    limits = parse_rate_limits(expand_rate_limit_presets(["ECR", "PutImage=20:40,BatchGetImage=off"]))
    assert limits["GetAuthorizationToken"] == RateLimit(1.0, 50.0)
    assert limits["InitiateLayerUpload"] == RateLimit(100.0, 100.0)
    assert limits["GetDownloadUrlForLayer"] == RateLimit(3000.0, 3000.0)
    assert limits["PutImage"] == RateLimit(20.0, 40.0), "later items override the preset"
    assert "BatchGetImage" not in limits


def test_lifecycle_runs_become_policy_execution_events_of_at_most_nine_images() -> None:
    rule = {
        "rulePriority": 1,
        "description": "keep three",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 3},
        "action": {"type": "expire"},
    }
    expired = [
        {"digest": f"sha256:{n:064x}", "tags": () if n % 2 else ("v1",), "pushedAt": 1584042813.5, "rulePriority": 1}
        for n in range(20)
    ]
    events = lifecycle_events(ACCOUNT, "us-east-1", "app", [rule], expired, time.time())
    details = [e["serviceEventDetails"] for e in events]
    assert [len(d["lifecycleEventImageActions"]) for d in details] == [9, 9, 2]
    assert [a["lifecycleEventImage"]["digest"] for d in details for a in d["lifecycleEventImageActions"]] == [
        e["digest"] for e in expired
    ]
    assert details[0]["lifecycleEventImageActions"][:2] == [
        {
            "lifecycleEventImage": {
                "digest": expired[0]["digest"], "tagStatus": "Tagged", "tagList": ["v1"], "pushedAt": 1584042813500,
            },
            "rulePriority": 1,
        },
        {
            "lifecycleEventImage": {
                "digest": expired[1]["digest"], "tagStatus": "Untagged", "tagList": [], "pushedAt": 1584042813500,
            },
            "rulePriority": 1,
        },
    ]  # fmt: skip
    policy = details[0]["lifecycleEventPolicy"]
    assert policy["lifecycleEventRules"] == [
        {
            "rulePriority": 1,
            "description": "keep three",
            "lifecycleEventSelection": {
                "tagStatus": "Any", "tagPrefixList": [], "countType": "Image count more than", "countNumber": 3,
            },
            "action": "expire",
        }
    ]  # fmt: skip
    assert all(d["lifecycleEventPolicy"] == policy for d in details), "one policy, one policyId"
    assert all(e["readOnly"] is True and e["eventType"] == "AwsServiceEvent" for e in events)
    assert len({e["eventID"] for e in events}) == 3
