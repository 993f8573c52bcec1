"""What every process of `dockyard serve` holds at rest counts in its memory (issue 19 bounds the
sum), so the libraries only some requests need are imported with the first of them: botocore (the
SigV4 signer, the AWS JSON and Query models) with the first AWS API request, jinja2 with the first
console page. A worker that has started and served the registry API, and the supervisor that reads
the settings before it forks the workers, must not have loaded them.
`python -m bench --scenarios memory` measures the resident memory itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dockyard.config import Settings, settings_to_json
from dockyard.store.database import upgrade

# Loaded with the first request that needs them, never at start-up: cryptography with the first
# signature or sealed value, httpx with the first upstream, site or vulnerability database
# request, the OSV reader (packaging, cvss) with the first advisory read.
LAZY_MODULES = (
    "botocore",
    "urllib3",
    "dateutil",
    "jmespath",
    "jinja2",
    "cryptography",
    "httpx",
    "httpcore",
    "click",
    "pygments",
    "cvss",
    "packaging",
    "dockyard.vulndb.osv",
)

# A worker, as granian runs one: build the app from the settings in the environment, start it
# (lifespan), serve a registry API request, stop it.
WORKER = """
import asyncio, json, sys
from dockyard.app import create_app

async def get(app, path):
    sent = []
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        sent.append(message)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"localhost")], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return sent[0]["status"]

async def main():
    app = create_app()
    async with app.router.lifespan_context(app):
        statuses = [await get(app, "/v2/"), await get(app, "/healthz")]
    print(json.dumps({"statuses": statuses, "modules": sorted(sys.modules)}))

asyncio.run(main())
"""

# The supervisor reads the settings (`python -m dockyard.server` does, before it forks).
SUPERVISOR = """
import json, os, sys
import dockyard.server
dockyard.server.settings_from_json(os.environ[dockyard.server.SETTINGS_ENV])
print(json.dumps(sorted(sys.modules)))
"""


def lazy_modules_in(loaded: list[str]) -> list[str]:
    return [name for name in loaded if any(name == lazy or name.startswith(f"{lazy}.") for lazy in LAZY_MODULES)]


def environment(tmp_path: Path) -> dict[str, str]:
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir()
    upgrade(settings.sqlalchemy_url)  # `dockyard serve` migrates before the workers start
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    return {**os.environ, "DOCKYARD_SETTINGS": settings_to_json(settings), "PROMETHEUS_MULTIPROC_DIR": str(metrics)}


def run(script: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_started_worker_has_not_loaded_what_only_other_requests_need(tmp_path: Path) -> None:
    result = json.loads(run(WORKER, environment(tmp_path)))
    assert result["statuses"] == [401, 200]  # the registry API answered, unauthenticated
    assert lazy_modules_in(result["modules"]) == []


def test_the_supervisor_reading_the_settings_loads_no_botocore(tmp_path: Path) -> None:
    loaded = json.loads(run(SUPERVISOR, environment(tmp_path)))
    assert lazy_modules_in(loaded) == []
