"""Foreign (non-distributable) layers: a manifest whose Windows-style base layers carry `urls` and were
never uploaded is accepted, as ECR and distribution accept it.

The registry door gets the OCI conformance suite's "Non-distributable Layers" data (main branch:
a compressed and an uncompressed non-distributable layer that nobody pushed, and one ordinary
layer) and the suite's push / list / head / pull / referrers / delete workflow; the ECR door gets a
Docker schema 2 image with a foreign layer through PutImage. Everything that reads an image's
layers keeps working: DescribeImages (whose size leaves out what the registry does not store),
BatchGetImage, ListImages, BatchCheckLayerAvailability, a scan, and garbage collection."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.ecr_support import error_of, repository, upload_blob
from tests.integration.ops_support import dockyard_json
from tests.integration.test_scanning import import_fixtures, wait_for_scan
from tests.support.clients import AwsCli, Boto3Clients
from tests.support.images import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Blob,
    Platform,
    canonical_json,
    make_config,
    make_layer,
    sha256_digest,
)
from tests.support.registry_http import RegistryHttp
from tests.support.scan_images import alpine_base
from tests.support.server import DockyardServer, ServerFactory

OCI_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
TAG = "non-distributable-image"


def foreign(media_type: str, size: int) -> dict[str, Any]:
    """A layer descriptor for bytes nobody pushes, served from elsewhere (as the suite makes them)."""
    digest = sha256_digest(os.urandom(256))
    return {
        "mediaType": media_type,
        "digest": digest,
        "size": size,
        "urls": [f"https://store.example.com/blobs/sha256/{digest.removeprefix('sha256:')}"],
    }


def config_for(diff_ids: list[str], media_type: str = OCI_CONFIG) -> Blob:
    document = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    return Blob(media_type, canonical_json(document))


@pytest.fixture
def registry(dockyard_server: DockyardServer) -> RegistryHttp:
    return RegistryHttp.for_server(dockyard_server)


def test_the_conformance_suites_non_distributable_layers_workflow(
    registry: RegistryHttp, boto3_client: Boto3Clients, aws: AwsCli
) -> None:
    ecr = boto3_client("ecr")
    with repository(ecr, "nondist") as repo:
        layer = make_layer(512, seed="nondist-ordinary")
        compressed, uncompressed = foreign(OCI_NONDIST_GZIP, 123456), foreign(OCI_NONDIST, 12345)
        config = config_for([sha256_digest(os.urandom(256)), uncompressed["digest"], layer.diff_id])
        manifest = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config.descriptor(),
                "layers": [compressed, uncompressed, layer.descriptor()],
            }
        )
        digest = sha256_digest(manifest)

        # push: the blobs the suite has, then the manifest by digest and by tag
        for blob in (config, layer):
            assert registry.push_blob(repo, blob.data) == blob.digest
        headers = {"Content-Type": OCI_MANIFEST}
        by_digest = registry.request("PUT", f"/v2/{repo}/manifests/{digest}", data=manifest, headers=headers)
        assert by_digest.status_code == 201, by_digest.text
        assert by_digest.headers["Docker-Content-Digest"] == digest
        by_tag = registry.request("PUT", f"/v2/{repo}/manifests/{TAG}", data=manifest, headers=headers)
        assert by_tag.status_code == 201, by_tag.text

        # list, head, pull
        listed = registry.request("GET", f"/v2/{repo}/tags/list")
        assert listed.status_code == 200 and listed.json()["tags"] == [TAG]
        for reference in (TAG, digest):
            head = registry.request("HEAD", f"/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
            assert head.status_code == 200 and head.headers["Docker-Content-Digest"] == digest
            got = registry.request("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
            assert got.status_code == 200 and got.content == manifest
        for blob in (config, layer):
            pulled = registry.request("GET", f"/v2/{repo}/blobs/{blob.digest}")
            assert pulled.status_code == 200 and pulled.content == blob.data
        # The foreign layers were never here: clients fetch them from their URLs.
        assert registry.request("HEAD", f"/v2/{repo}/blobs/{compressed['digest']}").status_code == 404

        # referrers: none
        referrers = registry.request("GET", f"/v2/{repo}/referrers/{digest}")
        assert referrers.status_code == 200 and referrers.json()["manifests"] == []

        # The ECR API sees the image; its size is what the registry stores (the ordinary layer).
        detail = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": TAG}])["imageDetails"][0]
        assert (detail["imageDigest"], detail["imageSizeInBytes"]) == (digest, layer.size)
        described = aws("ecr", "describe-images", "--repository-name", repo)["imageDetails"]
        assert [(d["imageDigest"], d["imageSizeInBytes"]) for d in described] == [(digest, layer.size)]
        got_images = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": digest}])
        assert got_images["failures"] == [] and got_images["images"][0]["imageManifest"] == manifest.decode()
        assert ecr.list_images(repositoryName=repo)["imageIds"] == [{"imageDigest": digest, "imageTag": TAG}]
        checked = ecr.batch_check_layer_availability(
            repositoryName=repo, layerDigests=[compressed["digest"], layer.digest]
        )["layers"]
        assert [c["layerAvailability"] for c in checked] == ["UNAVAILABLE", "AVAILABLE"]

        # delete: the tag, the manifest, the blobs
        assert registry.request("DELETE", f"/v2/{repo}/manifests/{TAG}").status_code == 202
        assert registry.request("DELETE", f"/v2/{repo}/manifests/{digest}").status_code == 202
        for blob in (config, layer):
            assert registry.request("DELETE", f"/v2/{repo}/blobs/{blob.digest}").status_code == 202
        assert ecr.list_images(repositoryName=repo)["imageIds"] == []


def test_what_still_must_be_uploaded(registry: RegistryHttp, boto3_client: Boto3Clients) -> None:
    """Only foreign layers with http(s) URLs are let off: an ordinary layer, or a foreign one without
    URLs (or with a URL no client could fetch), must be in the repository."""
    ecr = boto3_client("ecr")
    with repository(ecr, "nondist-missing") as repo:
        config = config_for([])
        registry.push_blob(repo, config.data)
        headers = {"Content-Type": OCI_MANIFEST}
        no_urls = {**foreign(OCI_NONDIST_GZIP, 100), "urls": []}
        odd_url = {**foreign(OCI_NONDIST_GZIP, 100), "urls": ["ftp://store.example.com/layer"]}
        ordinary = {**foreign(OCI_LAYER, 100)}
        for layer in (no_urls, odd_url, ordinary):
            document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(), "layers": [layer]}
            refused = registry.request(
                "PUT", f"/v2/{repo}/manifests/v1", data=canonical_json(document), headers=headers
            )
            assert refused.status_code == 400, refused.text
            assert refused.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"


def docker_image_with_foreign_base(seed: str, files: dict[str, bytes] | None = None) -> tuple[Blob, Any, dict]:
    """(config, the ordinary layer, the manifest document) of a Docker schema 2 image whose base
    layer is a foreign (Windows-style) one."""
    layer = make_layer(files or 256, seed=seed, fmt="docker")
    base = foreign(DOCKER_FOREIGN, 1_660_377_526)
    config = make_config([layer], Platform.parse("linux/amd64"), fmt="docker")
    document = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": config.descriptor(),
        "layers": [base, layer.descriptor()],
    }
    assert config.media_type == DOCKER_CONFIG and layer.media_type == DOCKER_LAYER
    return config, layer, document


def test_put_image_with_a_foreign_layer_through_boto3(boto3_client: Boto3Clients) -> None:
    ecr = boto3_client("ecr")
    with repository(ecr, "foreign-put") as repo:
        config, layer, document = docker_image_with_foreign_base("foreign-put")
        text = json.dumps(document, indent=3)
        with pytest.raises(ClientError) as missing:
            ecr.put_image(repositoryName=repo, imageManifest=text, imageTag="v1")
        assert error_of(missing)[0] == "LayersNotFoundException"
        assert document["layers"][0]["digest"] not in error_of(missing)[1]
        for blob in (config, layer):
            upload_blob(ecr, repo, blob)
        put = ecr.put_image(repositoryName=repo, imageManifest=text, imageTag="v1")["image"]
        digest = put["imageId"]["imageDigest"]
        assert digest == sha256_digest(text.encode())
        detail = ecr.describe_images(repositoryName=repo)["imageDetails"][0]
        assert detail["imageSizeInBytes"] == layer.size
        got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"][0]
        assert got["imageManifest"] == text


def test_an_image_with_a_foreign_layer_scans(
    dockyard_server: DockyardServer, boto3_client: Boto3Clients, registry: RegistryHttp
) -> None:
    """The scanner reads the layers the registry holds and passes over the foreign ones."""
    import_fixtures(dockyard_server)
    ecr = boto3_client("ecr")
    with repository(ecr, "foreign-scan") as repo:
        config, layer, document = docker_image_with_foreign_base("foreign-scan", alpine_base())
        for blob in (config, layer):
            registry.push_blob(repo, blob.data)
        manifest = canonical_json(document)
        put = registry.request(
            "PUT", f"/v2/{repo}/manifests/v1", data=manifest, headers={"Content-Type": DOCKER_MANIFEST}
        )
        assert put.status_code == 201, put.text
        ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": "v1"})
        found = wait_for_scan(ecr, repo, sha256_digest(manifest))
        assert found["imageScanStatus"]["status"] == "COMPLETE", found["imageScanStatus"]
        packages = {
            attribute["value"]
            for finding in found["imageScanFindings"]["findings"]
            for attribute in finding["attributes"]
            if attribute["key"] == "package_name"
        }
        assert packages, "the alpine layer's packages were not scanned"


def test_garbage_collection_keeps_an_image_with_foreign_layers(
    dockyard_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = dockyard_server_factory(args=["--gc-interval", "0"])
    ecr = Boto3Clients(server)("ecr")
    ecr.create_repository(repositoryName="foreign-gc")
    registry = RegistryHttp.for_server(server)
    config, layer, document = docker_image_with_foreign_base("foreign-gc")
    for blob in (config, layer):
        registry.push_blob("foreign-gc", blob.data)
    manifest = canonical_json(document)
    put = registry.request(
        "PUT", "/v2/foreign-gc/manifests/v1", data=manifest, headers={"Content-Type": DOCKER_MANIFEST}
    )
    assert put.status_code == 201, put.text

    collected = dockyard_json(server, "gc", "--grace", "0", "--upload-expiry", "0")
    assert collected["freedBytes"] == 0, collected
    report = dockyard_json(server, "gc", "--dry-run", "--grace", "0")
    stored = {r["repositoryName"]: r for r in report["storage"]["repositories"]}["foreign-gc"]
    assert stored["images"] == 1 and stored["bytes"] >= layer.size
    for blob in (config, layer):
        pulled = registry.request("GET", f"/v2/foreign-gc/blobs/{blob.digest}")
        assert pulled.status_code == 200 and hashlib.sha256(pulled.content).hexdigest() == blob.digest[7:]
