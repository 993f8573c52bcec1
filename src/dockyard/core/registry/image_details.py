"""The ECR API's image operations: ListImages, DescribeImages, BatchGetImage, BatchDeleteImage
and PutImage, over the images and tags the registry door shares (core/images.py).

How ECR identifies images in these calls (checked against captured AWS behaviour):

* an imageId names a tag, a digest, or both; with both the tag must point at the digest
  (ImageTagDoesNotMatchDigest when it points elsewhere, ImageNotFound when it does not exist);
* BatchGetImage by digest answers once per tag of the image (the tag in each imageId);
* BatchDeleteImage by digest deletes the image with all its tags and reports each tag; by tag it
  removes the tag, and the image with it when that was its last tag; ids that name what an
  earlier id of the same call already deleted are not failures;
* ListImages lists one entry per tag, plus one per untagged image; DescribeImages one per image.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, bindparam, delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import (
    InvalidParameterException,
    RepositoryNotFoundException,
    UnableToGetUpstreamImageException,
)
from dockyard.core.identity.caller import Caller
from dockyard.core.paging import decode_token, encode_token, page_size
from dockyard.core.registry import archive, negotiation
from dockyard.core.registry import images as image_store
from dockyard.core.registry.images import (
    StoredImage,
    image_not_found,
    last_pull_time,
    open_repository_fast,
    record_pull_times,
)
from dockyard.core.registry.manifests import ManifestError, parse_manifest
from dockyard.core.registry.repositories import Repository, not_found, open_repository
from dockyard.core.scanning.scan_hooks import image_scan_details
from dockyard.core.services import Services
from dockyard.store import fastread, schema

images = schema.images
tags = schema.tags
refs = schema.image_references
_COLUMNS = tuple(images.c[f.name] for f in dataclasses.fields(StoredImage))

# ECR's own digest rule for imageIds, and the tag rule it applies to PutImage.
DIGEST_RULE = "[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+"
_DIGEST = re.compile(DIGEST_RULE)
TAG_RULE = "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,299}"
_TAG = re.compile(TAG_RULE)

NOT_FOUND = ("ImageNotFound", "Requested image not found")
MISSING_ID = ("MissingDigestAndTag", "Invalid request parameters: both tag and digest cannot be null")
BAD_DIGEST = (
    "InvalidImageDigest",
    f"Invalid request parameters: image digest should satisfy the regex '{DIGEST_RULE}'",
)
# An archived (or still activating) image cannot be pulled; ECR's failure codes have no
# archive-specific one, and it answers a pull of such an image as not found.
ARCHIVED_IMAGE = ("ImageNotFound", "Requested image is archived and cannot be pulled")
TAG_ELSEWHERE = ("ImageTagDoesNotMatchDigest", "Invalid request parameters: given tag does not map to the given digest")


@dataclass(frozen=True)
class ImageId:
    tag: str | None
    digest: str | None

    @classmethod
    def of(cls, shape: dict[str, str]) -> ImageId:
        return cls(shape.get("imageTag"), shape.get("imageDigest"))

    def shape(self) -> dict[str, str]:
        """ECR's ImageIdentifier shape."""
        out = {}
        if self.digest is not None:
            out["imageDigest"] = self.digest
        if self.tag is not None:
            out["imageTag"] = self.tag
        return out

    def problem(self) -> tuple[str, str] | None:
        """Why ECR would refuse this id before looking it up."""
        if self.tag is None and self.digest is None:
            return MISSING_ID
        if self.digest is not None and not _DIGEST.fullmatch(self.digest):
            return BAD_DIGEST
        return None


def _failure(image_id: ImageId, reason: tuple[str, str]) -> dict[str, Any]:
    return {"imageId": image_id.shape(), "failureCode": reason[0], "failureReason": reason[1]}


# --- lookups ----------------------------------------------------------------------------------


async def _by_digest(conn: AsyncConnection, repo: Repository, digest: str) -> StoredImage | None:
    query = select(*_COLUMNS).where(images.c.repository_id == repo.id, images.c.digest == digest)
    row = (await conn.execute(query)).first()
    return StoredImage(**row._mapping) if row else None


async def _by_tag(conn: AsyncConnection, repo: Repository, tag: str) -> StoredImage | None:
    query = (
        select(*_COLUMNS)
        .join(tags, tags.c.image_id == images.c.id)
        .where(tags.c.repository_id == repo.id, tags.c.name == tag)
    )
    row = (await conn.execute(query)).first()
    return StoredImage(**row._mapping) if row else None


async def _tags_of(conn: AsyncConnection, image_ids: Sequence[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {image_id: [] for image_id in image_ids}
    if image_ids:
        rows = await conn.execute(
            select(tags.c.image_id, tags.c.name).where(tags.c.image_id.in_(list(image_ids))).order_by(tags.c.name)
        )
        for row in rows:
            found[row.image_id].append(row.name)
    return found


async def _resolve(
    conn: AsyncConnection, repo: Repository, image_id: ImageId
) -> tuple[StoredImage | None, tuple[str, str] | None]:
    """The image an id names, or why it names none."""
    if problem := image_id.problem():
        return None, problem
    if image_id.tag is None:
        assert image_id.digest is not None
        image = await _by_digest(conn, repo, image_id.digest)
        return (image, None) if image else (None, NOT_FOUND)
    image = await _by_tag(conn, repo, image_id.tag)
    if image is None:
        return None, NOT_FOUND
    if image_id.digest is not None and image.digest != image_id.digest:
        return None, TAG_ELSEWHERE
    return image, None


resolve_image_id = _resolve


def raise_for_problem(repo: Repository, image_id: ImageId, problem: tuple[str, str] | None) -> None:
    """The exception ECR's single-image operations raise for an id that names no image."""
    if problem == MISSING_ID:
        raise InvalidParameterException(
            "Invalid parameter at 'imageId' failed to satisfy constraint: 'both tag and digest cannot be null'"
        )
    if problem == BAD_DIGEST:
        raise InvalidParameterException(
            f"Invalid parameter at 'imageDigest' failed to satisfy constraint: 'must satisfy regular "
            f"expression '{DIGEST_RULE}''"
        )
    raise image_not_found(repo, image_id.digest or image_id.tag or "", image_id.tag)


# SQLite allows 32766 bound values per statement; far fewer keeps each statement small.
_IN_CHUNK = 500


def _chunks(values: Sequence[str]) -> list[list[str]]:
    return [list(values[start : start + _IN_CHUNK]) for start in range(0, len(values), _IN_CHUNK)]


async def _resolve_all(
    conn: AsyncConnection, repo: Repository, ids: Sequence[ImageId]
) -> dict[ImageId, tuple[StoredImage | None, tuple[str, str] | None]]:
    """What `_resolve` answers for each id, with one query for all tags and one for all digests."""
    valid = [image_id for image_id in ids if image_id.problem() is None]
    wanted_tags = list(dict.fromkeys(i.tag for i in valid if i.tag is not None))
    wanted_digests = list(dict.fromkeys(i.digest for i in valid if i.tag is None and i.digest is not None))
    by_tag: dict[str, StoredImage] = {}
    for chunk in _chunks(wanted_tags):
        query = (
            select(*_COLUMNS, tags.c.name.label("tag_name"))
            .join(tags, tags.c.image_id == images.c.id)
            .where(tags.c.repository_id == repo.id, tags.c.name.in_(chunk))
        )
        for row in await conn.execute(query):
            values = dict(row._mapping)
            tag_name = values.pop("tag_name")
            by_tag[tag_name] = StoredImage(**values)
    by_digest: dict[str, StoredImage] = {}
    for chunk in _chunks(wanted_digests):
        query = select(*_COLUMNS).where(images.c.repository_id == repo.id, images.c.digest.in_(chunk))
        for row in await conn.execute(query):
            by_digest[row.digest] = StoredImage(**row._mapping)
    resolved: dict[ImageId, tuple[StoredImage | None, tuple[str, str] | None]] = {}
    for image_id in ids:
        if problem := image_id.problem():
            resolved[image_id] = (None, problem)
        elif image_id.tag is None:
            image = by_digest.get(image_id.digest or "")
            resolved[image_id] = (image, None) if image else (None, NOT_FOUND)
        else:
            image = by_tag.get(image_id.tag)
            if image is None:
                resolved[image_id] = (None, NOT_FOUND)
            elif image_id.digest is not None and image.digest != image_id.digest:
                resolved[image_id] = (None, TAG_ELSEWHERE)
            else:
                resolved[image_id] = (image, None)
    return resolved


# --- ListImages -------------------------------------------------------------------------------


def _status_key(image_status: str | None) -> tuple[bool, dict[str, str]]:
    """(whether the statement filters on imageStatus, its parameter): ECR lists ACTIVE images
    unless the filter names another status, or ANY."""
    if image_status == "ANY":
        return False, {}
    return True, {"status": archive.status_matches(image_status)[0]}


def _list_statement(tag_status: str | None, paged: bool, by_status: bool = True) -> Select[Any]:
    """ListImages' page, in (image id, tag) order: one statement per kind of call, built once.

    The page's images are chosen first, in id order from the page's position, as many as the page
    can need: every image of the window gives the page at least one row (one per tag, or its
    untagged row) but the first of a later page, whose tags up to the token's may all be behind it,
    so `limit` + 1 images always hold `limit` rows. Only their rows are sorted by tag: no planner,
    with or without statistics, sorts every image of the repository to show one page."""
    window = (
        select(images.c.id, images.c.digest)
        .where(images.c.repository_id == bindparam("repository_id"))
        .order_by(images.c.id)
        .limit(bindparam("limit") + 1)
    )
    tagged = exists().where(tags.c.image_id == images.c.id)
    if tag_status == "TAGGED":
        window = window.where(tagged)
    elif tag_status == "UNTAGGED":
        window = window.where(~tagged)
    if by_status:
        window = window.where(images.c.status == bindparam("status"))
    last_id, last_tag = bindparam("last_id"), bindparam("last_tag")
    if paged:
        window = window.where(images.c.id >= last_id)
    page = window.subquery("page_images")
    join = page.join if tag_status == "TAGGED" else page.outerjoin
    tag_name = func.coalesce(tags.c.name, "")
    query = (
        select(page.c.id, page.c.digest, tags.c.name)
        .select_from(join(tags, tags.c.image_id == page.c.id))
        .order_by(page.c.id, tag_name)
        .limit(bindparam("limit"))
    )
    if paged:
        query = query.where(or_(page.c.id > last_id, and_(page.c.id == last_id, tag_name > last_tag)))
    return query


_LIST_STATEMENTS = {
    (status, paged, by_status): _list_statement(status, paged, by_status)
    for status in (None, "TAGGED", "UNTAGGED")
    for paged in (False, True)
    for by_status in (False, True)
}


async def list_images(
    svc: Services,
    caller: Caller,
    account_id: str,
    repository: str,
    tag_status: str | None = None,
    image_status: str | None = None,
    max_results: int | None = None,
    next_token: str | None = None,
) -> dict[str, Any]:
    after = decode_token(next_token)
    limit = page_size(max_results, 100)
    repo = await open_repository_fast(svc, caller, account_id, repository, "ecr:ListImages")
    params: dict[str, Any] = {"repository_id": repo.id, "limit": limit + 1}
    if after is not None:
        params["last_id"], params["last_tag"] = _position(after)
    by_status, status_param = _status_key(image_status)
    params |= status_param
    tag_key = tag_status if tag_status in ("TAGGED", "UNTAGGED") else None
    statement = _LIST_STATEMENTS[(tag_key, after is not None, by_status)]
    rows = await fastread.fetch(svc.db, statement, params)
    listed = [ImageId(name, digest).shape() for _, digest, name in rows[:limit]]
    result: dict[str, Any] = {"imageIds": listed}
    if len(rows) > limit:
        last_id, _, last_name = rows[limit - 1]
        result["nextToken"] = encode_token([last_id, last_name or ""])
    return result


def _invalid_token() -> InvalidParameterException:
    return InvalidParameterException("Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'")


def _position(token: Any) -> tuple[int, str]:
    if isinstance(token, list) and len(token) == 2 and isinstance(token[0], int) and isinstance(token[1], str):
        return token[0], token[1]
    raise _invalid_token()


# --- DescribeImages ---------------------------------------------------------------------------


def image_detail(
    repo: Repository,
    image: StoredImage,
    tag_names: list[str],
    scan: dict[str, Any] | None = None,
    pulled_at: float | None = None,
) -> dict[str, Any]:
    """ECR's ImageDetail shape; `scan` adds imageScanStatus and imageScanFindingsSummary."""
    detail = {
        "registryId": repo.account_id,
        "repositoryName": repo.name,
        "imageDigest": image.digest,
        "imageTags": tag_names or None,
        "imageSizeInBytes": image.size,
        "imagePushedAt": image.pushed_at,
        "imageManifestMediaType": image.media_type,
        "artifactMediaType": image.artifact_type,
        "lastRecordedPullTime": pulled_at,
        "subjectManifestDigest": image.subject_digest,
        "imageStatus": image.status,
        "lastArchivedAt": image.archived_at,
        "lastActivatedAt": image.activated_at,
    }
    return detail | (scan or {})


# DescribeImages needs everything about an image but its manifest.
_DETAIL_COLUMNS = tuple(column for column in _COLUMNS if column.name != "manifest")
_DETAIL_FIELDS = tuple(column.name for column in _DETAIL_COLUMNS)


def _describe_statement(tag_status: str | None, paged: bool, by_status: bool = True) -> Select[Any]:
    query = (
        select(*_DETAIL_COLUMNS)
        .where(images.c.repository_id == bindparam("repository_id"))
        .order_by(images.c.id)
        .limit(bindparam("limit"))
    )
    tagged = exists().where(tags.c.image_id == images.c.id)
    if tag_status == "TAGGED":
        query = query.where(tagged)
    elif tag_status == "UNTAGGED":
        query = query.where(~tagged)
    if by_status:
        query = query.where(images.c.status == bindparam("status"))
    if paged:
        query = query.where(images.c.id > bindparam("after"))
    return query


_DESCRIBE_STATEMENTS = {
    (status, paged, by_status): _describe_statement(status, paged, by_status)
    for status in (None, "TAGGED", "UNTAGGED")
    for paged in (False, True)
    for by_status in (False, True)
}
# The tags of a page of images: its ids are a range (pages go in id order), and the range read
# on ix_tags_image finds them in one statement; tags of other repositories' images in the same
# range are dropped by the caller.
_TAGS_IN_RANGE = (
    select(tags.c.image_id, tags.c.name)
    .where(tags.c.image_id >= bindparam("first"), tags.c.image_id <= bindparam("last"))
    .order_by(tags.c.image_id, tags.c.name)
)


# Whether any image of a page was ever scanned: most pages of most repositories have none, and
# then the scan details need no transaction of their own.
_SCANS_IN_RANGE = (
    select(schema.image_scans.c.image_id)
    .where(
        schema.image_scans.c.repository_id == bindparam("repository_id"),
        schema.image_scans.c.image_id >= bindparam("first"),
        schema.image_scans.c.image_id <= bindparam("last"),
    )
    .limit(1)
)


async def _scans_of_page(svc: Services, repo: Repository, page: Sequence[StoredImage]) -> dict[int, dict[str, Any]]:
    if not page:
        return {}
    params = {"repository_id": repo.id, "first": page[0].id, "last": page[-1].id}
    if not await fastread.fetch(svc.db, _SCANS_IN_RANGE, params):
        return {}
    async with svc.db.read() as conn:
        return await image_scan_details(conn, [image.id for image in page], svc.settings.vulndb_max_age_days)


async def _tags_of_page(svc: Services, page: Sequence[StoredImage]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {image.id: [] for image in page}
    if page:
        params = {"first": page[0].id, "last": page[-1].id}
        for image_id, name in await fastread.fetch(svc.db, _TAGS_IN_RANGE, params):
            if image_id in found:
                found[image_id].append(name)
    return found


async def describe_images(
    svc: Services,
    caller: Caller,
    account_id: str,
    repository: str,
    image_ids: list[dict[str, str]] | None = None,
    tag_status: str | None = None,
    image_status: str | None = None,
    max_results: int | None = None,
    next_token: str | None = None,
) -> dict[str, Any]:
    if image_ids and (max_results or next_token):
        raise InvalidParameterException(
            "Invalid parameter at 'maxResults' failed to satisfy constraint: 'maxResults cannot be used with imageIds'"
        )
    if image_ids:
        async with svc.db.read() as conn:
            repo = await open_repository(conn, caller, account_id, repository, "ecr:DescribeImages")
            return await _describe_named(svc, conn, repo, [ImageId.of(shape) for shape in image_ids])
    repo = await open_repository_fast(svc, caller, account_id, repository, "ecr:DescribeImages")
    after = decode_token(next_token)
    limit = page_size(max_results, 100)
    params: dict[str, Any] = {"repository_id": repo.id, "limit": limit + 1}
    if after is not None:
        if not isinstance(after, int) or isinstance(after, bool):
            raise _invalid_token()
        params["after"] = after
    by_status, status_param = _status_key(image_status)
    params |= status_param
    tag_key = tag_status if tag_status in ("TAGGED", "UNTAGGED") else None
    statement = _DESCRIBE_STATEMENTS[(tag_key, after is not None, by_status)]
    rows = await fastread.fetch(svc.db, statement, params)
    found = [StoredImage(**dict(zip(_DETAIL_FIELDS, row, strict=True)), manifest=b"") for row in rows]
    page = found[:limit]
    names = await _tags_of_page(svc, page)
    scanned = await _scans_of_page(svc, repo, page)
    details = [
        image_detail(repo, image, names[image.id], scanned.get(image.id), last_pull_time(svc, image)) for image in page
    ]
    result: dict[str, Any] = {"imageDetails": details}
    if len(found) > limit:
        result["nextToken"] = encode_token(page[-1].id)
    return result


async def _describe_named(svc: Services, conn: AsyncConnection, repo: Repository, ids: list[ImageId]) -> dict[str, Any]:
    described: dict[int, StoredImage] = {}
    resolved = await _resolve_all(conn, repo, ids)
    for image_id in ids:
        if image_id.problem() == MISSING_ID:
            raise InvalidParameterException(
                "Invalid parameter at 'imageIds' failed to satisfy constraint: 'both tag and digest cannot be null'"
            )
        image, problem = resolved[image_id]
        if image is None:
            if problem == BAD_DIGEST:
                raise InvalidParameterException(
                    f"Invalid parameter at 'imageDigest' failed to satisfy constraint: 'must satisfy regular "
                    f"expression '{DIGEST_RULE}''"
                )
            raise image_not_found(repo, image_id.digest or image_id.tag or "", image_id.tag)
        described.setdefault(image.id, image)
    names = await _tags_of(conn, list(described))
    scanned = await image_scan_details(conn, list(described), svc.settings.vulndb_max_age_days)
    return {
        "imageDetails": [
            image_detail(repo, image, names[image.id], scanned.get(image.id), last_pull_time(svc, image))
            for image in described.values()
        ]
    }


# --- BatchGetImage ----------------------------------------------------------------------------


def _served(image: StoredImage, image_id: ImageId, accepted: list[str] | None) -> tuple[bytes, str]:
    """The manifest and media type BatchGetImage answers with: the stored one when accepted, else
    (by tag only, as ECR converts) a conversion to an accepted type. What ECR cannot convert it
    serves as stored and leaves the caller to judge the media type, so that is no failure."""
    if accepted and image_id.digest is None:
        served = negotiation.converted(image, accepted)
        if served is not None:
            return served.manifest, served.media_type
    return image.manifest, image.media_type


def _image_shape(repo: Repository, image: StoredImage, tag: str | None, served: tuple[bytes, str]) -> dict[str, Any]:
    """ECR's Image shape."""
    manifest, media_type = served
    return {
        "registryId": repo.account_id,
        "repositoryName": repo.name,
        "imageId": ImageId(tag, image.digest).shape(),
        "imageManifest": manifest.decode("utf-8"),
        "imageManifestMediaType": media_type,
    }


async def batch_get_image(
    svc: Services,
    caller: Caller,
    account_id: str,
    repository: str,
    image_ids: list[dict[str, str]],
    accepted_media_types: list[str] | None = None,
) -> dict[str, Any]:
    """The images `image_ids` name; a pull, as a manifest GET is (lastRecordedPullTime moves)."""
    found: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    pulled: dict[int, StoredImage] = {}
    seen: set[tuple[str | None, str | None]] = set()
    wanted = list(dict.fromkeys(ImageId.of(shape) for shape in image_ids))
    found_repo: Repository | None = None
    resolved: dict[ImageId, tuple[StoredImage | None, tuple[str, str] | None]] = {}
    tag_names: dict[int, list[str]] = {}
    try:
        async with svc.db.read() as conn:
            found_repo = await open_repository(conn, caller, account_id, repository, "ecr:BatchGetImage")
            resolved = await _resolve_all(conn, found_repo, wanted)
            by_digest_only = [image.id for i, (image, _) in resolved.items() if image is not None and i.tag is None]
            tag_names = await _tags_of(conn, list(dict.fromkeys(by_digest_only)))
    except RepositoryNotFoundException:
        pass  # a pull through cache's repository is created by its first pull
    repo = await _pull_through_missing(svc, caller, account_id, repository, found_repo, wanted, resolved)
    for image_id in wanted:
        image, problem = resolved[image_id]
        if image is None:
            failures.append(_failure(image_id, problem or NOT_FOUND))
            continue
        if image.status != archive.ACTIVE:
            failures.append(_failure(image_id, ARCHIVED_IMAGE))
            continue
        served = _served(image, image_id, accepted_media_types)
        answers = [image_id.tag] if image_id.tag else tag_names.get(image.id) or [None]
        for tag in answers:
            if (tag, image.digest) not in seen:
                seen.add((tag, image.digest))
                found.append(_image_shape(repo, image, tag, served))
        pulled[image.id] = image
    await record_pull_times(svc, caller, repo.account_id, pulled.values())
    return {"images": found, "failures": failures}


async def _pull_through_missing(
    svc: Services,
    caller: Caller,
    account_id: str,
    repository: str,
    repo: Repository | None,
    wanted: list[ImageId],
    resolved: dict[ImageId, tuple[StoredImage | None, tuple[str, str] | None]],
) -> Repository:
    """Fill in, from a pull through cache's upstream, the images `resolved` found missing (all of
    them when the repository does not exist yet): ECR's per-image Upstream* failures when the
    upstream fails, UnableToGetUpstreamImageException when nothing could be had at all."""
    from dockyard.core.registry import pull_through  # noqa: PLC0415 - it imports this module

    for image_id in wanted:
        image, problem = resolved.get(image_id, (None, None))
        if image is not None or problem is not None or (repo is None and image_id.problem() is not None):
            continue
        reference = image_id.tag or image_id.digest
        assert reference is not None
        try:
            pulled = await pull_through.pull_manifest(svc, caller, account_id, repository, reference, repo)
        except UnableToGetUpstreamImageException as exc:
            if repo is None:
                raise
            resolved[image_id] = (None, ("UpstreamUnavailable", exc.message))
            continue
        if pulled is None:
            if repo is None:
                raise not_found(repository, account_id)
            continue
        repo, image = pulled
        mismatch = image_id.digest is not None and image_id.digest != image.digest
        resolved[image_id] = (None, TAG_ELSEWHERE) if mismatch else (image, None)
    if repo is None:
        raise not_found(repository, account_id)
    for image_id in wanted:
        resolved.setdefault(image_id, (None, image_id.problem()))
    return repo


# --- BatchDeleteImage -------------------------------------------------------------------------


@dataclass
class _Deletion:
    """What one BatchDeleteImage call takes away: whole images, and single tags."""

    images: dict[int, StoredImage] = field(default_factory=dict)
    tags: dict[str, StoredImage] = field(default_factory=dict)


async def batch_delete_image(
    svc: Services, caller: Caller, account_id: str, repository: str, image_ids: list[dict[str, str]]
) -> dict[str, Any]:
    """BatchDeleteImage. Everything the outcome depends on is read inside the write transaction
    (a push between a read and the write could tag an image or reference it from a new index),
    so every read is keyed by what the request names: the lock is held for a time that grows
    with the number of ids, never with the repository."""
    wanted = list(dict.fromkeys(ImageId.of(shape) for shape in image_ids))
    async with svc.db.write() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:BatchDeleteImage")
        return await _delete_named(conn, repo, wanted)


async def _delete_named(conn: AsyncConnection, repo: Repository, wanted: list[ImageId]) -> dict[str, Any]:
    failures: list[dict[str, Any]] = []
    plan = _Deletion()
    resolved = await _resolve_all(conn, repo, wanted)
    for image_id in wanted:
        image, problem = resolved[image_id]
        if image is None:
            failures.append(_failure(image_id, problem or NOT_FOUND))
        elif image_id.tag is None:
            plan.images[image.id] = image
        else:
            plan.tags[image_id.tag] = image
    tag_names = await _tags_of(conn, list({image.id for image in (*plan.images.values(), *plan.tags.values())}))
    requested = set(plan.images)
    # An image loses its last tag here: it goes as a whole.
    for image in list(plan.tags.values()):
        if all(t in plan.tags for t in tag_names[image.id]):
            plan.images[image.id] = image
    blocked = await _referenced_by_lists(conn, repo, plan)
    deleted: list[dict[str, str]] = []
    for image in list(plan.images.values()):
        if image.id in blocked:
            del plan.images[image.id]
            if image.id in requested:
                failures.append(_failure(ImageId(None, image.digest), blocked[image.id]))
            continue  # asked for by tag only: the tags go, the image a manifest list needs stays
        deleted.extend(ImageId(t, image.digest).shape() for t in tag_names[image.id] or [None])
    await image_store.delete_images(conn, list(plan.images))
    lone_tags = [tag for tag, image in plan.tags.items() if image.id not in plan.images]
    for chunk in _chunks(lone_tags):
        await conn.execute(delete(tags).where(tags.c.repository_id == repo.id, tags.c.name.in_(chunk)))
    deleted.extend(ImageId(tag, plan.tags[tag].digest).shape() for tag in lone_tags)
    return {"imageIds": deleted, "failures": failures}


async def _referenced_by_lists(conn: AsyncConnection, repo: Repository, plan: _Deletion) -> dict[int, tuple[str, str]]:
    """Images an index or manifest list that stays in the repository still points at: ECR keeps them."""
    doomed = {image.digest: image.id for image in plan.images.values()}
    parents: dict[int, list[str]] = {}
    for chunk in _chunks(list(doomed)):
        # `repository_id + 0` is no index key: with ten or more digests SQLite (without
        # statistics) would otherwise read every image of the repository and probe its
        # references; this way it must start from the referenced digests' index.
        rows = await conn.execute(
            select(refs.c.digest, images.c.digest.label("parent"), images.c.id.label("parent_id"))
            .join(images, images.c.id == refs.c.image_id)
            .where(images.c.repository_id + 0 == repo.id, refs.c.kind == "manifest", refs.c.digest.in_(chunk))
        )
        for row in rows:
            if row.parent_id not in plan.images:
                parents.setdefault(doomed[row.digest], []).append(row.parent)
    return {
        image_id: (
            "ImageReferencedByManifestList",
            f"Requested image referenced by manifest list: [{', '.join(lists)}]",
        )
        for image_id, lists in parents.items()
    }


# --- PutImage ---------------------------------------------------------------------------------


async def put_image(
    svc: Services,
    caller: Caller,
    account_id: str,
    repository: str,
    manifest_text: str,
    media_type: str | None = None,
    tag: str | None = None,
    digest: str | None = None,
) -> dict[str, Any]:
    """PutImage: the registry door's manifest PUT, with ECR's checks on its members."""
    if tag is not None and not _TAG.fullmatch(tag):
        raise InvalidParameterException(
            "Invalid parameter at 'imageTag' failed to satisfy constraint: "
            f"'must satisfy regular expression '{TAG_RULE}''"
        )
    if digest is not None and not _DIGEST.fullmatch(digest):
        raise InvalidParameterException(
            f"Invalid parameter at 'imageDigest' failed to satisfy constraint: 'must satisfy regular expression "
            f"'{DIGEST_RULE}''"
        )
    data = manifest_text.encode("utf-8")
    try:
        # ECR's own reading: a manifest must say what it is (mediaType, or imageManifestMediaType).
        parsed = parse_manifest(data, media_type, infer_from_layout=False)
    except ManifestError as exc:
        raise InvalidParameterException(exc.message) from None
    repo, manifest = await image_store.put_manifest(
        svc,
        caller,
        account_id,
        repository,
        data,
        media_type,
        tag=tag,
        digest=digest,
        refuse_existing=True,
        parsed=parsed,
    )
    return {
        "image": {
            "registryId": repo.account_id,
            "repositoryName": repo.name,
            "imageId": ImageId(tag, manifest.digest).shape(),
            "imageManifest": manifest_text,
            "imageManifestMediaType": manifest.media_type,
        }
    }
