"""The hot read paths' building blocks: store.fastread (never stale), the authorization
generation (bumped by every identity write, whoever makes it) and the cached decisions of
core.access (a changed policy is a different answer)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from dockyard.core.errors import AccessDeniedException
from dockyard.core.identity import access, auth_generation
from dockyard.core.identity.access import Resource, authorize
from dockyard.core.identity.caller import root_caller
from dockyard.store import fastread, schema
from dockyard.store.database import Database, upgrade_async

OWNER = "123456789012"
OTHER = "210987654321"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'dockyard.db'}"
    await upgrade_async(url)
    database = Database(url)
    async with database.write() as conn:
        await conn.execute(insert(schema.accounts).values(account_id=OWNER, created_at=0.0))
    yield database
    await database.close()


async def _add_key(db: Database, key_id: str) -> None:
    async with db.write() as conn:
        await conn.execute(
            insert(schema.access_keys).values(
                access_key_id=key_id, secret_access_key="s", account_id=OWNER, status="Active", created_at=0.0
            )
        )


async def test_fastread_sees_every_commit_at_once(db: Database) -> None:
    statement = select(schema.access_keys.c.status).where(schema.access_keys.c.access_key_id == "AKIAONE")
    assert await fastread.fetch(db, statement, {}) == []
    await _add_key(db, "AKIAONE")
    assert await fastread.fetch(db, statement, {}) == [("Active",)]
    async with db.write() as conn:
        await conn.execute(update(schema.access_keys).values(status="Inactive"))
    assert await fastread.fetch(db, statement, {}) == [("Inactive",)]


async def test_an_identity_write_bumps_the_generation(db: Database) -> None:
    before = await auth_generation.current(db)
    await _add_key(db, "AKIAONE")
    after_insert = await auth_generation.current(db)
    assert after_insert is not None and after_insert != before
    async with db.write() as conn:
        await conn.execute(update(schema.access_keys).values(status="Inactive"))
    after_update = await auth_generation.current(db)
    assert after_update not in (before, after_insert)
    # Raw SQL counts too.
    async with db.write() as conn:
        await conn.exec_driver_sql("DELETE FROM access_keys WHERE access_key_id = 'AKIAONE'")
    assert await auth_generation.current(db) != after_update


async def test_other_writes_leave_the_generation_alone(db: Database) -> None:
    await _add_key(db, "AKIAONE")
    before = await auth_generation.current(db)
    async with db.write() as conn:
        await conn.execute(insert(schema.server_values).values(name="unrelated", value="x"))
    assert await auth_generation.current(db) == before


async def test_a_rolled_back_write_leaves_the_generation_alone(db: Database) -> None:
    await _add_key(db, "AKIAONE")
    before = await auth_generation.current(db)
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await conn.execute(update(schema.access_keys).values(status="Inactive"))
            raise RuntimeError("abandon")
    assert await auth_generation.current(db) == before


def _repository(policy: dict[str, object] | None) -> Resource:
    text = json.dumps({"Version": "2012-10-17", "Statement": [policy]}) if policy else None
    return Resource(f"arn:aws:ecr:us-east-1:{OWNER}:repository/app", OWNER, policy_text=text)


async def test_a_changed_resource_policy_changes_the_cached_answer() -> None:
    stranger = root_caller(OTHER, "us-east-1")
    with pytest.raises(AccessDeniedException):
        await authorize(stranger, "ecr:BatchGetImage", _repository(None))
    grant = {"Effect": "Allow", "Principal": {"AWS": OTHER}, "Action": "ecr:BatchGetImage"}
    await authorize(stranger, "ecr:BatchGetImage", _repository(grant))
    await authorize(stranger, "ecr:BatchGetImage", _repository(grant))  # from the cache
    with pytest.raises(AccessDeniedException):
        await authorize(stranger, "ecr:BatchGetImage", _repository(None))


async def test_a_policy_that_reads_the_clock_is_never_cached() -> None:
    stranger = root_caller(OTHER, "us-east-1")
    until = {
        "Effect": "Allow",
        "Principal": {"AWS": OTHER},
        "Action": "ecr:BatchGetImage",
        "Condition": {"DateLessThan": {"aws:CurrentTime": "2000-01-01T00:00:00Z"}},
    }
    for _ in range(2):
        with pytest.raises(AccessDeniedException):
            await authorize(stranger, "ecr:BatchGetImage", _repository(until))
    assert not any("CurrentTime" in str(key) for key in access._outcomes)
