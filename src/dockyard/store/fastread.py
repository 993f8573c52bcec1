"""One read-only statement, as cheaply as the database allows: the door for hot paths.

`Database.read()` costs about 4 ms of CPU per transaction on SQLite (SQLAlchemy builds and
compiles each statement, aiosqlite hops to its thread and back), against tens of microseconds
for the query itself. A manifest GET by tag is one or two indexed lookups, so that overhead is
nearly all its cost. Here a statement, built once with bind parameters, is compiled once per
dialect, and on SQLite runs on a plain `sqlite3` connection in the calling thread: under WAL a
reader never waits for a writer, and an indexed lookup takes microseconds, so the event loop is
not held up. Each statement sees everything committed before it (autocommit: one snapshot per
statement), so nothing read here is stale, whichever process or node wrote it.

Other databases (PostgreSQL) run the same statement through `Database.read()`.

Rows come back as plain tuples, with values as the driver returns them (on SQLite a Boolean
column is 0 or 1): callers convert what they need."""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import Compiled

from dockyard.store.database import CACHE_KIB, Database

# Milliseconds a read waits when SQLite says busy (under WAL only while a crashed writer's log
# is recovered); the event loop waits with it, so keep it short.
BUSY_TIMEOUT_MS = 2000
# pysqlite's dialect: the qmark parameters the sqlite3 module takes.
_DIALECT = sqlite_dialect.dialect()


class _SqliteReader:
    """Per process and thread: one connection (sqlite3 objects must not cross threads or a fork)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._compiled: dict[int, tuple[ClauseElement, Compiled, tuple[str, ...]]] = {}

    def connection(self) -> sqlite3.Connection:
        pid = os.getpid()
        held = getattr(self._local, "held", None)
        if held is None or held[0] != pid:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            # This connection only ever reads; SQLite enforces it.
            conn.execute("PRAGMA query_only=ON")
            held = (pid, conn)
            self._local.held = held
        return held[1]

    def compiled(self, statement: ClauseElement) -> tuple[Compiled, tuple[str, ...]]:
        entry = self._compiled.get(id(statement))
        if entry is None or entry[0] is not statement:
            compiled = statement.compile(dialect=_DIALECT)
            entry = (statement, compiled, tuple(compiled.positiontup or ()))
            self._compiled[id(statement)] = entry
        return entry[1], entry[2]

    def fetch(self, statement: ClauseElement, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        compiled, order = self.compiled(statement)
        values = compiled.construct_params(dict(params))
        cursor = self.connection().execute(compiled.string, [values[name] for name in order])
        try:
            return cursor.fetchall()
        finally:
            cursor.close()


_readers: weakref.WeakKeyDictionary[Database, _SqliteReader | None] = weakref.WeakKeyDictionary()


def _reader(db: Database) -> _SqliteReader | None:
    if db in _readers:
        return _readers[db]
    reader = None
    url = make_url(db.url)
    path = url.database
    if url.get_backend_name() == "sqlite" and path and path != ":memory:" and not url.query:
        reader = _SqliteReader(path)
    _readers[db] = reader
    return reader


async def fetch(db: Database, statement: ClauseElement, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """All rows of the read-only `statement` with `params` (its bind parameters by name)."""
    reader = _reader(db)
    if reader is not None:
        return reader.fetch(statement, params)
    async with db.read() as conn:
        return [tuple(row) for row in await conn.execute(statement, dict(params))]  # type: ignore[arg-type]
