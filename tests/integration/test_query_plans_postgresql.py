"""Garbage collection and lifecycle runs at scale on PostgreSQL: the SQLite test's 2,000
repositories sharing one layer (tests/unit/test_query_plans_gc.py), on a fresh database of a real
cluster, planned by PostgreSQL with no statistics (autovacuum is kept off these tables so that no
ANALYZE happens under the test: a fresh deployment's state, pinned).

Every statement is EXPLAINed with the parameters it ran with, sequential scans disabled (see
postgresql_plan_problems): an index serves each, and none reaches references from a shared digest
where images are joined."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from dockyard.config import Settings
from dockyard.core.operations import lifecycle
from dockyard.core.registry import gc
from dockyard.core.services import Services
from dockyard.store import schema
from dockyard.store.database import upgrade_async
from tests.support.services import PostgresCluster, postgres_cluster  # noqa: F401
from tests.support.shared_layers import (
    LARGE_TABLES,
    Seeded,
    Statement,
    postgresql_plan_problems,
    recorded_statements,
    seed,
)

REPOSITORIES = 2000
HANG_GUARD_SECONDS = 300
_databases = iter(range(1_000_000))


@pytest.fixture
async def svc(tmp_path: Path, postgres_cluster: PostgresCluster) -> AsyncIterator[Services]:  # noqa: F811
    url = postgres_cluster.create_database(f"plans_{next(_databases)}_{tmp_path.name[-12:].lower()}")
    await upgrade_async(url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    settings.data_dir.mkdir()
    services = Services.from_settings(settings)
    async with services.db.write() as conn:
        for table in LARGE_TABLES:
            await conn.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
    yield services
    await services.close()


@pytest.fixture
async def seeded(svc: Services) -> Seeded:
    async with svc.db.write() as conn:
        return await seed(conn, REPOSITORIES)


async def plan_problems(svc: Services, statements: list[Statement]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    async with svc.db.read() as conn:
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        for statement in statements:
            rows = await raw.fetch(f"EXPLAIN {statement.sql}", *statement.parameters)
            plan = [row[0] for row in rows]
            problems = postgresql_plan_problems(plan)
            if problems:
                found[statement.sql] = problems + ["plan:", *plan]
    return found


async def test_gc_and_lifecycle_at_scale_plan_every_statement_by_index(svc: Services, seeded: Seeded) -> None:
    statements: list[Statement] = []
    for dry_run in (True, False):
        with recorded_statements() as seen:
            run = gc.collect(svc, dry_run=dry_run, grace_seconds=0, upload_expiry_seconds=0)
            result = await asyncio.wait_for(run, HANG_GUARD_SECONDS)
        statements += seen
        assert result.links == len(seeded.unused_links)
        assert {d for d, _ in result.blobs} == seeded.garbage_blobs
    table = schema.repository_blobs
    async with svc.db.read() as conn:
        left = {(int(r), str(d)) for r, d in await conn.execute(select(table.c.repository_id, table.c.digest))}
    assert left == seeded.kept_links

    with recorded_statements() as seen:
        expired = await asyncio.wait_for(lifecycle.apply_to_repository(svc, 1, dry_run=False), HANG_GUARD_SECONDS)
    statements += seen
    assert expired is not None and {e.image.digest for e in expired.expired} == seeded.expiring_images

    assert any(s.in_write_transaction for s in statements), "the runs' deletes were recorded"
    assert await plan_problems(svc, statements) == {}
