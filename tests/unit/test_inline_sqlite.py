"""SQLite statements run on the event loop's own thread (no hand-over per statement), and
nothing that may wait does: a lock held outside Dockyard is waited for on a thread while the
loop goes on, a write's commit runs on a thread, and offloaded work runs all of its statements
on threads."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.store import inline_sqlite
from dockyard.store.database import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'metadata.db'}")
    async with database.write() as conn:
        await conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    yield database
    await database.close()


def thread_reporter(ran_on: list[int]) -> Any:
    """An SQL function that notes which thread SQLite runs it on."""

    def which_thread() -> int:
        ran_on.append(threading.get_ident())
        return 1

    return which_thread


async def run_reporting(conn: AsyncConnection, ran_on: list[int]) -> None:
    raw = await conn.get_raw_connection()
    await raw.driver_connection.create_function("which_thread", 0, thread_reporter(ran_on))
    assert (await conn.execute(text("SELECT which_thread()"))).scalar_one() == 1


async def test_statements_run_on_the_event_loops_thread(db: Database) -> None:
    ran_on: list[int] = []
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO notes (body) VALUES ('one')"))
        await run_reporting(conn, ran_on)
    async with db.read() as conn:
        await run_reporting(conn, ran_on)
    assert ran_on == [threading.get_ident()] * 2


async def test_offloaded_statements_run_on_threads(db: Database) -> None:
    ran_on: list[int] = []
    with inline_sqlite.offloaded():
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO notes (body) VALUES ('two')"))
            await run_reporting(conn, ran_on)
        async with db.read() as conn:
            await run_reporting(conn, ran_on)
            assert (await conn.execute(text("SELECT count(*) FROM notes"))).scalar_one() == 1
    assert len(ran_on) == 2 and threading.get_ident() not in ran_on


async def test_a_lock_held_outside_dockyard_is_waited_for_off_the_loop(db: Database, tmp_path: Path) -> None:
    outside = sqlite3.connect(tmp_path / "metadata.db", isolation_level=None, check_same_thread=False)
    outside.execute("BEGIN IMMEDIATE")
    ticks = 0
    writing_started = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            if ticks == 5:
                writing_started.set()
            await asyncio.sleep(0.01)

    async def write() -> None:
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO notes (body) VALUES ('after the outsider')"))

    ticker = asyncio.create_task(tick())
    writer = asyncio.create_task(write())
    await writing_started.wait()
    # The write is waiting for the outsider's lock, and the loop still runs meanwhile.
    seen_before = ticks
    await asyncio.sleep(0.2)
    assert not writer.done()
    assert ticks > seen_before + 3
    outside.execute("ROLLBACK")
    outside.close()
    await asyncio.wait_for(writer, 30)
    ticker.cancel()
    async with db.read() as conn:
        assert (await conn.execute(text("SELECT body FROM notes"))).scalar_one() == "after the outsider"


async def test_reads_go_on_while_a_write_transaction_is_open(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO notes (body) VALUES ('committed')"))
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO notes (body) VALUES ('not yet')"))
        async with db.read() as reader:
            bodies = (await reader.execute(text("SELECT body FROM notes"))).scalars().all()
        assert bodies == ["committed"]


async def test_a_request_cancelled_while_its_statement_waits_on_a_thread_leaves_the_connection_sound(
    db: Database, tmp_path: Path
) -> None:
    """The thread goes on after its waiter is cancelled; nothing else may use the connection (or
    close it) until it is done, or SQLite crashes the process."""
    outside = sqlite3.connect(tmp_path / "metadata.db", isolation_level=None, check_same_thread=False)
    outside.execute("BEGIN IMMEDIATE")

    async def write(body: str) -> None:
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": body})

    cancelled = asyncio.create_task(write("never"))
    await asyncio.sleep(0.3)  # long enough for it to be waiting for the lock on a thread
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    released = asyncio.get_running_loop().run_in_executor(None, lambda: (time.sleep(0.3), outside.rollback()))
    await asyncio.wait_for(write("after"), 30)
    await released
    outside.close()
    async with db.read() as conn:
        assert (await conn.execute(text("SELECT body FROM notes"))).scalars().all() == ["after"]
