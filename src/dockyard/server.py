"""The HTTP server under the ASGI app: granian when it is installed, uvicorn otherwise.

granian (Rust, hyper) parses HTTP and moves bytes outside the interpreter, and it implements the
ASGI `http.response.pathsend` extension, so a blob GET hands the kernel a file path instead of
pushing the file through Python 64 KiB at a time. docs/benchmarks.md has the measurements.

granian's workers each bind the port with SO_REUSEPORT, so a second server on a busy port would
start and share its connections with the first; `claim_addresses` refuses that before anything
starts, as uvicorn does on its own.

`dockyard serve` imports every command and, through them, most of the app; migrations and the
first start's account come from there too. The supervisor that forks the workers must not carry
all that: it would count in the memory of every process, and the workers' reference counting would
copy its pages one by one. So `run` replaces the process (same pid, same descriptors) with a fresh
interpreter running this module, which imports only what supervising takes: this file, the
settings, the metrics listener and the HTTP server. tests/unit/test_supervisor_imports.py keeps it so."""

from __future__ import annotations

import atexit
import gc
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dockyard.config import Settings, settings_from_json, settings_to_json
from dockyard.observe import listener

if TYPE_CHECKING:
    from dockyard.observe.scrape import MetricsListener

APP = "dockyard.app:create_app"
ServerName = Literal["auto", "granian", "uvicorn"]
SERVERS: tuple[ServerName, ...] = ("auto", "granian", "uvicorn")
# The workers' settings, as JSON (dockyard.app reads them); the supervisor's listener reads them too.
SETTINGS_ENV = "DOCKYARD_SETTINGS"
# granian has no "trace"; uvicorn's most verbose level maps to granian's.
_GRANIAN_LEVELS = {"trace": "debug"}
_GRANIAN_UNUSED = ("watchfiles", "dotenv")


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
    """Serve the app, and /metrics on `metrics_address` from a thread of the supervisor, until
    stopped. This process becomes the supervisor: it is replaced by a fresh interpreter running
    `supervise` (see the module's docstring), so this call does not return. `settings` reach the
    workers through the environment; `log_config` is rebuilt there from `log_level` (JSON logs)."""
    options = {
        "server": server,
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": log_level,
        "json_logs": log_config is not None,
        "tls_cert": str(tls_cert) if tls_cert else None,
        "tls_key": str(tls_key) if tls_key else None,
        "metrics_address": list(metrics_address) if metrics_address else None,
    }
    environment = {**os.environ, SETTINGS_ENV: settings_to_json(settings)}
    # glibc gives each thread that allocates its own arena (up to 8 per core) and keeps what is
    # freed there: the threads that commit and hash would each hold megabytes while the server
    # idles. Two arenas serve a worker's few threads; an operator's own setting wins.
    environment.setdefault("MALLOC_ARENA_MAX", "2")
    # What the command printed (a new root key, say) must not be lost with this interpreter's buffers.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(
        sys.executable,
        [sys.executable, "-P", "-m", "dockyard.server", json.dumps(options)],
        environment,
    )


def supervise(options: dict[str, Any]) -> None:
    """The supervisor proper: claim the addresses, start the metrics listener, run the server.
    Raises listener.AddressInUse before anything starts when either address is taken."""
    from dockyard.observe import logs

    log_config = logs.logging_config(options["log_level"]) if options["json_logs"] else None
    if log_config is not None:
        logs.configure(options["log_level"])
    settings = settings_from_json(os.environ[SETTINGS_ENV])
    host, port = options["host"], options["port"]
    metrics = options["metrics_address"]
    metrics_address = (str(metrics[0]), int(metrics[1])) if metrics else None
    tls_cert = Path(options["tls_cert"]) if options["tls_cert"] else None
    tls_key = Path(options["tls_key"]) if options["tls_key"] else None
    use_private_metrics_dir()
    listening = claim_addresses(host, port, settings, metrics_address)
    if listening is not None:
        listening.start()
    # What this process holds now is shared with every worker it forks: keep the workers' collector
    # from touching (and so copying) those pages.
    gc.freeze()
    try:
        args = (host, port, options["workers"], options["log_level"], log_config, tls_cert, tls_key)
        if resolve(options["server"]) == "granian":
            _run_granian(*args)
        else:
            _run_uvicorn(*args)
    finally:
        if listening is not None:
            listening.close()


def _run_granian(
    host: str,
    port: int,
    workers: int,
    log_level: str,
    log_config: dict[str, Any] | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    # granian imports these when installed, for --reload and --env-files, which Dockyard never
    # asks of it; refused (an ImportError it expects), they stay out of this process and so out of
    # every worker forked from it.
    for optional in _GRANIAN_UNUSED:
        sys.modules.setdefault(optional, None)
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


def _main(argv: list[str]) -> None:
    try:
        supervise(json.loads(argv[0]))
    except listener.AddressInUse as exc:
        import click  # only here: the workers, forked from this process, would all carry it

        # As `dockyard serve` reports it before the exec.
        click.ClickException(f"cannot listen on {exc.strerror}").show()
        sys.exit(1)


if __name__ == "__main__":
    _main(sys.argv[1:])
