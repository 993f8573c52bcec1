"""Pushes and pulls with real clients: multi-platform indexes, chunked uploads, cross-repository
mounts, Docker schema 2 images, all byte-identical on the way back."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import pytest

from tests.support.clients import AwsCli, Boto3Clients, Podman, Skopeo
from tests.support.images import build_image, build_index
from tests.support.registry_http import RegistryHttp, digest_of
from tests.support.server import DockyardServer


def make_repository(boto3_client: Boto3Clients, name: str) -> None:
    ecr = boto3_client("ecr")
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=name)


@pytest.fixture(scope="module")
def logged_in(dockyard_server: DockyardServer, aws: AwsCli, skopeo: Skopeo, podman: Podman) -> DockyardServer:
    password = aws("ecr", "get-login-password")
    skopeo.login(dockyard_server.registry, password)
    podman.login(dockyard_server.registry, password)
    return dockyard_server


def test_multi_platform_index_round_trip(
    logged_in: DockyardServer, boto3_client: Boto3Clients, skopeo: Skopeo, podman: Podman, tmp_path: Path
) -> None:
    make_repository(boto3_client, "multi/arch")
    index = build_index(tmp_path / "layout", "v1", layers=[4096, 2048])
    target = f"docker://{logged_in.registry}/multi/arch:v1"
    skopeo.copy(index, target, "--all")

    assert skopeo.inspect_raw(target) == index.index.data
    for image in index.images:
        by_digest = f"docker://{logged_in.registry}/multi/arch@{image.manifest.digest}"
        assert skopeo.inspect_raw(by_digest) == image.manifest.data

    out = tmp_path / "pulled"
    skopeo.copy(target, f"oci:{out}:v1", "--all")
    pulled_index = json.loads((out / "index.json").read_text())["manifests"][0]
    assert pulled_index["digest"] == index.digest

    podman("pull", "--platform", "linux/arm64", f"{logged_in.registry}/multi/arch:v1")
    inspected = podman.inspect(f"{logged_in.registry}/multi/arch:v1")
    assert inspected["Architecture"] == "arm64"

    described = boto3_client("ecr").describe_images(repositoryName="multi/arch", imageIds=[{"imageTag": "v1"}])
    detail = described["imageDetails"][0]
    assert detail["imageDigest"] == index.digest
    assert detail["imageManifestMediaType"] == "application/vnd.oci.image.index.v1+json"


def test_docker_schema2_round_trip(
    logged_in: DockyardServer, boto3_client: Boto3Clients, skopeo: Skopeo, tmp_path: Path
) -> None:
    make_repository(boto3_client, "docker-format")
    image = build_image(tmp_path / "docker", "v2", layers=[1000, 3000], fmt="docker")
    target = f"docker://{logged_in.registry}/docker-format:v2"
    skopeo.copy(image, target)
    assert skopeo.inspect_raw(target) == image.manifest.data
    inspected = skopeo.inspect(target).json()
    assert inspected["Digest"] == image.digest


def test_chunked_upload(logged_in: DockyardServer, boto3_client: Boto3Clients) -> None:
    make_repository(boto3_client, "chunked")
    client = RegistryHttp.for_server(logged_in)
    data = hashlib.sha256(b"seed").digest() * 100_000  # 3.2 MB
    chunks = [data[i : i + 1_000_000] for i in range(0, len(data), 1_000_000)]
    started = client.request("POST", "/v2/chunked/blobs/uploads/")
    assert started.status_code == 202
    location, offset = started.headers["Location"], 0
    for chunk in chunks[:-1]:
        end = offset + len(chunk) - 1
        patched = client.request(
            "PATCH",
            location,
            data=chunk,
            headers={"Content-Range": f"{offset}-{end}", "Content-Type": "application/octet-stream"},
        )
        assert patched.status_code == 202, patched.text
        assert patched.headers["Range"] == f"0-{end}"
        location, offset = patched.headers["Location"], end + 1

    # A chunk that leaves a gap is refused and changes nothing.
    gap = client.request("PATCH", location, data=b"x", headers={"Content-Range": f"{offset + 5}-{offset + 5}"})
    assert gap.status_code == 416
    status = client.request("GET", location)
    assert status.status_code == 204
    assert status.headers["Range"] == f"0-{offset - 1}"

    done = client.request("PUT", location, params={"digest": digest_of(data)}, data=chunks[-1])
    assert done.status_code == 201, done.text
    assert done.headers["Docker-Content-Digest"] == digest_of(data)
    assert client.request("GET", f"/v2/chunked/blobs/{digest_of(data)}").content == data

    ranged = client.request("GET", f"/v2/chunked/blobs/{digest_of(data)}", headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206
    assert ranged.content == data[10:20]


def test_streamed_patch_without_length(logged_in: DockyardServer, boto3_client: Boto3Clients) -> None:
    make_repository(boto3_client, "streamed")
    client = RegistryHttp.for_server(logged_in)
    pieces = [bytes([i]) * 70_000 for i in range(20)]
    data = b"".join(pieces)
    started = client.request("POST", "/v2/streamed/blobs/uploads/")
    patched = client.request("PATCH", started.headers["Location"], data=iter(pieces))  # chunked encoding
    assert patched.status_code == 202
    done = client.request("PUT", patched.headers["Location"], params={"digest": digest_of(data)})
    assert done.status_code == 201
    assert client.request("GET", f"/v2/streamed/blobs/{digest_of(data)}").content == data


def test_cross_repository_mount(
    logged_in: DockyardServer, boto3_client: Boto3Clients, skopeo: Skopeo, tmp_path: Path
) -> None:
    make_repository(boto3_client, "mount/source")
    make_repository(boto3_client, "mount/target")
    client = RegistryHttp.for_server(logged_in)
    layer = b"shared layer bytes" * 1000
    digest = client.push_blob("mount/source", layer)
    assert client.request("HEAD", f"/v2/mount/target/blobs/{digest}").status_code == 404

    mounted = client.request(
        "POST", "/v2/mount/target/blobs/uploads/", params={"mount": digest, "from": "mount/source"}
    )
    assert mounted.status_code == 201
    assert mounted.headers["Location"].endswith(digest)
    assert client.request("GET", f"/v2/mount/target/blobs/{digest}").content == layer

    # A blob the source doesn't have starts an ordinary upload instead.
    missing = digest_of(b"nowhere")
    fallback = client.request(
        "POST", "/v2/mount/target/blobs/uploads/", params={"mount": missing, "from": "mount/source"}
    )
    assert fallback.status_code == 202

    # skopeo copying between repositories of one registry mounts what it can and arrives intact.
    image = build_image(tmp_path / "layout", "m1", layers=[5000])
    skopeo.copy(image, f"docker://{logged_in.registry}/mount/source:m1")
    skopeo.copy(f"docker://{logged_in.registry}/mount/source:m1", f"docker://{logged_in.registry}/mount/target:m1")
    assert skopeo.inspect_raw(f"docker://{logged_in.registry}/mount/target:m1") == image.manifest.data


def test_pull_by_digest_and_tags_list(
    logged_in: DockyardServer, boto3_client: Boto3Clients, skopeo: Skopeo, tmp_path: Path
) -> None:
    make_repository(boto3_client, "tagged")
    for tag in ("a", "b", "c"):
        image = build_image(tmp_path / "layout", tag, layers=[100])
        skopeo.copy(image, f"docker://{logged_in.registry}/tagged:{tag}")
    assert skopeo.list_tags(f"docker://{logged_in.registry}/tagged") == ["a", "b", "c"]
    client = RegistryHttp.for_server(logged_in)
    first = client.request("GET", "/v2/tagged/tags/list", params={"n": 2})
    assert first.json()["tags"] == ["a", "b"]
    assert 'rel="next"' in first.headers["Link"]
    second = client.request("GET", "/v2/tagged/tags/list", params={"n": 2, "last": "b"})
    assert second.json()["tags"] == ["c"]
