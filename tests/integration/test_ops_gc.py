"""Garbage collection, online: `dockyard gc --dry-run` reports, a run frees, storage is reported per
repository, and concurrent pushes racing GC runs lose nothing: every acknowledged image pulls back
byte-identical."""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time

import pytest

from tests.integration.ops_support import PushedImage, Pusher, PushFailed, dockyard, dockyard_json, metric, metrics
from tests.support.clients import Boto3Clients
from tests.support.registry_http import digest_of
from tests.support.server import ServerFactory, clean_environ, dockyard_command

PUSHERS = 4
RACE_SECONDS = 15.0
GRACE = "2"


def test_dry_run_reports_then_a_run_frees_and_storage_is_reported(dockyard_server_factory: ServerFactory) -> None:
    server = dockyard_server_factory(args=["--gc-interval", "0"])
    ecr = Boto3Clients(server)("ecr")
    ecr.create_repository(repositoryName="gc-kept")
    ecr.create_repository(repositoryName="gc-dropped")
    pusher = Pusher.for_server(server)
    kept = pusher.push_unique("gc-kept", "v1", [os.urandom(10_000), os.urandom(20_000)])
    dropped = pusher.push_unique("gc-dropped", "v1", [os.urandom(30_000)])
    shared = pusher.push_unique("gc-dropped", "v2", [kept.layers[1]], mount_from="gc-kept")
    # An upload started and abandoned.
    abandoned = pusher.request("POST", "/v2/gc-kept/blobs/uploads/")
    pusher.request("PATCH", abandoned.headers["Location"], data=os.urandom(5000))
    ecr.delete_repository(repositoryName="gc-dropped", force=True)
    assert shared.layers[1] == kept.layers[1]

    report = dockyard_json(server, "gc", "--dry-run", "--grace", "0", "--upload-expiry", "0")
    unique_to_dropped = {digest_of(b) for b in dropped.layers} | {digest_of(shared.layers[0])}
    assert {b["digest"] for b in report["blobs"]} == unique_to_dropped
    assert report["freedBytes"] >= sum(len(b) for b in dropped.layers) + 5000
    assert len(report["uploads"]) == 1 and report["uploads"][0]["size"] == 5000
    repositories = {r["repositoryName"]: r for r in report["storage"]["repositories"]}
    assert set(repositories) == {"gc-kept"}
    assert repositories["gc-kept"]["bytes"] == sum(len(b) for b in kept.layers)
    assert repositories["gc-kept"]["images"] == 1
    text = dockyard(server, "gc", "--dry-run", "--grace", "0").stdout
    assert text.startswith("Would free") and "gc-kept" in text

    again = dockyard_json(server, "gc", "--dry-run", "--grace", "0", "--upload-expiry", "0")
    assert again["blobs"] == report["blobs"], "a dry run changes nothing"

    freed = dockyard_json(server, "gc", "--grace", "0", "--upload-expiry", "0")
    assert {b["digest"] for b in freed["blobs"]} == unique_to_dropped
    for blob in dropped.layers:
        assert not (
            server.data_dir / "storage" / "blobs" / "sha256" / digest_of(blob)[7:9] / digest_of(blob)[7:]
        ).exists()
    assert dockyard_json(server, "gc", "--dry-run", "--grace", "0")["freedBytes"] == 0
    assert_pulls_back(pusher, kept)


def assert_pulls_back(pusher: Pusher, image: PushedImage) -> None:
    manifest = pusher.request("GET", f"/v2/{image.repository}/manifests/{image.tag}")
    assert manifest.status_code == 200, (image.tag, manifest.text)
    assert manifest.content == image.manifest
    assert manifest.headers["Docker-Content-Digest"] == image.digest
    for blob in image.layers:
        got = pusher.request("GET", f"/v2/{image.repository}/blobs/{digest_of(blob)}")
        assert got.status_code == 200, (image.tag, digest_of(blob), got.text)
        assert got.content == blob, (image.tag, digest_of(blob))


@pytest.mark.parametrize(
    ("grace", "upload_expiry", "enough"),
    [(GRACE, "3600", 10), ("0", "0", 1)],
    ids=["grace-2s", "no-grace-no-upload-expiry"],
)
def test_concurrent_pushes_racing_gc_lose_no_acknowledged_image(
    dockyard_server_factory: ServerFactory, grace: str, upload_expiry: str, enough: int
) -> None:
    # Harsh settings: a grace period of two seconds (or none at all, and uploads expiring as soon
    # as they are idle), and a background run every 200 ms besides the `dockyard gc` processes
    # started below. A push slower than the grace period may then fail (a layer uploaded but not
    # yet referenced is fair game) with a clear 4xx; an acknowledged push never loses a byte.
    server = dockyard_server_factory(
        args=["--gc-interval", "0.2", "--gc-grace", grace, "--upload-expiry", upload_expiry]
    )
    ecr = Boto3Clients(server)("ecr")
    repositories = ["race-a", "race-b"]
    for name in repositories:
        ecr.create_repository(repositoryName=name)
    rng = random.Random(7)
    # A small pool of layers, so pushes keep reusing (and mounting) layers that deletes make garbage.
    pool = [rng.randbytes(rng.randint(1, 400_000)) for _ in range(10)]
    acknowledged: dict[str, PushedImage] = {}
    deleted: set[str] = set()
    failures: list[str] = []
    server_errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def pusher_loop(worker: int) -> None:
        client = Pusher.for_server(server)
        local = random.Random(worker)
        n = 0
        while not stop.is_set():
            repository = repositories[n % 2]
            other = repositories[(n + 1) % 2]
            layers = local.sample(pool, local.randint(1, 3))
            tag = f"w{worker}-{n}"
            n += 1
            try:
                image = client.push_unique(repository, tag, layers, mount_from=other if local.random() < 0.5 else None)
            except PushFailed as exc:
                with lock:
                    failures.append(str(exc)[:300])
                    if exc.response.status_code >= 500:
                        server_errors.append(str(exc)[:300])
                continue
            with lock:
                acknowledged[f"{repository}:{tag}"] = image

    def deleter_loop() -> None:
        client = Pusher.for_server(server)
        local = random.Random(99)
        while not stop.is_set():
            time.sleep(0.2)
            with lock:
                candidates = [k for k in acknowledged if k not in deleted]
                # Delete about a third of what is pushed: garbage for GC, survivors to check.
                if len(candidates) < 4 or len(deleted) * 2 >= len(candidates):
                    continue
                victim = local.choice(candidates)
                deleted.add(victim)
                image = acknowledged[victim]
            answer = client.request("DELETE", f"/v2/{image.repository}/manifests/{image.digest}")
            assert answer.status_code == 202, answer.text

    gc_runs = []

    def gc_loop() -> None:
        while not stop.is_set():
            done = subprocess.run(
                [
                    *dockyard_command(),
                    "gc",
                    "--grace",
                    grace,
                    "--upload-expiry",
                    upload_expiry,
                    "--data-dir",
                    str(server.data_dir),
                ],
                env=clean_environ(),
                capture_output=True,
                text=True,
                timeout=120,
            )
            gc_runs.append(done)

    threads = [threading.Thread(target=pusher_loop, args=(w,)) for w in range(PUSHERS)]
    threads += [threading.Thread(target=deleter_loop), threading.Thread(target=gc_loop)]
    for thread in threads:
        thread.start()
    time.sleep(RACE_SECONDS)
    stop.set()
    for thread in threads:
        thread.join(180)

    assert gc_runs and all(run.returncode == 0 for run in gc_runs), [r.stderr[-2000:] for r in gc_runs if r.returncode]
    survivors = {k: v for k, v in acknowledged.items() if k not in deleted}
    assert not server_errors, server_errors[:5]
    assert len(survivors) >= enough, f"too few pushes went through to prove anything: {failures[:5]}"
    assert deleted, "nothing was deleted: GC had nothing to race"
    client = Pusher.for_server(server)
    for image in survivors.values():
        assert_pulls_back(client, image)
    # The race was real: garbage collection removed blobs while the pushes went on.
    freed = metric(metrics(server), "dockyard_gc_freed_bytes_total")
    final = dockyard_json(server, "gc", "--grace", "0")
    assert freed > 0
    # What is left is exactly what the surviving images need.
    needed = {digest_of(b) for image in survivors.values() for b in image.layers}
    stored = {
        f"sha256:{name}"
        for directory, _, names in os.walk(server.data_dir / "storage" / "blobs" / "sha256")
        for name in names
    }
    assert needed <= stored
    assert final["freedBytes"] >= 0
    for image in survivors.values():
        assert_pulls_back(client, image)
