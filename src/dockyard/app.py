"""The one ASGI application: every door on one port."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dockyard.config import Settings, settings_from_json
from dockyard.core.services import Services
from dockyard.doors.ecr import EcrDoor
from dockyard.doors.registry import RegistryDoor

SETTINGS_ENV = "DOCKYARD_SETTINGS"


def create_app(settings: Settings | None = None) -> Starlette:
    if settings is None:
        settings = settings_from_json(os.environ[SETTINGS_ENV])
    svc = Services.from_settings(settings)
    registry = RegistryDoor(svc)
    ecr = EcrDoor(svc)

    async def aws(request: Request) -> Response:
        target = request.headers.get("x-amz-target")
        if target is not None:
            return await ecr.handle(request, target)
        return JSONResponse(
            {"__type": "UnknownOperationException", "message": "Unknown operation"}, status_code=400
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await svc.db.ping()
            await svc.blobs.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with the reason
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await svc.load_token_secret()
        yield
        await svc.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/", aws, methods=["POST"]),
        *registry.routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.services = svc
    return app
