"""The image write path and its hot reads cost the same in a repository of 1,000 or 100,000 images:
every statement they run is answered by an index keyed by what the request names, never by
reading a repository's images (EXPLAIN QUERY PLAN on a fresh SQLite database, never ANALYZEd, as
a new deployment runs). The counters behind the limits stay exact whichever path adds or removes
images and repositories. tests/integration/test_query_plans_images_pg.py runs the same on
PostgreSQL."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, update
from sqlalchemy.dialects import sqlite as sqlite_dialect

from dockyard.config import Limits, Settings
from dockyard.core.errors import LimitExceededException
from dockyard.core.identity.caller import root_caller
from dockyard.core.operations import lifecycle
from dockyard.core.paging import encode_token
from dockyard.core.registry import image_details, images, repositories
from dockyard.core.registry.repositories import RepositorySettings
from dockyard.core.services import Services
from dockyard.store import schema
from dockyard.store.database import upgrade_async

ACCOUNT, REGION = "123456789012", "us-east-1"
CONFIG = "sha256:" + "c" * 64
LAYER = "sha256:" + "d" * 64
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SEEDED = 150
# The tables whose size grows with the data.
GROWING = ("images", "tags", "image_references", "repositories")


def manifest(n: int) -> str:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG, "size": 10},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": LAYER, "size": 20}],
            "annotations": {"n": str(n)},
        }
    )


def index_of(children: list[str]) -> str:
    entries = [{"mediaType": OCI_MANIFEST, "digest": d, "size": 10} for d in children]
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def caller() -> Any:
    return root_caller(ACCOUNT, REGION)


async def seed(svc: Services, name: str, count: int) -> int:
    """Repository `name` with `count` images by direct inserts (every other one tagged t<n>), with
    its image count kept as the core keeps it."""
    await repositories.create_repository(svc, caller(), ACCOUNT, name, RepositorySettings())
    async with svc.db.write() as conn:
        repo = await repositories.find(conn, ACCOUNT, REGION, name)
        assert repo is not None
        for blob in (CONFIG, LAYER):
            if (await conn.execute(select(schema.blobs.c.digest).where(schema.blobs.c.digest == blob))).first() is None:
                await conn.execute(schema.blobs.insert().values(digest=blob, size=10, created_at=0.0))
            await conn.execute(schema.repository_blobs.insert().values(repository_id=repo.id, digest=blob, linked_at=0))
        rows = [
            {
                "repository_id": repo.id,
                "digest": digest(n),
                "media_type": OCI_MANIFEST,
                "size": 20,
                "manifest": b"{}",
                "pushed_at": float(n),
            }
            for n in range(1, count + 1)
        ]
        if rows:
            await conn.execute(schema.images.insert(), rows)
        ids = dict((await conn.execute(select(schema.images.c.digest, schema.images.c.id))).all())
        tagged = [
            {"repository_id": repo.id, "name": f"t{n}", "image_id": ids[digest(n)], "updated_at": 0.0}
            for n in range(1, count + 1, 2)
        ]
        if tagged:
            await conn.execute(schema.tags.insert(), tagged)
        references = [
            {"image_id": ids[digest(n)], "digest": d, "kind": "blob"}
            for n in range(1, count + 1)
            for d in (CONFIG, LAYER)
        ]
        if references:
            await conn.execute(schema.image_references.insert(), references)
        await conn.execute(
            update(schema.repositories).where(schema.repositories.c.id == repo.id).values(image_count=count)
        )
    return repo.id


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Services]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'metadata.db'}"
    await upgrade_async(url)
    limits = Limits(repositories_per_account=1000, images_per_repository=1000)
    services = Services.from_settings(Settings(data_dir=tmp_path, database_url=url, limits=limits))
    yield services
    await services.close()


# --- what ran, and how SQLite answers it ------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    statement: str
    parameters: Any


@contextmanager
def statements_run() -> Iterator[list[Ran]]:
    """Every statement any engine runs meanwhile, with its parameters."""
    seen: list[Ran] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if not executemany and re.match(r"\s*(SELECT|UPDATE|DELETE)", statement, re.IGNORECASE):
            seen.append(Ran(statement, parameters))

    event.listen(Engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", note)


def sqlite_plan(path: Path, ran: Ran) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + ran.statement, tuple(ran.parameters or ()))]


def statement_plan(path: Path, statement: Any, params: dict[str, Any]) -> list[str]:
    """The plan of a statement built once with bind parameters (the fast read paths')."""
    compiled = statement.compile(dialect=sqlite_dialect.dialect())
    values = compiled.construct_params(params)
    return sqlite_plan(path, Ran(str(compiled), [values[name] for name in compiled.positiontup]))


_REPOSITORY_ONLY = re.compile(r"\((repository_id|account_id)=\?( AND region=\?)?\)$")


def reads_with_growth(plan: list[str]) -> list[str]:
    """Plan steps whose cost grows with the data: a SCAN of a growing table, or a SEARCH keyed
    only by the repository (every image of it) or the registry (every repository of it)."""
    growing = "|".join(GROWING)
    return [
        step
        for step in plan
        if re.match(rf"SCAN ({growing})\b", step)
        or (re.match(rf"SEARCH ({growing})\b", step) and _REPOSITORY_ONLY.search(step.removesuffix(" LEFT-JOIN")))
    ]


def path_of(svc: Services) -> Path:
    return Path(svc.settings.database_url.removeprefix("sqlite+aiosqlite:///"))


async def assert_keyed(svc: Services, action: Callable[[], Awaitable[Any]]) -> list[Ran]:
    with statements_run() as ran:
        await action()
    touching = [r for r in ran if re.search(rf"\b({'|'.join(GROWING)})\b", r.statement)]
    assert touching
    bad = {r.statement: reads_with_growth(sqlite_plan(path_of(svc), r)) for r in touching}
    assert {statement: steps for statement, steps in bad.items() if steps} == {}
    return touching


# --- plans ------------------------------------------------------------------------------------


async def test_batch_delete_of_a_hundred_digests_reads_by_key(svc: Services) -> None:
    await seed(svc, "big", SEEDED)
    ids = [{"imageDigest": digest(n)} for n in range(11, 111)]

    async def delete() -> None:
        result = await image_details.batch_delete_image(svc, caller(), ACCOUNT, "big", ids)
        assert result["failures"] == [] and len(result["imageIds"]) == 100

    await assert_keyed(svc, delete)


async def test_batch_delete_of_a_hundred_tags_reads_by_key(svc: Services) -> None:
    await seed(svc, "big", SEEDED)
    ids = [{"imageTag": f"t{n}"} for n in range(1, 201, 2)]

    async def delete() -> None:
        result = await image_details.batch_delete_image(svc, caller(), ACCOUNT, "big", ids)
        assert len(result["imageIds"]) == 75 and len(result["failures"]) == 25

    await assert_keyed(svc, delete)


async def test_a_push_checks_the_image_limit_without_counting(svc: Services) -> None:
    await seed(svc, "big", SEEDED)
    children = [digest(n) for n in range(1, 21)]

    async def push() -> None:
        await image_details.put_image(svc, caller(), ACCOUNT, "big", manifest(1), tag="latest")
        await images.put_manifest(svc, caller(), ACCOUNT, "big", index_of(children).encode(), OCI_INDEX, tag="multi")

    ran = await assert_keyed(svc, push)
    assert not [r.statement for r in ran if "count(" in r.statement.lower()]


async def test_create_repository_checks_the_limit_without_counting(svc: Services) -> None:
    for n in range(30):
        await repositories.create_repository(svc, caller(), ACCOUNT, f"repo{n}", RepositorySettings())

    async def create() -> None:
        await repositories.create_repository(svc, caller(), ACCOUNT, "one-more", RepositorySettings())

    ran = await assert_keyed(svc, create)
    assert not [r.statement for r in ran if "count(" in r.statement.lower()]


async def test_a_list_images_page_reads_its_own_images_only(svc: Services) -> None:
    """The page's images come first, by index from the page's position and no further than the
    page needs (a LIMITed window, which SQLite runs as a co-routine or materialises); only their
    rows are joined and sorted."""
    await seed(svc, "big", SEEDED)
    path = path_of(svc)
    for (status, paged, _), statement in image_details._LIST_STATEMENTS.items():
        params = {"repository_id": 1, "limit": 101, "last_id": 100, "last_tag": "t99", "status": "ACTIVE"}
        plan = statement_plan(path, statement, params)
        assert plan[0] in ("CO-ROUTINE page_images", "MATERIALIZE page_images"), (status, plan)
        images_step = next(step for step in plan if step.startswith(("SEARCH images", "SCAN images")))
        key = r"\(repository_id=\? AND id>=?\?\)" if paged else r"\(repository_id=\?\)"
        assert re.search(key, images_step), (status, plan)
        assert not [s for s in plan if re.match(rf"SCAN ({'|'.join(GROWING)})\b", s)], (status, plan)


def pages_by_index(plan: list[str]) -> list[str]:
    """What is wrong with the plan of one page: a scan of a growing table, or a sort of rows a
    read keyed only by the repository (or registry) found: a page read in its index's order stops
    at its LIMIT, a sorted one reads everything first."""
    problems = [step for step in plan if re.match(rf"SCAN ({'|'.join(GROWING)})\b", step)]
    if any(step.startswith("USE TEMP B-TREE FOR") and "RIGHT PART" not in step for step in plan):
        problems += reads_with_growth(plan)
    return problems


async def test_describe_images_pages_read_in_index_order(svc: Services) -> None:
    await seed(svc, "big", SEEDED)
    path = path_of(svc)
    params = {"repository_id": 1, "limit": 101, "after": 100, "status": "ACTIVE", "first": 1, "last": 100}
    for key, statement in image_details._DESCRIBE_STATEMENTS.items():
        plan = statement_plan(path, statement, params)
        assert pages_by_index(plan) == [], (key, plan)
        assert re.search(r"USING INDEX ix_images_repository_order \(repository_id=\?( AND id>\?)?\)$", plan[0]), plan
    for statement in (image_details._TAGS_IN_RANGE, image_details._SCANS_IN_RANGE):
        plan = statement_plan(path, statement, params)
        assert reads_with_growth(plan) == [] and pages_by_index(plan) == [], plan


async def test_describe_repositories_pages_read_in_index_order(svc: Services) -> None:
    for n in range(40):
        await repositories.create_repository(svc, caller(), ACCOUNT, f"repo{n:02d}", RepositorySettings())

    async def pages() -> None:
        first = await repositories.describe_repositories(svc, caller(), ACCOUNT, max_results=25)
        later = await repositories.describe_repositories(svc, caller(), ACCOUNT, next_token=first["nextToken"])
        assert len(first["repositories"]) + len(later["repositories"]) == 40

    with statements_run() as ran:
        await pages()
    pages_read = [r for r in ran if re.search(r"\bFROM repositories\b", r.statement) and "LIMIT" in r.statement]
    assert len(pages_read) == 2
    for page in pages_read:
        plan = sqlite_plan(path_of(svc), page)
        assert pages_by_index(plan) == [], plan
        assert "USING INDEX sqlite_autoindex_repositories_1 (account_id=? AND region=?" in plan[0], plan


async def test_manifest_get_by_tag_and_by_digest_reads_by_key(svc: Services) -> None:
    await seed(svc, "big", SEEDED)
    path = path_of(svc)
    params = {"account": ACCOUNT, "region": REGION, "name": "big", "reference": "t1"}
    for statement in (images._BY_TAG, images._BY_DIGEST):
        plan = statement_plan(path, statement, params)
        assert reads_with_growth(plan) == [] and not [s for s in plan if s.startswith("SCAN")], plan


# --- deep pages still say the same ------------------------------------------------------------


async def test_list_images_pages_are_unchanged(svc: Services) -> None:
    await seed(svc, "big", 60)
    async with svc.db.write() as conn:  # an image with several tags, and tags sorting across pages
        for name in ("a", "zz", "m"):
            await conn.execute(schema.tags.insert().values(repository_id=1, name=name, image_id=7, updated_at=0.0))
    for status in (None, "TAGGED", "UNTAGGED"):
        walked: list[dict[str, str]] = []
        token = None
        while True:
            page = await image_details.list_images(svc, caller(), ACCOUNT, "big", status, None, 7, token)
            walked.extend(page["imageIds"])
            token = page.get("nextToken")
            if token is None:
                break
        whole = await image_details.list_images(svc, caller(), ACCOUNT, "big", status, None, 1000)
        assert walked == whole["imageIds"]
    # A token minted before the change (same format) still lands where it did.
    after_seven = await image_details.list_images(svc, caller(), ACCOUNT, "big", None, None, 3, encode_token([7, "a"]))
    assert [i.get("imageTag") for i in after_seven["imageIds"]] == ["m", "t7", "zz"]


# --- the counters -----------------------------------------------------------------------------


async def counted(svc: Services, name: str) -> tuple[int, int]:
    """(repositories.image_count, the real count) for repository `name`."""
    async with svc.db.read() as conn:
        repo = await repositories.find(conn, ACCOUNT, REGION, name)
        assert repo is not None
        kept = (
            await conn.execute(select(schema.repositories.c.image_count).where(schema.repositories.c.id == repo.id))
        ).scalar_one()
        real = (await conn.execute(select(func.count()).where(schema.images.c.repository_id == repo.id))).scalar_one()
    return kept, real


async def registry_count(svc: Services) -> tuple[int, int]:
    async with svc.db.read() as conn:
        kept = await repositories.repository_count(conn, ACCOUNT, REGION)
        real = (await conn.execute(select(func.count()).select_from(schema.repositories))).scalar_one()
    return kept, real


async def test_image_count_follows_every_path(svc: Services) -> None:
    await seed(svc, "big", 10)
    for n in range(3):
        await image_details.put_image(svc, caller(), ACCOUNT, "big", manifest(n), tag=f"new{n}")
    assert await counted(svc, "big") == (13, 13)
    await image_details.batch_delete_image(
        svc, caller(), ACCOUNT, "big", [{"imageDigest": digest(2)}, {"imageTag": "t1"}]
    )
    assert await counted(svc, "big") == (11, 11)
    await images.delete_reference(svc, caller(), ACCOUNT, "big", digest(4))
    assert await counted(svc, "big") == (10, 10)
    await images.delete_reference(svc, caller(), ACCOUNT, "big", "t3")  # the tag only
    assert await counted(svc, "big") == (10, 10)
    rule = {
        "rulePriority": 1,
        "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 2},
        "action": {"type": "expire"},
    }
    async with svc.db.write() as conn:
        await conn.execute(
            update(schema.repositories)
            .where(schema.repositories.c.name == "big")
            .values(lifecycle_policy_text=json.dumps({"rules": [rule]}))
        )
    run = await lifecycle.apply_to_repository(svc, 1, dry_run=False)
    assert run is not None and run.expired
    assert await counted(svc, "big") == (10 - len(run.expired), 10 - len(run.expired))


async def test_the_image_limit_is_exact_after_deletes(svc: Services) -> None:
    svc.settings.limits.images_per_repository = 5
    await seed(svc, "small", 4)
    await image_details.put_image(svc, caller(), ACCOUNT, "small", manifest(0), tag="fifth")
    with pytest.raises(LimitExceededException):
        await image_details.put_image(svc, caller(), ACCOUNT, "small", manifest(1), tag="sixth")
    await image_details.batch_delete_image(svc, caller(), ACCOUNT, "small", [{"imageTag": "fifth"}])
    await image_details.put_image(svc, caller(), ACCOUNT, "small", manifest(1), tag="sixth")
    with pytest.raises(LimitExceededException):
        await image_details.put_image(svc, caller(), ACCOUNT, "small", manifest(2), tag="seventh")
    assert await counted(svc, "small") == (5, 5)


async def test_repository_count_follows_creates_and_forced_deletes(svc: Services) -> None:
    svc.settings.limits.repositories_per_account = 3
    await seed(svc, "full", 5)
    await repositories.create_repository(svc, caller(), ACCOUNT, "two", RepositorySettings())
    await repositories.create_repository(svc, caller(), ACCOUNT, "three", RepositorySettings())
    with pytest.raises(LimitExceededException):
        await repositories.create_repository(svc, caller(), ACCOUNT, "four", RepositorySettings())
    await repositories.delete_repository(svc, caller(), ACCOUNT, "full", force=True)
    assert await registry_count(svc) == (2, 2)
    await repositories.create_repository(svc, caller(), ACCOUNT, "four", RepositorySettings())
    assert await registry_count(svc) == (3, 3)
    with pytest.raises(LimitExceededException):
        await repositories.create_repository(svc, caller(), ACCOUNT, "five", RepositorySettings())
