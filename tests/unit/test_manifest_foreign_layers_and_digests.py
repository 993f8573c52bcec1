"""Manifest rules that outside clients found to differ from ECR: foreign (non-distributable) layers
need not be uploaded and do not count in imageSizeInBytes, PutImage's imageManifestMediaType stands
in for a Docker manifest's missing mediaType, and a manifest named by sha512 is unsupported."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from dockyard.core.registry.manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    ManifestError,
    parse_manifest,
    unsupported_digest_algorithm,
)

CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "c" * 64, "size": 10}
ORDINARY = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + "a" * 64, "size": 100}
URL = "https://mcr.microsoft.com/v2/windows/servercore/blobs/sha256:" + "b" * 64


def layer(media_type: str, urls: list[str] | None, size: int = 5000, fill: str = "b") -> dict[str, Any]:
    described: dict[str, Any] = {"mediaType": media_type, "digest": "sha256:" + fill * 64, "size": size}
    if urls is not None:
        described["urls"] = urls
    return described


def manifest_with(*layers: dict[str, Any], media_type: str = OCI_MANIFEST) -> bytes:
    config = dict(CONFIG)
    if media_type == DOCKER_MANIFEST:
        config["mediaType"] = "application/vnd.docker.container.image.v1+json"
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "config": config, "layers": list(layers)}).encode()


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ],
)
def test_foreign_layers_with_urls_need_not_be_uploaded_nor_count_in_the_size(media_type: str) -> None:
    kind = DOCKER_MANIFEST if "docker" in media_type else OCI_MANIFEST
    ordinary = (
        dict(ORDINARY, mediaType="application/vnd.docker.image.rootfs.diff.tar.gzip")
        if "docker" in media_type
        else ORDINARY
    )
    parsed = parse_manifest(manifest_with(layer(media_type, [URL]), ordinary, media_type=kind), kind)
    assert parsed.required_blob_digests() == [CONFIG["digest"], ORDINARY["digest"]]
    # Still referenced: a copy someone did upload stays out of garbage collection's reach.
    assert parsed.blob_digests() == [CONFIG["digest"], "sha256:" + "b" * 64, ORDINARY["digest"]]
    assert parsed.image_size() == ORDINARY["size"]


@pytest.mark.parametrize(
    ("media_type", "urls"),
    [
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", None),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", []),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", ["ftp://example.com/layer"]),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", [URL, "https://example.com/layer#part"]),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", ["https://"]),
        ("application/vnd.oci.image.layer.v1.tar+gzip", [URL]),
    ],
)
def test_other_layers_must_be_in_the_repository(media_type: str, urls: list[str] | None) -> None:
    parsed = parse_manifest(manifest_with(layer(media_type, urls)), OCI_MANIFEST)
    assert parsed.required_blob_digests() == parsed.blob_digests()
    assert parsed.image_size() == 5000


def docker_without_media_type(kind: str = DOCKER_MANIFEST) -> bytes:
    if kind == DOCKER_MANIFEST_LIST:
        child = {"mediaType": DOCKER_MANIFEST, "digest": "sha256:" + "d" * 64, "size": 500}
        child["platform"] = {"architecture": "amd64", "os": "windows"}
        return json.dumps({"schemaVersion": 2, "manifests": [child]}).encode()
    document = json.loads(manifest_with(ORDINARY, media_type=DOCKER_MANIFEST))
    del document["mediaType"]
    return json.dumps(document).encode()


@pytest.mark.parametrize("kind", [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])
def test_put_images_media_type_stands_in_for_a_docker_documents_missing_field(kind: str) -> None:
    data = docker_without_media_type(kind)
    assert parse_manifest(data, kind, infer_from_layout=False).media_type == kind
    # The registry door keeps distribution's rule, and PutImage still needs one or the other.
    with pytest.raises(ManifestError):
        parse_manifest(data, kind)
    with pytest.raises(ManifestError) as untyped:
        parse_manifest(data, None, infer_from_layout=False)
    assert untyped.value.message.endswith("'Invalid JSON syntax'")


def test_a_given_media_type_must_still_agree_with_the_documents() -> None:
    data = manifest_with(ORDINARY, media_type=OCI_MANIFEST)
    with pytest.raises(ManifestError):
        parse_manifest(data, DOCKER_MANIFEST, infer_from_layout=False)


def test_only_sha256_names_manifests() -> None:
    assert unsupported_digest_algorithm("sha256:" + hashlib.sha256(b"x").hexdigest()) is None
    assert unsupported_digest_algorithm("sha512:" + hashlib.sha512(b"x").hexdigest()) == (
        "Invalid parameter at 'imageDigest' failed to satisfy constraint: "
        "'Unsupported digest algorithm sha512: image digests must use sha256'"
    )
