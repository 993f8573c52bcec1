"""What the IAM operations share: identifiers, ARNs, paging with Marker/MaxItems, tags."""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import string
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from dockyard.core import client_json as wire_json
from dockyard.core.identity.access import Resource, authorize
from dockyard.core.identity.caller import Caller
from dockyard.core.identity.iam_errors import InvalidInput, ValidationError

T = TypeVar("T")

_ID_ALPHABET = string.ascii_uppercase + "234567"
DEFAULT_PAGE = 100
MAX_TAGS = 50

# IAM's unique-id prefixes.
USER_ID_PREFIX = "AIDA"
GROUP_ID_PREFIX = "AGPA"
ROLE_ID_PREFIX = "AROA"
POLICY_ID_PREFIX = "ANPA"

# IAM's userNameType: 1 to 64 of these characters (a Java regex, so \w is ASCII only).
USER_NAME_MAX = 64
USER_NAME_PATTERN = "[\\w+=,.@-]+"
# Groups, roles and policies share the pattern, with their own maximum length.
GROUP_NAME_MAX = 128
ROLE_NAME_MAX = 64
POLICY_NAME_MAX = 128
_USER_NAME = re.compile(USER_NAME_PATTERN, re.ASCII)


def unique_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(17))


def iam_arn(account_id: str, kind: str, path: str, name: str) -> str:
    """arn:aws:iam::<account>:<kind><path><name>, e.g. kind "user", path "/dev/"."""
    return f"arn:aws:iam::{account_id}:{kind}{path}{name}"


async def authorize_iam(caller: Caller, action: str, arn: str) -> None:
    """IAM resources always belong to the caller's account; IAM has no resource policies."""
    await authorize(caller, f"iam:{action}", Resource(arn=arn, account_id=caller.account_id))


def check_path(path: str | None, member: str = "path") -> str:
    """The model's pattern admits "/" or "/a/b/"; IAM also refuses empty segments ("//")."""
    value = path or "/"
    if "//" in value:
        raise ValidationError(
            f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)"
        )
    return value


def name_problem(name: str, noun: str = "user name", maximum: int = USER_NAME_MAX) -> str | None:
    """What is wrong with `name` as a new IAM user, group, role or policy name (the `noun`), in
    plain words; None when nothing is. The one rule every door applies (see validate_name)."""
    if not name:
        return f"Enter a {noun}."
    if len(name) > maximum:
        return f"A {noun} can be at most {maximum} characters long; this one has {len(name)}."
    if not _USER_NAME.fullmatch(name):
        return f"A {noun} can contain only letters, digits and the characters + = , . @ _ - (no spaces)."
    return None


def user_name_problem(name: str) -> str | None:
    return name_problem(name, "user name", USER_NAME_MAX)


def group_name_problem(name: str) -> str | None:
    return name_problem(name, "group name", GROUP_NAME_MAX)


def role_name_problem(name: str) -> str | None:
    return name_problem(name, "role name", ROLE_NAME_MAX)


def policy_name_problem(name: str) -> str | None:
    return name_problem(name, "policy name", POLICY_NAME_MAX)


def validate_name(name: str, member: str, maximum: int) -> str:
    """`name`, once IAM's rule for a name of its kind (userNameType, groupNameType, roleNameType,
    policyNameType: one pattern, their own maximum) admits it; refused with IAM's own message."""
    if name_problem(name, maximum=maximum) is None:
        return name
    if not name:
        constraint = "Member must have length greater than or equal to 1"
    elif len(name) > maximum:
        constraint = f"Member must have length less than or equal to {maximum}"
    else:
        constraint = f"Member must satisfy regular expression pattern: {USER_NAME_PATTERN}"
    raise ValidationError(
        f"1 validation error detected: Value '{name}' at '{member}' failed to satisfy constraint: {constraint}"
    )


def validate_user_name(name: str, member: str = "userName") -> str:
    return validate_name(name, member, USER_NAME_MAX)


def encode_marker(position: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def decode_marker(marker: str | None) -> str | None:
    if marker is None:
        return None
    try:
        position = wire_json.loads(base64.urlsafe_b64decode(marker.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        position = None
    if not isinstance(position, str):
        raise InvalidInput("Invalid Marker.")
    return position


def paginate(
    items: Sequence[T], key: Callable[[T], str], marker: str | None, max_items: int | None
) -> tuple[list[T], dict[str, Any]]:
    """One page of `items` (sorted by `key`) after `marker`, and the IsTruncated/Marker members."""
    after = decode_marker(marker)
    remaining = [item for item in items if after is None or key(item) > after]
    limit = max_items or DEFAULT_PAGE
    page = remaining[:limit]
    members: dict[str, Any] = {"IsTruncated": len(remaining) > limit}
    if len(remaining) > limit:
        members["Marker"] = encode_marker(key(page[-1]))
    return page, members


def check_tags(tags: list[dict[str, str]] | None) -> list[dict[str, str]]:
    found = [{"Key": tag["Key"], "Value": tag.get("Value", "")} for tag in tags or []]
    if len(found) > MAX_TAGS:
        raise ValidationError(
            "1 validation error detected: Value at 'tags' failed to satisfy constraint: "
            f"Member must have length less than or equal to {MAX_TAGS}"
        )
    keys = [tag["Key"].lower() for tag in found]
    if len(set(keys)) != len(keys):
        raise InvalidInput("Duplicate tag keys found. Please note that Tag keys are case insensitive.")
    return found


def dump_tags(tags: list[dict[str, str]]) -> str | None:
    return json.dumps(tags) if tags else None


def load_tags(text: str | None) -> list[dict[str, str]]:
    return list(json.loads(text)) if text else []


def refuse_permissions_boundary(boundary: str | None) -> None:
    """Permissions boundaries are not evaluated by Dockyard; accepting one would silently widen access."""
    if boundary:
        raise InvalidInput("Permissions boundaries are not supported by this server.")
