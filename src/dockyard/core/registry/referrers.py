"""ListImageReferrers: the OCI referrers of a subject image, through the ECR API.

The same manifests the registry door's referrers API lists (images whose ``subject`` is the
image), described the same way (manifest media type, digest and size, the artifact type, the
manifest's annotations), plus ECR's ``artifactStatus``. ECR's rules, from its API reference and
botocore's model:

* authorised as ``ecr:BatchGetImage`` on the repository (there is no action of its own);
* ``filter.artifactTypes`` keeps referrers of any of the listed types (none listed: all);
* ``filter.artifactStatus`` defaults to ACTIVE; ANY matches every status (ACTIVE, ARCHIVED,
  ACTIVATING: the referrer's own imageStatus, core/registry/archive.py);
* pages of ``maxResults`` (1 to 50, default 20) with an opaque ``nextToken``;
* a subject the repository does not hold simply has no referrers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import InvalidParameterException
from dockyard.core.identity.caller import Caller
from dockyard.core.paging import decode_token, encode_token
from dockyard.core.registry import archive
from dockyard.core.registry.image_details import DIGEST_RULE
from dockyard.core.registry.repositories import Repository, open_repository
from dockyard.core.services import Services
from dockyard.store import schema

images = schema.images
# botocore's model: "If this parameter is not used, then ListImageReferrers returns up to 20 results".
DEFAULT_PAGE = 20
MAX_PAGE = 50
ACTIVE = archive.ACTIVE
_DIGEST = re.compile(DIGEST_RULE)


def _invalid_token() -> InvalidParameterException:
    return InvalidParameterException("Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'")


def _after(next_token: str | None) -> int | None:
    """The id of the last referrer a previous page listed."""
    position = decode_token(next_token)
    if position is None:
        return None
    if isinstance(position, bool) or not isinstance(position, int):
        raise _invalid_token()
    return position


def _check_subject(digest: str) -> None:
    if not _DIGEST.fullmatch(digest):
        raise InvalidParameterException(
            "Invalid parameter at 'subjectId.imageDigest' failed to satisfy constraint: "
            f"'must satisfy regular expression '{DIGEST_RULE}''"
        )


def referrer(row: Row[Any]) -> dict[str, Any]:
    """ECR's ImageReferrer for a stored referring manifest (an OCI descriptor plus its status)."""
    described: dict[str, Any] = {"digest": row.digest, "mediaType": row.media_type, "size": len(row.manifest)}
    if row.artifact_type:
        described["artifactType"] = row.artifact_type
    annotations = json.loads(row.manifest).get("annotations")
    if annotations:
        described["annotations"] = annotations
    described["artifactStatus"] = row.status
    return described


async def referrer_rows(
    conn: AsyncConnection,
    repo: Repository,
    subject_digest: str,
    artifact_types: Sequence[str] | None,
    after: int | None,
    limit: int,
    statuses: Sequence[str] | None = None,
) -> list[Row[Any]]:
    """Up to `limit` referrers of `subject_digest` in push order, after image id `after`; with
    `statuses`, only referrers in one of those image statuses."""
    query = select(
        images.c.id, images.c.digest, images.c.media_type, images.c.artifact_type, images.c.manifest, images.c.status
    ).where(images.c.repository_id == repo.id, images.c.subject_digest == subject_digest)
    if statuses is not None:
        query = query.where(images.c.status.in_(list(statuses)))
    if artifact_types:
        query = query.where(images.c.artifact_type.in_(list(artifact_types)))
    if after is not None:
        query = query.where(images.c.id > after)
    return list((await conn.execute(query.order_by(images.c.id).limit(limit))).all())


async def list_image_referrers(
    svc: Services,
    caller: Caller,
    account_id: str,
    repository: str,
    subject_digest: str,
    *,
    artifact_types: Sequence[str] | None = None,
    artifact_status: str | None = None,
    max_results: int | None = None,
    next_token: str | None = None,
) -> dict[str, Any]:
    """ListImageReferrers' answer: {"referrers": [...], "nextToken"?: ...}."""
    after = _after(next_token)
    _check_subject(subject_digest)
    limit = min(max_results or DEFAULT_PAGE, MAX_PAGE)
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:BatchGetImage")
        statuses = archive.status_matches(artifact_status)
        rows = await referrer_rows(conn, repo, subject_digest, artifact_types, after, limit + 1, statuses)
    result: dict[str, Any] = {"referrers": [referrer(row) for row in rows[:limit]]}
    if len(rows) > limit:
        result["nextToken"] = encode_token(rows[limit - 1].id)
    return result
