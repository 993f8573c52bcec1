"""What the console shows of a repository's images beyond the ECR API's own pages.

DescribeImages pages in push order with an opaque token; a person browsing wants the newest
first, any column sorted, a tag searched for, numbered pages and the total. Both read the same
rows and describe them the same way (image_details.image_detail), under the same permission
(ecr:DescribeImages). An image's manifest is read under ecr:BatchGetImage, as BatchGetImage
reads it, but showing it is no pull: lastRecordedPullTime does not move."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.identity.caller import Caller
from dockyard.core.registry.image_details import image_detail
from dockyard.core.registry.images import StoredImage, image_not_found, last_pull_time, open_repository_fast
from dockyard.core.registry.repositories import Repository, open_repository
from dockyard.core.scanning.scan_hooks import image_scan_details
from dockyard.core.services import Services
from dockyard.store import schema

images = schema.images
tags = schema.tags
# Sortable columns by the name a page uses; every order ends on the id, so pages never overlap.
SORTS: dict[str, ColumnElement[Any]] = {
    "pushed": images.c.pushed_at,
    "size": images.c.size,
    "digest": images.c.digest,
    "pulled": func.coalesce(images.c.last_pull_at, images.c.pushed_at),
    "status": images.c.status,
}
TAG_STATUSES = ("TAGGED", "UNTAGGED")
MAX_PAGE = 500
_FIELDS = tuple(f.name for f in dataclasses.fields(StoredImage) if f.name != "manifest")
_COLUMNS = tuple(images.c[name] for name in _FIELDS)


@dataclass(frozen=True)
class ImagePage:
    """One page of images (ECR ImageDetail shapes) and how many images the whole listing has."""

    total: int
    details: list[dict[str, Any]]


def _conditions(repo: Repository, tag_status: str | None, tag_search: str) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [images.c.repository_id == repo.id]
    tagged = exists().where(tags.c.image_id == images.c.id)
    if tag_status == "TAGGED":
        conditions.append(tagged)
    elif tag_status == "UNTAGGED":
        conditions.append(~tagged)
    if tag_search:
        # The repository's tags are the leading part of the tags key: the search reads only them.
        matching = select(tags.c.image_id).where(
            tags.c.repository_id == repo.id, tags.c.name.icontains(tag_search, autoescape=True)
        )
        conditions.append(images.c.id.in_(matching))
    return conditions


async def _tag_names(conn: AsyncConnection, image_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {image_id: [] for image_id in image_ids}
    if image_ids:
        query = select(tags.c.image_id, tags.c.name).where(tags.c.image_id.in_(image_ids)).order_by(tags.c.name)
        for image_id, name in await conn.execute(query):
            found[image_id].append(name)
    return found


async def browse_images(
    svc: Services,
    caller: Caller,
    account_id: str,
    repository: str,
    *,
    sort: str = "pushed",
    descending: bool = True,
    tag_search: str = "",
    tag_status: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> ImagePage:
    """Images of every status (ACTIVE, ARCHIVED, ACTIVATING), `limit` from `offset` in `sort`
    order (a key of SORTS, newest push first by default), optionally only those with a tag
    containing `tag_search` (any case) or of one tag status."""
    repo = await open_repository_fast(svc, caller, account_id, repository, "ecr:DescribeImages")
    column = SORTS.get(sort, SORTS["pushed"])
    order = (column.desc(), images.c.id.desc()) if descending else (column.asc(), images.c.id.asc())
    conditions = _conditions(repo, tag_status if tag_status in TAG_STATUSES else None, tag_search.strip())
    limit = max(1, min(limit, MAX_PAGE))
    async with svc.db.read() as conn:
        total = int(await conn.scalar(select(func.count()).select_from(images).where(*conditions)) or 0)
        # The order is found on the sort key and id alone, then only the page's rows are read
        # whole: sorting 10,000 whole rows costs several times more than sorting their keys.
        ordered = select(images.c.id).where(*conditions).order_by(*order).offset(max(0, offset)).limit(limit)
        ids = list((await conn.execute(ordered)).scalars())
        rows = await conn.execute(select(*_COLUMNS).where(images.c.id.in_(ids))) if ids else []
        found = {row.id: row for row in rows}
        page = [StoredImage(**dict(zip(_FIELDS, found[i], strict=True)), manifest=b"") for i in ids if i in found]
        names = await _tag_names(conn, ids)
        scanned = await image_scan_details(conn, ids, svc.settings.vulndb_max_age_days) if ids else {}
    details = [image_detail(repo, i, names[i.id], scanned.get(i.id), last_pull_time(svc, i)) for i in page]
    return ImagePage(total, details)


async def image_manifest(
    svc: Services, caller: Caller, account_id: str, repository: str, digest: str
) -> tuple[bytes, str]:
    """The stored manifest of image `digest` and its media type, as BatchGetImage would answer
    it, without recording a pull."""
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:BatchGetImage")
        query = select(images.c.manifest, images.c.media_type).where(
            images.c.repository_id == repo.id, images.c.digest == digest
        )
        row = (await conn.execute(query)).first()
    if row is None:
        raise image_not_found(repo, digest)
    return bytes(row.manifest), str(row.media_type)
