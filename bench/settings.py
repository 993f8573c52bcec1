"""The run's settings, shared by every scenario module, and small measuring helpers."""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

MIB = 1024 * 1024
GIB = 1024 * MIB
# How long clients wait for each other at the start line before the run is called broken.
START_LINE_TIMEOUT = 600.0

T = TypeVar("T")


@dataclass
class Settings:
    sizes: list[int]
    chunk: int
    concurrent_clients: int
    concurrent_size: int
    connections: int
    duration: float
    load_threads: int
    skopeo_layers: int
    skopeo_layer_size: int
    images: int
    ecr_page: int
    ecr_batch: int
    seed_clients: int
    memory_size: int
    work: Path
    run_id: str
    rounds: int = 1
    # Write path: whole small images pushed by push_clients clients, push_images each.
    push_clients: int = 8
    push_images: int = 25
    push_layer_size: int = MIB
    # Manifest PUTs: put_clients clients, put_manifests fresh manifests each.
    put_clients: int = 8
    put_manifests: int = 100
    # Growth: repository sizes (images), account sizes (repositories), samples per operation and size,
    # BatchDeleteImage calls per size and pass, and the clients that seed.
    growth_images: list[int] = field(default_factory=lambda: [1000, 10_000])
    growth_repositories: list[int] = field(default_factory=lambda: [100, 10_000])
    growth_samples: int = 50
    growth_deletes: int = 5
    growth_seed_clients: int = 16
    # Filled as the run goes: things prepared once per registry (pushed images, the built image).
    prepared: dict[str, Any] = field(default_factory=dict)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(median, p99) of samples in seconds, both in milliseconds; p99 is the nearest-rank value."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered) * 1000, p99 * 1000


def timed(call: Callable[[], T], samples: list[float]) -> T:
    start = time.perf_counter()
    result = call()
    samples.append(time.perf_counter() - start)
    return result


def run_clients(count: int, body: Callable[[int, Callable[[], None]], list[float]]) -> tuple[list[float], float]:
    """Runs body(index, ready) in `count` threads at once. Each body prepares what it needs
    (connections, payloads), calls ready() and then does the timed work, returning its per-item
    seconds; the clock runs from the moment all are ready until the last one ends.
    Returns (all samples, elapsed seconds)."""
    barrier = threading.Barrier(count + 1, timeout=START_LINE_TIMEOUT)

    def ready() -> None:
        barrier.wait()

    def guarded(index: int) -> list[float]:
        try:
            return body(index, ready)
        except BaseException:
            barrier.abort()  # the others must not wait at the start line for a client that died
            raise

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(guarded, index) for index in range(count)]
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            for future in futures:
                future.result()  # the client's own error says more than the broken barrier
            raise
        start = time.perf_counter()
        samples = [sample for future in futures for sample in future.result()]
        elapsed = time.perf_counter() - start
    return samples, elapsed


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)
