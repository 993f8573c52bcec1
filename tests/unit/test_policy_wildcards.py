"""Wildcards (Action, Resource, StringLike, ArnLike) mean exactly what they mean in AWS, and cost
time linear in the value: patterns such as ``*a*a*a*a*a*a*a*b`` that make a backtracking regular
expression explore every way of sharing a long value out between the stars finish at once."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.policy import patterns as patterns_module
from dockyard.policy.conditions import compile_condition
from dockyard.policy.patterns import PatternSet, wildcard_match

SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
# Generous for a loaded machine: the cases take milliseconds; a backtracking matcher needs longer
# than the age of the universe for the first of them.
BUDGET_SECONDS = 5.0
CHILD_TIMEOUT = 120.0

patterns = st.text(alphabet="ab*?:/\n", max_size=10)
values = st.text(alphabet="ab:/\n", max_size=12)


class Context:
    def __init__(self, values: dict[str, tuple[str, ...]]) -> None:
        self._values = values

    def values(self, key: str) -> tuple[str, ...] | None:
        return self._values.get(key)


# --- references: the obvious regular-expression definitions, fine on short inputs ----------------


def reference_glob(pattern: str, text: str, *, ignore_case: bool = False, question_mark: bool = True) -> bool:
    source = "".join(
        ".*" if char == "*" else "." if char == "?" and question_mark else re.escape(char) for char in pattern
    )
    return re.fullmatch(source, text, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def reference_arn(pattern: str, text: str) -> bool:
    """ArnLike: in the first five colon-separated components a wildcard cannot cross a colon."""
    if pattern.count(":") < 5:
        return reference_glob(pattern, text)
    source, colons = [], 0
    for char in pattern:
        fixed = colons < 5
        if char == "*":
            source.append("[^:]*" if fixed else ".*")
        elif char == "?":
            source.append("[^:]" if fixed else ".")
        else:
            colons += char == ":"
            source.append(re.escape(char))
    return re.fullmatch("".join(source), text, re.DOTALL) is not None


# --- semantics --------------------------------------------------------------------------------------


@SETTINGS
@given(st.lists(patterns, min_size=1, max_size=3), values)
def test_glob_sets_match_as_any_of_their_patterns(found: list[str], value: str) -> None:
    expected = any(reference_glob(pattern, value) for pattern in found)
    assert PatternSet(found, "glob").matches(value) == expected
    assert PatternSet(found, "glob", variables=True).matches(value, Context({})) == expected


@SETTINGS
@given(st.text(alphabet="aAbB*?:", max_size=10), st.text(alphabet="aAbB:", max_size=12))
def test_actions_match_whatever_their_case(pattern: str, value: str) -> None:
    expected = reference_glob(pattern, value, ignore_case=True)
    assert PatternSet([pattern], "glob", ignore_case=True).matches(value) == expected


@SETTINGS
@given(patterns, values)
def test_wildcard_match_is_the_same_glob(pattern: str, value: str) -> None:
    assert wildcard_match(pattern, value) == reference_glob(pattern, value)
    assert wildcard_match(pattern, value, question_mark=False) == reference_glob(pattern, value, question_mark=False)


@SETTINGS
@given(st.text(alphabet="ab*?\u0101\n", max_size=10), st.text(alphabet="ab\u0101\n", max_size=40))
def test_long_values_are_searched_a_word_at_a_time_with_the_same_result(pattern: str, value: str) -> None:
    # The bit-parallel search serves long values; a zero threshold makes it serve these short ones.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(patterns_module, "_BIT_PARALLEL_WORK", 0)
        assert wildcard_match(pattern, value) == reference_glob(pattern, value)


arn_patterns = st.lists(st.text(alphabet="ab*?", max_size=3), min_size=4, max_size=8).map(":".join)
arn_values = st.lists(st.text(alphabet="ab", max_size=3), min_size=3, max_size=8).map(":".join)


@SETTINGS
@given(arn_patterns, st.one_of(arn_values, values))
def test_arn_like_matches_component_by_component(pattern: str, value: str) -> None:
    expected = reference_arn(pattern, value)
    assert PatternSet([pattern], "arn").matches(value) == expected
    condition = compile_condition("ArnLike", "aws:SourceArn", (pattern,), True)
    assert condition.evaluate(Context({"aws:sourcearn": (value,)})) == expected


@SETTINGS
@given(patterns, values)
def test_string_like_conditions_are_the_same_glob(pattern: str, value: str) -> None:
    expected = reference_glob(pattern, value)
    like = compile_condition("StringLike", "aws:UserAgent", (pattern,), True)
    not_like = compile_condition("StringNotLike", "aws:UserAgent", (pattern,), True)
    context = Context({"aws:useragent": (value,)})
    assert like.evaluate(context) == expected
    assert not_like.evaluate(context) != expected


@SETTINGS
@given(st.text(alphabet="ab", max_size=4), arn_values)
def test_policy_variables_are_filled_in_before_matching(name: str, value: str) -> None:
    pattern = "arn:aws:ecr:*:1:repository/${aws:username}/*"
    expected = reference_arn(f"arn:aws:ecr:*:1:repository/{name}/*", value)
    context = Context({"aws:username": (name,)})
    assert PatternSet([pattern], "arn", variables=True).matches(value, context) == expected


def test_a_wildcard_in_a_variables_value_is_an_ordinary_character() -> None:
    resources = PatternSet(["arn:aws:ecr:*:1:repository/${aws:username}/*"], "glob", variables=True)
    starred = Context({"aws:username": ("*",)})
    assert resources.matches("arn:aws:ecr:x:1:repository/*/1", starred)
    assert not resources.matches("arn:aws:ecr:x:1:repository/any/1", starred)


def test_examples() -> None:
    resource = PatternSet(["arn:aws:ecr:*:123456789012:repository/team-?/*"], "arn")
    assert resource.matches("arn:aws:ecr:us-east-1:123456789012:repository/team-a/app:latest")
    assert not resource.matches("arn:aws:ecr:us-east-1:x:123456789012:repository/team-a/app")
    assert not resource.matches("arn:aws:ecr:us-east-1:123456789012:repository/team-ab/app")
    assert PatternSet(["ecr:Get*"], "glob", ignore_case=True).matches("ECR:GETAUTHORIZATIONTOKEN")
    assert not PatternSet(["ecr:Get*"], "glob").matches("ecr:get")
    assert PatternSet(["a*?b"], "glob").matches("a\nb")
    assert not PatternSet(["a*?b"], "glob").matches("ab")


# --- cost -------------------------------------------------------------------------------------------

# Run in a child interpreter so that a matcher which backtracks is stopped (and fails the test)
# instead of holding this process; the child reports its own time, imports excluded.
_PATHOLOGICAL = textwrap.dedent(
    """
    import json, sys, time
    from dockyard.policy.evaluate import Principal, Request, evaluate
    from dockyard.policy.language import parse_identity_policy
    from dockyard.policy.conditions import compile_condition
    from dockyard.policy.patterns import PatternSet

    STARS = "*a*a*a*a*a*a*a*b"
    ARN = "arn:aws:ecr:us-east-1:123456789012:repository/"
    LONG = "a" * 256
    AGENT = "a" * 16384
    QUESTIONS = "*" + "a?" * 2900 + "c*"  # a managed policy's worth of one segment with "?"

    class Context:
        def __init__(self, values):
            self._values = values

        def values(self, key):
            return self._values.get(key)

    def largest_policy():
        # Distinct patterns (no two alike) until the policy is as large as a managed one may be.
        resources, size = [], 0
        while size < 6000:
            resources.append(ARN + STARS + "?" * (len(resources) % 7) + "a*" * (len(resources) % 5) + "b")
            size += len(resources[-1]) + 4
        return parse_identity_policy(json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": resources}],
        }))

    started = time.perf_counter()
    results = [
        PatternSet([ARN + STARS], "glob").matches(ARN + LONG),
        PatternSet([ARN + STARS], "glob").matches(ARN + LONG[1:] + "b"),
        PatternSet([ARN + "*a?a*a?a*?a*a??a*a*b"], "glob").matches(ARN + LONG * 40),
        PatternSet(["ecr:" + STARS], "glob", ignore_case=True).matches("ecr:" + "A" * 124),
        PatternSet(["arn:aws:ecr:*:*:repository/" + STARS], "arn").matches(ARN + LONG),
        compile_condition("StringLike", "aws:UserAgent", (STARS,), True).evaluate(
            Context({"aws:useragent": (AGENT,)})
        ),
        compile_condition("StringLike", "aws:UserAgent", (QUESTIONS,), True).evaluate(
            Context({"aws:useragent": (AGENT,)})
        ),
        compile_condition("ArnLike", "aws:SourceArn", ("arn:*:*:*:*:" + STARS,), True).evaluate(
            Context({"aws:sourcearn": (ARN + LONG,)})
        ),
        evaluate(
            Request(Principal.iam_user("123456789012", "u", "AIDAU"), "ecr:DescribeImages", ARN + LONG, "123456789012"),
            [largest_policy()],
            None,
        ).allowed,
    ]
    print(json.dumps({"results": results, "seconds": time.perf_counter() - started}))
    """
)


def test_pathological_patterns_cost_milliseconds() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PATHOLOGICAL], capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=True
    )
    report = json.loads(done.stdout)
    assert report["results"] == [False, True, False, False, False, False, False, False, False]
    assert report["seconds"] < BUDGET_SECONDS


def test_registry_scanning_filters_match_in_linear_time() -> None:
    """ECR's WILDCARD scanning filters go through the same matcher (a backtracking regex took 14 s
    for this pattern against a 60-character name)."""
    from dockyard.core.scanning.scan_hooks import filter_matches

    assert not filter_matches("*a*a*a*a*a*a*a*b", "a" * 256)
    assert filter_matches("*a*a*a*a*a*a*a*b", "a" * 255 + "b")
    assert filter_matches("prod", "my-prod-app") and not filter_matches("prod?", "prodx")
