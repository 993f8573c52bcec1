"""Statements compiled once, for the hot write path.

`AsyncConnection.execute` of a Core statement costs about 50 microseconds of CPU beyond the
query itself: SQLAlchemy derives the statement's cache key, looks up its compiled form, and
builds the parameters and result processing for it, every time. A manifest PUT runs a handful of
statements inside the single writer's turn, so that overhead is paid while every other writer
waits. A `Prepared` statement, built once with bind parameters by name, is compiled once per
dialect and run through `exec_driver_sql` with its parameters in the driver's order: what remains
is the driver's own cost. It still runs on the caller's connection and in its transaction, and
SQLAlchemy's cursor events (`before_cursor_execute`) still see it.

Rows come back as the driver returns them (on SQLite a Boolean column is 0 or 1): callers
convert what they need. Statements must not use expanding (IN list) or literal-execute
parameters: build one statement per list length instead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import CursorResult, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


class Prepared:
    """One statement with bind parameters by name, compiled once per dialect."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[SQLCompiler, str, tuple[str, ...] | None]] = {}

    def _compile(self, dialect: Dialect) -> tuple[SQLCompiler, str, tuple[str, ...] | None]:
        key = f"{dialect.name}+{dialect.driver}"
        entry = self._compiled.get(key)
        if entry is None:
            compiled = self.statement.compile(dialect=dialect)
            assert isinstance(compiled, SQLCompiler)
            if compiled.literal_execute_params or compiled.post_compile_params:
                raise ValueError("a prepared statement cannot have expanding or literal-execute parameters")
            order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
            entry = self._compiled[key] = (compiled, compiled.string, order)
        return entry

    def _parameters(self, dialect: Dialect, params: Mapping[str, Any]) -> tuple[str, Any]:
        compiled, sql, order = self._compile(dialect)
        values = compiled.construct_params(dict(params))
        if order is None:
            return sql, values
        return sql, tuple(values[name] for name in order)

    async def execute(self, conn: AsyncConnection, params: Mapping[str, Any]) -> CursorResult[Any]:
        """Run the statement once on `conn` with `params`, its bind parameters by name."""
        sql, values = self._parameters(conn.dialect, params)
        return await conn.exec_driver_sql(sql, values)

    async def execute_many(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement on `conn` once per mapping in `rows` (the driver's executemany)."""
        if not rows:
            return
        prepared = [self._parameters(conn.dialect, row) for row in rows]
        await conn.exec_driver_sql(prepared[0][0], [values for _, values in prepared])
