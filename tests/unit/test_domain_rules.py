"""The rules every door applies, kept once in the core: IAM user names, tag-mutability exclusion
filters and statement IDs. The core refuses with the API's own message (byte for byte what the
ECR and IAM doors answer), and says the same in plain words for the console."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.core.errors import DockyardError, InvalidParameterException
from dockyard.core.identity import iam_common, iam_entities
from dockyard.core.identity.iam_errors import ValidationError
from dockyard.core.registry import repositories, repository_settings
from dockyard.core.services import Services
from dockyard.doors.aws_json import ServiceModel
from dockyard.doors.aws_json import ValidationError as JsonValidationError
from dockyard.doors.aws_query import QueryModel, QueryValidationError
from dockyard.policy.language import SID_NOT_ALPHANUMERIC, PolicyError, parse_identity_policy, sid_problem
from tests.support.console_app import ACCOUNT, Console, console_app, root

BAD_USER_NAMES = ["has space", "u" * 300, "<img src=x>", "ünïcode"]
BAD_FILTERS: list[list[dict[str, str]]] = [
    [{"filterType": "WILDCARD", "filter": "<img src=x onerror=alert(1)>"}],
    [{"filterType": "WILDCARD", "filter": "f" * 300}],
    [{"filterType": "WILDCARD", "filter": f"tag{n}-*"} for n in range(12)],
    [{"filterType": "WILDCARD", "filter": "ok"}, {"filterType": "WILDCARD", "filter": "not ok"}],
]


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    yield from console_app(tmp_path)


def _iam_door_message(name: str) -> str:
    try:
        QueryModel("iam").parse_input("CreateUser", {"Action": "CreateUser", "Version": "2010-05-08", "UserName": name})
    except QueryValidationError as exc:
        return str(exc.message)
    raise AssertionError(f"the IAM door accepted {name!r}")


def _ecr_door_message(filters: list[dict[str, str]]) -> str:
    request = {
        "repositoryName": "app",
        "imageTagMutability": "MUTABLE_WITH_EXCLUSION",
        "imageTagMutabilityExclusionFilters": filters,
    }
    try:
        ServiceModel("ecr").validate_input("PutImageTagMutability", request)
    except JsonValidationError as exc:
        return str(exc.message)
    raise AssertionError(f"the ECR door accepted {filters!r}")


@pytest.mark.parametrize("name", BAD_USER_NAMES)
def test_user_name_rule_is_the_iam_apis(name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        iam_common.validate_user_name(name)
    assert refused.value.message == _iam_door_message(name)
    problem = iam_common.user_name_problem(name)
    assert problem is not None and "pattern" not in problem and "[" not in problem  # plain words


def test_good_user_names_pass() -> None:
    for name in ("alice", "ci+bot@example.com", "a" * 64, "A_b-c.d=e,f"):
        assert iam_common.user_name_problem(name) is None
        assert iam_common.validate_user_name(name) == name


@pytest.mark.parametrize("filters", BAD_FILTERS, ids=["markup", "300-characters", "12-filters", "space"])
def test_exclusion_filter_rule_is_the_ecr_apis(filters: list[dict[str, str]]) -> None:
    with pytest.raises(InvalidParameterException) as refused:
        repositories.validate_exclusion_filters(filters)
    assert refused.value.message == _ecr_door_message(filters)
    problem = repositories.exclusion_filters_problem(filters)
    assert problem is not None and "regular expression" not in problem


def test_sid_rule_is_the_policy_languages() -> None:
    assert sid_problem("S" * 300) is None  # IAM sets no length: the console claims none either
    problem = sid_problem("Not Alphanumeric")
    assert problem is not None and "letters and digits" in problem
    statement = {"Sid": "Not Alphanumeric", "Effect": "Allow", "Action": "ecr:*", "Resource": "*"}
    text = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    with pytest.raises(PolicyError) as refused:
        parse_identity_policy(text)
    assert refused.value.message == SID_NOT_ALPHANUMERIC


def test_the_core_refuses_whichever_door_calls(console: Console) -> None:
    """Called directly (as the console does), the core stores nothing the API would refuse."""

    async def attempt(svc: Services) -> list[Any]:
        outcomes: list[Any] = []
        for name in BAD_USER_NAMES:
            try:
                await iam_entities.create_user(svc, root(), name)
                outcomes.append(name)
            except DockyardError as exc:
                outcomes.append(exc.code)
        await repositories.create_repository(svc, root(), ACCOUNT, "app", repositories.RepositorySettings())
        for filters in BAD_FILTERS:
            try:
                await repository_settings.put_image_tag_mutability(
                    svc, root(), ACCOUNT, "app", "MUTABLE_WITH_EXCLUSION", filters
                )
                outcomes.append(filters)
            except DockyardError as exc:
                outcomes.append(exc.code)
        listed = await iam_entities.list_users(svc, root(), None, None, None)
        outcomes.append([user["UserName"] for user in listed["Users"]])
        return outcomes

    outcomes = console.run(attempt)
    assert outcomes == ["ValidationError"] * 4 + ["InvalidParameterException"] * 4 + [[]]
