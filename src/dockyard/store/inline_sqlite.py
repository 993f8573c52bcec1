"""SQLite run on the event loop's own thread instead of aiosqlite's.

aiosqlite runs every call on a thread of its own: a statement is four hand-overs (cursor,
execute, fetch, close), each a queue put, a thread wake-up and a callback back into the loop.
A manifest PUT ran about thirty of them while it held the database's single write lock, so every
other writer waited for thread scheduling rather than for SQLite, which answers an indexed
statement in microseconds; an upload's reads paid the same for each of theirs.

This module offers the part of aiosqlite's interface that SQLAlchemy's aiosqlite dialect uses,
over a plain `sqlite3` connection, so that `create_async_engine(..., async_creator=connect)`
gives the same engine with statements run in place. Nothing here waits for a lock in place:
under WAL a reader never waits for a writer, and a write transaction starts only once its
process holds the writer file lock (dockyard.store.group_commit), so it never waits for another
Dockyard writer. What may wait goes to a thread: a statement SQLite refuses as busy (something
outside Dockyard holds its lock; a crashed writer's log is being recovered) runs again there, as
does a write's commit, which flushes to disk. Work whose statements may take long (garbage
collection, lifecycle previews and expiry, storage verification, scans, loading vulnerability
data) runs them on a thread too, inside `offloaded()`, so the event loop goes on serving."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

# The threads that run what may wait (apart from asyncio's default pool, which a busy event
# loop's other blocking work, such as file writes, may hold); one pool per process, since a
# forked child inherits a pool whose threads it does not have.
_threads: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None


def _thread_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _threads
    if _threads is None or _threads[0] != os.getpid():
        _threads = (os.getpid(), concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="dockyard-sqlite"))
    return _threads[1]


# Statements run on a thread while this is set (see offloaded()).
_OFFLOADED: contextvars.ContextVar[bool] = contextvars.ContextVar("dockyard_sqlite_offloaded", default=False)


@contextmanager
def offloaded() -> Iterator[None]:
    """Within this block, this task's SQLite statements run on a thread: for transactions whose
    statements may take long, which would otherwise hold up every request of the process."""
    token = _OFFLOADED.set(True)
    try:
        yield
    finally:
        _OFFLOADED.reset(token)


class Cursor:
    """aiosqlite's Cursor, in place."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._cursor = connection._conn.cursor()

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> Cursor:
        await self._connection._run(self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Sequence[Any]) -> Cursor:
        await self._connection._run(self._cursor.executemany, sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return await self._connection._run(self._cursor.fetchone)

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return await self._connection._run(self._cursor.fetchmany, size or self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        # Rows of an offloaded statement are stepped through on the thread as well.
        return await self._connection._run(self._cursor.fetchall)

    async def close(self) -> None:
        await self._connection._idle()
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Immediately:
    """What SQLAlchemy's dialect reaches for as aiosqlite's work queue (`_tx`), to set the
    isolation level: here the work is done at once."""

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiter, as aiosqlite does
            if future is not None:
                future.set_exception(exc)
        else:
            if future is not None:
                future.set_result(result)


class Connection:
    """aiosqlite's Connection, in place. `busy_timeout_ms` is how long taking the write lock may
    wait (on a thread) when someone outside Dockyard holds it.

    A connection is never used by two threads at once: SQLite would crash. Work handed to a
    thread goes on when the task that waited for it is cancelled, so whatever comes next on the
    connection (the rollback when it goes back to the pool, closing it) first waits for that
    work to end."""

    _tx = _Immediately()

    def __init__(self, conn: sqlite3.Connection, busy_timeout_ms: int, reader: bool) -> None:
        self._conn = conn
        self._busy_timeout_ms = busy_timeout_ms
        self._reader = reader
        # The work last handed to a thread, while it may still be running.
        self._pending: concurrent.futures.Future[Any] | None = None

    @property
    def _connection(self) -> sqlite3.Connection | None:
        # The dialect asks whether the connection is still open before commit and rollback.
        return self._conn

    async def _idle(self) -> None:
        """Return once no thread is working on this connection."""
        pending = self._pending
        if pending is not None and not pending.done():
            await asyncio.wait([asyncio.wrap_future(pending)])

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        await self._idle()
        pending = _thread_pool().submit(function, *args)
        self._pending = pending
        return await asyncio.wrap_future(pending)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if _OFFLOADED.get():
            return await self._in_thread(self._waiting, function, *args)
        await self._idle()
        try:
            return function(*args)
        except sqlite3.OperationalError as exc:
            # SQLite refuses a statement that would wait before it has done anything, so it can
            # be run again, waiting this time: on a thread.
            if not _is_busy(exc):
                raise
        return await self._in_thread(self._waiting, function, *args)

    def _waiting(self, function: Callable[..., T], *args: Any) -> T:
        """`function` allowed to wait up to the busy timeout for a lock (on a thread)."""
        self._conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        try:
            return function(*args)
        finally:
            self._conn.execute("PRAGMA busy_timeout=0")

    def cursor(self) -> Cursor:
        return Cursor(self)

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        cursor = self.cursor()
        return await cursor.execute(sql, parameters)

    async def commit(self) -> None:
        if self._reader:
            # Ending a read transaction writes nothing.
            await self._run(self._conn.commit)
            return
        # A write's commit flushes the log to disk (and may checkpoint it): not on the event loop.
        await self._in_thread(self._waiting, self._conn.commit)

    async def rollback(self) -> None:
        await self._idle()
        self._conn.rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close now, or as soon as the thread working on the connection is done."""
        pending = self._pending
        if pending is None or pending.done():
            self._conn.close()
        else:
            pending.add_done_callback(lambda _: self._conn.close())

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        await self._idle()
        self._conn.create_function(*args, **kwargs)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._conn.isolation_level = value

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    @property
    def total_changes(self) -> int:
        return self._conn.total_changes


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def connector(path: str, pragmas: Sequence[str], busy_timeout_ms: int, *, reader: bool) -> Callable[[], Any]:
    """`async_creator` for `create_async_engine`: a Connection to the database file at `path`,
    set up with `pragmas` on a thread (they may wait for a lock). Afterwards it never waits for a
    lock in place (busy_timeout 0): a statement SQLite refuses as busy runs again on a thread,
    where it may wait `busy_timeout_ms`. A `reader` connection's transactions write nothing, so
    they end in place too."""

    def open_connection() -> sqlite3.Connection:
        # check_same_thread off: the commit runs on a thread; never two calls at once, since
        # a connection belongs to one transaction, and a transaction's statements run in order.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            for pragma in pragmas:
                conn.execute(pragma)
            conn.execute("PRAGMA busy_timeout=0")
        except BaseException:
            conn.close()
            raise
        return conn

    async def connect() -> Connection:
        return Connection(await asyncio.to_thread(open_connection), busy_timeout_ms, reader)

    return connect
