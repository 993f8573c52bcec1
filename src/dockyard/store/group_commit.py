"""Group commit: write transactions from many requests share one database commit.

The metadata database has one writer at a time (SQLite's write lock; PostgreSQL's advisory lock,
see dockyard.store.database). Committing each request's transaction on its own makes every
request pay for a lock hand-over and a flush to disk. Here a request's transaction runs inside a
transaction that stays open while other requests of this process are waiting their turn (the
first of a batch directly, each later one as a savepoint, so that failing takes back only its
own changes); the last of them commits, and every one of them hears that its changes are durable
only then. What a request observes is unchanged: its statements run alone, in order, each seeing
everything before it, and it returns once its changes are committed and on disk. What a failure
takes back is the one thing that grows: a transaction that fails takes back only its own changes,
but when the connection itself is lost (the database rolled the whole transaction back, as SQLite
does on a full disk, or a request was cancelled mid-statement) every transaction of the batch is
told it failed. Nothing is ever acknowledged that was not stored.

Across processes on one machine, SQLite writers queue on a file lock (`flock`) before they ask
for SQLite's own, so a waiting process is woken the moment the lock is free rather than polling
in SQLite's busy handler (which sleeps up to 100 ms between tries)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# A batch commits after this many transactions even while more are waiting, so that the first
# of them is not kept waiting for its commit by a steady stream of others.
MAX_BATCH = 32


class NestedWriteError(RuntimeError):
    """A write transaction opened inside another on the same task: it would wait for itself."""


class WriteLockTimeout(TimeoutError):
    """Another process held the write lock for longer than a request may wait."""


class FileLock:
    """An exclusive `flock` on a lock file beside the database, shared by every process that
    writes to it; taken in a thread, so the event loop never blocks on it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def acquire(self, timeout: float) -> int:
        """The locked file descriptor; WriteLockTimeout if not had within `timeout` seconds (the
        thread still waiting then releases the lock as soon as it gets it)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        # Free more often than not: then taking it costs no thread.
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        except BaseException:
            os.close(fd)
            raise
        else:
            return fd
        handover = threading.Lock()
        abandoned = acquired = False

        def wait() -> None:
            nonlocal acquired
            fcntl.flock(fd, fcntl.LOCK_EX)
            with handover:
                if abandoned:
                    os.close(fd)
                else:
                    acquired = True

        try:
            await asyncio.wait_for(asyncio.shield(asyncio.to_thread(wait)), timeout)
        except BaseException as exc:
            with handover:
                abandoned = True
                if acquired:
                    os.close(fd)
            if isinstance(exc, TimeoutError):
                raise WriteLockTimeout(str(self.path)) from None
            raise
        return fd

    @staticmethod
    def release(fd: int) -> None:
        os.close(fd)


@dataclass
class _Batch:
    conn: AsyncConnection
    close: Callable[[], None]
    members: int = 0
    # Why the batch's transaction is gone, once it is: nothing in it may be committed.
    lost: BaseException | None = None
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitWriter:
    """Write transactions of one process, run one at a time and committed in groups."""

    def __init__(self, engine: AsyncEngine, lock: FileLock | None, lock_timeout: float) -> None:
        self._engine = engine
        self._lock = lock
        self._lock_timeout = lock_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turn = asyncio.Lock()
        self._waiting = 0
        self._batch: _Batch | None = None
        # The task whose transaction runs now (a task it starts is another, and waits its turn).
        self._owner: asyncio.Task[object] | None = None

    def _bind(self) -> None:
        # Offline commands may run several event loops one after another with one Database.
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._turn, self._waiting, self._batch, self._owner = loop, asyncio.Lock(), 0, None, None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        self._bind()
        if self._owner is not None and self._owner is asyncio.current_task():
            raise NestedWriteError("a write transaction cannot be opened inside another")
        self._waiting += 1
        try:
            await self._turn.acquire()
        except BaseException:
            # The transaction before this one may have left its batch open for us to join.
            asyncio.get_running_loop().create_task(self._commit_if_idle())
            raise
        finally:
            self._waiting -= 1
        self._owner = asyncio.current_task()
        try:
            batch = self._batch or await self._open()
            self._batch = batch
            batch.members += 1
            try:
                async with self._alone(batch) if batch.members == 1 else self._savepoint(batch):
                    yield batch.conn
            finally:
                # Nobody else to join this commit (or enough have), or the batch's transaction is
                # lost: end the batch now.
                # Shielded: the others in the batch wait for its end even if this request is cancelled.
                if batch.lost is not None:
                    self._batch = None
                    await asyncio.shield(self._abandon(batch))
                elif self._waiting == 0 or batch.members >= MAX_BATCH:
                    self._batch = None
                    await asyncio.shield(self._commit(batch))
        finally:
            self._owner = None
            self._turn.release()
        await asyncio.shield(batch.done)

    @asynccontextmanager
    async def _savepoint(self, batch: _Batch) -> AsyncIterator[None]:
        """One transaction of the batch. When it fails, only its own changes are taken back, unless
        the database took back the whole transaction itself (SQLite does on a full disk, for one):
        then the batch is lost, and every transaction in it hears so."""
        nested = await batch.conn.begin_nested()
        try:
            yield
        except BaseException as exc:
            try:
                await nested.rollback()
            except Exception:  # noqa: BLE001 - the savepoint went with the whole transaction
                batch.lost = exc
            raise
        try:
            await nested.commit()
        except BaseException as exc:
            batch.lost = exc
            raise

    @asynccontextmanager
    async def _alone(self, batch: _Batch) -> AsyncIterator[None]:
        """The first transaction of a batch, which has it to itself: it needs no savepoint, since
        taking back its changes is taking back the whole batch's transaction, and nothing else
        is in it yet. When it fails the batch ends with it (the next one opens a fresh batch)."""
        try:
            yield
        except BaseException as exc:
            batch.lost = exc
            raise

    async def _commit_if_idle(self) -> None:
        async with self._turn:
            if self._batch is not None and self._waiting == 0:
                batch, self._batch = self._batch, None
                await asyncio.shield(self._commit(batch))

    async def _open(self) -> _Batch:
        fd = await self._lock.acquire(self._lock_timeout) if self._lock is not None else None
        try:
            conn = await self._engine.connect()
            try:
                await conn.begin()
            except BaseException:
                await conn.close()
                raise
        except BaseException:
            if fd is not None:
                FileLock.release(fd)
            raise

        def close() -> None:
            if fd is not None:
                FileLock.release(fd)

        return _Batch(conn, close)

    async def _abandon(self, batch: _Batch) -> None:
        assert batch.lost is not None
        lost = batch.lost
        if not isinstance(lost, DBAPIError):
            lost = RuntimeError("the write transaction was rolled back with the batch it was committed in")
        self._settle(batch, lost)
        try:
            await batch.conn.close()
        finally:
            batch.close()

    @staticmethod
    def _settle(batch: _Batch, error: BaseException | None) -> None:
        if error is None:
            batch.done.set_result(None)
            return
        batch.done.set_exception(error)
        # Retrieved here so that a batch nobody else waits on logs no "never retrieved".
        batch.done.exception()

    async def _commit(self, batch: _Batch) -> None:
        try:
            await batch.conn.commit()
        except BaseException as exc:
            self._settle(batch, exc)
        else:
            self._settle(batch, None)
        finally:
            try:
                await batch.conn.close()
            finally:
                batch.close()
