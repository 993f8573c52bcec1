"""A manifest push reads its manifest once: PutImage (ECR door) and a manifest PUT (registry door)
each decode the JSON and hash the bytes exactly once, and the write transaction reads what it
needs once, with every refusal as before."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from starlette.requests import Request

from dockyard.core.errors import (
    ImageTagAlreadyExistsException,
    InvalidParameterException,
    ManifestInvalid,
    ReferencedImagesNotFoundException,
)
from dockyard.core.registry import image_details, images, manifests, repositories
from dockyard.core.registry.manifests import MAX_MANIFEST_SIZE, OCI_INDEX, OCI_MANIFEST, compute_digest
from dockyard.core.registry.repositories import RepositorySettings
from dockyard.core.services import Services
from dockyard.doors.registry import RegistryDoor
from dockyard.store import schema
from tests.support import core_services
from tests.support.core_services import ACCOUNT, REGION, caller

CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER = b"layer bytes"


def descriptor(data: bytes, media_type: str) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": compute_digest(data), "size": len(data)}


def image_manifest(note: str) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(CONFIG, "application/vnd.oci.image.config.v1+json"),
        "layers": [descriptor(LAYER, "application/vnd.oci.image.layer.v1.tar+gzip")],
        "annotations": {"note": note},
    }
    return json.dumps(document).encode()


def index_of(*children: bytes) -> bytes:
    entries = [descriptor(child, OCI_MANIFEST) for child in children]
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Services]:
    services = await core_services.with_repository(tmp_path)
    async with services.db.write() as conn:
        repo = await repositories.find(conn, ACCOUNT, REGION, "app")
        assert repo is not None
        for blob in (CONFIG, LAYER):
            digest = compute_digest(blob)
            await conn.execute(schema.blobs.insert().values(digest=digest, size=len(blob), created_at=0.0))
            await conn.execute(
                schema.repository_blobs.insert().values(repository_id=repo.id, digest=digest, linked_at=0)
            )
    yield services
    await services.close()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often, meanwhile, a manifest's JSON is decoded and its bytes hashed."""
    counted: Counter[str] = Counter()

    def counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counted[name] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(manifests, "_load_json_object", counting("parse", manifests._load_json_object))
    monkeypatch.setattr(manifests, "compute_digest", counting("hash", manifests.compute_digest))
    return counted


def manifest_put(name: str, reference: str, data: bytes, content_type: str) -> Request:
    """The request a client sends for PUT /v2/<name>/manifests/<reference>."""
    scope = {
        "type": "http",
        "method": "PUT",
        "path": f"/v2/{name}/manifests/{reference}",
        "query_string": b"",
        "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(data)).encode())],
        "path_params": {"name": name, "reference": reference},
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": data, "more_body": False}

    return Request(scope, receive)


@contextmanager
def selects_run() -> Iterator[list[str]]:
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if re.match(r"\s*SELECT", statement, re.IGNORECASE):
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", note)


# --- once ---------------------------------------------------------------------------------------


async def test_put_image_parses_and_hashes_its_manifest_once(svc: Services, calls: Counter[str]) -> None:
    data = image_manifest("ecr")
    result = await image_details.put_image(svc, caller(), ACCOUNT, "app", data.decode(), tag="v1")
    assert result["image"]["imageId"] == {"imageTag": "v1", "imageDigest": compute_digest(data)}
    assert calls == {"parse": 1, "hash": 1}


async def test_put_image_by_digest_parses_and_hashes_its_manifest_once(svc: Services, calls: Counter[str]) -> None:
    data = image_manifest("by digest")
    digest = compute_digest(data)
    calls.clear()
    await image_details.put_image(svc, caller(), ACCOUNT, "app", data.decode(), OCI_MANIFEST, digest=digest)
    assert calls == {"parse": 1, "hash": 1}


async def test_a_manifest_put_parses_and_hashes_its_manifest_once(svc: Services, calls: Counter[str]) -> None:
    data = image_manifest("registry")
    response = await RegistryDoor(svc)._put_manifest(
        manifest_put("app", "v1", data, OCI_MANIFEST), caller(), ACCOUNT, "app", "v1"
    )
    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == compute_digest(data)
    assert calls == {"parse": 1, "hash": 1}


# --- the same refusals --------------------------------------------------------------------------


async def test_put_image_refuses_an_unreadable_manifest_in_ecrs_words(svc: Services) -> None:
    with pytest.raises(InvalidParameterException) as refused:
        await image_details.put_image(svc, caller(), ACCOUNT, "app", "not json", tag="v1")
    assert refused.value.message == (
        "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'"
    )


async def test_put_image_reads_the_manifest_before_its_size(svc: Services) -> None:
    padding = "x" * MAX_MANIFEST_SIZE
    oversized = json.loads(image_manifest("big"))
    oversized["annotations"]["padding"] = padding
    with pytest.raises(ManifestInvalid) as too_big:
        await image_details.put_image(svc, caller(), ACCOUNT, "app", json.dumps(oversized), tag="v1")
    assert too_big.value.message.startswith("manifest is ") and too_big.value.code == "InvalidParameterException"
    # An oversized manifest ECR cannot read is refused as unreadable, as before.
    del oversized["mediaType"]
    with pytest.raises(InvalidParameterException) as unreadable:
        await image_details.put_image(svc, caller(), ACCOUNT, "app", json.dumps(oversized), tag="v1")
    assert type(unreadable.value) is InvalidParameterException
    assert "Invalid JSON syntax" in unreadable.value.message


async def test_an_index_reads_its_children_once_and_keeps_their_largest_size(svc: Services) -> None:
    first, second = image_manifest("first"), image_manifest("second")
    for data in (first, second):
        await images.put_manifest(svc, caller(), ACCOUNT, "app", data, OCI_MANIFEST)
    with pytest.raises(ReferencedImagesNotFoundException) as missing:
        await images.put_manifest(svc, caller(), ACCOUNT, "app", index_of(first, b"absent"), OCI_INDEX)
    assert compute_digest(b"absent") in missing.value.message and compute_digest(first) not in missing.value.message
    with selects_run() as ran:
        _, index = await images.put_manifest(svc, caller(), ACCOUNT, "app", index_of(first, second), OCI_INDEX)
    child_reads = [s for s in ran if re.search(r"FROM images\b", s) and re.search(r"\bIN\b", s)]
    assert len(child_reads) == 1, child_reads
    async with svc.db.read() as conn:
        repo = await repositories.find(conn, ACCOUNT, REGION, "app")
        assert repo is not None
        stored = await images.find_image(conn, repo, index.digest)
    assert stored is not None and stored.size == len(LAYER)


async def test_an_immutable_tag_is_not_moved_and_settings_are_not_read_again(svc: Services) -> None:
    settings = RepositorySettings(
        image_tag_mutability="IMMUTABLE_WITH_EXCLUSION",
        exclusion_filters=[{"filterType": "WILDCARD", "filter": "dev*"}],
    )
    await repositories.create_repository(svc, caller(), ACCOUNT, "locked", settings)
    async with svc.db.write() as conn:
        repo = await repositories.find(conn, ACCOUNT, REGION, "locked")
        assert repo is not None
        for blob in (CONFIG, LAYER):
            await conn.execute(
                schema.repository_blobs.insert().values(repository_id=repo.id, digest=compute_digest(blob), linked_at=0)
            )
    for tag in ("v1", "dev-1"):
        await images.put_manifest(svc, caller(), ACCOUNT, "locked", image_manifest("one"), OCI_MANIFEST, tag=tag)
    with selects_run() as ran:
        await images.put_manifest(svc, caller(), ACCOUNT, "locked", image_manifest("two"), OCI_MANIFEST, tag="dev-1")
    repository_reads = [s for s in ran if re.search(r"FROM repositories\b", s) and "image_tag_mutability" in s]
    assert len(repository_reads) == 1, repository_reads
    with pytest.raises(ImageTagAlreadyExistsException):
        await images.put_manifest(svc, caller(), ACCOUNT, "locked", image_manifest("two"), OCI_MANIFEST, tag="v1")
