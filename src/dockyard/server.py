"""The HTTP server under the ASGI app: granian when it is installed, uvicorn otherwise.

granian (Rust, hyper) parses HTTP and moves bytes outside the interpreter, and it implements the
ASGI `http.response.pathsend` extension, so a blob GET hands the kernel a file path instead of
pushing the file through Python 64 KiB at a time. docs/benchmarks.md has the measurements."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Literal

APP = "dockyard.app:create_app"
ServerName = Literal["auto", "granian", "uvicorn"]
SERVERS: tuple[ServerName, ...] = ("auto", "granian", "uvicorn")
# granian has no "trace"; uvicorn's most verbose level maps to granian's.
_GRANIAN_LEVELS = {"trace": "debug"}


def default_workers() -> int:
    """One worker per core the process may run on: each worker is one event loop on one core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve(server: ServerName) -> Literal["granian", "uvicorn"]:
    if server == "auto":
        return "granian" if importlib.util.find_spec("granian") is not None else "uvicorn"
    return server


def run(
    server: ServerName,
    *,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    log_config: dict[str, Any] | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """Serve the app until stopped; the settings reach the workers through the environment."""
    if resolve(server) == "granian":
        _run_granian(host, port, workers, log_level, log_config, tls_cert, tls_key)
    else:
        _run_uvicorn(host, port, workers, log_level, log_config, tls_cert, tls_key)


def _run_granian(
    host: str,
    port: int,
    workers: int,
    log_level: str,
    log_config: dict[str, Any] | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    Granian(
        APP,
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        log_level=LogLevels(_GRANIAN_LEVELS.get(log_level, log_level)),
        log_dictconfig=log_config,
        log_access=False,
        ssl_cert=tls_cert,
        ssl_key=tls_key,
        # A worker that dies (out of memory, say) is replaced, as uvicorn's supervisor does.
        respawn_failed_workers=True,
    ).serve()


def _run_uvicorn(
    host: str,
    port: int,
    workers: int,
    log_level: str,
    log_config: dict[str, Any] | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    import uvicorn

    kwargs: dict[str, Any] = {"log_config": log_config} if log_config is not None else {}
    uvicorn.run(
        APP,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        access_log=False,
        **kwargs,
    )
