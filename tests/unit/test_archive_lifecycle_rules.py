"""Lifecycle rules for the archive storage class: the transition action, storageClass selections,
sinceImagePulled and sinceImageTransitioned, as ECR's lifecycle documentation describes them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dockyard.core.errors import InvalidParameterException
from dockyard.core.operations.lifecycle import DAY, Candidate, evaluate, parse_policy, preview_result, preview_summary

NOW = 1_700_000_000.0


def rule(selection: dict[str, Any], action: dict[str, Any], priority: int = 1) -> dict[str, Any]:
    return {"rulePriority": priority, "selection": {"tagStatus": "any", **selection}, "action": action}


def text(*rules: dict[str, Any]) -> str:
    return json.dumps({"rules": list(rules)})


TRANSITION = {"type": "transition", "targetStorageClass": "archive"}
AGE = {"countUnit": "days", "countNumber": 30}


def refused(policy: str) -> str:
    with pytest.raises(InvalidParameterException) as caught:
        parse_policy(policy)
    return caught.value.message


def test_transition_rules_are_validated() -> None:
    assert (
        parse_policy(text(rule({"countType": "sinceImagePulled", **AGE}, TRANSITION))).rules[0].action == "transition"
    )
    assert "targetStorageClass is required" in refused(
        text(rule({"countType": "sinceImagePushed", **AGE}, {"type": "transition"}))
    )
    assert 'not found in enum (possible values: ["archive"])' in refused(
        text(rule({"countType": "sinceImagePushed", **AGE}, {"type": "transition", "targetStorageClass": "glacier"}))
    )
    assert "only be used when action type=TRANSITION" in refused(
        text(rule({"countType": "sinceImagePushed", **AGE}, {"type": "expire", "targetStorageClass": "archive"}))
    )
    assert "storageClass is required" in refused(
        text(rule({"countType": "sinceImageTransitioned", "countUnit": "days", "countNumber": 90}, {"type": "expire"}))
    )
    archived_age = {"countType": "sinceImageTransitioned", "countUnit": "days", "storageClass": "archive"}
    assert "minimum storage duration of 90 days" in refused(
        text(rule({**archived_age, "countNumber": 30}, {"type": "expire"}))
    )
    assert "can only be used with storageClass=standard" in refused(
        text(rule({"countType": "imageCountMoreThan", "countNumber": 1, "storageClass": "archive"}, {"type": "expire"}))
    )
    assert "Only images in storageClass=standard" in refused(
        text(rule({**archived_age, "countNumber": 90}, TRANSITION))
    )


def test_rules_select_their_storage_class_and_count_from_pull_and_archive_times() -> None:
    pulled_lately = Candidate(1, "sha256:" + "1" * 64, ("a",), NOW - 100 * DAY, "ACTIVE", NOW - DAY)
    never_pulled = Candidate(2, "sha256:" + "2" * 64, ("b",), NOW - 100 * DAY, "ACTIVE", None)
    archived_long_ago = Candidate(3, "sha256:" + "3" * 64, ("c",), NOW - 400 * DAY, "ARCHIVED", None, NOW - 200 * DAY)
    archived_lately = Candidate(4, "sha256:" + "4" * 64, ("d",), NOW - 400 * DAY, "ARCHIVED", None, NOW - 10 * DAY)
    everything = [pulled_lately, never_pulled, archived_long_ago, archived_lately]
    policy = parse_policy(
        text(
            rule({"countType": "sinceImagePulled", **AGE}, TRANSITION, 1),
            rule(
                {
                    "countType": "sinceImageTransitioned",
                    "countUnit": "days",
                    "countNumber": 90,
                    "storageClass": "archive",
                },
                {"type": "expire"},
                2,
            ),
        )
    )
    outcome = {e.image.image_id: e.rule.action for e in evaluate(policy, everything, NOW)}
    assert outcome == {2: "transition", 3: "expire"}
    results = [preview_result(e) for e in evaluate(policy, everything, NOW)]
    assert preview_summary(results) == {
        "expiringImageTotalCount": 1,
        "transitioningImageTotalCounts": [{"targetStorageClass": "ARCHIVE", "imageTotalCount": 1}],
    }
    assert {r["imageDigest"][-1]: (r["action"]["type"], r["storageClass"]) for r in results} == {
        "2": ("TRANSITION", "STANDARD"),
        "3": ("EXPIRE", "ARCHIVE"),
    }
