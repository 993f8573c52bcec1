"""A metadata database another process keeps locked: writes answer promptly in each door's error
format, reads go on, /readyz says why, everything recovers once the lock goes, and a `serve`
started meanwhile names the holder in one line instead of a traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import botocore.exceptions
import pytest
import requests

from tests.integration.ops_support import Pusher
from tests.support.clients import Boto3Clients
from tests.support.registry_http import digest_of
from tests.support.server import DockyardServer, ServerFactory, ServerStartError

# A request used to wait 30 s on the lock; well under that, with room for a loaded machine.
PROMPT = 20.0
POLL_TIMEOUT = 60.0
# These servers need no metrics listener (and several test servers must not share its port).
ENV = {"DOCKYARD_METRICS_ADDRESS": "off"}

HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


@contextmanager
def database_locked(database: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding SQLite's exclusive lock on `database` until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(database)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)


def readiness(server: DockyardServer) -> requests.Response:
    return requests.get(f"{server.url}/readyz", timeout=30)


def wait_ready(server: DockyardServer) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT
    while (answer := readiness(server)).status_code != 200:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)


@pytest.fixture
def server(dockyard_server_factory: ServerFactory) -> DockyardServer:
    return dockyard_server_factory(args=["--workers", "2"], env=ENV)


def test_locked_database_answers_promptly_and_recovers(
    server: DockyardServer, dockyard_server_factory: ServerFactory
) -> None:
    ecr = Boto3Clients(server)("ecr")
    ecr.create_repository(repositoryName="held")
    pusher = Pusher.for_server(server)
    before = pusher.push_unique("held", "before", [b"layer before the lock"])

    with database_locked(server.data_dir / "metadata.db") as holder:
        started = time.monotonic()
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            ecr.create_repository(repositoryName="during")
        assert time.monotonic() - started < PROMPT
        error = refused.value.response["Error"]
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert error["Code"] == "ServerException"
        assert "locked by another process" in error["Message"]

        # Starting an upload writes no row (its state lives beside its bytes); completing it
        # links the blob, which is refused promptly.
        started = time.monotonic()
        upload = pusher.request("POST", "/v2/held/blobs/uploads/")
        assert upload.status_code == 202, upload.text
        layer = b"layer during the lock"
        answer = pusher.request("PUT", f"{upload.headers['Location']}?digest={digest_of(layer)}", data=layer)
        assert time.monotonic() - started < PROMPT
        assert answer.status_code == 503, answer.text
        assert answer.headers["Content-Type"] == "application/json"
        (oci_error,) = answer.json()["errors"]
        assert oci_error["code"] == "UNAVAILABLE" and "locked by another process" in oci_error["message"]

        # Reads never wait for the writer's lock.
        pulled = pusher.request("GET", f"/v2/held/manifests/{before.digest}")
        assert pulled.status_code == 200 and pulled.content == before.manifest
        assert ecr.describe_images(repositoryName="held")["imageDetails"][0]["imageDigest"] == before.digest

        unready = readiness(server)
        assert unready.status_code == 503, unready.text
        assert unready.json()["status"] == "unavailable"
        assert f"pid {holder.pid}" in unready.json()["checks"]["database"]

        # A second server on the same data directory says who holds the lock and stops.
        second = dockyard_server_factory(data_dir=server.data_dir, args=["--workers", "1"], env=ENV, start=False)
        with pytest.raises(ServerStartError):
            second.start(timeout=120)
        stderr = second.stderr()
        assert "Traceback" not in stderr, stderr
        assert f"locked by pid {holder.pid}" in stderr, stderr
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert second.returncode not in (0, None)

    wait_ready(server)
    ecr.create_repository(repositoryName="after")
    after = pusher.push_unique("after", "v1", [b"layer after the lock"])
    for image in (before, after):
        pulled = pusher.request("GET", f"/v2/{image.repository}/manifests/{image.tag}")
        assert pulled.status_code == 200 and pulled.content == image.manifest
