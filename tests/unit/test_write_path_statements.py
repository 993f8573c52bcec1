"""The manifest PUT's write transaction runs few statements, each compiled once: the repository,
its image count, the registry's scanning configuration, the image with the manifest's digest and
the image the tag names come from one read; the layers and an index's children from another; a
transaction that has its batch to itself takes no savepoint. What it refuses and records is
unchanged (test_manifest_put_once, test_query_plans_images and the ECR tests hold that)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, event, select

from dockyard.core.errors import LayersNotFoundException
from dockyard.core.registry import images, repositories
from dockyard.core.registry.manifests import OCI_INDEX, OCI_MANIFEST, compute_digest
from dockyard.core.services import Services
from dockyard.store import schema
from dockyard.store.prepared import Prepared
from tests.support import core_services
from tests.support.core_services import ACCOUNT, REGION, caller

CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER = b"layer bytes"


def descriptor(data: bytes, media_type: str) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": compute_digest(data), "size": len(data)}


def image_manifest(note: str, layer: bytes = LAYER) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(CONFIG, "application/vnd.oci.image.config.v1+json"),
        "layers": [descriptor(layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
        "annotations": {"note": note},
    }
    return json.dumps(document).encode()


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


@contextmanager
def statements_run() -> Iterator[list[str]]:
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", note)


async def test_a_tagged_push_alone_runs_seven_statements_and_no_savepoint(svc: Services) -> None:
    with statements_run() as ran:
        await images.put_manifest(svc, caller(), ACCOUNT, "app", image_manifest("one"), OCI_MANIFEST, tag="v1")
    assert not [s for s in ran if re.match(r"\s*(SAVEPOINT|RELEASE)", s)], ran
    # BEGIN, the push target (with scan on push's configuration), the references, the image, the
    # count, its references, the tag.
    assert len(ran) <= 7, ran
    repository_reads = [s for s in ran if re.search(r"FROM repositories\b", s)]
    assert len(repository_reads) == 1, repository_reads


async def test_one_read_answers_which_layers_and_children_are_missing(svc: Services) -> None:
    child = image_manifest("child")
    await images.put_manifest(svc, caller(), ACCOUNT, "app", child, OCI_MANIFEST)
    absent = b"absent layer"
    with statements_run() as ran, pytest.raises(LayersNotFoundException) as missing:
        await images.put_manifest(svc, caller(), ACCOUNT, "app", image_manifest("two", absent), OCI_MANIFEST)
    assert compute_digest(absent) in missing.value.message and compute_digest(LAYER) not in missing.value.message
    assert len([s for s in ran if re.search(r"FROM repository_blobs\b", s)]) == 1
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(child, OCI_MANIFEST)]})
    with statements_run() as ran:
        _, stored = await images.put_manifest(svc, caller(), ACCOUNT, "app", index.encode(), OCI_INDEX, tag="all")
    # The push target, then the children (with their sizes): an index is not scanned on push.
    assert len([s for s in ran if re.match(r"\s*SELECT", s)]) == 2, ran
    async with svc.db.read() as conn:
        repo = await repositories.find(conn, ACCOUNT, REGION, "app")
        assert repo is not None
        image = await images.find_image(conn, repo, "all")
        count = (
            await conn.execute(select(schema.repositories.c.image_count).where(schema.repositories.c.id == repo.id))
        ).scalar_one()
    assert image is not None and image.digest == stored.digest and image.size == len(LAYER)
    assert count == 2


async def test_a_prepared_statement_refuses_an_expanding_parameter(svc: Services) -> None:
    table = schema.repositories
    prepared = Prepared(select(table.c.id).where(table.c.name.in_(bindparam("names", expanding=True))))
    async with svc.db.read() as conn:
        with pytest.raises(ValueError, match="expanding"):
            await prepared.execute(conn, {"names": ["app"]})
