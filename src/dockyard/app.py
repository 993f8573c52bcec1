"""The one ASGI application: every door on one port."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.config import Settings, settings_from_json
from dockyard.core.services import Services
from dockyard.doors.console.routes import ConsoleDoor
from dockyard.doors.ecr import EcrDoor
from dockyard.doors.iam import IdentityDoor
from dockyard.doors.registry import RegistryDoor
from dockyard.observe.ops import CLOUDTRAIL_TARGET_PREFIX, Ops
from dockyard.workers.scans import ScanWorker

SETTINGS_ENV = "DOCKYARD_SETTINGS"


def create_app(settings: Settings | None = None) -> Starlette:
    if settings is None:
        settings = settings_from_json(os.environ[SETTINGS_ENV])
    svc = Services.from_settings(settings)
    registry = RegistryDoor(svc)
    ecr = EcrDoor(svc)
    identity = IdentityDoor(svc)
    ops = Ops(svc)

    async def aws(request: Request) -> Response:
        target = request.headers.get("x-amz-target")
        if target is not None:
            if target.startswith(CLOUDTRAIL_TARGET_PREFIX):
                return await ops.cloudtrail.handle(request, target)
            return await ecr.handle(request, target)
        # No target: the AWS Query protocol (Action=...), IAM or STS by the signature's scope.
        return await identity.handle(request)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await svc.load_token_secret()
        ops.start()
        scan_worker = ScanWorker(svc, ops.trail)
        scan_worker.start()
        yield
        await scan_worker.stop()
        await ops.stop()
        await svc.close()

    routes = [
        *ops.routes(),
        Route("/", aws, methods=["POST"]),
        # GetDownloadUrlForLayer's URLs: signed and time-limited, fetched without SigV4.
        Route("/layers/{token}", ecr.download_layer, methods=["GET", "HEAD"]),
        *registry.routes(),
        ConsoleDoor(svc).mount(),
    ]
    middleware = [Middleware(ops.middleware, **ops.middleware_options())]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.services = svc
    app.state.operations = ops
    return app
