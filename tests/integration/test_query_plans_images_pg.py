"""The image and repository paths the growth benchmark times (bench/growth.py), planned by
PostgreSQL: the SQLite test's requests (tests/unit/test_query_plans_images.py) on a fresh database
of a real cluster, with no statistics (autovacuum kept off the growing tables, so no ANALYZE
happens under the test: a new deployment's state, pinned).

Every statement the requests run is EXPLAINed with the parameters it ran with and sequential
scans disabled (on test-sized tables a sequential scan is rightly cheapest, so "none left" means
"an index serves it", which is what the planner takes as the tables grow): no sequential scan of a
growing table, and no sort of rows that a read keyed only by the repository (or the registry),
or by it and the start of a range, found, unless a LIMIT bounds that read: a page read in its
index's order stops at its LIMIT, a sorted one reads the rest of the repository first. (Which of
two indexes on images a statement takes is a tie on such small tables without statistics:
tests/unit/test_query_plans_images.py asks that on SQLite, whose choice does not depend on
statistics it never has.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from dockyard.config import Limits, Settings
from dockyard.core.paging import encode_token
from dockyard.core.registry import image_details, images, repositories
from dockyard.core.registry.repositories import RepositorySettings
from dockyard.core.services import Services
from dockyard.store.database import upgrade_async
from tests.support.services import PostgresCluster, postgres_cluster  # noqa: F401
from tests.support.shared_layers import LARGE_TABLES, Statement, recorded_statements
from tests.unit.test_query_plans_images import (
    ACCOUNT,
    GROWING,
    OCI_INDEX,
    caller,
    digest,
    index_of,
    manifest,
    seed,
)

SEEDED = 150
LARGE = sorted({*GROWING, *LARGE_TABLES})
_databases = iter(range(1_000_000))


@pytest.fixture
async def svc(tmp_path: Path, postgres_cluster: PostgresCluster) -> AsyncIterator[Services]:  # noqa: F811
    url = postgres_cluster.create_database(f"image_plans_{next(_databases)}_{tmp_path.name[-12:].lower()}")
    await upgrade_async(url)
    limits = Limits(repositories_per_account=1000, images_per_repository=1000)
    settings = Settings(data_dir=tmp_path / "data", database_url=url, limits=limits)
    settings.data_dir.mkdir()
    services = Services.from_settings(settings)
    async with services.db.write() as conn:
        for table in GROWING:
            await conn.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
    yield services
    await services.close()


@dataclass
class Node:
    """One node of a PostgreSQL EXPLAIN: how deep it sits, its line, and its detail lines."""

    depth: int
    line: str
    details: list[str] = field(default_factory=list)


def nodes_of(plan: list[str]) -> list[Node]:
    found: list[Node] = []
    for line in plan:
        arrow = line.find("->  ")
        if not found or arrow >= 0:
            found.append(Node(arrow + 1 if arrow >= 0 else 0, line.strip().removeprefix("->").strip()))
        else:
            found[-1].details.append(line.strip())
    return found


def reads_open_range(node: Node) -> bool:
    """An index read of a growing table that only a LIMIT above it could stop: its condition
    names the repository (or registry) and at most a one-sided range after it (`id >= 140`: the
    rest of the repository), no other key and no closed range."""
    if not re.search(rf"\bon ({'|'.join(GROWING)})\b", node.line):
        return False
    for detail in node.details:
        condition = re.match(r"(?:Index|Recheck) Cond: \((.*)\)$", detail)
        if condition is None:
            continue
        compared = re.findall(r"\(?(\w+)\)?(?:::[\w ]+?)? (=|<>|>=|<=|>|<) ", condition.group(1))
        scope = {"repository_id", "account_id", "region"}
        if any(op == "=" and column not in scope for column, op in compared):
            return False
        lower = {column for column, op in compared if op in (">", ">=")}
        upper = {column for column, op in compared if op in ("<", "<=")}
        return not (lower & upper)
    return False


def unbounded_sorts(plan: list[str]) -> list[str]:
    """Sort nodes fed by an open-ended read (reads_open_range) with no LIMIT between them."""
    nodes = nodes_of(plan)
    problems: list[str] = []
    for at, node in enumerate(nodes):
        if not node.line.startswith("Sort "):
            continue
        below: list[Node] = []  # the path from the sort down to the current node
        for child in nodes[at + 1 :]:
            if child.depth <= node.depth:
                break
            while below and below[-1].depth >= child.depth:
                below.pop()
            below.append(child)
            limited = any(step.line.startswith("Limit ") for step in below[:-1])
            if reads_open_range(child) and not limited:
                problems.append(f"{node.line} <- {child.line} {child.details}")
    return problems


async def explain(svc: Services, statement: Statement) -> list[str]:
    async with svc.db.read() as conn:
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        rows = await raw.fetch(f"EXPLAIN {statement.sql}", *statement.parameters)
    return [row[0] for row in rows]


async def assert_planned_by_index(svc: Services, action: Callable[[], Awaitable[Any]]) -> list[Statement]:
    """Runs `action`, then EXPLAINs every statement of it that reads a growing table."""
    with recorded_statements() as seen:
        await action()
    growing = "|".join(GROWING)
    touching = [s for s in seen if re.search(rf"\b({growing})\b", s.sql)]
    assert touching
    found: dict[str, list[str]] = {}
    for statement in touching:
        plan = await explain(svc, statement)
        # (Not shared_layers' rule against references reached by digest: here the digests are
        # the requested images', and only the manifest lists that name one refer to it.)
        problems = [line for line in plan if re.search(rf"Seq Scan on ({'|'.join(LARGE)})\b", line)]
        problems += unbounded_sorts(plan)
        if problems:
            found[statement.sql] = problems + ["plan:", *plan]
    assert found == {}
    return touching


# --- the writes ---------------------------------------------------------------------------------


async def test_batch_delete_of_a_hundred_digests_and_tags_reads_by_key(svc: Services) -> None:
    await seed(svc, "big", SEEDED)
    by_digest = [{"imageDigest": digest(n)} for n in range(12, 112, 2)]
    by_tag = [{"imageTag": f"t{n}"} for n in range(11, 111, 2)]

    async def delete() -> None:
        result = await image_details.batch_delete_image(svc, caller(), ACCOUNT, "big", by_digest + by_tag)
        assert result["failures"] == [] and len(result["imageIds"]) == 100

    seen = await assert_planned_by_index(svc, delete)
    assert any(s.in_write_transaction for s in seen)


async def test_pushes_read_by_key_and_count_nothing(svc: Services) -> None:
    await seed(svc, "big", SEEDED)
    children = [digest(n) for n in range(1, 21)]

    async def push() -> None:
        await image_details.put_image(svc, caller(), ACCOUNT, "big", manifest(1), tag="latest")
        await images.put_manifest(svc, caller(), ACCOUNT, "big", index_of(children).encode(), OCI_INDEX, tag="multi")

    seen = await assert_planned_by_index(svc, push)
    assert not [s.sql for s in seen if "count(" in s.sql.lower()]


async def test_create_repository_reads_by_key_and_counts_nothing(svc: Services) -> None:
    for n in range(30):
        await repositories.create_repository(svc, caller(), ACCOUNT, f"repo{n}", RepositorySettings())

    async def create() -> None:
        await repositories.create_repository(svc, caller(), ACCOUNT, "one-more", RepositorySettings())

    seen = await assert_planned_by_index(svc, create)
    assert not [s.sql for s in seen if "count(" in s.sql.lower()]


# --- the reads ----------------------------------------------------------------------------------


async def test_manifest_get_by_tag_and_by_digest_reads_by_key(svc: Services) -> None:
    await seed(svc, "big", SEEDED)

    async def get() -> None:
        for reference in ("t11", digest(12)):
            _, image = await images.get_manifest(svc, caller(), ACCOUNT, "big", reference, record_pull=False)
            assert image.digest in (digest(11), digest(12))

    await assert_planned_by_index(svc, get)


async def test_image_pages_start_at_their_position(svc: Services) -> None:
    await seed(svc, "big", SEEDED)

    async def pages() -> None:
        first = await image_details.describe_images(svc, caller(), ACCOUNT, "big", max_results=100)
        later = await image_details.describe_images(
            svc, caller(), ACCOUNT, "big", max_results=100, next_token=first["nextToken"]
        )
        assert len(first["imageDetails"]) + len(later["imageDetails"]) == SEEDED
        listed = await image_details.list_images(svc, caller(), ACCOUNT, "big", max_results=100)
        deep = await image_details.list_images(
            svc, caller(), ACCOUNT, "big", max_results=100, next_token=encode_token([140, "t139"])
        )
        assert len(listed["imageIds"]) == 100 and deep["imageIds"]

    await assert_planned_by_index(svc, pages)


async def test_repository_pages_start_at_their_position(svc: Services) -> None:
    for n in range(150):
        await repositories.create_repository(svc, caller(), ACCOUNT, f"repo{n:03d}", RepositorySettings())

    async def pages() -> None:
        first = await repositories.describe_repositories(svc, caller(), ACCOUNT, max_results=100)
        later = await repositories.describe_repositories(
            svc, caller(), ACCOUNT, max_results=100, next_token=first["nextToken"]
        )
        assert len(first["repositories"]) + len(later["repositories"]) == 150

    await assert_planned_by_index(svc, pages)
