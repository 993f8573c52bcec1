"""What a replication job carries, read from the source repository: the image, an index's
children before it, the referrers (signatures, SBOMs) of each after it, with every blob each
manifest names and the tags each holds now. Read in one transaction, so the set is consistent."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.registry.manifests import parse_manifest
from dockyard.store import schema

images = schema.images
tags = schema.tags


@dataclass(frozen=True)
class CarriedImage:
    digest: str
    media_type: str
    manifest: bytes
    # digest -> size of the config and layers the manifest names (none for an index).
    blobs: dict[str, int]
    tags: tuple[str, ...]


async def _image(conn: AsyncConnection, repository_id: int, digest: str) -> CarriedImage | None:
    row = (
        await conn.execute(
            select(images.c.id, images.c.media_type, images.c.manifest).where(
                images.c.repository_id == repository_id, images.c.digest == digest
            )
        )
    ).first()
    if row is None:
        return None
    data = bytes(row.manifest)
    manifest = parse_manifest(data, row.media_type)
    digests = list(dict.fromkeys(manifest.blob_digests()))
    sizes: dict[str, int] = {}
    if digests:
        found = await conn.execute(
            select(schema.blobs.c.digest, schema.blobs.c.size).where(schema.blobs.c.digest.in_(digests))
        )
        sizes = {r.digest: int(r.size) for r in found}
    names = (await conn.execute(select(tags.c.name).where(tags.c.image_id == row.id).order_by(tags.c.name))).scalars()
    return CarriedImage(digest, row.media_type, data, sizes, tuple(names))


async def carried_images(conn: AsyncConnection, repository_id: int, digest: str) -> list[CarriedImage]:
    """The images a copy of `digest` must write, in an order each can be written in: children
    before their index, an image before its referrers. Empty when the image is gone."""
    ordered: list[CarriedImage] = []
    seen: set[str] = set()

    async def visit(current: str) -> None:
        if current in seen:
            return
        seen.add(current)
        image = await _image(conn, repository_id, current)
        if image is None:
            return
        for child in parse_manifest(image.manifest, image.media_type).child_digests():
            await visit(child)
        ordered.append(image)
        referrers = await conn.execute(
            select(images.c.digest)
            .where(images.c.repository_id == repository_id, images.c.subject_digest == current)
            .order_by(images.c.id)
        )
        for referrer in list(referrers.scalars()):
            await visit(referrer)

    await visit(digest)
    return ordered
