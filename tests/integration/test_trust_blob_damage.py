"""Blob data lost or damaged on disk under a running server (`--workers 2`): reads answer a clear
404 BLOB_UNKNOWN (never a 500, never a 200 shorter than promised), a push's HEAD and
BatchCheckLayerAvailability find the blob absent so the push uploads it again, which heals it; and
`dockyard storage verify` finds every kind of damage, repairs it from another copy, resumes from
its checkpoint and holds to its read rate."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.integration.ops_support import dockyard
from tests.support.clients import Boto3Clients
from tests.support.registry_http import RegistryHttp, digest_of
from tests.support.server import DockyardServer, ServerFactory

LAYER_SIZE = 300_000


@pytest.fixture
def server(dockyard_server_factory: ServerFactory) -> Iterator[DockyardServer]:
    yield dockyard_server_factory(args=["--workers", "2", "--gc-interval", "0", "--metrics-address", "off"])


def blob_file(server: DockyardServer, digest: str) -> Path:
    hexpart = digest.removeprefix("sha256:")
    return server.data_dir / "storage" / "blobs" / "sha256" / hexpart[:2] / hexpart


def push(server: DockyardServer, repository: str, count: int) -> tuple[RegistryHttp, list[bytes]]:
    Boto3Clients(server)("ecr").create_repository(repositoryName=repository)
    registry = RegistryHttp.for_server(server)
    layers = [os.urandom(LAYER_SIZE) for _ in range(count)]
    registry.push_image(repository, "v1", layers)
    return registry, layers


def lose(server: DockyardServer, layer: bytes) -> None:
    blob_file(server, digest_of(layer)).unlink()


def truncate(server: DockyardServer, layer: bytes) -> None:
    with open(blob_file(server, digest_of(layer)), "r+b") as handle:
        handle.truncate(1000)


def corrupt(server: DockyardServer, layer: bytes) -> None:
    path = blob_file(server, digest_of(layer))
    data = bytearray(path.read_bytes())
    data[LAYER_SIZE // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def assert_blob_unknown(response: requests.Response, digest: str, damage: str) -> None:
    assert response.status_code == 404, (response.status_code, response.text[:300])
    if response.request.method == "HEAD":
        return
    error = response.json()["errors"][0]
    assert error["code"] == "BLOB_UNKNOWN"
    assert error["detail"] == {"digest": digest, "damage": damage}
    assert digest in error["message"] and "Push it again" in error["message"]


def assert_no_such_key(response: requests.Response, digest: str) -> None:
    assert response.status_code == 404, (response.status_code, response.text[:300])
    assert "<Code>NoSuchKey</Code>" in response.text and digest in response.text


def download_url(server: DockyardServer, repository: str, digest: str) -> str:
    ecr = Boto3Clients(server)("ecr")
    return str(ecr.get_download_url_for_layer(repositoryName=repository, layerDigest=digest)["downloadUrl"])


def availability(server: DockyardServer, repository: str, digests: list[str]) -> dict[str, str]:
    ecr = Boto3Clients(server)("ecr")
    answer = ecr.batch_check_layer_availability(repositoryName=repository, layerDigests=digests)
    assert answer["failures"] == []
    return {layer["layerDigest"]: layer["layerAvailability"] for layer in answer["layers"]}


def ecr_upload(server: DockyardServer, repository: str, data: bytes) -> None:
    """The ECR API's layer upload (what the AWS CLI and ECR-aware tools do after an UNAVAILABLE)."""
    ecr = Boto3Clients(server)("ecr")
    upload = ecr.initiate_layer_upload(repositoryName=repository)["uploadId"]
    ecr.upload_layer_part(
        repositoryName=repository, uploadId=upload, partFirstByte=0, partLastByte=len(data) - 1, layerPartBlob=data
    )
    ecr.complete_layer_upload(repositoryName=repository, uploadId=upload, layerDigests=[digest_of(data)])


def test_lost_and_truncated_blobs_answer_a_clear_404_and_a_push_heals_them(server: DockyardServer) -> None:
    registry, (lost, short, intact) = push(server, "damaged", 3)
    urls = {digest_of(layer): download_url(server, "damaged", digest_of(layer)) for layer in (lost, short)}
    lose(server, lost)
    truncate(server, short)

    for layer, damage in ((lost, "missing"), (short, "size")):
        digest = digest_of(layer)
        path = f"/v2/damaged/blobs/{digest}"
        assert_blob_unknown(registry.request("GET", path), digest, damage)
        assert_blob_unknown(registry.request("GET", path, headers={"Range": "bytes=0-99"}), digest, damage)
        # A range past what the short file still holds, but inside what the metadata promises.
        assert_blob_unknown(registry.request("GET", path, headers={"Range": "bytes=5000-"}), digest, damage)
        # HEAD must not let a push skip the upload that would repair it.
        assert_blob_unknown(registry.request("HEAD", path), digest, damage)
        assert_no_such_key(requests.get(urls[digest], timeout=30), digest)
        assert requests.head(urls[digest], timeout=30).status_code == 404
        with pytest.raises(ClientError) as refused:
            download_url(server, "damaged", digest)
        assert refused.value.response["Error"]["Code"] == "LayersNotFoundException"
        assert "Push it again" in refused.value.response["Error"]["Message"]
    assert availability(server, "damaged", [digest_of(lost), digest_of(short), digest_of(intact)]) == {
        digest_of(lost): "UNAVAILABLE",
        digest_of(short): "UNAVAILABLE",
        digest_of(intact): "AVAILABLE",
    }
    intact_get = registry.request("GET", f"/v2/damaged/blobs/{digest_of(intact)}")
    assert intact_get.status_code == 200 and intact_get.content == intact
    log = server.stderr()
    assert digest_of(lost) in log and digest_of(short) in log and "damaged in storage" in log

    # A push heals: the registry protocol's upload for one, the ECR API's for the other.
    registry.push_blob("damaged", lost)
    ecr_upload(server, "damaged", short)
    for layer in (lost, short):
        path = f"/v2/damaged/blobs/{digest_of(layer)}"
        assert registry.request("HEAD", path).status_code == 200
        whole = registry.request("GET", path)
        assert whole.status_code == 200 and whole.content == layer
        part = registry.request("GET", path, headers={"Range": "bytes=5000-5099"})
        assert part.status_code == 206 and part.content == layer[5000:5100]
        assert requests.get(download_url(server, "damaged", digest_of(layer)), timeout=30).content == layer
    assert set(availability(server, "damaged", [digest_of(lost), digest_of(short)]).values()) == {"AVAILABLE"}


def verify(server: DockyardServer, *args: str) -> tuple[int, dict[str, Any]]:
    result = dockyard(server, "storage", "verify", "--json", *args, check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_storage_verify_finds_each_kind_of_damage_and_repairs_it(server: DockyardServer, tmp_path: Path) -> None:
    registry, (lost, short, corrupted, intact) = push(server, "verified", 4)
    backup = tmp_path / "backup"
    shutil.copytree(server.data_dir / "storage" / "blobs", backup / "blobs")
    lose(server, lost)
    truncate(server, short)
    corrupt(server, corrupted)

    code, report = verify(server)
    assert code == 1, "damage found: the exit status says so"
    assert report["complete"] and report["checked"] == 5  # four layers and the config
    found = {d["digest"]: d for d in report["damaged"]}
    assert set(found) == {digest_of(lost), digest_of(short), digest_of(corrupted)}
    assert found[digest_of(lost)]["damage"] == "missing"
    assert (found[digest_of(short)]["damage"], found[digest_of(short)]["storedSize"]) == ("size", 1000)
    assert found[digest_of(corrupted)]["damage"] == "digest"
    damaged_bytes = blob_file(server, digest_of(corrupted)).read_bytes()
    assert found[digest_of(corrupted)]["actualDigest"] == "sha256:" + hashlib.sha256(damaged_bytes).hexdigest()
    text = dockyard(server, "storage", "verify", check=False)
    assert text.returncode == 1
    assert "3 damaged, 0 repaired" in text.stdout and "MISSING" in text.stdout and "DIGEST" in text.stdout

    code, repaired = verify(server, "--repair-from", str(backup))
    assert code == 0, repaired
    assert {d["digest"] for d in repaired["damaged"] if d["repaired"]} == set(found)
    code, clean = verify(server)
    assert code == 0 and clean["damaged"] == []
    for layer in (lost, short, corrupted, intact):
        got = registry.request("GET", f"/v2/verified/blobs/{digest_of(layer)}")
        assert got.status_code == 200 and got.content == layer


def test_storage_verify_resumes_from_its_checkpoint_and_holds_its_rate(server: DockyardServer) -> None:
    _, layers = push(server, "paced", 5)
    blobs = 6  # five layers and the config
    checkpoint = server.data_dir / "storage-verify-checkpoint.json"
    ordered = sorted(digest_of(layer) for layer in layers)
    lose(server, layers[[digest_of(layer) for layer in layers].index(ordered[-1])])

    code, first = verify(server, "--max-blobs", "2")
    assert code == 0 and not first["complete"] and first["checked"] == 2
    assert checkpoint.exists()
    code, rest = verify(server)
    assert rest["resumedAfter"] is not None and rest["complete"]
    assert rest["checked"] == blobs, "the pass counts every blob once, over both runs"
    assert code == 1 and [d["digest"] for d in rest["damaged"]] == [ordered[-1]]
    assert not checkpoint.exists(), "a finished pass starts over next time"

    # About 1.5 MB at 0.5 MiB/s: at least 2.5 seconds however fast the disk is.
    started = time.monotonic()
    code, paced = verify(server, "--rate", "0.5")
    elapsed = time.monotonic() - started
    assert paced["checkedBytes"] >= 4 * LAYER_SIZE
    assert elapsed >= (4 * LAYER_SIZE) / (0.5 * 1024 * 1024)
    assert paced["elapsedSeconds"] >= (4 * LAYER_SIZE) / (0.5 * 1024 * 1024)
