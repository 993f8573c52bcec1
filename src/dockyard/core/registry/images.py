"""Images: manifests stored by digest, tags naming them, and the reads both doors share.

A manifest PUT through the registry door and PutImage through the ECR door are both
`put_manifest`; a manifest GET and BatchGetImage are both `get_manifest`."""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import functools
import json
import logging
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import (
    ImageAlreadyExistsException,
    ImageDigestDoesNotMatchException,
    ImageNotFoundException,
    ImageTagAlreadyExistsException,
    InvalidParameterException,
    LayersNotFoundException,
    LimitExceededException,
    ManifestInvalid,
    ReferencedImagesNotFoundException,
    RepositoryNotFoundException,
)
from dockyard.core.identity.access import Resource, authorize, repository_arn
from dockyard.core.identity.caller import Caller
from dockyard.core.operations.creation_templates import open_for_push
from dockyard.core.registry import archive, pull_time_exclusions, repositories
from dockyard.core.registry.manifests import (
    MAX_MANIFEST_SIZE,
    Manifest,
    ManifestError,
    is_digest,
    parse_manifest,
    unsupported_digest_algorithm,
)
from dockyard.core.registry.repositories import (
    Repository,
    not_found,
    open_repository,
    repository_resource,
    resource_in,
)
from dockyard.core.replication import replication_hooks
from dockyard.core.scanning import scan_hooks
from dockyard.core.services import Services, now
from dockyard.core.signing import signing_hooks
from dockyard.store import fastread, schema
from dockyard.store.database import Database
from dockyard.store.prepared import Prepared

log = logging.getLogger(__name__)
images = schema.images
tags = schema.tags
repos = schema.repositories
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
    # The archive storage class (core/registry/archive.py): ECR's imageStatus and its moments.
    status: str = "ACTIVE"
    archived_at: float | None = None
    activated_at: float | None = None


_IMAGE_INSERT_COLUMNS = (
    "repository_id",
    "digest",
    "media_type",
    "artifact_type",
    "subject_digest",
    "size",
    "manifest",
    "pushed_at",
)
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


def image_archived(repo: Repository, reference: str) -> ImageNotFoundException:
    """An archived (or still activating) image refused on pull: ECR answers 404, as for no image."""
    return ImageNotFoundException(
        f"The image with reference '{reference}' in the repository with name '{repo.name}' in the registry with id "
        f"'{repo.account_id}' is archived and cannot be pulled; restore it to the standard storage class first"
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


def _check_size(data: bytes) -> None:
    if len(data) > MAX_MANIFEST_SIZE:
        raise ManifestInvalid(f"manifest is {len(data)} bytes, more than the {MAX_MANIFEST_SIZE} allowed")


def parse(data: bytes, media_type: str | None, infer_from_layout: bool = True) -> Manifest:
    _check_size(data)
    try:
        return parse_manifest(data, media_type, infer_from_layout=infer_from_layout)
    except ManifestError as exc:
        raise ManifestInvalid(str(exc), exc.code) from exc


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
    parsed: Manifest | None = None,
) -> tuple[Repository, Manifest]:
    """Store a manifest and point `tag` at it.

    `digest`, when given, must be the manifest's. `refuse_existing` is PutImage's rule: pushing
    an image that is already there under the same tag (or untagged) is an error. A missing
    repository that a CREATE_ON_PUSH creation template covers is created first. `parsed` is
    `data` already parsed by the caller (PutImage reads it first, to refuse it in ECR's words):
    it is used as is, and `media_type` and `infer_from_layout` are then not consulted."""
    if parsed is None:
        manifest = parse(data, media_type, infer_from_layout)
    else:
        _check_size(data)
        manifest = parsed
    if digest is not None and digest != manifest.digest:
        unsupported = unsupported_digest_algorithm(digest)
        if unsupported is not None:
            raise ManifestInvalid(unsupported, "DIGEST_INVALID")
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
        target = await _open_push_target(svc, conn, caller, account_id, repository, tag, manifest.digest)
        repo = target.repo
        present, child_sizes = await _references_held(conn, repo, manifest)
        missing = [d for d in manifest.required_blob_digests() if d not in present]
        if missing:
            raise LayersNotFoundException(
                f"Layers with digests '[{', '.join(missing)}]' required for pushing image into repository with name "
                f"'{repo.name}' in the registry with id '{repo.account_id}' do not exist"
            )
        missing = [d for d in manifest.child_digests() if d not in child_sizes]
        if missing:
            raise ReferencedImagesNotFoundException(
                f"Manifests with digests '[{', '.join(missing)}]' required for pushing image into repository with name "
                f"'{repo.name}' in the registry with id '{repo.account_id}' do not exist"
            )
        existing, current_tag_image = target.existing, target.tagged
        if existing is not None and target.existing_archived:
            # Pushing an archived image again restores it, as on ECR.
            await archive.restore_pushed(conn, existing)
        elif refuse_existing and existing is not None and (tag is None or current_tag_image == existing):
            described = f"and tag '{tag}' " if tag else ""
            raise ImageAlreadyExistsException(
                f"Image with digest '{manifest.digest}' {described}already exists in the repository with name "
                f"'{repo.name}' in registry with id '{repo.account_id}'"
            )
        # Moving a tag to another image; `repo` was read in this write transaction, so its tag
        # mutability settings are current.
        if (
            tag is not None
            and current_tag_image not in (None, existing)
            and _tag_is_immutable(repo.image_tag_mutability, repo.tag_mutability_exclusions, tag)
        ):
            raise ImageTagAlreadyExistsException(
                f"The image tag '{tag}' already exists in the '{repo.name}' repository and cannot be "
                "overwritten because the tag is immutable."
            )
        if existing is None:
            existing = await _insert_image(svc, conn, target, manifest, data, child_sizes)
            await scan_hooks.queue_scan_on_push(conn, repo, manifest, existing, target.scanning)
            await signing_hooks.queue_signing_on_push(conn, repo, manifest, existing, caller)
        await replication_hooks.queue_replication_on_push(conn, repo, manifest, existing, caller)
        if tag is not None and current_tag_image != existing:
            values = {"repository_id": repo.id, "name": tag, "image_id": existing, "updated_at": now()}
            await (_INSERT_TAG if current_tag_image is None else _MOVE_TAG).execute(conn, values)
    return repo, manifest


@dataclass(frozen=True)
class _PushTarget:
    """What a manifest PUT needs of its repository, read in one statement."""

    repo: Repository
    image_count: int
    scanning: scan_hooks.RegistryScanning
    # The id of the image with the manifest's digest, whether it is archived, and the id of the
    # image the tag names, if any.
    existing: int | None
    existing_archived: bool
    tagged: int | None


async def _read_push_target(
    conn: AsyncConnection, account_id: str, region: str, name: str, tag: str | None, digest: str
) -> _PushTarget | None:
    params = {"account": account_id, "region": region, "name": name, "digest": digest, "tag": tag}
    row = (await _PUSH_TARGET.execute(conn, params)).first()
    if row is None:
        return None
    image_count, scan_type, scan_rules, existing, existing_status, tagged = row[-6:]
    scanning = scan_hooks.registry_scanning_of(scan_type, scan_rules)
    archived = existing_status == archive.ARCHIVED
    return _PushTarget(repository_of(row), int(image_count), scanning, existing, archived, tagged)


async def _open_push_target(
    svc: Services, conn: AsyncConnection, caller: Caller, account_id: str, name: str, tag: str | None, digest: str
) -> _PushTarget:
    """open_for_push for a manifest PUT: the repository (created first if a CREATE_ON_PUSH
    template covers a missing one), once the caller may PutImage it, with its image count, the
    image holding `digest` and the image `tag` names, all read in one statement."""
    target = await _read_push_target(conn, account_id, caller.region, name, tag, digest)
    if target is None:
        # Missing: open_for_push authorises, refuses or creates it in open_repository's order.
        await open_for_push(svc, conn, caller, account_id, name, "ecr:PutImage")
        target = await _read_push_target(conn, account_id, caller.region, name, tag, digest)
        assert target is not None
        return target
    await authorize(caller, "ecr:PutImage", await resource_in(conn, caller, target.repo))
    return target


@functools.lru_cache(maxsize=256)
def _references_statement(blobs: int, children: int) -> Prepared:
    """Which of `blobs` digests the repository links and which of `children` manifests it holds
    (with their sizes), in one statement; kind 0 rows are blobs, kind 1 rows children."""
    rb = schema.repository_blobs
    parts = []
    if blobs:
        digests = [bindparam(f"b{n}") for n in range(blobs)]
        parts.append(
            select(rb.c.digest, literal_column("0").label("kind"), cast(null(), BigInteger).label("size")).where(
                rb.c.repository_id == bindparam("repository_id"), rb.c.digest.in_(digests)
            )
        )
    if children:
        digests = [bindparam(f"c{n}") for n in range(children)]
        parts.append(
            select(images.c.digest, literal_column("1").label("kind"), images.c.size).where(
                images.c.repository_id == bindparam("repository_id"), images.c.digest.in_(digests)
            )
        )
    return Prepared(parts[0] if len(parts) == 1 else union_all(*parts))


async def _references_held(
    conn: AsyncConnection, repo: Repository, manifest: Manifest
) -> tuple[set[str], dict[str, int]]:
    """(the blobs `manifest` names that the repository links, digest -> size of the manifests an
    index names that the repository holds): one read gives which references are missing and the
    sizes an index's imageSizeInBytes comes from."""
    blobs = list(dict.fromkeys(manifest.blob_digests()))
    children = list(dict.fromkeys(manifest.child_digests())) if manifest.manifests else []
    if not blobs and not children:
        return set(), {}
    params: dict[str, Any] = {"repository_id": repo.id}
    params |= {f"b{n}": d for n, d in enumerate(blobs)}
    params |= {f"c{n}": d for n, d in enumerate(children)}
    present: set[str] = set()
    sizes: dict[str, int] = {}
    for digest, kind, size in await _references_statement(len(blobs), len(children)).execute(conn, params):
        if kind == 0:
            present.add(digest)
        else:
            sizes[digest] = int(size)
    return present, sizes


async def _insert_image(
    svc: Services,
    conn: AsyncConnection,
    target: _PushTarget,
    manifest: Manifest,
    data: bytes,
    child_sizes: dict[str, int],
) -> int:
    repo = target.repo
    if target.image_count >= svc.settings.limits.images_per_repository:
        raise LimitExceededException(
            "The operation did not succeed because it would have exceeded a service limit for your account. "
            f"Images per repository: {svc.settings.limits.images_per_repository}"
        )
    values = {
        "repository_id": repo.id,
        "digest": manifest.digest,
        "media_type": manifest.media_type,
        "artifact_type": manifest.artifact_type,
        "subject_digest": manifest.subject.digest if manifest.subject else None,
        "size": manifest.image_size(child_sizes),
        "manifest": data,
        "pushed_at": now(),
    }
    try:
        image_id = int((await _INSERT_IMAGE.execute(conn, values)).scalar_one())
    except IntegrityError as exc:  # pragma: no cover - the write lock serialises this on SQLite
        raise ImageAlreadyExistsException(f"Image with digest '{manifest.digest}' already exists") from exc
    await _COUNT_IMAGE.execute(conn, {"repository_id": repo.id})
    references = {d: "blob" for d in manifest.blob_digests()} | {m.digest: "manifest" for m in manifest.manifests}
    await _INSERT_REFERENCE.execute_many(
        conn, [{"image_id": image_id, "digest": d, "kind": k} for d, k in references.items()]
    )
    return image_id


# A manifest GET in one statement: the repository (with what authorising the pull needs), the
# image the reference names (by tag or by digest) and whether a scan gate could apply. Built
# once; run through store.fastread, so it costs microseconds rather than milliseconds.
_REPOSITORY_FIELDS = tuple(f.name for f in dataclasses.fields(Repository))
REPOSITORY_COLUMNS = repositories.COLUMNS
_STORED_COLUMNS = tuple(images.c[f.name] for f in dataclasses.fields(StoredImage))
_GATE_TAG = (
    select(schema.repository_tags.c.value)
    .where(schema.repository_tags.c.repository_id == repos.c.id, schema.repository_tags.c.key == scan_hooks.GATE_TAG)
    .scalar_subquery()
)
_GATE_SEVERITY = (
    select(schema.scan_gates.c.severity)
    .where(schema.scan_gates.c.account_id == repos.c.account_id, schema.scan_gates.c.region == repos.c.region)
    .scalar_subquery()
)
# When a pull through cache last checked the tag against its upstream (NULL for every tag no
# cache wrote): one index probe, so that repositories that are not caches read nothing more.
_TAG_CHECKED = (
    select(schema.pull_through_tags.c.checked_at)
    .where(
        schema.pull_through_tags.c.repository_id == repos.c.id,
        schema.pull_through_tags.c.tag == bindparam("reference"),
    )
    .scalar_subquery()
)
THIS_REPOSITORY = and_(
    repos.c.account_id == bindparam("account"), repos.c.region == bindparam("region"), repos.c.name == bindparam("name")
)
_TAG_OF_THIS_REPOSITORY = and_(tags.c.repository_id == repos.c.id, tags.c.name == bindparam("reference"))
_BY_TAG = (
    select(*REPOSITORY_COLUMNS, *_STORED_COLUMNS, _GATE_TAG, _GATE_SEVERITY, _TAG_CHECKED)
    .select_from(repos.outerjoin(tags, _TAG_OF_THIS_REPOSITORY).outerjoin(images, images.c.id == tags.c.image_id))
    .where(THIS_REPOSITORY)
)
_BY_DIGEST = (
    select(*REPOSITORY_COLUMNS, *_STORED_COLUMNS, _GATE_TAG, _GATE_SEVERITY, cast(null(), Float))
    .select_from(
        repos.outerjoin(images, and_(images.c.repository_id == repos.c.id, images.c.digest == bindparam("reference")))
    )
    .where(THIS_REPOSITORY)
)


_REPOSITORY = select(*REPOSITORY_COLUMNS).where(THIS_REPOSITORY)

_scanning = schema.registry_scanning_configurations
_SCANNING_OF_REPOSITORY = (_scanning.c.account_id == repos.c.account_id) & (_scanning.c.region == repos.c.region)
# The write path's statements, built once with bind parameters and run through store.prepared:
# a manifest PUT runs them inside the single writer's turn, so their CPU is everyone's wait.
_PUSH_TARGET = Prepared(
    select(
        *REPOSITORY_COLUMNS,
        repos.c.image_count,
        # The registry's scanning configuration, for scan on push.
        select(_scanning.c.scan_type).where(_SCANNING_OF_REPOSITORY).scalar_subquery(),
        select(_scanning.c.rules).where(_SCANNING_OF_REPOSITORY).scalar_subquery(),
        select(images.c.id)
        .where(images.c.repository_id == repos.c.id, images.c.digest == bindparam("digest"))
        .scalar_subquery(),
        select(images.c.status)
        .where(images.c.repository_id == repos.c.id, images.c.digest == bindparam("digest"))
        .scalar_subquery(),
        select(tags.c.image_id)
        .where(tags.c.repository_id == repos.c.id, tags.c.name == bindparam("tag"))
        .scalar_subquery(),
    ).where(THIS_REPOSITORY)
)
_INSERT_IMAGE = Prepared(
    insert(images).values({column: bindparam(column) for column in _IMAGE_INSERT_COLUMNS}).returning(images.c.id)
)
_COUNT_IMAGE = Prepared(
    update(repos).where(repos.c.id == bindparam("repository_id")).values(image_count=repos.c.image_count + 1)
)
_INSERT_REFERENCE = Prepared(
    insert(schema.image_references).values(
        image_id=bindparam("image_id"), digest=bindparam("digest"), kind=bindparam("kind")
    )
)
_INSERT_TAG = Prepared(
    insert(tags).values(
        repository_id=bindparam("repository_id"),
        name=bindparam("name"),
        image_id=bindparam("image_id"),
        updated_at=bindparam("updated_at"),
    )
)
_MOVE_TAG = Prepared(
    update(tags)
    .where(tags.c.repository_id == bindparam("repository_id"), tags.c.name == bindparam("name"))
    .values(image_id=bindparam("image_id"), updated_at=bindparam("updated_at"))
)


async def resolve_image(conn: AsyncConnection, repo: Repository, image_id: Mapping[str, Any]) -> StoredImage:
    """The image an ECR `imageId` names (its digest, its tag, or both, which must agree);
    ImageNotFoundException when there is none."""
    digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")
    if not digest and not tag:
        raise InvalidParameterException(
            "Invalid parameter at 'imageId' failed to satisfy constraint: 'must contain an imageDigest or an imageTag'"
        )
    image = await find_image(conn, repo, digest or tag)
    if image is not None and digest and tag:
        tagged = await find_image(conn, repo, tag)
        image = image if tagged is not None and tagged.id == image.id else None
    if image is None:
        raise image_not_found(repo, digest or tag, tag)
    return image


def image_id_of(image: StoredImage, requested: Mapping[str, Any]) -> dict[str, str]:
    """The `imageId` an answer names `image` by: its digest, and the tag the request gave."""
    found = {"imageDigest": image.digest}
    if requested.get("imageTag"):
        found["imageTag"] = requested["imageTag"]
    return found


def repository_of(row: tuple[Any, ...]) -> Repository:
    """A Repository from the leading REPOSITORY_COLUMNS of a fastread row."""
    values = dict(zip(_REPOSITORY_FIELDS, row[: len(_REPOSITORY_FIELDS)], strict=True))
    values["scan_on_push"] = bool(values["scan_on_push"])
    return Repository(**values)


async def authorized_repository(
    svc: Services, caller: Caller, account_id: str, name: str, action: str, rows: list[tuple[Any, ...]]
) -> Repository:
    """The repository leading the first of `rows` (none: it does not exist), once `caller` may
    `action` it; as open_repository, AccessDenied comes before RepositoryNotFound."""
    if not rows:
        arn = repository_arn(caller.region, account_id, name)
        async with svc.db.read() as conn:
            in_force = await repositories.registry_policy_in_force(conn, account_id, caller.region)
        await authorize(caller, action, Resource(arn=arn, account_id=account_id, registry_policy_text=in_force))
        raise not_found(name, account_id)
    repo = repository_of(rows[0])
    await authorize(caller, action, await repository_resource(svc, caller, repo))
    return repo


async def open_repository_fast(svc: Services, caller: Caller, account_id: str, name: str, action: str) -> Repository:
    """repositories.open_repository through store.fastread, for the hot read paths."""
    params = {"account": account_id, "region": caller.region, "name": name}
    rows = await fastread.fetch(svc.db, _REPOSITORY, params)
    return await authorized_repository(svc, caller, account_id, name, action, rows)


def _gate_may_apply(gate_tag: str | None, gate_severity: str | None) -> bool:
    """Whether scan_hooks.check_pull could refuse: only then is it asked (it reads findings)."""
    if gate_tag is not None:
        return gate_tag.strip().upper() in scan_hooks.GATE_SEVERITIES
    return gate_severity is not None


async def get_manifest(
    svc: Services, caller: Caller, account_id: str, repository: str, reference: str, *, record_pull: bool
) -> tuple[Repository, StoredImage]:
    statement = _BY_DIGEST if is_digest(reference) else _BY_TAG
    params = {"account": account_id, "region": caller.region, "name": repository, "reference": reference}
    rows = await fastread.fetch(svc.db, statement, params)
    try:
        repo = await authorized_repository(svc, caller, account_id, repository, "ecr:BatchGetImage", rows)
    except RepositoryNotFoundException:
        return await _pull_through(svc, caller, account_id, repository, reference, None, record_pull)
    row = rows[0]
    split = len(REPOSITORY_COLUMNS)
    image_values = row[split : split + len(_STORED_COLUMNS)]
    if image_values[0] is None:
        return await _pull_through(svc, caller, account_id, repository, reference, repo, record_pull)
    image = StoredImage(*image_values)
    if image.status != "ACTIVE":
        raise image_archived(repo, reference)
    checked_at = row[-1]
    if checked_at is not None:
        from dockyard.core.registry import pull_through  # noqa: PLC0415 - it imports this module

        if pull_through.is_stale(checked_at):
            image = await pull_through.recheck_tag(svc, caller, account_id, repo, reference, image)
            if image.id == 0:
                return repo, image
    if _gate_may_apply(*row[-3:-1]):
        async with svc.db.read() as conn:
            await scan_hooks.check_pull(
                conn,
                repo,
                image.id,
                image.digest,
                refuse_missing_data=svc.settings.scan_gate_missing_data == scan_hooks.MISSING_DATA_REFUSE,
            )
    if record_pull:
        await record_pull_time(svc, caller, account_id, image)
    return repo, image


async def _pull_through(
    svc: Services,
    caller: Caller,
    account_id: str,
    repository: str,
    reference: str,
    repo: Repository | None,
    record_pull: bool,
) -> tuple[Repository, StoredImage]:
    """A manifest GET's miss: the pull through cache's answer when a rule covers the repository
    (a fetched image not stored yet has id 0), else the miss's own error."""
    from dockyard.core.registry import pull_through  # noqa: PLC0415 - it imports this module

    pulled = await pull_through.pull_manifest(svc, caller, account_id, repository, reference, repo)
    if pulled is None:
        if repo is None:
            raise not_found(repository, account_id)
        raise image_not_found(repo, reference)
    if record_pull and pulled[1].id:
        await record_pull_time(svc, caller, account_id, pulled[1])
    return pulled


class _PullTimes:
    """lastRecordedPullTime writes, taken off the pull path and batched.

    A pull notes the time here and returns; a task writes every noted time in one transaction.
    What this can lose is the few milliseconds of pulls noted but not yet committed when the
    process dies: the time is advisory (ECR itself records it approximately, and this registry
    only every PULL_TIME_RESOLUTION seconds), nothing else depends on it, and the next pull
    records it again. Until the write commits, this process answers with the noted time."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.pending: dict[int, float] = {}
        self.task: asyncio.Task[None] | None = None

    def note(self, image_ids: Iterable[int], moment: float) -> None:
        for image_id in image_ids:
            self.pending[image_id] = moment
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while self.pending:
            batch = dict(self.pending)
            try:
                async with self.db.write() as conn:
                    await conn.execute(
                        update(images).where(images.c.id == bindparam("image_id")).values(last_pull_at=bindparam("at")),
                        [{"image_id": image_id, "at": moment} for image_id, moment in batch.items()],
                    )
            except Exception:  # noqa: BLE001 - advisory data: log, drop, and let the next pull retry
                log.exception("could not record pull times")
            for image_id, moment in batch.items():
                if self.pending.get(image_id) == moment:
                    del self.pending[image_id]

    def noted(self, image_id: int) -> float | None:
        return self.pending.get(image_id)


_pull_times: weakref.WeakKeyDictionary[Database, _PullTimes] = weakref.WeakKeyDictionary()


def _recorder(svc: Services) -> _PullTimes:
    recorder = _pull_times.get(svc.db)
    if recorder is None:
        recorder = _pull_times[svc.db] = _PullTimes(svc.db)
    return recorder


def last_pull_time(svc: Services, image: StoredImage) -> float | None:
    """The image's lastRecordedPullTime, counting a pull this process has not written yet."""
    recorder = _pull_times.get(svc.db)
    noted = recorder.noted(image.id) if recorder is not None else None
    return noted if noted is not None else image.last_pull_at


async def record_pull_time(svc: Services, caller: Caller, account_id: str, image: StoredImage) -> None:
    await record_pull_times(svc, caller, account_id, [image])


async def record_pull_times(svc: Services, caller: Caller, account_id: str, pulled: Iterable[StoredImage]) -> None:
    """Note that `caller` pulled `pulled` from `account_id`'s registry now; written in the
    background, one transaction per batch. A principal the registry excludes moves nothing."""
    if not pull_time_exclusions.records_pull(caller, account_id):
        return
    moment = now()
    stale = [
        image.id
        for image in pulled
        if image.last_pull_at is None or moment - image.last_pull_at >= PULL_TIME_RESOLUTION
    ]
    if stale:
        _recorder(svc).note(stale, moment)


async def delete_image(conn: AsyncConnection, image_id: int) -> None:
    await delete_images(conn, [image_id])


# Keeps each statement's IN list well under SQLite's 32766 bound values.
_DELETE_CHUNK = 500


async def delete_images(conn: AsyncConnection, image_ids: Iterable[int]) -> None:
    """Delete images (by id) with their tags and references, keeping repositories.image_count.

    Every deletion of single images goes through here (a whole repository goes with
    repositories.purge, counter and all). Each statement is keyed by image id, so the cost is
    the number of images deleted, whatever the repository holds."""
    wanted = list(dict.fromkeys(image_ids))
    for start in range(0, len(wanted), _DELETE_CHUNK):
        chunk = wanted[start : start + _DELETE_CHUNK]
        owners = await conn.execute(
            select(images.c.repository_id, func.count()).where(images.c.id.in_(chunk)).group_by(images.c.repository_id)
        )
        removed = {row[0]: int(row[1]) for row in owners}
        await conn.execute(delete(tags).where(tags.c.image_id.in_(chunk)))
        await conn.execute(delete(schema.image_references).where(schema.image_references.c.image_id.in_(chunk)))
        await conn.execute(delete(images).where(images.c.id.in_(chunk)))
        for repository_id, count in removed.items():
            await conn.execute(
                update(repos).where(repos.c.id == repository_id).values(image_count=repos.c.image_count - count)
            )


async def delete_reference(svc: Services, caller: Caller, account_id: str, repository: str, reference: str) -> None:
    """The registry door's DELETE: a digest deletes the image and its tags, a tag only the tag."""
    async with svc.db.write() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:BatchDeleteImage")
        if is_digest(reference):
            image = await find_image(conn, repo, reference)
            if image is None:
                raise image_not_found(repo, reference)
            await delete_image(conn, image.id)
        else:
            result = await conn.execute(delete(tags).where(tags.c.repository_id == repo.id, tags.c.name == reference))
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
