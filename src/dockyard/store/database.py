"""The metadata database: async SQLAlchemy engines and the migration runner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# The PostgreSQL advisory lock every write transaction takes (any constant both sides agree on:
# "dockyard" in ASCII). MIGRATION_LOCK keeps nodes that start together from migrating at once.
WRITE_LOCK = 0x646F636B79617264
MIGRATION_LOCK = WRITE_LOCK + 1


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _is_postgresql(url: str) -> bool:
    return url.startswith("postgresql")


def _sqlite_engine(url: str, begin: str, synchronous: str) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=8, max_overflow=8)

    # pysqlite's own transaction handling defers BEGIN until the first write, which lets two
    # writers both read and then deadlock; we issue BEGIN ourselves.
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

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
    (see _postgresql_engine)."""

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

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self._reader.connect() as conn, conn.begin():
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self._writer.begin() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def close(self) -> None:
        await self._reader.dispose()
        if self._writer is not self._reader:
            await self._writer.dispose()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def upgrade(url: str) -> None:
    """Bring the schema to the newest migration (safe to run on every start)."""
    command.upgrade(alembic_config(url), "head")


async def upgrade_async(url: str) -> None:
    await asyncio.to_thread(upgrade, url)
