"""Group commit (dockyard.store.group_commit): write transactions that queue together share one
commit, each still runs alone and sees the ones before it, a failing one takes only its own
changes back, and writers in two processes queue on the file lock without errors."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

import pytest
from sqlalchemy import event, text

from dockyard.store.database import Database
from dockyard.store.group_commit import NestedWriteError


async def make_db(path: Path) -> Database:
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.write() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER)"))
    return db


async def rows(db: Database) -> dict[str, int]:
    async with db.read() as conn:
        return {k: v for k, v in (await conn.execute(text("SELECT k, v FROM t"))).all()}


async def test_transactions_queued_together_share_commits(tmp_path: Path) -> None:
    db = await make_db(tmp_path / "db.sqlite")
    commits = 0

    def count(_conn: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(db._writer.sync_engine, "commit", count)

    async def put(i: int) -> None:
        async with db.write() as conn:
            # Each transaction sees everything committed or written before it in its batch.
            before = (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one()
            await conn.execute(text("INSERT INTO t VALUES (:k, :v)"), {"k": f"k{i}", "v": before})
        # Once write() returns, the change is committed: a fresh reader sees it.
        assert f"k{i}" in await rows(db)

    await asyncio.gather(*(put(i) for i in range(100)))
    stored = await rows(db)
    assert len(stored) == 100
    # Every transaction counted the rows before it: the counts are 0..99, each once (serial order).
    assert sorted(stored.values()) == list(range(100))
    assert commits < 100
    await db.close()


async def test_a_failing_transaction_takes_back_only_its_own_changes(tmp_path: Path) -> None:
    db = await make_db(tmp_path / "db.sqlite")

    async def put(key: str, fail: bool) -> None:
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t VALUES (:k, 1)"), {"k": key})
            if fail:
                raise ValueError(key)

    results = await asyncio.gather(*(put(f"k{i}", i % 3 == 0) for i in range(30)), return_exceptions=True)
    failed = {str(r) for r in results if isinstance(r, ValueError)}
    assert failed == {f"k{i}" for i in range(0, 30, 3)}
    assert set(await rows(db)) == {f"k{i}" for i in range(30) if i % 3}
    await db.close()


async def test_a_write_inside_a_write_is_refused_rather_than_waiting_for_itself(tmp_path: Path) -> None:
    db = await make_db(tmp_path / "db.sqlite")
    with pytest.raises(NestedWriteError):
        async with db.write(), db.write():
            pass
    # The writer is free again.
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO t VALUES ('after', 1)"))
    assert await rows(db) == {"after": 1}
    await db.close()


async def test_a_cancelled_waiter_does_not_leave_the_batch_open(tmp_path: Path) -> None:
    db = await make_db(tmp_path / "db.sqlite")
    inside = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t VALUES ('first', 1)"))
            inside.set()
            await release.wait()

    async def second() -> None:
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t VALUES ('second', 1)"))

    one = asyncio.create_task(first())
    await inside.wait()
    two = asyncio.create_task(second())
    while db._writes._waiting == 0:  # the second is queued behind the first
        await asyncio.sleep(0)
    release.set()
    await asyncio.sleep(0)
    two.cancel()
    # The first left its batch open for the second; the second gave up: the first still commits.
    await asyncio.wait_for(one, 30)
    assert "first" in await rows(db)
    await db.close()


def _writer_process(path: str, prefix: str, count: int) -> None:
    async def run() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")

        async def put(i: int) -> None:
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO t VALUES (:k, 1)"), {"k": f"{prefix}{i}"})

        await asyncio.gather(*(put(i) for i in range(count)))
        await db.close()

    asyncio.run(run())


async def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = await make_db(path)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer_process, args=(str(path), p, 200)) for p in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        await asyncio.to_thread(worker.join, 120)
        assert worker.exitcode == 0
    assert len(await rows(db)) == 400
    await db.close()


async def test_a_batch_the_database_rolled_back_fails_every_transaction_in_it(tmp_path: Path) -> None:
    """SQLite takes back the whole transaction on a full disk: a transaction that finished
    earlier in the same batch must hear that it failed too, and nothing of the batch is stored."""
    db = await make_db(tmp_path / "db.sqlite")
    async with db.write() as conn:
        await conn.execute(text("CREATE TABLE big (x BLOB)"))
    inside, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t VALUES ('first', 1)"))
            inside.set()
            await release.wait()

    async def second() -> None:
        async with db.write() as conn:
            # A page limit makes SQLite answer exactly as on a full disk (SQLITE_FULL).
            await conn.execute(text("PRAGMA max_page_count=8"))
            for _ in range(20):
                await conn.execute(text("INSERT INTO big VALUES (zeroblob(4000))"))

    one = asyncio.create_task(first())
    await inside.wait()
    two = asyncio.create_task(second())
    while db._writes._waiting == 0:
        await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(one, two, return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results), results
    assert await rows(db) == {}
    async with db.write() as conn:
        await conn.execute(text("PRAGMA max_page_count=1073741823"))
        await conn.execute(text("INSERT INTO t VALUES ('after', 1)"))
    assert await rows(db) == {"after": 1}
    await db.close()


async def test_a_request_cancelled_in_its_transaction_strands_nobody(tmp_path: Path) -> None:
    """A cancelled request leaves its connection in an unknown state, so the batch it shared is
    lost: every transaction in it hears so (nothing is acknowledged that was not stored), none
    waits for ever, and the writer goes on."""
    db = await make_db(tmp_path / "db.sqlite")
    inside, release, second_inside = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t VALUES ('first', 1)"))
            inside.set()
            await release.wait()

    async def second() -> None:
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t VALUES ('second', 1)"))
            second_inside.set()
            await asyncio.Event().wait()

    one = asyncio.create_task(first())
    await inside.wait()
    two = asyncio.create_task(second())
    while db._writes._waiting == 0:
        await asyncio.sleep(0)
    release.set()
    await second_inside.wait()
    two.cancel()
    results = await asyncio.wait_for(asyncio.gather(one, two, return_exceptions=True), 30)
    stored = await rows(db)
    assert isinstance(results[1], asyncio.CancelledError)
    # The first either committed before the second joined, or heard that its batch was lost.
    assert ("first" in stored) == (results[0] is None)
    assert "second" not in stored
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO t VALUES ('after', 1)"))
    assert "after" in await rows(db)
    await db.close()


async def test_a_task_started_inside_a_transaction_waits_its_turn(tmp_path: Path) -> None:
    """Only the same task opening a second transaction is refused: a task it starts (to write
    something later, say) is another writer, and runs once the first transaction is done."""
    db = await make_db(tmp_path / "db.sqlite")

    async def later() -> None:
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO t VALUES ('later', 1)"))

    async with db.write() as conn:
        await conn.execute(text("INSERT INTO t VALUES ('now', 1)"))
        task = asyncio.create_task(later())
    await asyncio.wait_for(task, 30)
    assert set(await rows(db)) == {"now", "later"}
    await db.close()
