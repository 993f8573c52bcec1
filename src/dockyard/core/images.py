"""Images: manifests stored by digest, tags naming them, and the reads both doors share.

A manifest PUT through the registry door and PutImage through the ECR door are both
`put_manifest`; a manifest GET and BatchGetImage are both `get_manifest`."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core import scan_hooks
from dockyard.core.caller import Caller
from dockyard.core.creation_templates import open_for_push
from dockyard.core.manifests import MAX_MANIFEST_SIZE, Manifest, ManifestError, is_digest, parse_manifest
from dockyard.core.repositories import Repository, open_repository
from dockyard.core.services import Services, now
from dockyard.errors import (
    ImageAlreadyExistsException,
    ImageDigestDoesNotMatchException,
    ImageNotFoundException,
    ImageTagAlreadyExistsException,
    LayersNotFoundException,
    LimitExceededException,
    ManifestInvalid,
    ReferencedImagesNotFoundException,
)
from dockyard.store import schema

images = schema.images
tags = schema.tags
# How stale lastRecordedPullTime may get before a pull writes it again: ECR too records it
# approximately, and a write per pull would cost every pull a database commit.
PULL_TIME_RESOLUTION = 60.0


@dataclass(frozen=True)
class StoredImage:
    id: int
    digest: str
    media_type: str
    artifact_type: str | None
    subject_digest: str | None
    size: int
    manifest: bytes
    pushed_at: float
    last_pull_at: float | None


_IMAGE_COLUMNS = (
    images.c.id,
    images.c.digest,
    images.c.media_type,
    images.c.artifact_type,
    images.c.subject_digest,
    images.c.size,
    images.c.manifest,
    images.c.pushed_at,
    images.c.last_pull_at,
)


def image_not_found(repo: Repository, reference: str, tag: str | None = None) -> ImageNotFoundException:
    """ECR's ImageNotFoundException for a digest or tag `reference` (or a digest and a `tag`)."""
    digest = reference if is_digest(reference) else None
    tag = tag if digest else reference
    return ImageNotFoundException(
        f"The image with imageId {{imageDigest:'{digest or 'null'}', imageTag:'{tag or 'null'}'}} does not exist "
        f"within the repository with name '{repo.name}' in the registry with id '{repo.account_id}'"
    )


async def find_image(conn: AsyncConnection, repo: Repository, reference: str) -> StoredImage | None:
    query = select(*_IMAGE_COLUMNS).where(images.c.repository_id == repo.id)
    if is_digest(reference):
        query = query.where(images.c.digest == reference)
    else:
        query = query.join(tags, tags.c.image_id == images.c.id).where(
            tags.c.repository_id == repo.id, tags.c.name == reference
        )
    row = (await conn.execute(query)).first()
    return StoredImage(**row._mapping) if row else None


def parse(data: bytes, media_type: str | None, infer_from_layout: bool = True) -> Manifest:
    if len(data) > MAX_MANIFEST_SIZE:
        raise ManifestInvalid(f"manifest is {len(data)} bytes, more than the {MAX_MANIFEST_SIZE} allowed")
    try:
        return parse_manifest(data, media_type, infer_from_layout=infer_from_layout)
    except ManifestError as exc:
        raise ManifestInvalid(str(exc), exc.code) from exc


async def _missing_blobs(conn: AsyncConnection, repo: Repository, manifest: Manifest) -> list[str]:
    wanted = manifest.blob_digests()
    if not wanted:
        return []
    rb = schema.repository_blobs
    present = set(
        (
            await conn.execute(
                select(rb.c.digest).where(rb.c.repository_id == repo.id, rb.c.digest.in_(wanted))
            )
        ).scalars()
    )
    return [d for d in wanted if d not in present]


async def _missing_children(conn: AsyncConnection, repo: Repository, manifest: Manifest) -> list[str]:
    wanted = [m.digest for m in manifest.manifests]
    if not wanted:
        return []
    present = set(
        (
            await conn.execute(
                select(images.c.digest).where(images.c.repository_id == repo.id, images.c.digest.in_(wanted))
            )
        ).scalars()
    )
    return [d for d in wanted if d not in present]


def _tag_is_immutable(repo_mutability: str, exclusions: str | None, tag: str) -> bool:
    filters = [f.get("filter", "") for f in json.loads(exclusions or "[]")]
    excluded = any(fnmatch.fnmatchcase(tag, f) for f in filters)
    if repo_mutability == "IMMUTABLE":
        return True
    if repo_mutability == "IMMUTABLE_WITH_EXCLUSION":
        return not excluded
    if repo_mutability == "MUTABLE_WITH_EXCLUSION":
        return excluded
    return False


async def put_manifest(
    svc: Services,
    caller: Caller,
    account_id: str,
    repository: str,
    data: bytes,
    media_type: str | None,
    *,
    tag: str | None = None,
    digest: str | None = None,
    refuse_existing: bool = False,
    infer_from_layout: bool = True,
) -> tuple[Repository, Manifest]:
    """Store a manifest and point `tag` at it.

    `digest`, when given, must be the manifest's. `refuse_existing` is PutImage's rule: pushing
    an image that is already there under the same tag (or untagged) is an error. A missing
    repository that a CREATE_ON_PUSH creation template covers is created first."""
    manifest = parse(data, media_type, infer_from_layout)
    if digest is not None and digest != manifest.digest:
        raise ImageDigestDoesNotMatchException(
            f"Invalid parameter at 'imageDigest' failed to satisfy constraint: 'Digest {digest} does not "
            f"match the computed digest {manifest.digest}'"
        )
    limits = svc.settings.limits
    if len(manifest.layers) > limits.layers_per_image:
        raise LimitExceededException(
            "The operation did not succeed because it would have exceeded a service limit for your account. "
            f"Layers per image: {limits.layers_per_image}"
        )
    async with svc.db.write() as conn:
        repo = await open_for_push(svc, conn, caller, account_id, repository, "ecr:PutImage")
        missing = await _missing_blobs(conn, repo, manifest)
        if missing:
            raise LayersNotFoundException(
                f"Layers with digests '{missing}' required for pushing image into repository with name "
                f"'{repo.name}' in the registry with id '{repo.account_id}' do not exist"
            )
        missing = await _missing_children(conn, repo, manifest)
        if missing:
            raise ReferencedImagesNotFoundException(
                f"Manifests with digests '{missing}' required for pushing image into repository with name "
                f"'{repo.name}' in the registry with id '{repo.account_id}' do not exist"
            )
        existing = (
            await conn.execute(
                select(images.c.id).where(
                    images.c.repository_id == repo.id, images.c.digest == manifest.digest
                )
            )
        ).scalar()
        current_tag_image = None
        if tag is not None:
            current_tag_image = (
                await conn.execute(
                    select(tags.c.image_id).where(tags.c.repository_id == repo.id, tags.c.name == tag)
                )
            ).scalar()
        if refuse_existing and existing is not None and (tag is None or current_tag_image == existing):
            described = f"and tag '{tag}' " if tag else ""
            raise ImageAlreadyExistsException(
                f"Image with digest '{manifest.digest}' {described}already exists in the repository with name "
                f"'{repo.name}' in registry with id '{repo.account_id}'"
            )
        if tag is not None and current_tag_image is not None and current_tag_image != existing:
            mutability, exclusions = (
                await conn.execute(
                    select(
                        schema.repositories.c.image_tag_mutability,
                        schema.repositories.c.tag_mutability_exclusions,
                    ).where(schema.repositories.c.id == repo.id)
                )
            ).one()
            if _tag_is_immutable(mutability, exclusions, tag):
                raise ImageTagAlreadyExistsException(
                    f"The image tag '{tag}' already exists in the '{repo.name}' repository and cannot be "
                    "overwritten because the tag is immutable."
                )
        if existing is None:
            existing = await _insert_image(svc, conn, repo, manifest, data)
            await scan_hooks.queue_scan_on_push(conn, repo, manifest, existing)
        if tag is not None and current_tag_image != existing:
            if current_tag_image is None:
                await conn.execute(
                    insert(tags).values(repository_id=repo.id, name=tag, image_id=existing, updated_at=now())
                )
            else:
                await conn.execute(
                    update(tags)
                    .where(tags.c.repository_id == repo.id, tags.c.name == tag)
                    .values(image_id=existing, updated_at=now())
                )
    return repo, manifest


async def _insert_image(
    svc: Services, conn: AsyncConnection, repo: Repository, manifest: Manifest, data: bytes
) -> int:
    count = (
        await conn.execute(select(func.count()).select_from(images).where(images.c.repository_id == repo.id))
    ).scalar_one()
    if count >= svc.settings.limits.images_per_repository:
        raise LimitExceededException(
            "The operation did not succeed because it would have exceeded a service limit for your account. "
            f"Images per repository: {svc.settings.limits.images_per_repository}"
        )
    try:
        result = await conn.execute(
            insert(images).values(
                repository_id=repo.id,
                digest=manifest.digest,
                media_type=manifest.media_type,
                artifact_type=manifest.artifact_type,
                subject_digest=manifest.subject.digest if manifest.subject else None,
                size=manifest.image_size(await _child_sizes(conn, repo, manifest)),
                manifest=data,
                pushed_at=now(),
            )
        )
    except IntegrityError as exc:  # pragma: no cover - the write lock serialises this on SQLite
        raise ImageAlreadyExistsException(f"Image with digest '{manifest.digest}' already exists") from exc
    image_id = int(result.inserted_primary_key[0])
    references = {d: "blob" for d in manifest.blob_digests()} | {
        m.digest: "manifest" for m in manifest.manifests
    }
    if references:
        await conn.execute(
            insert(schema.image_references),
            [{"image_id": image_id, "digest": d, "kind": k} for d, k in references.items()],
        )
    return image_id


async def _child_sizes(conn: AsyncConnection, repo: Repository, manifest: Manifest) -> dict[str, int]:
    if not manifest.manifests:
        return {}
    rows = await conn.execute(
        select(images.c.digest, images.c.size).where(
            images.c.repository_id == repo.id, images.c.digest.in_(manifest.child_digests())
        )
    )
    return {row.digest: row.size for row in rows}


async def get_manifest(
    svc: Services, caller: Caller, account_id: str, repository: str, reference: str, *, record_pull: bool
) -> tuple[Repository, StoredImage]:
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:BatchGetImage")
        image = await find_image(conn, repo, reference)
        if image is not None:
            await scan_hooks.check_pull(conn, repo, image.id, image.digest)
    if image is None:
        raise image_not_found(repo, reference)
    if record_pull:
        await record_pull_time(svc, image)
    return repo, image


async def record_pull_time(svc: Services, image: StoredImage) -> None:
    moment = now()
    if image.last_pull_at is not None and moment - image.last_pull_at < PULL_TIME_RESOLUTION:
        return
    async with svc.db.write() as conn:
        await conn.execute(update(images).where(images.c.id == image.id).values(last_pull_at=moment))


async def delete_image(conn: AsyncConnection, image_id: int) -> None:
    await conn.execute(delete(tags).where(tags.c.image_id == image_id))
    await conn.execute(delete(schema.image_references).where(schema.image_references.c.image_id == image_id))
    await conn.execute(delete(images).where(images.c.id == image_id))


async def delete_reference(
    svc: Services, caller: Caller, account_id: str, repository: str, reference: str
) -> None:
    """The registry door's DELETE: a digest deletes the image and its tags, a tag only the tag."""
    async with svc.db.write() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:BatchDeleteImage")
        if is_digest(reference):
            image = await find_image(conn, repo, reference)
            if image is None:
                raise image_not_found(repo, reference)
            await delete_image(conn, image.id)
        else:
            result = await conn.execute(
                delete(tags).where(tags.c.repository_id == repo.id, tags.c.name == reference)
            )
            if result.rowcount == 0:
                raise image_not_found(repo, reference)


async def list_tags(
    svc: Services, caller: Caller, account_id: str, repository: str, limit: int | None, last: str | None
) -> tuple[Repository, list[str]]:
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:ListImages")
        query = select(tags.c.name).where(tags.c.repository_id == repo.id).order_by(tags.c.name)
        if last:
            query = query.where(tags.c.name > last)
        if limit is not None:
            query = query.limit(limit)
        names = list((await conn.execute(query)).scalars())
    return repo, names


async def referrers(
    svc: Services, caller: Caller, account_id: str, repository: str, digest: str, artifact_type: str | None
) -> list[dict[str, Any]]:
    """Descriptors of the manifests whose subject is `digest` (the OCI referrers API)."""
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:BatchGetImage")
        query = select(images.c.digest, images.c.media_type, images.c.artifact_type, images.c.manifest).where(
            images.c.repository_id == repo.id, images.c.subject_digest == digest
        )
        if artifact_type:
            query = query.where(images.c.artifact_type == artifact_type)
        rows = (await conn.execute(query.order_by(images.c.id))).all()
    descriptors = []
    for row in rows:
        descriptor: dict[str, Any] = {
            "mediaType": row.media_type,
            "digest": row.digest,
            "size": len(row.manifest),
        }
        if row.artifact_type:
            descriptor["artifactType"] = row.artifact_type
        annotations = json.loads(row.manifest).get("annotations")
        if annotations:
            descriptor["annotations"] = annotations
        descriptors.append(descriptor)
    return descriptors
