"""Job queues kept in a table: each row is a job, taken by one worker at a time under a lease.

A row is waiting while it is open (its status says so), due (when the queue puts rows off), and
either unclaimed or claimed by a worker that stopped renewing its lease. A claim marks the oldest
waiting row with the worker's name (`claimed_by`) and the time (`claimed_at`); the worker renews
that time while it works and hands the row back, or closes it, when done. A lease not renewed for
`lease_seconds` is taken over by the next claim.

A claim takes no row locks: it reads and updates in one write transaction, and write transactions
are serialised across processes (SQLite's BEGIN IMMEDIATE) and nodes (PostgreSQL's advisory lock,
see store/database.py), so no row is claimed by two workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Column, ColumnElement, Row, Table, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from dockyard.store.database import Database


class Claimed(NamedTuple):
    """A row just claimed, and the write transaction that claimed it (still open, so the claimer
    can read what the job needs, or drop it, in the same transaction)."""

    conn: AsyncConnection
    row: Row[Any]


# eq=False: the fields are SQL expressions, whose == builds a condition.
@dataclass(frozen=True, eq=False)
class ClaimedQueue:
    """One queue: its table (which has `claimed_by` and `claimed_at` columns) and which rows wait."""

    table: Table
    # The columns that name one row.
    key: tuple[Column[Any], ...]
    # Which rows are jobs still to do (their status).
    open: ColumnElement[bool]
    # Claims take the row that is lowest in this column first.
    oldest_first: Column[Any]
    # A row is due once this time has come (None: as soon as it is open).
    due_at: Column[Any] | None = None
    # Further values a claim sets.
    on_claim: Mapping[str, Any] = field(default_factory=dict)

    def claimable(self, lease_seconds: float) -> ColumnElement[bool]:
        moment = time.time()
        claim_free = or_(self.table.c.claimed_by.is_(None), self.table.c.claimed_at < moment - lease_seconds)
        if self.due_at is None:
            return and_(self.open, claim_free)
        return and_(self.open, self.due_at <= moment, claim_free)

    def named(self, key: Sequence[Any]) -> tuple[ColumnElement[bool], ...]:
        """The conditions that pick the row `key` names."""
        return tuple(column == value for column, value in zip(self.key, key, strict=True))

    def key_of(self, row: Row[Any]) -> tuple[Any, ...]:
        """The key of a row `claim_next` yields."""
        return tuple(row[: len(self.key)])

    def held(self, key: Sequence[Any], node: str) -> ColumnElement[bool]:
        """The row `key`, while still open and claimed by `node`: what closing a job updates, so a
        worker that lost its claim closes nothing."""
        return and_(*self.named(key), self.table.c.claimed_by == node, self.open)

    @asynccontextmanager
    async def claim_next(
        self, db: Database, node: str, lease_seconds: float, *columns: Column[Any]
    ) -> AsyncIterator[Claimed | None]:
        """Claim the oldest waiting row for `node`: yields its key and `columns`, with the write
        transaction, or None when no row waits."""
        # Most polls find nothing: a read says so without queueing for the write lock.
        async with db.read() as conn:
            waiting = (await conn.execute(select(*self.key).where(self.claimable(lease_seconds)).limit(1))).first()
        if waiting is None:
            yield None
            return
        async with db.write() as conn:
            query = select(*self.key, *columns).where(self.claimable(lease_seconds))
            row = (await conn.execute(query.order_by(self.oldest_first).limit(1))).first()
            if row is None:
                yield None
                return
            await conn.execute(
                update(self.table)
                .where(*self.named(self.key_of(row)))
                .values(claimed_by=node, claimed_at=time.time(), **self.on_claim)
            )
            yield Claimed(conn, row)

    async def renew(self, db: Database, key: Sequence[Any], node: str) -> None:
        async with db.write() as conn:
            await conn.execute(update(self.table).where(self.held(key, node)).values(claimed_at=time.time()))

    async def release(self, db: Database, key: Sequence[Any], node: str) -> None:
        async with db.write() as conn:
            await conn.execute(update(self.table).where(self.held(key, node)).values(claimed_by=None, claimed_at=None))

    @asynccontextmanager
    async def holding(self, db: Database, key: Sequence[Any], node: str, lease_seconds: float) -> AsyncIterator[None]:
        """Keep `node`'s claim of `key` while the body works on it (renewed every third of the
        lease); when the body is cancelled (shutting down), hand the row back at once rather than
        when the lease runs out."""
        renewing = asyncio.create_task(self._keep_renewed(db, key, node, lease_seconds))
        try:
            yield
        except asyncio.CancelledError:
            await self.release(db, key, node)
            raise
        finally:
            renewing.cancel()

    async def _keep_renewed(self, db: Database, key: Sequence[Any], node: str, lease_seconds: float) -> None:
        while True:
            await asyncio.sleep(lease_seconds / 3)
            await self.renew(db, key, node)
