"""Garbage collection and lifecycle runs at scale on SQLite: 2,000 repositories sharing one layer,
seeded by direct inserts into a freshly migrated database (no ANALYZE, as a fresh deployment).

Every statement they run is planned by SQLite, and no plan may scan a table that grows with the
data, reach references from a shared digest when it joins images, or walk a repository's images
inside a write transaction. Time is not measured: the plans are the work. The results must be
exactly the seeded garbage and the seeded expiries."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from dockyard.config import Settings
from dockyard.core.identity.caller import Caller
from dockyard.core.operations import lifecycle
from dockyard.core.registry import gc
from dockyard.core.services import Services
from dockyard.store import schema
from dockyard.store.database import sqlite_path, upgrade_async
from tests.support.shared_layers import (
    ACCOUNT,
    EXPIRING_POLICY,
    Seeded,
    Statement,
    digest,
    image_row,
    recorded_statements,
    seed,
    sqlite_plan_problems,
)

REPOSITORIES = 2000
ROOT = Caller(
    account_id=ACCOUNT,
    arn=f"arn:aws:iam::{ACCOUNT}:root",
    user_id=ACCOUNT,
    type="Root",
    username=None,
    access_key_id="AKIAEXAMPLE",
    region="us-east-1",
)
# Only a guard against a hang: the quadratic plans took minutes at this size, the linear ones
# take a second or two even on a busy machine.
HANG_GUARD_SECONDS = 120


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir()
    await upgrade_async(settings.sqlalchemy_url)
    services = Services.from_settings(settings)
    yield services
    await services.close()


@pytest.fixture
async def seeded(svc: Services) -> Seeded:
    async with svc.db.write() as conn:
        return await seed(conn, REPOSITORIES)


def plan_problems(svc: Services, statements: list[Statement]) -> dict[str, list[str]]:
    path = sqlite_path(svc.settings.sqlalchemy_url)
    assert path is not None
    found: dict[str, list[str]] = {}
    with sqlite3.connect(path) as db:
        for statement in statements:
            plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {statement.sql}", statement.parameters)]
            problems = sqlite_plan_problems(plan, statement.in_write_transaction)
            if problems:
                found[statement.sql] = problems
    return found


async def links(svc: Services) -> set[tuple[int, str]]:
    table = schema.repository_blobs
    async with svc.db.read() as conn:
        return {(int(r), str(d)) for r, d in await conn.execute(select(table.c.repository_id, table.c.digest))}


async def collect(svc: Services, statements: list[Statement], *, dry_run: bool) -> gc.Collection:
    """A run with no grace period (everything seeded is old), its statements added to `statements`."""
    with recorded_statements() as seen:
        run = gc.collect(svc, dry_run=dry_run, grace_seconds=0, upload_expiry_seconds=0)
        result = await asyncio.wait_for(run, HANG_GUARD_SECONDS)
    statements.extend(seen)
    return result


async def test_gc_at_scale_plans_every_statement_by_index_and_frees_exactly_the_garbage(
    svc: Services, seeded: Seeded
) -> None:
    statements: list[Statement] = []
    dry = await collect(svc, statements, dry_run=True)
    assert dry.links == len(seeded.unused_links)
    assert {d for d, _ in dry.blobs} == seeded.garbage_blobs
    assert await links(svc) == seeded.kept_links | seeded.unused_links, "a dry run changes nothing"

    ran = await collect(svc, statements, dry_run=False)
    assert ran.links == len(seeded.unused_links)
    assert {d for d, _ in ran.blobs} == seeded.garbage_blobs
    assert await links(svc) == seeded.kept_links

    again = await collect(svc, statements, dry_run=True)
    assert again.links == 0 and again.blobs == []
    assert any(s.in_write_transaction for s in statements), "the run's deletes were recorded"
    assert plan_problems(svc, statements) == {}


async def test_lifecycle_evaluates_outside_the_write_lock_and_expires_by_index(svc: Services, seeded: Seeded) -> None:
    with recorded_statements() as statements:
        started = lifecycle.start_lifecycle_policy_preview(svc, ROOT, ACCOUNT, "repo-1", None)
        await asyncio.wait_for(started, HANG_GUARD_SECONDS)
        got = await lifecycle.get_lifecycle_policy_preview(svc, ROOT, ACCOUNT, "repo-1")
        assert {r["imageDigest"] for r in got["previewResults"]} == seeded.expiring_images
        preview = await asyncio.wait_for(lifecycle.apply_to_repository(svc, 1, dry_run=True), HANG_GUARD_SECONDS)
        assert preview is not None
        assert {e.image.digest for e in preview.expired} == seeded.expiring_images
        run = await asyncio.wait_for(lifecycle.apply_to_repository(svc, 1, dry_run=False), HANG_GUARD_SECONDS)
        assert run is not None
        assert {e.image.digest for e in run.expired} == seeded.expiring_images
    images = schema.images
    async with svc.db.read() as conn:
        left = set((await conn.execute(select(images.c.digest).where(images.c.repository_id == 1))).scalars())
    assert not left & seeded.expiring_images and len(left) == 2
    assert any(s.in_write_transaction for s in statements), "the run's deletes were recorded"
    assert plan_problems(svc, statements) == {}


async def test_a_link_an_image_came_to_use_after_the_marking_read_is_kept(svc: Services, seeded: Seeded) -> None:
    repository_id, layer = min(seeded.unused_links)
    began = time.time()
    async with svc.db.write() as conn:
        # What a manifest PUT records: an image of the repository that refers to the layer.
        await conn.execute(insert(schema.images).values(**image_row(REPOSITORIES + 10, repository_id, "late", began)))
        await conn.execute(
            insert(schema.image_references).values(image_id=REPOSITORIES + 10, digest=layer, kind="blob")
        )
    since = began - gc.CLOCK_SKEW
    assert await gc._drop_link_batch(svc, [(repository_id, layer)], began, since) == 0
    assert (repository_id, layer) in await links(svc)
    other = max(seeded.unused_links)
    assert await gc._drop_link_batch(svc, [(repository_id, layer), other], began, since) == 1
    assert other not in await links(svc)


async def test_an_expiry_is_spared_when_its_image_changed_after_the_evaluation(svc: Services, seeded: Seeded) -> None:
    began = time.time()
    async with svc.db.read() as conn:
        candidates, parents = await lifecycle.candidates_of(conn, 1)
    policy = lifecycle.parse_policy(EXPIRING_POLICY)
    expired = lifecycle.evaluate(policy, candidates, began, parents)
    assert {e.image.digest for e in expired} == seeded.expiring_images
    since = began - lifecycle.CLOCK_SKEW
    repository = schema.repositories.update().where(schema.repositories.c.id == 1)
    async with svc.db.write() as conn:
        await conn.execute(repository.values(lifecycle_policy_text=None))
    assert await lifecycle.expire(svc, 1, policy, expired, parents, since=since) == [], "the policy was deleted"

    async with svc.db.write() as conn:
        await conn.execute(repository.values(lifecycle_policy_text=EXPIRING_POLICY))
        # A new index lists the image the old index listed: deleting it would break the new one.
        late = REPOSITORIES + 10
        await conn.execute(insert(schema.images).values(**image_row(late, 1, "late-index", began)))
        await conn.execute(
            insert(schema.image_references).values(image_id=late, digest=digest("listed"), kind="manifest")
        )
    done = await lifecycle.expire(svc, 1, policy, expired, parents, since=since)
    assert [e.image.digest for e in done] == [digest("index")]
