"""Prometheus /metrics on the metrics address, served by a thread of the supervising `dockyard
serve` process, never on the registry's public port: every worker's counts summed from the
multiprocess directory, plus what the listener reads from the database itself (storage sums per
repository, queue depths), so repository names and sizes are only seen by who reaches that address.

Import this only once PROMETHEUS_MULTIPROC_DIR is set (see dockyard.observe.listener)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from dockyard.observe.listener import AddressInUse, family

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from dockyard.config import Settings

# Scrapes come every few seconds; the database is asked for storage sums at most this often.
STATE_REFRESH_SECONDS = 30.0
log = logging.getLogger("dockyard.metrics")


@dataclass
class _State:
    total_bytes: int = 0
    upload_sessions: int = 0
    repositories: list[tuple[str, str, str, int]] = field(default_factory=list)
    queues: dict[str, int] = field(default_factory=dict)
    # Each ecosystem's advisories and when it was last known current (the vulnerability data's age).
    vulndb: dict[str, tuple[int, float]] = field(default_factory=dict)


class StateCollector(Collector):
    """Storage sums and queue depths, read from the database by the listener itself (cached)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._state: _State | None = None
        self._read_at = 0.0

    def collect(self) -> Iterable[Metric]:
        state = self._current()
        total = GaugeMetricFamily("dockyard_storage_bytes", "Bytes of distinct layers and configs stored")
        total.add_metric([], state.total_bytes)
        sessions = GaugeMetricFamily("dockyard_upload_sessions", "Upload sessions started and not yet completed")
        sessions.add_metric([], state.upload_sessions)
        per_repository = GaugeMetricFamily(
            "dockyard_repository_storage_bytes",
            "Bytes of the distinct layers and configs each repository holds (shared layers count in each)",
            labels=["account", "region", "repository"],
        )
        for account, region, name, size in state.repositories:
            per_repository.add_metric([account, region, name], size)
        queues = GaugeMetricFamily(
            "dockyard_queue_depth", "Work waiting in a background queue (scan, ...)", labels=["queue"]
        )
        for queue, depth in state.queues.items():
            queues.add_metric([queue], depth)
        return [total, sessions, per_repository, queues, *_vulndb_metrics(state.vulndb)]

    def _current(self) -> _State:
        with self._lock:
            if self._state is None or time.monotonic() - self._read_at >= STATE_REFRESH_SECONDS:
                try:
                    self._state = asyncio.run(_read_state(self.settings))
                except Exception:  # noqa: BLE001 - the request counts still deserve a scrape
                    log.warning("could not read storage and queue metrics", exc_info=True)
                    return self._state or _State()
                self._read_at = time.monotonic()
            return self._state


def _vulndb_metrics(loaded: dict[str, tuple[int, float]]) -> list[Metric]:
    advisories = GaugeMetricFamily(
        "dockyard_vulndb_advisories", "Advisories the vulnerability database holds per ecosystem", labels=["ecosystem"]
    )
    for ecosystem, (count, _) in sorted(loaded.items()):
        advisories.add_metric([ecosystem], count)
    if not loaded:
        return [advisories]
    age = GaugeMetricFamily(
        "dockyard_vulndb_age_seconds",
        "Seconds since the least recently updated ecosystem of the vulnerability database was last updated",
    )
    age.add_metric([], max(0.0, time.time() - min(fetched for _, fetched in loaded.values())))
    return [advisories, age]


async def _read_state(settings: Settings) -> _State:
    from sqlalchemy import func, select

    from dockyard.core.registry.gc import storage_report
    from dockyard.core.services import Services
    from dockyard.store import schema

    svc = Services.from_settings(settings)
    try:
        report = await storage_report(svc)
        state = _State(
            total_bytes=report.total_bytes,
            upload_sessions=report.upload_sessions,
            repositories=[(r.account_id, r.region, r.name, r.bytes) for r in report.repositories],
        )
        scans = schema.image_scans
        async with svc.db.read() as conn:
            waiting = select(func.count()).select_from(scans).where(scans.c.status == "IN_PROGRESS")
            state.queues["scan"] = int((await conn.execute(waiting)).scalar_one())
            sources = schema.vulndb_sources
            rows = await conn.execute(select(sources.c.ecosystem, sources.c.advisories, sources.c.fetched_at))
            state.vulndb = {ecosystem: (count, fetched) for ecosystem, count, fetched in rows}
        return state
    finally:
        await svc.close()


def scrape_registry(settings: Settings, directory: Path) -> CollectorRegistry:
    """Every worker's counts (summed from `directory`) and the listener's own database readings."""
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(directory))
    registry.register(StateCollector(settings))
    return registry


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # wsgiref sets SO_REUSEADDR only: a port another process listens on still fails to bind.
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Scrapes every few seconds would flood the log."""


class MetricsListener:
    """/metrics on its own address, answered from a background thread of the calling process."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        self.registry = registry
        server_class = type("_MetricsServer", (_Server,), {"address_family": family(host)})
        try:
            self._server = make_server(host, port, self._app, server_class=server_class, handler_class=_QuietHandler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUse(exc.errno, f"{host}:{port}: address already in use") from None
            raise
        # granian forks workers (and replacements) from this process: they must not inherit the
        # listening socket, or the address would stay taken while a worker outlives the server.
        os.register_at_fork(after_in_child=self._server.socket.close)
        self._thread = threading.Thread(target=self._server.serve_forever, name="dockyard-metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsListener:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        if environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return iter([b"Not Found\n"])
        body = generate_latest(self.registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return iter([body] if environ["REQUEST_METHOD"] == "GET" else [])
