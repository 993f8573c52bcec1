"""The authorization generation: a value that changes whenever anything a caller's identity
depends on changes, so that what was resolved from it can be cached and still never be stale.

Every committed write to an identity table (access keys, users, groups and their members,
roles, policies and their versions, attachments, inline policies, sessions, accounts) also
writes a new random value into server_values["auth_generation"], in the same transaction: the
two commit together or not at all. A cache entry made under generation G is used only while the
database still says G (one primary-key read per request, see `current`), so a deactivated key,
a deleted user or a changed policy takes effect on the next request on every process and node.

The bump is a SQLAlchemy event on every Engine, so no writer can forget it: whatever module
writes those tables, through whichever engine, bumps the generation. Resource policies are not
covered here: they are read with the resource on every request."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Engine, event, insert, select, update

from dockyard.store import fastread, schema
from dockyard.store.database import Database

NAME = "auth_generation"
WATCHED = frozenset(
    {
        "accounts",
        "access_keys",
        "iam_users",
        "iam_groups",
        "iam_group_members",
        "iam_roles",
        "iam_policies",
        "iam_policy_versions",
        "iam_attachments",
        "iam_inline_policies",
        "sts_sessions",
        # Resolved with the caller too (registry_callers): who is excluded from pull-time updates.
        "pull_time_exclusions",
        # Likewise which registries have a signing configuration (a push reads nothing otherwise).
        "signing_configurations",
        # And which have a replication configuration (core/replication/replication_hooks.py).
        "replication_configurations",
    }
)
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT")
_BUMPED = "dockyard.auth_generation.bumped"
values = schema.server_values
_CURRENT = select(values.c.value).where(values.c.name == NAME)


def _written_table(statement: str, context: Any) -> str | None:
    """The watched table a statement writes, if any; raw SQL is judged (conservatively) by its text."""
    compiled = getattr(context, "compiled", None)
    if compiled is not None and getattr(compiled, "statement", None) is not None:
        if not (context.isinsert or context.isupdate or context.isdelete):
            return None
        table = getattr(compiled.statement, "table", None)
        name = getattr(table, "name", None)
        return name if name in WATCHED else None
    head = statement.lstrip()[:7].upper()
    if not head.startswith(_WRITES):
        return None
    return next((name for name in WATCHED if name in statement), None)


def _bump(conn: Any) -> None:
    fresh = secrets.token_hex(16)
    result = conn.execute(update(values).where(values.c.name == NAME).values(value=fresh))
    if result.rowcount == 0:
        # Writers are serialised (BEGIN IMMEDIATE, or PostgreSQL's write lock), so no other
        # transaction can insert it at the same time.
        conn.execute(insert(values).values(name=NAME, value=fresh))


@event.listens_for(Engine, "after_cursor_execute")
def _after_cursor_execute(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    if _written_table(statement, context) is None:
        return
    transaction = conn.get_transaction()
    # Once per transaction is enough: the new value commits with everything else in it.
    if transaction is not None and conn.info.get(_BUMPED) is transaction:
        return
    conn.info[_BUMPED] = transaction
    _bump(conn)


async def current(db: Database) -> str | None:
    """The generation as committed now; None until the first identity write bumps it."""
    rows = await fastread.fetch(db, _CURRENT, {})
    return str(rows[0][0]) if rows else None
