"""Migration 0008 on SQLite and PostgreSQL: registries that already had a registry policy keep
the scope it was written for (V1), as ECR left accounts created before V2; the others read V2."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from dockyard.store import schema
from dockyard.store.database import alembic_config
from tests.support.services import PostgresCluster, postgres_cluster  # noqa: F401

BEFORE = "0007"  # the revision 0008 follows
POLICY = '{"Version": "2012-10-17", "Statement": []}'
_databases = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    yield cluster.create_database(f"settings_{next(_databases)}_{tmp_path.name[-12:].lower()}")


async def _run(url: str, *statements: object) -> list[tuple[object, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            rows: list[tuple[object, ...]] = []
            for statement in statements:
                result = await conn.execute(statement)  # type: ignore[call-overload]
                if result.returns_rows:
                    rows = [tuple(row) for row in result]
            return rows
    finally:
        await engine.dispose()


def test_registries_with_a_policy_keep_the_v1_scope(database_url: str) -> None:
    config = alembic_config(database_url)
    command.upgrade(config, BEFORE)
    asyncio.run(
        _run(
            database_url,
            insert(schema.registry_policies).values(
                account_id="123456789012", region="us-east-1", policy_text=POLICY, updated_at=1.0
            ),
        )
    )
    command.upgrade(config, "0008")
    settings = schema.account_settings
    rows = asyncio.run(
        _run(database_url, select(settings.c.account_id, settings.c.region, settings.c.name, settings.c.value))
    )
    assert rows == [("123456789012", "us-east-1", "REGISTRY_POLICY_SCOPE", "V1")]
    command.upgrade(config, "head")
    command.downgrade(config, BEFORE)
    command.upgrade(config, "head")
