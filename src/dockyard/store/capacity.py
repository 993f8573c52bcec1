"""Storage that cannot take a write: recognising it, and remembering it for /readyz.

A full disk or a database locked by another process is no defect of the request that meets it.
The stores turn those failures into one core error (`StorageFull`, `StorageBusy`) that every door
renders in its own format, and note them here so readiness can say why writes fail until they
succeed again."""

from __future__ import annotations

import errno
import inspect
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError

from dockyard.core.errors import StorageBusy, StorageFull, StorageUnavailable

FULL_MESSAGE = "Storage is full: the registry cannot store anything more until space is freed on its data volume."
BUSY_MESSAGE = (
    "Storage is busy: the metadata database is locked by another process; nothing was changed, try again later."
)
# Free space below which /readyz reports the data volume full: a manifest or a small layer
# would no longer fit.
MIN_FREE_BYTES = 4 * 1024 * 1024

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
# SQLite's primary result codes (an extended code carries one in its low byte).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_FULL = 5, 6, 13
# PostgreSQL's SQLSTATEs disk_full and lock_not_available (what a lock_timeout raises).
_PG_FULL = {"53100"}
_PG_BUSY = {"55P03"}

P = ParamSpec("P")
T = TypeVar("T")


def from_os_error(exc: OSError) -> StorageFull | None:
    return StorageFull(FULL_MESSAGE) if exc.errno in _NO_SPACE else None


def from_database_error(exc: DBAPIError) -> StorageUnavailable | None:
    """The core error for a driver error that means "full" or "locked", else None."""
    orig = exc.orig
    if isinstance(orig, sqlite3.Error):
        code = (getattr(orig, "sqlite_errorcode", None) or 0) & 0xFF
        text = str(orig)
        if code == _SQLITE_FULL or "database or disk is full" in text:
            return StorageFull(FULL_MESSAGE)
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in text:
            return StorageBusy(BUSY_MESSAGE)
        return None
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state in _PG_FULL:
        return StorageFull(FULL_MESSAGE)
    if state in _PG_BUSY:
        return StorageBusy(BUSY_MESSAGE)
    return None


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


class StorageHealth:
    """What this process has learnt about its storage: the local directories it writes to, and
    whether the last write failed for lack of space.

    A failed write stays the reason until a write succeeds or the volume has gained room since
    (so readiness recovers once space is freed, even if nobody writes meanwhile)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._directories: set[Path] = set()
        # Free bytes on the fullest watched volume when a write last failed for lack of space.
        self._full_at: int | None = None

    def watch(self, directory: Path) -> None:
        with self._lock:
            self._directories.add(directory)

    def failed(self, error: StorageUnavailable) -> None:
        if isinstance(error, StorageFull):
            free = self._least_free()
            with self._lock:
                self._full_at = free

    def succeeded(self) -> None:
        self._full_at = None

    def check(self) -> None:
        """Raise StorageFull, saying where and why, while writes cannot be expected to fit."""
        for directory in sorted(self._directories):
            free = _free_or_none(directory)
            if free is not None and free < MIN_FREE_BYTES:
                raise StorageFull(f"storage is full: {free} bytes free in {directory} (less than {MIN_FREE_BYTES})")
        full_at = self._full_at
        if full_at is None:
            return
        if self._least_free() >= full_at + MIN_FREE_BYTES:
            self.succeeded()
            return
        raise StorageFull("storage is full: the last write failed for lack of space and no space was freed since")

    def _least_free(self) -> int:
        frees = [free for free in map(_free_or_none, sorted(self._directories)) if free is not None]
        return min(frees, default=0)


def _free_or_none(directory: Path) -> int | None:
    try:
        return free_bytes(directory)
    except FileNotFoundError:
        return None


HEALTH = StorageHealth()


def translating(function: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """`function` (a blob store's write) with a full disk raised as StorageFull."""

    @wraps(function)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await function(*args, **kwargs)
        except OSError as exc:
            error = from_os_error(exc)
            if error is None:
                raise
            HEALTH.failed(error)
            raise error from exc

    return wrapper


class GuardedBlobStore:
    """A blob store whose writes raise StorageFull on a full disk instead of a bare OSError.

    Every coroutine method is wrapped (reads never meet ENOSPC, so wrapping them costs nothing but
    a frame), which keeps this proxy correct as the store's methods change."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name == "upload_states" and attribute is not None:
            # Saving an upload's state is a write too (a file beside the upload's bytes).
            return GuardedBlobStore(attribute)
        return translating(attribute) if inspect.iscoroutinefunction(attribute) else attribute
