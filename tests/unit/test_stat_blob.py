"""The blob HEAD/GET's lookup (core.registry.blobs.stat_blob): one indexed read for the repository
and the blob's link, authorised before anything is found missing, and a link refreshed only
when the caller says the lookup is a push's check."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.dialects import sqlite as sqlite_dialect

from dockyard.config import Settings
from dockyard.core.errors import AccessDeniedException, BlobUnknown, RepositoryNotFoundException
from dockyard.core.identity.caller import root_caller
from dockyard.core.registry import blobs, repositories
from dockyard.core.registry.repositories import RepositorySettings
from dockyard.core.services import Services
from dockyard.store import fastread, schema
from dockyard.store.database import upgrade_async

OWNER, OTHER, REGION = "123456789012", "210987654321", "us-east-1"
PULL, CHECK = "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"
UNKNOWN = "sha256:" + "0" * 64
rb = schema.repository_blobs


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Services]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'metadata.db'}"
    await upgrade_async(url)
    services = Services.from_settings(Settings(data_dir=tmp_path, database_url=url))
    yield services
    await services.close()


async def stored_blob(svc: Services, repository: str, data: bytes) -> str:
    """`data` stored and linked into `repository` (created), its link dated at the epoch."""
    await repositories.create_repository(svc, root_caller(OWNER, REGION), OWNER, repository, RepositorySettings())
    digest = await svc.blobs.put(data)
    async with svc.db.write() as conn:
        repo = await repositories.find(conn, OWNER, REGION, repository)
        assert repo is not None
        await blobs.link(conn, repo.id, digest, len(data))
        await conn.execute(update(rb).where(rb.c.digest == digest).values(linked_at=0.0))
    return digest


async def linked_at(svc: Services, digest: str) -> float:
    async with svc.db.read() as conn:
        return (await conn.execute(select(rb.c.linked_at).where(rb.c.digest == digest))).scalar_one()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The statements fastread runs meanwhile."""
    seen: list[Any] = []
    fetch = fastread.fetch

    async def counted(db: Any, statement: Any, params: Any) -> Any:
        seen.append(statement)
        return await fetch(db, statement, params)

    monkeypatch.setattr(fastread, "fetch", counted)
    return seen


async def test_a_blob_is_found_with_one_indexed_read(svc: Services, reads: list[Any]) -> None:
    digest = await stored_blob(svc, "app", b"layer bytes")
    repo, size = await blobs.stat_blob(svc, root_caller(OWNER, REGION), OWNER, "app", digest, PULL, refresh_link=False)
    assert (repo.name, size) == ("app", len(b"layer bytes"))
    assert len(reads) == 1
    compiled = reads[0].compile(dialect=sqlite_dialect.dialect())
    values = compiled.construct_params({"account": OWNER, "region": REGION, "name": "app", "digest": digest})
    database = svc.settings.database_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(database) as db:
        plan = [
            row[3]
            for row in db.execute("EXPLAIN QUERY PLAN " + str(compiled), [values[n] for n in compiled.positiontup])
        ]
    assert not [step for step in plan if step.startswith("SCAN")], plan


async def test_what_is_missing_is_told_once_the_caller_may_ask(svc: Services) -> None:
    digest = await stored_blob(svc, "app", b"layer bytes")
    owner, stranger = root_caller(OWNER, REGION), root_caller(OTHER, REGION)
    for repository, blob in (("app", UNKNOWN), ("nothing-here", digest), ("app", digest)):
        with pytest.raises(AccessDeniedException):
            await blobs.stat_blob(svc, stranger, OWNER, repository, blob, PULL, refresh_link=False)
    with pytest.raises(RepositoryNotFoundException):
        await blobs.stat_blob(svc, owner, OWNER, "nothing-here", digest, PULL, refresh_link=False)
    with pytest.raises(BlobUnknown) as unknown:
        await blobs.stat_blob(svc, owner, OWNER, "app", UNKNOWN, PULL, refresh_link=False)
    assert unknown.value.message == (
        f"The layer with digest '{UNKNOWN}' does not exist in the repository with name 'app' "
        f"in the registry with id '{OWNER}'"
    )


async def test_only_a_push_check_refreshes_the_link(svc: Services) -> None:
    digest = await stored_blob(svc, "app", b"layer bytes")
    owner = root_caller(OWNER, REGION)
    # Whatever the action, the caller decides: a pull-side lookup leaves the link's age alone...
    await blobs.stat_blob(svc, owner, OWNER, "app", digest, CHECK, refresh_link=False)
    assert await linked_at(svc, digest) == 0.0
    # ...and a push's check keeps it from garbage collection.
    await blobs.stat_blob(svc, owner, OWNER, "app", digest, PULL, refresh_link=True)
    assert await linked_at(svc, digest) > 0.0
