"""A small HTTP load generator for machines without wrk or hey: many keep-alive connections from
one asyncio loop (httpx), run as its own process so its CPU is counted apart from the bench's.

    python -m bench.loadgen '{"url": ..., "method": "GET", "headers": {...}, "connections": 64,
                              "duration": 10}'

prints {"requests", "errors", "seconds", "latencies"} as JSON (latencies in seconds)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx


async def _worker(
    client: httpx.AsyncClient, spec: dict[str, Any], deadline: float, latencies: list[float], errors: list[int]
) -> None:
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        try:
            response = await client.request(spec["method"], spec["url"], headers=spec["headers"])
            ok = response.status_code < 400
        except httpx.HTTPError:
            ok = False
        latencies.append(time.perf_counter() - start)
        if not ok:
            errors.append(1)


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    connections = int(spec["connections"])
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    latencies: list[float] = []
    errors: list[int] = []
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        start = time.perf_counter()
        deadline = start + float(spec["duration"])
        await asyncio.gather(*(_worker(client, spec, deadline, latencies, errors) for _ in range(connections)))
        seconds = time.perf_counter() - start
    return {"requests": len(latencies), "errors": len(errors), "seconds": seconds, "latencies": latencies}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
