"""Everything an operator needs from a running server, wired in one place for app.py: throttling,
the audit trail and its CloudTrail door, background housekeeping, /healthz and /readyz, and the
middleware that ties requests to all of them. /metrics is not on the public port: the supervising
process serves it on the metrics address (dockyard.observe.listener)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dockyard.audit.trail import AuditTrail
from dockyard.core.services import Services
from dockyard.doors.cloudtrail import CloudTrailDoor
from dockyard.doors.throttle import RateLimit, RateLimiter, RedisTokenBuckets, TokenBuckets
from dockyard.observe import metrics
from dockyard.observe.classify import CLOUDTRAIL_TARGET_PREFIX
from dockyard.observe.middleware import ObserveMiddleware
from dockyard.store import capacity
from dockyard.workers.housekeeping import Housekeeping

__all__ = ["CLOUDTRAIL_TARGET_PREFIX", "Ops", "audit_trail", "rate_limiter"]
READY_TIMEOUT = 5.0
# How long /readyz waits for SQLite's write lock before calling the database locked (well inside
# READY_TIMEOUT; a healthy writer holds it for milliseconds).
READY_LOCK_WAIT_MS = 2000


def rate_limiter(svc: Services) -> RateLimiter:
    limits = {name: RateLimit(*values) for name, values in svc.settings.operations.rate_limits.items()}
    if svc.settings.redis_url:
        return RedisTokenBuckets(svc.settings.redis_url, limits)
    return TokenBuckets(limits)


def audit_trail(svc: Services) -> AuditTrail:
    options = svc.settings.operations
    return AuditTrail(
        svc.settings.audit_dir,
        max_file_bytes=options.audit_file_bytes,
        retention_days=options.audit_retention_days,
        flush_seconds=options.audit_flush_seconds,
        durable=svc.settings.sync_writes,
    )


class Ops:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.limiter = rate_limiter(svc)
        self.trail = audit_trail(svc)
        self.cloudtrail = CloudTrailDoor(svc, self.trail)
        self.housekeeping = Housekeeping(svc, self.trail)
        self.middleware = ObserveMiddleware

    def middleware_options(self) -> dict[str, Any]:
        return {"limiter": self.limiter, "trail": self.trail}

    def start(self) -> None:
        self.trail.start()
        self.housekeeping.start()

    async def stop(self) -> None:
        await self.housekeeping.stop()
        await self.limiter.close()
        await asyncio.to_thread(self.trail.close)
        metrics.mark_process_dead(os.getpid())

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz, methods=["GET", "HEAD"]),
            Route("/readyz", self.readyz, methods=["GET", "HEAD"]),
        ]

    async def healthz(self, request: Request) -> Response:
        """Alive: the process answers. Nothing else is checked, so a slow database never gets it restarted."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Ready: the database answers a query and no other process keeps it locked, the blob store
        and the audit trail can be written, and the data volume has room (see store/capacity.py)."""
        checks = {
            "database": self._database_ready(),
            "storage": self._storage_ready(),
            "audit": asyncio.to_thread(self._audit_writable),
        }
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check, READY_TIMEOUT)
                results[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with the reason
                results[name] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        ready = all(value == "ok" for value in results.values())
        body = {"status": "ok" if ready else "unavailable", "checks": results}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def _database_ready(self) -> None:
        await self.svc.db.ping()
        await self.svc.db.check_writable(READY_LOCK_WAIT_MS)

    async def _storage_ready(self) -> None:
        await self.svc.blobs.ping()
        await asyncio.to_thread(capacity.HEALTH.check)

    def _audit_writable(self) -> None:
        directory = self.trail.directory
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK):
            raise PermissionError(f"{directory} is not writable")
