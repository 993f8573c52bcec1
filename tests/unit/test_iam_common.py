"""Paging with Marker/MaxItems and the small checks IAM operations share."""

from __future__ import annotations

import pytest

from dockyard.core.identity.iam_common import check_path, check_tags, iam_arn, paginate, unique_id
from dockyard.core.identity.iam_errors import InvalidInput, ValidationError


def test_pages_follow_each_other_until_the_end() -> None:
    names = [f"user{index:02d}" for index in range(7)]
    seen: list[str] = []
    marker = None
    while True:
        page, more = paginate(names, lambda name: name, marker, 3)
        seen += page
        if not more["IsTruncated"]:
            assert "Marker" not in more
            break
        marker = more["Marker"]
    assert seen == names


def test_default_page_is_a_hundred() -> None:
    page, more = paginate(list(range(150)), lambda n: f"{n:03d}", None, None)
    assert len(page) == 100 and more["IsTruncated"] is True


def test_a_forged_marker_is_refused() -> None:
    with pytest.raises(InvalidInput):
        paginate(["a"], lambda name: name, "not-a-marker", None)


def test_paths_and_arns() -> None:
    assert check_path(None) == "/"
    assert iam_arn("123456789012", "user", "/a/b/", "bob") == "arn:aws:iam::123456789012:user/a/b/bob"
    with pytest.raises(ValidationError):
        check_path("/a//b/")


def test_tags_keys_are_unique_whatever_their_case() -> None:
    assert check_tags([{"Key": "team"}]) == [{"Key": "team", "Value": ""}]
    with pytest.raises(InvalidInput):
        check_tags([{"Key": "Team", "Value": "a"}, {"Key": "team", "Value": "b"}])


def test_unique_ids_look_like_iams() -> None:
    identifier = unique_id("AIDA")
    assert identifier.startswith("AIDA") and len(identifier) == 21 and identifier.isupper()
