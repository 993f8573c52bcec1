"""The Prometheus metrics every worker counts into; dockyard.observe.listener serves them at
/metrics on the private metrics address, never on the public port.

`dockyard serve` points PROMETHEUS_MULTIPROC_DIR at a private directory before the workers start, so
every worker's counts add up in one scrape; that variable must be set before this module is
imported, which is why nothing imports it at the CLI's top level. Storage and queue gauges are read
by the listener itself (dockyard.observe.listener.StateCollector)."""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client import multiprocess as _multiprocess

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Sub-millisecond buckets: a manifest GET answers in well under a millisecond on a warm server.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUESTS = Counter(
    "dockyard_requests",
    "Requests answered, by door, operation and HTTP status (499: the client went away first)",
    ["door", "operation", "status"],
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
AUDIT_EVENTS = Counter("dockyard_audit_events", "Events appended to the audit trail", ["durable"])
LIFECYCLE_EXPIRED = Counter("dockyard_lifecycle_expired_images", "Images expired by lifecycle policies")
GC_FREED_BYTES = Counter("dockyard_gc_freed_bytes", "Bytes of blobs and uploads removed by garbage collection")


def mark_process_dead(pid: int) -> None:
    if os.environ.get(MULTIPROCESS_ENV):
        _multiprocess.mark_process_dead(pid)
