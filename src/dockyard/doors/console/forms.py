"""Forms of the repository and registry pages: each builds the request the ECR API would receive
and sends it through the same service-model checks and the same operation as the ECR door, so the
console can store nothing the API refuses. A refusal is shown beside the field it is about, in
plain words (the API's own error stays above the form)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from dockyard.core.errors import DockyardError
from dockyard.doors.aws_json import ServiceModel, ValidationError
from dockyard.doors.console.web import ErrorView, Visit

# Request members that are lists: a length limit on them counts entries, not characters.
_LIST_MEMBERS = frozenset(
    {"tags", "resourceTags", "imageTagMutabilityExclusionFilters", "rules", "repositoryFilters", "destinations"}
)
_AT = re.compile(r"at '([^']+)' failed to satisfy constraint: '?(.*?)'?$", re.DOTALL)


NOT_SAVED = "Nothing was saved: correct the fields marked below."


@cache
def _model() -> ServiceModel:
    # Compiled with the first form sent: most workers never render a console page.
    return ServiceModel("ecr")


class ApiRefused(DockyardError):
    """The service model's refusal (before the core), carried as the core's errors are."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Refusal:
    """Why a form was not saved: the API's error, and the fields it is about."""

    error: ErrorView
    field_errors: dict[str, str] = field(default_factory=dict)


async def call_api(visit: Visit, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run ECR operation `operation` as the visitor, exactly as the ECR door would."""
    from dockyard.doors.ecr import OPERATIONS  # the door's table of operations, loaded with a form

    try:
        checked = _model().validate_input(operation, params)
    except ValidationError as exc:
        raise ApiRefused(exc.code, exc.message or exc.code) from None
    result: dict[str, Any] = await OPERATIONS[operation](visit.svc, visit.caller, checked)
    return result


def plain_words(constraint: str, path: str) -> str:
    """An API constraint as a sentence a person reads."""
    text = constraint.strip().rstrip(".")
    lowered = text.lower()
    last = path.rsplit(".", 1)[-1]
    unit = "entries" if last in _LIST_MEMBERS else "characters"
    if match := re.search(r"length less than or equal to (\d+)", lowered):
        return f"Too long: at most {match.group(1)} {unit} are allowed."
    if match := re.search(r"length greater than or equal to (\d+)", lowered):
        return f"Too short: at least {match.group(1)} {unit} are needed."
    if match := re.search(r"value less than or equal to (\d+)", lowered):
        return f"Must be at most {match.group(1)}."
    if match := re.search(r"value greater than or equal to (\d+)", lowered):
        return f"Must be at least {match.group(1)}."
    if match := re.search(r"enum value set: \[(.*)\]", text):
        return f"Choose one of: {match.group(1)}."
    if "regular expression" in lowered:
        return "Contains characters or a form that is not allowed here."
    if "must not be null" in lowered:
        return "This is required."
    # "kmsKey can only be…" keeps its member's spelling; a plain word gets its capital.
    first = text.split(" ", 1)[0]
    return (text if first != first.lower() else text[:1].upper() + text[1:]) + "."


# What a name-like field may hold, said instead of its regular expression.
NAME_FORM = (
    "Use lower-case letters and digits, separated by single . _ - or / characters "
    "(no capitals, spaces, or separator at the start or end)."
)
FORM_HINTS = {
    "repository_name": NAME_FORM,
    "prefix": NAME_FORM + " Or ROOT.",
    "ecr_prefix": NAME_FORM + " Or ROOT.",
    "upstream_prefix": NAME_FORM,
}


def refusal_of(exc: DockyardError, fields: Mapping[str, str]) -> Refusal:
    """`exc` with the field it names (`fields` maps request members to form fields)."""
    error = ErrorView.of(exc)
    match = _AT.search(exc.message)
    if match is None:
        return Refusal(error)
    path, constraint = match.group(1), match.group(2)
    member = next((m for m in sorted(fields, key=len, reverse=True) if path == m or path.startswith(m + ".")), None)
    if member is None:
        return Refusal(error)
    # The field says what is wrong; above the form, no regular expression, only what to do.
    name = fields[member]
    words = plain_words(constraint, path)
    if "regular expression" in constraint and name in FORM_HINTS:
        words = FORM_HINTS[name]
    return Refusal(ErrorView(exc.code, NOT_SAVED), {name: words})


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_tags(text: str) -> tuple[list[dict[str, str]], str | None]:
    """`key=value` lines as ECR tags, or what is wrong with them."""
    tags = []
    for number, line in enumerate(lines(text), 1):
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            return [], f"Line {number}: write each tag as key=value."
        tags.append({"Key": key.strip(), "Value": value.strip()})
    return tags, None


def tags_text(tags: list[dict[str, str]] | None) -> str:
    return "\n".join(f"{t['Key']}={t['Value']}" for t in tags or [])


def wildcard_filters(text: str) -> list[dict[str, str]]:
    return [{"filterType": "WILDCARD", "filter": line} for line in lines(text)]
