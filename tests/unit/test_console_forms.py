"""The console's form refusals: the API's constraint, beside the field it names, in plain words."""

from __future__ import annotations

import pytest

from dockyard.core.errors import InvalidParameterException
from dockyard.doors.console.forms import NAME_FORM, NOT_SAVED, parse_tags, plain_words, refusal_of

FIELDS = {
    "repositoryName": "repository_name",
    "encryptionConfiguration.kmsKey": "kms_key",
    "encryptionConfiguration": "encryption",
    "tags": "tags",
    "rules": "rules",
    "rules.2.member": "filters_CONTINUOUS_SCAN",
}


def _refused(path: str, constraint: str) -> InvalidParameterException:
    return InvalidParameterException(f"Invalid parameter at '{path}' failed to satisfy constraint: '{constraint}'")


@pytest.mark.parametrize(
    ("path", "constraint", "field", "words"),
    [
        ("repositoryName", "must satisfy regular expression '[a-z0-9]+'", "repository_name", NAME_FORM),
        ("encryptionConfiguration.kmsKey", "Member must have length less than or equal to 2048", "kms_key",
         "Too long: at most 2048 characters are allowed."),
        ("encryptionConfiguration", "kmsKey can only be specified when encryptionType is KMS", "encryption",
         "kmsKey can only be specified when encryptionType is KMS."),
        ("rules", "Member must have length less than or equal to 2", "rules",
         "Too long: at most 2 entries are allowed."),
        ("rules.2.member.repositoryFilters.1.member.filter", "Member must satisfy regular expression pattern: ^x$",
         "filters_CONTINUOUS_SCAN", "Contains characters or a form that is not allowed here."),
        ("tags.1.member.key", "Member must not be null", "tags", "This is required."),
    ],
)  # fmt: skip
def test_a_refusal_lands_beside_its_field_in_plain_words(path: str, constraint: str, field: str, words: str) -> None:
    refusal = refusal_of(_refused(path, constraint), FIELDS)
    assert refusal.field_errors == {field: words}
    assert refusal.error.code == "InvalidParameterException"
    assert refusal.error.message == NOT_SAVED  # no regular expression above the form


def test_a_refusal_about_no_field_keeps_the_api_message() -> None:
    refusal = refusal_of(InvalidParameterException("Something else entirely"), FIELDS)
    assert refusal.field_errors == {}
    assert refusal.error.message == "Something else entirely"


def test_enum_and_numbers_in_plain_words() -> None:
    assert plain_words("Member must satisfy enum value set: [BASIC, ENHANCED]", "scanType") == (
        "Choose one of: BASIC, ENHANCED."
    )
    assert plain_words("Member must have value greater than or equal to 1", "countNumber") == "Must be at least 1."


def test_tags_are_key_value_lines() -> None:
    assert parse_tags("team=payments\n\n env = prod ") == (
        [{"Key": "team", "Value": "payments"}, {"Key": "env", "Value": "prod"}],
        None,
    )
    assert parse_tags("ok=1\nbroken") == ([], "Line 2: write each tag as key=value.")
    assert parse_tags("=value")[1] == "Line 1: write each tag as key=value."
