"""Resource tags (Key/Value metadata on repositories): ECR's rules and their rows.

The rules are AWS's tagging rules: at most 50 tags on a resource, keys of 1 to 128 characters,
values of 0 to 256, letters, digits, white space and ``+ - = . _ : / @``, and the ``aws:``
prefix reserved for AWS. Keys are case-sensitive; a key given twice keeps its last value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import InvalidTagParameterException, TooManyTagsException
from dockyard.store import schema

MAX_TAGS = 50
MAX_KEY_LENGTH = 128
MAX_VALUE_LENGTH = 256
_ALLOWED = re.compile(r"[\w\s+\-=.:/@]*", re.UNICODE)
_RESERVED_PREFIX = "aws:"

rows = schema.repository_tags


def _length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2  # AWS counts Java (UTF-16) characters


def check_key(key: str) -> None:
    if not 1 <= _length(key) <= MAX_KEY_LENGTH:
        raise InvalidTagParameterException(
            f"Invalid parameter at 'tags' failed to satisfy constraint: 'Tag keys must be between 1 and "
            f"{MAX_KEY_LENGTH} characters long'"
        )
    if not _ALLOWED.fullmatch(key):
        raise InvalidTagParameterException(
            "Invalid parameter at 'tags' failed to satisfy constraint: 'Tag keys may only contain letters, "
            "numbers, spaces and the characters + - = . _ : / @'"
        )
    if key.lower().startswith(_RESERVED_PREFIX):
        raise InvalidTagParameterException(
            "Invalid parameter at 'tags' failed to satisfy constraint: 'Tag keys may not begin with the "
            "reserved prefix aws:'"
        )


def check_value(value: str) -> None:
    if _length(value) > MAX_VALUE_LENGTH:
        raise InvalidTagParameterException(
            f"Invalid parameter at 'tags' failed to satisfy constraint: 'Tag values must be at most "
            f"{MAX_VALUE_LENGTH} characters long'"
        )
    if not _ALLOWED.fullmatch(value):
        raise InvalidTagParameterException(
            "Invalid parameter at 'tags' failed to satisfy constraint: 'Tag values may only contain letters, "
            "numbers, spaces and the characters + - = . _ : / @'"
        )


def normalise(tags: Iterable[dict[str, str]]) -> dict[str, str]:
    """Key -> value of well-formed `tags` (ECR's Tag shapes), or InvalidTagParameterException."""
    result: dict[str, str] = {}
    for tag in tags:
        key, value = tag["Key"], tag.get("Value", "")
        check_key(key)
        check_value(value)
        result[key] = value
    return result


def check_count(count: int) -> None:
    if count > MAX_TAGS:
        # The API reference's wording (ECR's own message is not on record).
        raise TooManyTagsException(
            "The list of tags on the repository is over the limit. The maximum number of tags that can be "
            f"applied to a repository is {MAX_TAGS}."
        )


async def read(conn: AsyncConnection, repository_id: int) -> dict[str, str]:
    result = await conn.execute(
        select(rows.c.key, rows.c.value).where(rows.c.repository_id == repository_id).order_by(rows.c.key)
    )
    return {row.key: row.value for row in result}


async def merge(conn: AsyncConnection, repository_id: int, tags: dict[str, str]) -> None:
    """Add `tags`, overwriting the values of keys already present."""
    current = await read(conn, repository_id)
    check_count(len(current | tags))
    if not tags:
        return
    await conn.execute(delete(rows).where(rows.c.repository_id == repository_id, rows.c.key.in_(list(tags))))
    await conn.execute(insert(rows), [{"repository_id": repository_id, "key": k, "value": v} for k, v in tags.items()])


async def remove(conn: AsyncConnection, repository_id: int, keys: Iterable[str]) -> None:
    wanted = list(dict.fromkeys(keys))
    if wanted:
        await conn.execute(delete(rows).where(rows.c.repository_id == repository_id, rows.c.key.in_(wanted)))


def as_shapes(tags: dict[str, str]) -> list[dict[str, str]]:
    """ECR's TagList shape."""
    return [{"Key": key, "Value": value} for key, value in tags.items()]
