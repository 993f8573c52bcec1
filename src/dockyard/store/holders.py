"""Which process holds an SQLite database's lock, for messages an operator can act on (Linux /proc).

SQLite locks with POSIX record locks: under WAL the write lock is a byte of the `-shm` file, in
the rollback-journal modes bytes of the database file itself. /proc/locks lists every such lock
with its owner's pid, so the holder is found exactly; where that says nothing (another mount
namespace, no /proc) every other process with the file open is named instead."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
# Enough of a command line to recognise it.
MAX_COMMAND = 120


def describe_holders(database: Path) -> str:
    """'pid 123 (sqlite3 /data/metadata.db)' for each holder, or a phrase saying none was found."""
    pids = lock_holders(database) or open_by(database)
    if not pids:
        return "another process (not found in /proc)"
    return ", ".join(f"pid {pid} ({command_line(pid)})" for pid in pids)


def lock_holders(database: Path) -> list[int]:
    """Pids holding a write lock on the database file or its -shm file (waiters not counted)."""
    files = set()
    for path in (database, database.with_name(database.name + "-shm")):
        try:
            stat = path.stat()
        except OSError:
            continue
        files.add((os.major(stat.st_dev), os.minor(stat.st_dev), stat.st_ino))
    try:
        lines = (PROC / "locks").read_text().splitlines()
    except OSError:
        return []
    pids: list[int] = []
    for line in lines:
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 120 120"; a waiter's line has "->" after the id.
        if len(fields) < 6 or fields[1] != "POSIX" or fields[3] != "WRITE":
            continue
        pid, device = int(fields[4]), fields[5].split(":")
        if len(device) != 3:
            continue
        key = (int(device[0], 16), int(device[1], 16), int(device[2]))
        if key in files and pid != os.getpid() and pid not in pids:
            pids.append(pid)
    return pids


def open_by(database: Path) -> list[int]:
    """Pids of the other processes that have the database (or its -wal/-shm) open."""
    names = {str(database.resolve()) + suffix for suffix in ("", "-wal", "-shm")}
    pids: list[int] = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            targets = {os.readlink(link) for link in (entry / "fd").iterdir()}
        except OSError:  # gone meanwhile, or not ours to look at
            continue
        if targets & names:
            pids.append(int(entry.name))
    return pids


def command_line(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "unknown command"
    # One line whatever the arguments hold (a `python -c` script has newlines).
    command = " ".join(raw.decode(errors="replace").replace("\0", " ").split()) or "unknown command"
    return command if len(command) <= MAX_COMMAND else command[: MAX_COMMAND - 3] + "..."
