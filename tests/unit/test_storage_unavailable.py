"""Storage failures become one core error: SQLite's "full" and "locked", PostgreSQL's SQLSTATEs,
ENOSPC from the blob store; readiness remembers a full disk until room comes back."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from dockyard.core.errors import StorageBusy, StorageFull
from dockyard.store import capacity
from dockyard.store.database import Database, probe_write_lock

HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


class PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("sqlstate", "expected"), [("53100", StorageFull), ("55P03", StorageBusy), ("23505", None)])
def test_postgresql_states(sqlstate: str, expected: type | None) -> None:
    error = capacity.from_database_error(OperationalError("INSERT", {}, PgError(sqlstate)))
    assert (type(error) if error else None) is expected


def test_no_space_errnos() -> None:
    assert isinstance(capacity.from_os_error(OSError(errno.ENOSPC, "full")), StorageFull)
    assert isinstance(capacity.from_os_error(OSError(errno.EDQUOT, "quota")), StorageFull)
    assert capacity.from_os_error(OSError(errno.EACCES, "denied")) is None


async def test_sqlite_full_is_storage_full(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    try:
        async with db.write() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (x BLOB)")
        with pytest.raises(StorageFull, match="Storage is full"):
            async with db.write() as conn:
                # A page limit makes SQLite answer exactly as on a full disk (SQLITE_FULL).
                await conn.exec_driver_sql("PRAGMA max_page_count=8")
                for _ in range(20):
                    await conn.exec_driver_sql("INSERT INTO t VALUES (zeroblob(4000))")
    finally:
        await db.close()


def test_write_lock_probe_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    Path(path).touch()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StorageBusy, match=f"locked by pid {holder.pid} "):
            probe_write_lock(path, 100)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    probe_write_lock(path, 100)


async def test_blob_store_enospc_is_storage_full() -> None:
    class Store:
        async def put(self, data: bytes) -> str:
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageFull):
        await capacity.GuardedBlobStore(Store()).put(b"x")


def test_readiness_remembers_a_full_disk_until_room_comes_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    free = {"bytes": 100 * 1024 * 1024}
    monkeypatch.setattr(capacity, "free_bytes", lambda _path: free["bytes"])
    health = capacity.StorageHealth()
    health.watch(tmp_path)
    health.check()
    health.failed(StorageFull("full"))
    with pytest.raises(StorageFull, match="last write failed"):
        health.check()
    free["bytes"] = 2 * 1024 * 1024
    with pytest.raises(StorageFull, match="bytes free"):
        health.check()
    free["bytes"] = 200 * 1024 * 1024
    health.check()
    health.failed(StorageFull("full"))
    health.succeeded()
    health.check()
