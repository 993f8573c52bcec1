"""Metadata for garbage-collection and lifecycle tests at scale, seeded with direct inserts (no
pushes), and a recorder of the statements a piece of code runs, with whether each ran inside a
write transaction, so a test can ask the database how it plans every one of them.

The seeded shape is the one that made GC quadratic: REPOSITORIES repositories sharing one layer,
each with one image referring to it and to a config of its own; every tenth repository also has
an unreferenced layer of its own linked, every hundredth a link to one unreferenced layer they
share. Repository 1 carries a lifecycle policy that expires an image index and an image it lists."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.store import schema

ACCOUNT = "123456789012"
SHARED = "shared-layer"
SHARED_GARBAGE = "shared-garbage"
EXPIRING_POLICY = json.dumps(
    {
        "rules": [
            {
                "rulePriority": 1,
                "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
                "action": {"type": "expire"},
            }
        ]
    }
)


def digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


@dataclass
class Seeded:
    repositories: int
    unused_links: set[tuple[int, str]] = field(default_factory=set)
    garbage_blobs: set[str] = field(default_factory=set)
    kept_links: set[tuple[int, str]] = field(default_factory=set)
    expiring_images: set[str] = field(default_factory=set)


async def seed(conn: AsyncConnection, repositories: int) -> Seeded:
    """Insert the shape described in the module docstring; every timestamp is long past."""
    seeded = Seeded(repositories)
    ids = range(1, repositories + 1)
    await conn.execute(insert(schema.accounts), [{"account_id": ACCOUNT, "created_at": 0.0}])
    await conn.execute(
        insert(schema.repositories),
        [
            {
                "id": i,
                "account_id": ACCOUNT,
                "region": "us-east-1",
                "name": f"repo-{i}",
                "created_at": 0.0,
                "lifecycle_policy_text": EXPIRING_POLICY if i == 1 else None,
            }
            for i in ids
        ],
    )
    blobs = {digest(SHARED), digest(SHARED_GARBAGE)} | {digest(f"config-{i}") for i in ids}
    links = {(i, digest(SHARED)) for i in ids} | {(i, digest(f"config-{i}")) for i in ids}
    seeded.kept_links = set(links)
    for i in ids:
        if i % 10 == 1:
            own = digest(f"garbage-{i}")
            blobs.add(own)
            seeded.unused_links.add((i, own))
            seeded.garbage_blobs.add(own)
        if i % 100 == 1:
            seeded.unused_links.add((i, digest(SHARED_GARBAGE)))
    seeded.garbage_blobs.add(digest(SHARED_GARBAGE))
    links |= seeded.unused_links
    await conn.execute(insert(schema.blobs), [{"digest": d, "size": 1, "created_at": 0.0} for d in sorted(blobs)])
    await conn.execute(
        insert(schema.repository_blobs),
        [{"repository_id": r, "digest": d, "linked_at": 0.0} for r, d in sorted(links)],
    )
    images = [image_row(i, i, f"image-{i}", 0.0) for i in ids]
    references = [(i, digest(SHARED), "blob") for i in ids] + [(i, digest(f"config-{i}"), "blob") for i in ids]
    # Repository 1: an index (oldest) listing one image, and the newest untagged image; the policy
    # keeps only the newest untagged image, so the index and the image it lists expire.
    index, listed, newest = repositories + 1, repositories + 2, repositories + 3
    images += [
        image_row(index, 1, "index", 1.0),
        image_row(listed, 1, "listed", 2.0),
        image_row(newest, 1, "newest", 3.0),
    ]
    references += [(index, digest("listed"), "manifest"), (listed, digest(SHARED), "blob")]
    references += [(newest, digest(SHARED), "blob")]
    seeded.expiring_images = {digest("index"), digest("listed")}
    await conn.execute(insert(schema.images), images)
    await conn.execute(
        insert(schema.image_references), [{"image_id": i, "digest": d, "kind": k} for i, d, k in references]
    )
    await conn.execute(
        insert(schema.tags), [{"repository_id": i, "name": "latest", "image_id": i, "updated_at": 0.0} for i in ids]
    )
    return seeded


def image_row(image_id: int, repository_id: int, name: str, pushed_at: float) -> dict[str, Any]:
    return {
        "id": image_id,
        "repository_id": repository_id,
        "digest": digest(name),
        "media_type": "application/vnd.oci.image.manifest.v1+json",
        "size": 1,
        "manifest": b"{}",
        "pushed_at": pushed_at,
    }


@dataclass(frozen=True)
class Statement:
    sql: str
    parameters: tuple[Any, ...]
    in_write_transaction: bool


@contextmanager
def recorded_statements() -> Iterator[list[Statement]]:
    """Every SELECT, UPDATE and DELETE any engine runs meanwhile. A write transaction is one that
    began by taking the write lock (SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock)."""
    seen: list[Statement] = []

    def before(conn: Any, cursor: Any, sql: str, parameters: Any, context: Any, executemany: bool) -> None:
        if sql.startswith("BEGIN IMMEDIATE") or "pg_advisory_xact_lock" in sql:
            conn.info["dockyard_writing"] = True
        elif re.match(r"\s*(SELECT|UPDATE|DELETE|WITH)\b", sql, re.IGNORECASE) and not executemany:
            seen.append(Statement(sql, tuple(parameters or ()), bool(conn.info.get("dockyard_writing"))))

    def ended(conn: Any) -> None:
        conn.info.pop("dockyard_writing", None)

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "commit", ended)
    event.listen(Engine, "rollback", ended)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", before)
        event.remove(Engine, "commit", ended)
        event.remove(Engine, "rollback", ended)


LARGE_TABLES = ("image_references", "repository_blobs", "images", "blobs", "tags")


def sqlite_plan_problems(plan: list[str], in_write_transaction: bool) -> list[str]:
    """What is wrong with an EXPLAIN QUERY PLAN's lines: a full scan of a table that grows with
    the data, references reached from a digest in a statement that joins images (each shared
    layer would walk every reference to it), or, in a write transaction, a walk over all of a
    repository's images."""
    problems = [line for line in plan if re.match(rf"SCAN ({'|'.join(LARGE_TABLES)})\b", line)]
    if any(re.search(r"\bimages\b", line) for line in plan):
        problems += [line for line in plan if "ix_image_references_digest" in line]
    if in_write_transaction:
        problems += [
            line
            for line in plan
            if re.match(r"SEARCH images USING .*\(repository_id[=<>]+\?( AND repository_id[<>]+\?)?\)$", line)
        ]
    return problems


def postgresql_plan_problems(plan: list[str]) -> list[str]:
    """The first two questions of a PostgreSQL EXPLAIN's lines, asked with sequential scans
    disabled: on test-sized tables a sequential scan is rightly cheapest, so "no Seq Scan" there
    means "an index serves this statement", which is what the planner takes as the tables grow.
    (Which of two indexes on images a write transaction's statement takes is a tie on such tables
    without statistics; the SQLite test asks that question.)"""
    problems = [line for line in plan if re.search(rf"Seq Scan on ({'|'.join(LARGE_TABLES)})\b", line)]
    if any(re.search(r" on images\b", line) for line in plan):
        problems += [line for line in plan if "ix_image_references_digest" in line]
    return problems
