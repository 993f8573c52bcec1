"""The HTTP server under the ASGI app: granian when it is installed, uvicorn otherwise.

granian (Rust, hyper) parses HTTP and moves bytes outside the interpreter, and it implements the
ASGI `http.response.pathsend` extension, so a blob GET hands the kernel a file path instead of
pushing the file through Python 64 KiB at a time. docs/benchmarks.md has the measurements.

granian's workers each bind the port with SO_REUSEPORT, so a second server on a busy port would
start and share its connections with the first; `claim_addresses` refuses that before anything
starts, as uvicorn does on its own."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dockyard.config import Settings
from dockyard.observe import listener

if TYPE_CHECKING:
    from dockyard.observe.scrape import MetricsListener

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


def claim_addresses(
    host: str, port: int, settings: Settings, metrics_address: tuple[str, int] | None
) -> MetricsListener | None:
    """Fail with listener.AddressInUse unless the public address is free, and bind the metrics
    address (its listener holds it from then on). The public port can only be probed: granian binds
    it in each worker, so a server started in the instants between probe and bind is not caught."""
    listener.ensure_free(host, port)
    if metrics_address is None:
        return None
    from dockyard.observe import scrape  # imports prometheus_client: only once the directory is set

    directory = Path(os.environ[listener.MULTIPROCESS_ENV])
    return scrape.MetricsListener(*metrics_address, scrape.scrape_registry(settings, directory))


def use_private_metrics_dir() -> Path:
    """Point the workers' multiprocess metrics at a fresh private directory, removed at exit.
    Always, even with one worker: the listener runs in this process, not the worker's."""
    directory = listener.private_multiprocess_dir()
    os.environ[listener.MULTIPROCESS_ENV] = str(directory)
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


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
    settings: Settings,
    metrics_address: tuple[str, int] | None,
) -> None:
    """Serve the app, and /metrics on `metrics_address` from a thread of this process, until
    stopped; the settings reach the workers through the environment (the listener reads the
    database with `settings`). Raises listener.AddressInUse before anything starts when either
    address is taken."""
    use_private_metrics_dir()
    metrics = claim_addresses(host, port, settings, metrics_address)
    if metrics is not None:
        metrics.start()
    try:
        if resolve(server) == "granian":
            _run_granian(host, port, workers, log_level, log_config, tls_cert, tls_key)
        else:
            _run_uvicorn(host, port, workers, log_level, log_config, tls_cert, tls_key)
    finally:
        if metrics is not None:
            metrics.close()


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
