"""Where the metrics listener listens, and where the workers keep their metrics: what `dockyard
serve` settles before the workers start (dockyard.observe.scrape serves them).

Workers count into prometheus_client's multiprocess files, kept in a private directory on a memory
file system, not the data directory: a full disk must not fault a worker's mmap with SIGBUS.

Nothing here imports prometheus_client: it picks its multiprocess mode once, when first imported,
and workers forked from this process inherit that choice, so PROMETHEUS_MULTIPROC_DIR comes first."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import tempfile
from pathlib import Path

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9480"
DISABLED = frozenset({"", "off", "none"})
_DIR_PREFIX = "dockyard-metrics-"


class AddressInUse(OSError):
    """Another process (maybe another Dockyard) listens on the address."""


def parse_address(text: str) -> tuple[str, int] | None:
    """HOST:PORT (or [IPv6]:PORT) of `--metrics-address`; None when metrics are switched off."""
    value = text.strip()
    if value.lower() in DISABLED:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (or 'off')")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def ensure_free(host: str, port: int) -> None:
    """Raise AddressInUse when anything listens on host:port. The probe binds without SO_REUSEPORT,
    which fails against any bound socket, even one that set SO_REUSEPORT itself (granian's)."""
    with socket.socket(family(host), socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR only spares a port whose previous owner left it in TIME_WAIT, as every server does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUse(exc.errno, f"{host}:{port}: address already in use") from None
            raise


def private_multiprocess_dir() -> Path:
    """A fresh 0700 directory for this server's multiprocess files, on /dev/shm (or
    $XDG_RUNTIME_DIR) when there is one, so the data directory's file system filling up cannot
    reach the workers' memory maps. Directories left by servers that were killed are removed."""
    base = _memory_dir()
    _remove_abandoned(base)
    path = Path(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-", dir=base))
    return path


def _memory_dir() -> Path | None:
    for candidate in ("/dev/shm", os.environ.get("XDG_RUNTIME_DIR", "")):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return Path(candidate)
    return None  # tempfile's default directory


def _remove_abandoned(base: Path | None) -> None:
    root = base or Path(tempfile.gettempdir())
    with contextlib.suppress(OSError), os.scandir(root) as entries:
        for entry in entries:
            owner = entry.name.removeprefix(_DIR_PREFIX).split("-", 1)[0]
            if entry.name.startswith(_DIR_PREFIX) and owner.isdigit() and not _alive(int(owner)):
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid == os.getuid():
                        shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
