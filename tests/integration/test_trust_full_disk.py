"""A full data volume: writes get a clear error on each door, reads keep working, /readyz says why,
no worker dies, writes come back by themselves once space is freed, and nothing acknowledged is lost.

The data directory lives on a 64 MiB tmpfs of its own; a filler file takes whatever room is left."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import botocore.exceptions
import pytest
import requests

from tests.integration.ops_support import PushedImage, Pusher
from tests.support.clients import Boto3Clients
from tests.support.registry_http import OCI_MANIFEST, digest_of
from tests.support.server import DockyardServer, ServerFactory

DISK_SIZE = "64m"
POLL_TIMEOUT = 60.0
FULL_MESSAGE = "Storage is full"
# These servers need no metrics listener (and several test servers must not share its port).
ENV = {"DOCKYARD_METRICS_ADDRESS": "off"}


@pytest.fixture
def small_disk(tmp_path: Path, dockyard_server_factory: ServerFactory) -> Iterator[Path]:
    """A 64 MiB tmpfs; its servers are stopped before it is unmounted."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        dockyard_server_factory.close()
        subprocess.run(["umount", str(mountpoint)], check=True)


def fill(directory: Path) -> Path:
    """Take every free byte of `directory`'s file system with one file; returns it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        chunk = 16 * 1024 * 1024
        while chunk >= 4096:
            try:
                os.posix_fallocate(fd, size, chunk)
                size += chunk
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2
    finally:
        os.close(fd)
    return filler


def worker_pids(server: DockyardServer) -> set[int]:
    assert server.process is not None
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(child) for child in children}


def readiness(server: DockyardServer) -> requests.Response:
    return requests.get(f"{server.url}/readyz", timeout=30)


def wait_ready(server: DockyardServer) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT
    while (answer := readiness(server)).status_code != 200:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)


def assert_storage_full(answer: requests.Response) -> None:
    """The registry door's answer to a write on a full disk: a 5xx with an OCI error body."""
    assert answer.status_code == 507, (answer.status_code, answer.text)
    assert answer.headers["Content-Type"] == "application/json"
    (error,) = answer.json()["errors"]
    assert error["code"] == "UNAVAILABLE" and FULL_MESSAGE in error["message"], error


def registry_write_refused(pusher: Pusher, repository: str) -> None:
    started = pusher.request("POST", f"/v2/{repository}/blobs/uploads/")
    if started.status_code != 202:
        assert_storage_full(started)
        return
    chunk = os.urandom(256 * 1024)
    patched = pusher.request(
        "PATCH",
        started.headers["Location"],
        data=chunk,
        headers={"Content-Type": "application/octet-stream", "Content-Range": f"0-{len(chunk) - 1}"},
    )
    assert_storage_full(patched)


def ecr_write_refused(ecr: object, repository: str) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        upload = ecr.initiate_layer_upload(repositoryName=repository)  # type: ignore[attr-defined]
        ecr.upload_layer_part(  # type: ignore[attr-defined]
            repositoryName=repository,
            uploadId=upload["uploadId"],
            partFirstByte=0,
            partLastByte=256 * 1024 - 1,
            layerPartBlob=os.urandom(256 * 1024),
        )
    error = refused.value.response["Error"]
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert error["Code"] == "ServerException" and FULL_MESSAGE in error["Message"], error


def big_manifest(image: PushedImage) -> bytes:
    """`image`'s manifest with 3 MiB of annotations: more than the database has room for."""
    manifest = json.loads(image.manifest)
    manifest["annotations"] = {"padding": "x" * (3 * 1024 * 1024)}
    return json.dumps(manifest).encode()


def assert_intact(pusher: Pusher, image: PushedImage) -> None:
    pulled = pusher.request("GET", f"/v2/{image.repository}/manifests/{image.tag}")
    assert pulled.status_code == 200 and pulled.content == image.manifest
    for blob in image.layers:
        answer = pusher.request("GET", f"/v2/{image.repository}/blobs/{digest_of(blob)}")
        assert answer.status_code == 200 and answer.content == blob


def test_full_disk_refuses_writes_clearly_and_recovers(
    small_disk: Path, dockyard_server_factory: ServerFactory
) -> None:
    server = dockyard_server_factory(args=["--workers", "2"], env=ENV, data_dir=small_disk / "data")
    ecr = Boto3Clients(server)("ecr")
    ecr.create_repository(repositoryName="full")
    pusher = Pusher.for_server(server)
    acknowledged = [pusher.push_unique("full", f"v{n}", [os.urandom(200_000)]) for n in range(5)]
    workers = worker_pids(server)
    assert len(workers) >= 2, workers

    filler = fill(small_disk)
    for _ in range(2):  # each worker, whichever answers
        registry_write_refused(pusher, "full")
        ecr_write_refused(ecr, "full")
    assert_storage_full(
        pusher.request(
            "PUT",
            "/v2/full/manifests/too-big",
            data=big_manifest(acknowledged[0]),
            headers={"Content-Type": OCI_MANIFEST},
        )
    )

    # Reads go on.
    for image in acknowledged:
        assert_intact(pusher, image)
    described = ecr.describe_images(repositoryName="full")["imageDetails"]
    assert {detail["imageDigest"] for detail in described} == {image.digest for image in acknowledged}

    unready = readiness(server)
    assert unready.status_code == 503, unready.text
    assert "storage is full" in unready.json()["checks"]["storage"]
    assert server.running and worker_pids(server) == workers, "no worker died or was replaced"

    filler.unlink()
    wait_ready(server)
    acknowledged.append(pusher.push_unique("full", "after", [os.urandom(200_000)]))
    upload = ecr.initiate_layer_upload(repositoryName="full")
    ecr.upload_layer_part(
        repositoryName="full",
        uploadId=upload["uploadId"],
        partFirstByte=0,
        partLastByte=1023,
        layerPartBlob=os.urandom(1024),
    )
    assert worker_pids(server) == workers, "recovered without a restart"
    for image in acknowledged:
        assert_intact(pusher, image)

    server.restart()
    pusher = Pusher.for_server(server)
    for image in acknowledged:
        assert_intact(pusher, image)
