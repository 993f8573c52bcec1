"""Lifecycle policies: the rule language's validation messages and how rules pick images to expire."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dockyard.core.errors import InvalidParameterException
from dockyard.core.operations.lifecycle import DAY, Candidate, evaluate, parse_policy

PREFIX = (
    "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: "
)


def rule(
    priority: int, tag_status: str = "untagged", count_type: str = "imageCountMoreThan", number: int = 1, **extra: Any
) -> dict[str, Any]:
    selection: dict[str, Any] = {"tagStatus": tag_status, "countType": count_type, "countNumber": number}
    if count_type == "sinceImagePushed":
        selection["countUnit"] = "days"
    selection.update(extra)
    return {"rulePriority": priority, "selection": selection, "action": {"type": "expire"}}


def policy(*rules: dict[str, Any]) -> str:
    return json.dumps({"rules": list(rules)})


def refusal(text: str) -> str:
    with pytest.raises(InvalidParameterException) as caught:
        parse_policy(text)
    message = caught.value.message
    assert message.startswith(PREFIX) and message.endswith("'")
    return message[len(PREFIX) : -1]


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("not json", "Could not map policyString into LifecyclePolicy."),
        ("[1, 2]", "Could not map policyString into LifecyclePolicy."),
        ("{}", 'object has missing required properties (["rules"])'),
        ('{"rules": [], "x": 1}', 'object instance has properties which are not allowed by the schema: ["x"]'),
        ('{"rules": {}}', 'instance type (object) does not match any allowed primitive type (allowed: ["array"])'),
        ('{"rules": []}', "array is too short: must have at least 1 elements but instance has 0 elements"),
        (
            '{"rules": [{"rulePriority": 1}]}',
            'object has missing required properties (["action","selection"])',
        ),
    ],
)
def test_schema_refusals_use_the_schema_validators_wording(document: str, reason: str) -> None:
    assert refusal(document) == reason


def test_rule_members_are_checked_one_by_one() -> None:
    bad_priority = rule(0)
    assert refusal(policy(bad_priority)) == "numeric instance is lower than the required minimum (minimum: 1, found: 0)"
    text_priority = rule(1) | {"rulePriority": "1"}
    assert (
        refusal(policy(text_priority))
        == 'instance type (string) does not match any allowed primitive type (allowed: ["integer"])'
    )
    bad_status = rule(1, tag_status="TAGGED")
    assert (
        refusal(policy(bad_status))
        == 'instance value ("TAGGED") not found in enum (possible values: ["tagged","untagged","any"])'
    )
    bad_action = rule(1) | {"action": {"type": "delete"}}
    assert (
        refusal(policy(bad_action))
        == 'instance value ("delete") not found in enum (possible values: ["expire","transition"])'
    )
    assert (
        refusal(policy(rule(1, number=0)))
        == "numeric instance is lower than the required minimum (minimum: 1, found: 0)"
    )


@pytest.mark.parametrize(
    "selection",
    [
        {"tagStatus": "any", "countType": "imageCountMoreThan", "countUnit": "days", "countNumber": 1},
        {"tagStatus": "any", "countType": "sinceImagePushed", "countNumber": 1},
        {"tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "hours", "countNumber": 1},
        {"tagStatus": "any", "countType": "imageCountLessThan", "countNumber": 1},
    ],
)
def test_count_type_and_unit_must_fit_one_form(selection: dict[str, Any]) -> None:
    document = {"rulePriority": 1, "selection": selection, "action": {"type": "expire"}}
    assert refusal(policy(document)) == "instance failed to match exactly one schema (matched 0 out of 2)"


def test_rule_set_rules() -> None:
    assert refusal(policy(rule(1), rule(2))) == "Only one rule can select Untagged images."
    assert refusal(policy(rule(1, "any"), rule(2))) == "Rule for tagStatus=ANY must have the lowest priority."
    assert refusal(policy(rule(1, "tagged"))) == "Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED."
    assert refusal(policy(rule(1), rule(1, "any"))) == "Rule priorities must be unique."
    too_wild = rule(1, "tagged", tagPatternList=["a*b*c*d*e*f"])
    assert "at most 4 wildcards" in refusal(policy(too_wild))
    assert "not both" in refusal(policy(rule(1, "tagged", tagPrefixList=["a"], tagPatternList=["a*"])))
    assert "only be used when tagStatus=TAGGED" in refusal(policy(rule(1, tagPrefixList=["a"])))


def test_a_valid_policy_parses_with_rules_in_priority_order() -> None:
    parsed = parse_policy(policy(rule(10, "any", number=5), rule(2, "tagged", tagPatternList=["prod*"]), rule(1)))
    assert [r.priority for r in parsed.rules] == [1, 2, 10]


def image(n: int, *tags: str, age_days: float = 0.0) -> Candidate:
    return Candidate(image_id=n, digest=f"sha256:{n:064x}", tags=tuple(tags), pushed_at=NOW - age_days * DAY + n)


NOW = 1_700_000_000.0


def expired_ids(text: str, candidates: list[Candidate], parents: dict[str, set[str]] | None = None) -> list[int]:
    return [e.image.image_id for e in evaluate(parse_policy(text), candidates, NOW, parents)]


def test_image_count_keeps_the_newest_and_expires_older_ones_oldest_first() -> None:
    candidates = [image(1), image(2), image(3), image(4, "v1")]
    assert expired_ids(policy(rule(1, number=1)), candidates) == [1, 2]


def test_since_image_pushed_expires_by_age() -> None:
    candidates = [image(1, "a", age_days=10), image(2, "b", age_days=3), image(3, "c")]
    assert expired_ids(policy(rule(1, "any", "sinceImagePushed", number=5)), candidates) == [1]


def test_prefixes_and_patterns_must_each_match_one_tag() -> None:
    candidates = [image(1, "prod-1", "stable"), image(2, "prod-2"), image(3, "dev-1"), image(4, "prod-3", "stable")]
    text = policy(rule(1, "tagged", number=1, tagPrefixList=["prod", "stable"]))
    assert expired_ids(text, candidates) == [1]
    text = policy(rule(1, "tagged", number=1, tagPatternList=["prod-*"]))
    assert expired_ids(text, candidates) == [1, 2]


def test_an_image_a_rule_selects_is_out_of_reach_of_later_rules_but_still_counted() -> None:
    # Rule 1 keeps the two newest prod images; rule 2 would expire everything but the newest one.
    candidates = [image(1, "prod-a"), image(2, "prod-b"), image(3, "dev"), image(4, "prod-c")]
    text = policy(rule(1, "tagged", number=2, tagPrefixList=["prod"]), rule(2, "any", number=1))
    expired = {e.image.image_id: e.rule.priority for e in evaluate(parse_policy(text), candidates, NOW)}
    # Image 1 falls to rule 1; the others prod images are selected (so protected) by rule 1; dev
    # is older than the newest image (4) that rule 2 counts, so rule 2 expires it.
    assert expired == {1: 1, 3: 2}


def test_an_image_an_index_refers_to_stays_while_the_index_stays() -> None:
    child, index, other = image(1), image(2, "multi"), image(3)
    parents = {child.digest: {index.digest}}
    # The untagged rule would expire the child (older than `other`), but its index stays.
    assert expired_ids(policy(rule(1, number=1)), [child, index, other], parents) == []
    # When the index expires in the same run, so may the child.
    assert expired_ids(policy(rule(1, "any", number=1)), [child, index, other], parents) == [1, 2]
