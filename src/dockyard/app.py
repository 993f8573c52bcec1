"""The one ASGI application: every door on one port."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from dockyard.config import Settings, settings_from_json
from dockyard.core.services import Services
from dockyard.doors.console.routes import ConsoleDoor
from dockyard.doors.ecr import EcrDoor
from dockyard.doors.iam import IdentityDoor
from dockyard.doors.registry import RegistryDoor
from dockyard.doors.secretsmanager import SecretsManagerDoor
from dockyard.doors.signer import SignerDoor
from dockyard.observe.classify import SECRETS_MANAGER_TARGET_PREFIX
from dockyard.observe.ops import CLOUDTRAIL_TARGET_PREFIX, Ops
from dockyard.store import inline_sqlite
from dockyard.workers.replication import ReplicationWorker
from dockyard.workers.scans import ScanWorker
from dockyard.workers.signing import SigningWorker

SETTINGS_ENV = "DOCKYARD_SETTINGS"
# What the server answers; a CONNECT (a client taking this server for a proxy) is not among them.
ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


class RefuseConnect:
    """Answer CONNECT with 405: routing would otherwise take its authority-form target for a path
    and redirect it to http://host:443/."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "CONNECT":
            await Response(status_code=405, headers={"Allow": ALLOWED_METHODS})(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> Starlette:
    if settings is None:
        settings = settings_from_json(os.environ[SETTINGS_ENV])
    svc = Services.from_settings(settings)
    registry = RegistryDoor(svc)
    identity = IdentityDoor(svc)

    @cache
    def ecr() -> EcrDoor:
        # Built with the first ECR request: its compiled model and botocore are a few MiB that a
        # worker serving only the registry API never needs.
        return EcrDoor(svc)

    async def download_layer(request: Request) -> Response:
        return await ecr().download_layer(request)

    @cache
    def secretsmanager() -> SecretsManagerDoor:
        return SecretsManagerDoor(svc)

    ops = Ops(svc)

    async def aws(request: Request) -> Response:
        target = request.headers.get("x-amz-target")
        if target is not None:
            if target.startswith(CLOUDTRAIL_TARGET_PREFIX):
                return await ops.cloudtrail.handle(request, target)
            if target.startswith(SECRETS_MANAGER_TARGET_PREFIX):
                return await secretsmanager().handle(request, target)
            return await ecr().handle(request, target)
        # No target: the AWS Query protocol (Action=...), IAM or STS by the signature's scope.
        return await identity.handle(request)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await svc.load_token_secret()
        scan_worker = ScanWorker(svc, ops.trail)
        signing_worker = SigningWorker(svc)
        replication_worker = ReplicationWorker(svc, ops.trail)
        # Background work reads and writes in bulk: its statements run on threads, so that the
        # event loop they share with requests is never held up by them (tasks keep this context).
        with inline_sqlite.offloaded():
            ops.start()
            scan_worker.start()
            signing_worker.start()
            replication_worker.start()
        # What the worker holds now (the imported modules, the app, the compiled statements) lives
        # as long as the worker: kept out of the cyclic collector, a full collection no longer walks
        # ~90,000 objects (18 ms with every request in flight waiting behind it).
        gc.freeze()
        yield
        await replication_worker.stop()
        await signing_worker.stop()
        await scan_worker.stop()
        await ops.stop()
        await svc.close()

    routes = [
        *ops.routes(),
        Route("/", aws, methods=["POST"]),
        # GET / and /favicon.ico: a browser's way into the console (POST / stays the AWS API).
        *ConsoleDoor.site_routes(),
        # GetDownloadUrlForLayer's URLs: signed and time-limited, fetched without SigV4.
        Route("/layers/{token}", download_layer, methods=["GET", "HEAD"]),
        *registry.routes(),
        *SignerDoor(svc).routes(),
        ConsoleDoor(svc).mount(),
    ]
    middleware = [Middleware(ops.middleware, **ops.middleware_options()), Middleware(RefuseConnect)]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.services = svc
    app.state.operations = ops
    return app
