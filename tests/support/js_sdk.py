"""The AWS SDK for JavaScript v3, installed once into a cache outside the repository and run by the
scripts in tests/integration/js/ against a Dockyard server.

`install_js_sdk()` returns the node_modules directory for the versions pinned in
tests/integration/js/package.json and package-lock.json (installed with `npm ci` on first use,
reused afterwards); `JsSdk(server, node_modules)(calls)` runs SDK commands and returns what the
SDK made of each answer (see run-commands.cjs for the shape)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.clients import find_tool, run
from tests.support.npm_cache import node_modules
from tests.support.server import DockyardServer

JS_DIR = Path(__file__).resolve().parents[1] / "integration" / "js"
INSTALL_TIMEOUT = 900.0
RUN_TIMEOUT = 300.0


class JsSdkError(RuntimeError):
    pass


def install_js_sdk(root: Path | None = None) -> Path:
    """The node_modules holding the pinned SDK, installing it first if no earlier run has."""
    return node_modules(JS_DIR, "js-sdk", INSTALL_TIMEOUT, root)


@dataclass
class JsSdk:
    """Runs tests/integration/js/run-commands.cjs with the cached SDK against `server`, signing with
    the server's root key unless a call (or the batch) names other credentials."""

    server: DockyardServer
    node_modules: Path
    node: str = field(default_factory=lambda: find_tool("node"))

    def __call__(
        self, calls: Sequence[Mapping[str, Any]], *, credentials: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        request = {
            "endpoint": self.server.url,
            "region": self.server.region,
            "credentials": dict(credentials or self.root_credentials),
            "calls": [dict(call) for call in calls],
        }
        result = run(
            [self.node, str(JS_DIR / "run-commands.cjs")],
            env=self.server.env(NODE_PATH=str(self.node_modules)),
            input=json.dumps(request),
            timeout=RUN_TIMEOUT,
        ).check()
        return json.loads(result.stdout)

    def one(self, service: str, command: str, input: Mapping[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        """A single call: its entry (output or error, status, requestId)."""
        call: dict[str, Any] = {"service": service, "command": command, "input": dict(input or {})}
        return self([call], **kw)[0]

    @property
    def root_credentials(self) -> dict[str, str]:
        return {"accessKeyId": self.server.access_key_id, "secretAccessKey": self.server.secret_access_key}
