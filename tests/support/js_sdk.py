"""The AWS SDK for JavaScript v3, installed once into a cache outside the repository and run by the
scripts in tests/integration/js/ against a Dockyard server.

`install_js_sdk()` returns the node_modules directory for the versions pinned in
tests/integration/js/package.json and package-lock.json (installed with `npm ci` on first use,
reused afterwards); `JsSdk(server, node_modules)(calls)` runs SDK commands and returns what the
SDK made of each answer (see run-commands.cjs for the shape)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.clients import find_tool, run
from tests.support.server import DockyardServer

JS_DIR = Path(__file__).resolve().parents[1] / "integration" / "js"
PINNED_FILES = ("package.json", "package-lock.json")
INSTALL_TIMEOUT = 900.0
RUN_TIMEOUT = 300.0
_MARKER = ".installed"


class JsSdkError(RuntimeError):
    pass


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dockyard-tests" / "js-sdk"


def pinned_key() -> str:
    """Names one installation: changes whenever a pinned version (or the lock) does."""
    digest = hashlib.sha256()
    for name in PINNED_FILES:
        digest.update(name.encode() + b"\0" + (JS_DIR / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def install_js_sdk(root: Path | None = None) -> Path:
    """The node_modules holding the pinned SDK, installing it first if no earlier run has."""
    root = root or cache_root()
    target = root / pinned_key()
    if (target / _MARKER).exists():
        return target / "node_modules"
    root.mkdir(parents=True, exist_ok=True)
    # Several pytest processes may start at once: one installs, the others wait and reuse it.
    with _locked(root / f"{target.name}.lock"):
        if not (target / _MARKER).exists():
            _install_into(target)
    return target / "node_modules"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install_into(target: Path) -> None:
    # Install beside the target and rename it into place, so an interrupted install is never reused.
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
    try:
        for name in PINNED_FILES:
            shutil.copyfile(JS_DIR / name, staging / name)
        command = [find_tool("npm"), "ci", "--prefix", str(staging), "--ignore-scripts", "--no-audit", "--no-fund"]
        result = run(command, env={**os.environ, "npm_config_update_notifier": "false"}, timeout=INSTALL_TIMEOUT)
        if result.returncode != 0:
            raise JsSdkError(f"npm ci failed in {staging}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        (staging / _MARKER).write_text(pinned_key())
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
