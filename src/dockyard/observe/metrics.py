"""Prometheus metrics, served at /metrics.

With `dockyard serve --workers N` (N > 1) the CLI points PROMETHEUS_MULTIPROC_DIR at a directory in
the data dir before the workers start, so every worker's counts add up in one scrape; that variable
must be set before this module is imported, which is why nothing imports it at the CLI's top level."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Sub-millisecond buckets: a manifest GET answers in well under a millisecond on a warm server.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUESTS = Counter(
    "dockyard_requests", "Requests answered, by door, operation and HTTP status", ["door", "operation", "status"]
)
LATENCY = Histogram(
    "dockyard_request_duration_seconds",
    "Time from a request's arrival to the end of its response",
    ["door", "operation"],
    buckets=LATENCY_BUCKETS,
)
BYTES_IN = Counter("dockyard_received_bytes", "Request body bytes received", ["door"])
BYTES_OUT = Counter("dockyard_sent_bytes", "Response body bytes sent", ["door"])
THROTTLED = Counter("dockyard_throttled_requests", "Requests refused with Rate exceeded", ["operation"])
UPLOADS_IN_PROGRESS = Gauge(
    "dockyard_uploads_in_progress", "Layer upload requests receiving bytes right now", multiprocess_mode="livesum"
)
UPLOAD_SESSIONS = Gauge(
    "dockyard_upload_sessions", "Upload sessions started and not yet completed", multiprocess_mode="mostrecent"
)
STORAGE_BYTES = Gauge(
    "dockyard_storage_bytes", "Bytes of distinct layers and configs stored", multiprocess_mode="mostrecent"
)
REPOSITORY_STORAGE_BYTES = Gauge(
    "dockyard_repository_storage_bytes",
    "Bytes of the distinct layers and configs each repository holds (shared layers count in each)",
    ["account", "region", "repository"],
    multiprocess_mode="mostrecent",
)
QUEUE_DEPTH = Gauge(
    "dockyard_queue_depth", "Work waiting in a background queue (scan, ...)", ["queue"], multiprocess_mode="mostrecent"
)
AUDIT_EVENTS = Counter("dockyard_audit_events", "Events appended to the audit trail", ["durable"])
LIFECYCLE_EXPIRED = Counter("dockyard_lifecycle_expired_images", "Images expired by lifecycle policies")
GC_FREED_BYTES = Counter("dockyard_gc_freed_bytes", "Bytes of blobs and uploads removed by garbage collection")

QueueProbe = Callable[[], Awaitable[int]]
_queue_probes: dict[str, QueueProbe] = {}
# Scrapes come every few seconds; storage sums are refreshed at most this often.
STORAGE_REFRESH_SECONDS = 30.0
_storage_refreshed_at = 0.0


def register_queue_probe(queue: str, probe: QueueProbe) -> None:
    """Have every scrape report `queue`'s depth as `await probe()` (the scan worker's hook)."""
    _queue_probes[queue] = probe
    QUEUE_DEPTH.labels(queue).set(0)


async def refresh_queues() -> None:
    for queue, probe in list(_queue_probes.items()):
        QUEUE_DEPTH.labels(queue).set(await probe())


def storage_is_stale(now: float | None = None) -> bool:
    return (now or time.monotonic()) - _storage_refreshed_at >= STORAGE_REFRESH_SECONDS


def set_storage(total: int, sessions: int, per_repository: dict[tuple[str, str, str], int]) -> None:
    global _storage_refreshed_at
    STORAGE_BYTES.set(total)
    UPLOAD_SESSIONS.set(sessions)
    REPOSITORY_STORAGE_BYTES.clear()
    for (account, region, repository), size in per_repository.items():
        REPOSITORY_STORAGE_BYTES.labels(account, region, repository).set(size)
    _storage_refreshed_at = time.monotonic()


def exposition() -> tuple[bytes, str]:
    """The scrape body and its content type, summed over every worker in multiprocess mode."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    if os.environ.get(MULTIPROCESS_ENV):
        _multiprocess.mark_process_dead(pid)
