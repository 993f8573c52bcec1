"""A server killed with SIGKILL in the middle of many pushes restarts with nothing corrupt, and every
push it acknowledged pulls back byte-identical."""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time

import requests

from tests.support.clients import Boto3Clients
from tests.support.registry_http import RegistryHttp, digest_of
from tests.support.server import ServerFactory

PUSHERS = 6
RUN_SECONDS = 2.5


def test_sigkill_during_pushes_loses_no_acknowledged_image(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory()
    Boto3Clients(server)("ecr").create_repository(repositoryName="crash")
    client = RegistryHttp.for_server(server)
    acknowledged: dict[str, tuple[str, list[bytes]]] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def pusher(worker: int) -> None:
        rng = random.Random(worker)
        n = 0
        while not stop.is_set():
            layers = [rng.randbytes(rng.randint(1, 3 * 1024 * 1024)) for _ in range(rng.randint(1, 3))]
            tag = f"w{worker}-{n}"
            n += 1
            try:
                digest, _ = client.push_image("crash", tag, layers)
            except (requests.RequestException, AssertionError):
                return  # the server died under us: this push was never acknowledged
            with lock:
                acknowledged[tag] = (digest, layers)

    threads = [threading.Thread(target=pusher, args=(i,)) for i in range(PUSHERS)]
    for thread in threads:
        thread.start()
    time.sleep(RUN_SECONDS)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(60)
    assert acknowledged, "no push completed before the kill: the test proved nothing"

    server.start()
    database = sqlite3.connect(server.data_dir / "metadata.db")
    assert database.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    database.close()
    client = RegistryHttp.for_server(server)
    for tag, (digest, layers) in acknowledged.items():
        manifest = client.request("GET", f"/v2/crash/manifests/{tag}")
        assert manifest.status_code == 200, (tag, manifest.text)
        assert manifest.headers["Docker-Content-Digest"] == digest
        assert digest_of(manifest.content) == digest
        for layer in layers:
            blob = client.request("GET", f"/v2/crash/blobs/{digest_of(layer)}")
            assert blob.status_code == 200
            assert blob.content == layer

    # Uploads cut off by the kill leave at most temporary files, never a blob under a wrong name.
    blob_root = server.data_dir / "storage" / "blobs" / "sha256"
    for directory, _, files in os.walk(blob_root):
        for name in files:
            with open(os.path.join(directory, name), "rb") as handle:
                assert digest_of(handle.read()) == f"sha256:{name}"
