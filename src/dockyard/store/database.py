"""The metadata database: async SQLAlchemy engines and the migration runner."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from dockyard.core.errors import StorageBusy
from dockyard.store import capacity, inline_sqlite
from dockyard.store.group_commit import FileLock, GroupCommitWriter, WriteLockTimeout
from dockyard.store.holders import describe_holders

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# The PostgreSQL advisory lock every write transaction takes (any constant both sides agree on:
# "dockyard" in ASCII). MIGRATION_LOCK keeps nodes that start together from migrating at once.
WRITE_LOCK = 0x646F636B79617264
MIGRATION_LOCK = WRITE_LOCK + 1
# How long an SQLite statement waits for another connection's lock before the request gets a
# StorageBusy: writers queue for milliseconds each, so only a stuck or foreign holder waits
# this long, and a client should hear about it in seconds rather than time out.
BUSY_TIMEOUT_MS = 5000
# Each SQLite connection keeps its own page cache, 2 MiB by default, and a worker holds several
# (writer, readers, the fast read path's). Under WAL a connection drops its whole cache whenever
# another connection commits, so with writes arriving every few milliseconds a large cache mostly
# holds pages it will throw away; the operating system's page cache, shared by every connection,
# serves the misses. 512 KiB keeps the B-trees' upper levels, which every lookup reads.
CACHE_KIB = 512


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _is_postgresql(url: str) -> bool:
    return url.startswith("postgresql")


def _sqlite_pragmas(synchronous: str, busy_timeout_ms: int) -> list[str]:
    return [
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={synchronous}",
        f"PRAGMA busy_timeout={busy_timeout_ms}",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA cache_size=-{CACHE_KIB}",
    ]


def _sqlite_engine(url: str, begin: str, synchronous: str) -> AsyncEngine:
    """An SQLite engine whose transactions start with `begin`. A database file is reached
    through dockyard.store.inline_sqlite (statements run in place on the event loop); other
    databases (in memory) through aiosqlite."""
    pragmas = _sqlite_pragmas(synchronous, BUSY_TIMEOUT_MS)
    path = sqlite_path(url)
    if path is not None:
        reader = not begin.endswith("IMMEDIATE")
        connect = inline_sqlite.connector(str(path), pragmas, BUSY_TIMEOUT_MS, reader=reader)
        # Connections kept open cost memory (each has its own page and statement caches): a
        # process runs one write transaction at a time (group commit), and a few reads at once.
        kept = 4 if reader else 1
        engine = create_async_engine(url, pool_size=kept, max_overflow=16, async_creator=connect)
    else:
        engine = create_async_engine(url, pool_size=8, max_overflow=8)

        @event.listens_for(engine.sync_engine, "connect")
        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            for pragma in pragmas:
                cursor.execute(pragma)
            cursor.close()

    # pysqlite's own transaction handling defers BEGIN until the first write, which lets two
    # writers both read and then deadlock; we issue BEGIN ourselves (IMMEDIATE for writers, so
    # that the write lock is taken up front).
    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


def _postgresql_engine(url: str, *, writer: bool, durable: bool, pool_size: int) -> AsyncEngine:
    """An engine for PostgreSQL; a writer's transactions queue on one advisory lock.

    The core was written against SQLite's single writer: a write transaction reads, decides and
    writes (is this tag taken? is this blob still referenced?) trusting that nobody else writes
    in between. Taking one transaction-scoped advisory lock first gives every node exactly that
    guarantee, so two nodes pushing the same tag, the same blob, or deleting while another pushes
    serialise as they would on one machine. Readers take no lock and never wait (MVCC), and
    under READ COMMITTED each statement after the lock sees everything committed before it."""
    connect_args: dict[str, Any] = {}
    if not durable and "+asyncpg" in url:
        connect_args["server_settings"] = {"synchronous_commit": "off"}
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, connect_args=connect_args
    )
    if writer:

        @event.listens_for(engine.sync_engine, "begin")
        def on_begin(connection: Any) -> None:
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")

    return engine


class Database:
    """Two doors into one database: `read()` for queries, `write()` for changes.

    On SQLite a write transaction takes the write lock up front (BEGIN IMMEDIATE) so that
    concurrent writers queue instead of failing; readers never block under WAL. On PostgreSQL
    a write transaction takes a cluster-wide advisory lock for the same effect across nodes
    (see _postgresql_engine). Either way, the write transactions of one process that queue at
    the same moment are committed together (dockyard.store.group_commit)."""

    def __init__(self, url: str, durable: bool = True) -> None:
        self.url = url
        if _is_sqlite(url):
            synchronous = "FULL" if durable else "OFF"
            self._reader = _sqlite_engine(url, "BEGIN", synchronous)
            self._writer = _sqlite_engine(url, "BEGIN IMMEDIATE", synchronous)
        elif _is_postgresql(url):
            self._reader = _postgresql_engine(url, writer=False, durable=durable, pool_size=10)
            # Writers queue on one lock anyway: a few connections are enough.
            self._writer = _postgresql_engine(url, writer=True, durable=durable, pool_size=4)
        else:
            self._reader = self._writer = create_async_engine(url, pool_size=10, max_overflow=20)
        path = sqlite_path(url)
        self._write_lock = FileLock(path.with_name(path.name + "-writer.lock")) if path is not None else None
        self._writes = GroupCommitWriter(self._writer, self._write_lock, BUSY_TIMEOUT_MS / 1000)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._reader.connect() as conn, conn.begin():
                yield conn
        except DBAPIError as exc:
            _raise_storage_error(exc)
            raise

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; a full disk or a lock held too long raises StorageUnavailable."""
        try:
            async with self._writes.transaction() as conn:
                yield conn
        except DBAPIError as exc:
            _raise_storage_error(exc)
            raise
        except WriteLockTimeout:
            assert self._write_lock is not None
            holder = describe_holders(self._write_lock.path)
            raise StorageBusy(f"the metadata database {self.url} is locked by {holder}") from None
        capacity.HEALTH.succeeded()

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def check_writable(self, timeout_ms: int) -> None:
        """Raise StorageBusy if another process holds SQLite's write lock for `timeout_ms`
        (readiness: writes would queue behind it). Other databases have no such probe."""
        path = sqlite_path(self.url)
        if path is not None:
            await asyncio.to_thread(probe_write_lock, path, timeout_ms)

    async def close(self) -> None:
        await self._reader.dispose()
        if self._writer is not self._reader:
            await self._writer.dispose()


def _raise_storage_error(exc: DBAPIError) -> None:
    error = capacity.from_database_error(exc)
    if error is not None:
        capacity.HEALTH.failed(error)
        raise error from exc


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite database URL (None for other databases and in-memory ones)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def probe_write_lock(path: Path, timeout_ms: int) -> None:
    """Take and at once release SQLite's write lock on `path` (no disk write: BEGIN IMMEDIATE
    and ROLLBACK only touch locks); StorageBusy, naming the holder, if it stays taken."""
    if not path.exists():
        return
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=timeout_ms / 1000, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
        raise StorageBusy(f"the metadata database {path} is locked by {describe_holders(path)}") from exc
    finally:
        conn.close()


def alembic_config(url: str) -> Config:
    # Imported here: a worker serves requests without ever migrating, and alembic costs ~12 MiB.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def upgrade(url: str) -> None:
    """Bring the schema to the newest migration (safe to run on every start). A database another
    process keeps locked raises StorageBusy naming that process, rather than a lock timeout
    deep inside the migration."""
    path = sqlite_path(url)
    if path is not None:
        probe_write_lock(path, BUSY_TIMEOUT_MS)
    from alembic import command

    command.upgrade(alembic_config(url), "head")


async def upgrade_async(url: str) -> None:
    await asyncio.to_thread(upgrade, url)
