"""The claimed-queue helper (store/claims.py) on SQLite: claimers racing from two databases (as two
processes would: each has its own write lock file descriptor and connections) and several tasks
each claim every row exactly once, oldest first; a lease not renewed is taken over, a renewed or
released one behaves as its holder says, and a row not yet due waits."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, create_engine, insert, select, update

from dockyard.store.claims import ClaimedQueue
from dockyard.store.database import Database

ROWS = 60
CLAIMERS_PER_DATABASE = 3
LEASE = 60.0

metadata = MetaData()
work = Table(
    "work",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("requested_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("claimed_by", String(64)),
    Column("claimed_at", Float),
)
QUEUE = ClaimedQueue(work, key=(work.c.id,), open=work.c.status == "WAITING", oldest_first=work.c.requested_at)
DEFERRING = ClaimedQueue(
    work,
    key=(work.c.id,),
    open=work.c.status == "WAITING",
    oldest_first=work.c.next_attempt_at,
    due_at=work.c.next_attempt_at,
)


@pytest.fixture
def url(tmp_path: Path) -> str:
    path = tmp_path / "queue.db"
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def databases(url: str) -> AsyncIterator[tuple[Database, Database]]:
    first, second = Database(url, durable=False), Database(url, durable=False)
    yield first, second
    await first.close()
    await second.close()


async def add_rows(db: Database, count: int, *, due_in: float = -1.0) -> None:
    moment = time.time()
    # Requested in the reverse of their ids, so that claiming in id order would be caught.
    rows = [
        {"id": i, "status": "WAITING", "requested_at": moment - i, "next_attempt_at": moment + due_in}
        for i in range(1, count + 1)
    ]
    async with db.write() as conn:
        await conn.execute(insert(work), rows)


async def claim_one(queue: ClaimedQueue, db: Database, node: str) -> int | None:
    async with queue.claim_next(db, node, LEASE) as claimed:
        return None if claimed is None else int(claimed.row.id)


async def claimed_by(db: Database) -> dict[int, str | None]:
    async with db.read() as conn:
        return {row.id: row.claimed_by for row in await conn.execute(select(work.c.id, work.c.claimed_by))}


async def test_racing_claimers_take_every_row_once(databases: tuple[Database, Database]) -> None:
    await add_rows(databases[0], ROWS)
    taken: list[tuple[str, int]] = []

    async def claimer(db: Database, node: str) -> None:
        while (row_id := await claim_one(QUEUE, db, node)) is not None:
            taken.append((node, row_id))
            await asyncio.sleep(0)  # let the others interleave

    await asyncio.gather(
        *(claimer(db, f"node-{d}-{c}") for d, db in enumerate(databases) for c in range(CLAIMERS_PER_DATABASE))
    )
    assert sorted(row_id for _, row_id in taken) == list(range(1, ROWS + 1))
    assert Counter(row_id for _, row_id in taken).most_common(1)[0][1] == 1
    assert await claimed_by(databases[0]) == {row_id: node for node, row_id in taken}
    assert len({node for node, _ in taken}) > 1, "more than one claimer took part"


async def test_claims_take_the_oldest_first(databases: tuple[Database, Database]) -> None:
    db = databases[0]
    await add_rows(db, 5)
    assert [await claim_one(QUEUE, db, "node") for _ in range(6)] == [5, 4, 3, 2, 1, None]


async def test_an_expired_lease_is_claimed_again(databases: tuple[Database, Database]) -> None:
    first, second = databases
    await add_rows(first, 1)
    assert await claim_one(QUEUE, first, "first") == 1
    assert await claim_one(QUEUE, second, "second") is None

    # A renewed lease stays with its holder.
    async with first.write() as conn:
        await conn.execute(update(work).values(claimed_at=time.time() - LEASE / 2))
    await QUEUE.renew(first, (1,), "first")
    async with first.write() as conn:
        await conn.execute(update(work).values(claimed_at=work.c.claimed_at - LEASE / 2 - 1))
    assert await claim_one(QUEUE, second, "second") is None

    # One not renewed for a whole lease is taken over; its old holder can neither renew nor release it.
    async with first.write() as conn:
        await conn.execute(update(work).values(claimed_at=time.time() - LEASE - 1))
    assert await claim_one(QUEUE, second, "second") == 1
    await QUEUE.renew(first, (1,), "first")
    await QUEUE.release(first, (1,), "first")
    assert await claimed_by(first) == {1: "second"}
    assert await claim_one(QUEUE, first, "first") is None

    # Released by its holder, it is claimable at once.
    await QUEUE.release(second, (1,), "second")
    assert await claim_one(QUEUE, first, "first") == 1


async def test_closed_and_not_yet_due_rows_wait(databases: tuple[Database, Database]) -> None:
    db = databases[0]
    await add_rows(db, 2, due_in=3600.0)
    assert await claim_one(DEFERRING, db, "node") is None
    async with db.write() as conn:
        await conn.execute(update(work).values(next_attempt_at=time.time() - 1))
        await conn.execute(update(work).where(work.c.id == 1).values(status="DONE"))
    assert await claim_one(DEFERRING, db, "node") == 2
    assert await claim_one(DEFERRING, db, "node") is None


async def test_holding_renews_and_hands_back_when_cancelled(databases: tuple[Database, Database]) -> None:
    db = databases[0]
    await add_rows(db, 1)
    assert await claim_one(QUEUE, db, "node") == 1
    async with db.write() as conn:
        await conn.execute(update(work).values(claimed_at=0.0))
    working = asyncio.Event()

    async def work_on_it() -> None:
        async with QUEUE.holding(db, (1,), "node", lease_seconds=0.3):
            working.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(work_on_it())
    await working.wait()
    deadline = time.monotonic() + 30
    while await _claimed_at(db) == 0.0:
        assert time.monotonic() < deadline, "the claim was never renewed"
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await claimed_by(db) == {1: None}


async def _claimed_at(db: Database) -> float | None:
    async with db.read() as conn:
        return (await conn.execute(select(work.c.claimed_at))).scalar()
