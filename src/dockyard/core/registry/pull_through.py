"""Pull through cache: a pull that misses in a repository a rule covers fetches from the upstream.

Only misses come here (a repository or image not found, a blob not linked), and the tag re-check
of a tag a cache wrote: repositories that are not caches pay nothing else.

- A manifest is fetched, checked against its digest and kept in `pull_through_manifests` until
  every blob it names is stored and linked; only then is it stored as an image, through
  `images.put_manifest` (a push's invariants hold: blobs before the manifest). Meanwhile it is
  served from there. An index completes as an image does: its children are fetched (a few at a
  time) and stored as images, and then the index itself, with its tag. A completion that fails
  somewhere leaves what it fetched in place; the next pull the cache answers for the manifest
  (an image's blobs, an index served from `pull_through_manifests`) finishes the job.
- A blob is fetched once however many clients and processes ask (a lease row per digest): the
  leader streams the upstream's bytes to its client while appending them to an upload in the
  blob store, checks the digest at the end and only then places and links the blob; a failed
  check discards the upload and aborts the client's stream. Followers tail the leader's upload
  file on a filesystem store, or wait for the blob to be placed on others. A Range is cut from
  the bytes as they arrive (byte_range): sent once they are there, without waiting for the rest.
- A tag is re-checked against the upstream at most once per TAG_RECHECK_SECONDS (`clock` says
  when; tests replace it). A digest never needs the upstream once stored, and what is cached
  keeps serving when the upstream is down."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.core.errors import (
    DockyardError,
    ImageTagAlreadyExistsException,
    ManifestInvalid,
    SecretNotFoundException,
    UnableToAccessSecretException,
    UnableToDecryptSecretValueException,
    UnableToGetUpstreamImageException,
    UnableToGetUpstreamLayerException,
)
from dockyard.core.identity.access import Resource, authorize, repository_arn
from dockyard.core.identity.caller import Caller, root_caller
from dockyard.core.operations.account_settings import registry_policy_in_force
from dockyard.core.operations.creation_templates import template_for
from dockyard.core.registry import images, pull_through_ecr, repositories
from dockyard.core.registry.blobs import link
from dockyard.core.registry.manifests import INDEX_MEDIA_TYPES, Manifest, is_digest
from dockyard.core.registry.pull_through_rules import (
    CacheRule,
    rule_for_repository,
    upstream_base_url,
    upstream_permitted,
    upstream_repository,
)
from dockyard.core.registry.repositories import Repository, RepositorySettings, insert_repository, repository_resource
from dockyard.core.registry.upstream_client import UpstreamClient, UpstreamError, UpstreamManifest
from dockyard.core.remote_sites import SiteCredentialsMissing
from dockyard.core.secrets.values import upstream_credentials
from dockyard.core.services import Services, now
from dockyard.store import schema
from dockyard.store.blobs.interface import DigestMismatch

log = logging.getLogger(__name__)
pending = schema.pull_through_manifests
tag_checks = schema.pull_through_tags
fetches = schema.pull_through_fetches
rb = schema.repository_blobs

# The clock tag re-checks go by (epoch seconds); tests replace it to step past the interval.
clock: Callable[[], float] = time.time
TAG_RECHECK_SECONDS = 24 * 3600.0
# After a failed re-check, how long a tag is served from the cache before the upstream is asked
# again: pulls must not each wait on an upstream that is down.
RECHECK_RETRY_SECONDS = 300.0
# A blob fetch's lease: renewed while bytes flow, taken over by another process once it lapses.
LEASE_SECONDS = 30.0
RENEW_EVERY = 10.0
# How often a follower looks for more of the leader's bytes, or for the leader's end.
FOLLOW_POLL = 0.02
LEASE_POLL = 0.25
# The leader's bytes in flight to its client: a slow client slows the fetch rather than memory grow.
QUEUE_CHUNKS = 16
# How many children of an index its completion fetches at once: an index of many platforms must
# not open as many upstream connections.
CHILD_CONCURRENCY = 4
PULL_THROUGH_CACHE = "PULL_THROUGH_CACHE"
_tasks: set[asyncio.Task[Any]] = set()
# (repository id, digest) of the completions running in this process: pulls that restart one while
# it runs would only duplicate its reads (the blob leases keep the fetches single across processes).
_completing: set[tuple[int, str]] = set()


def image_failure(name: str, reference: str, account_id: str, detail: str) -> UnableToGetUpstreamImageException:
    return UnableToGetUpstreamImageException(
        f"The image with reference '{reference}' in the repository with name '{name}' in the registry with id "
        f"'{account_id}' could not be pulled from the upstream registry: {detail}"
    )


def layer_failure(name: str, digest: str, account_id: str, detail: str) -> UnableToGetUpstreamLayerException:
    return UnableToGetUpstreamLayerException(
        f"The layer with digest '{digest}' in the repository with name '{name}' in the registry with id "
        f"'{account_id}' could not be pulled from the upstream registry: {detail}"
    )


@dataclass(frozen=True)
class _Source:
    """Where a cached repository's content comes from."""

    rule: CacheRule
    repository: str  # the upstream repository

    async def client(self, svc: Services) -> UpstreamClient:
        if not upstream_permitted(svc.settings.pull_through_upstreams, self.rule.upstream_registry_url):
            # The operator has taken the rule's host off the list since the rule was written.
            raise UpstreamError("unavailable", f"the upstream {self.rule.upstream_registry_url} is not permitted here")
        if self.rule.upstream_registry == "ecr":
            reached = await _site_client(svc, self.rule)
            if reached is not None:
                return reached
        credentials = None
        if self.rule.credential_arn:
            credentials = await upstream_credentials(
                svc, self.rule.account_id, self.rule.region, self.rule.credential_arn
            )
        return UpstreamClient(upstream_base_url(self.rule), credentials)


async def _site_client(svc: Services, rule: CacheRule) -> UpstreamClient | None:
    """A client of an ECR upstream that another Dockyard deployment serves, signed in there."""
    try:
        upstream = pull_through_ecr.site_upstream(svc.settings, rule.upstream_registry_url, rule.custom_role_arn)
    except SiteCredentialsMissing as exc:
        raise UpstreamError("unauthorized", str(exc)) from exc
    return None if upstream is None else await pull_through_ecr.client(upstream)


async def _source(svc: Services, account_id: str, region: str, name: str) -> _Source | None:
    async with svc.db.read() as conn:
        rule = await rule_for_repository(conn, account_id, region, name)
    return None if rule is None else _Source(rule, upstream_repository(rule, name))


# --- manifests ---------------------------------------------------------------------------------


def _as_stored(data: bytes, manifest: Manifest, fetched_at: float) -> images.StoredImage:
    """A fetched manifest as the pull path serves images; id 0: it is no stored image (yet)."""
    return images.StoredImage(
        id=0,
        digest=manifest.digest,
        media_type=manifest.media_type,
        artifact_type=manifest.artifact_type,
        subject_digest=manifest.subject.digest if manifest.subject else None,
        size=manifest.image_size({}),
        manifest=data,
        pushed_at=fetched_at,
        last_pull_at=None,
    )


async def _pending_image(svc: Services, repo: Repository, reference: str) -> images.StoredImage | None:
    """A fetched manifest `reference` names (a digest, or a tag checked within the interval)."""
    async with svc.db.read() as conn:
        digest = reference
        if not is_digest(reference):
            row = (
                await conn.execute(
                    select(tag_checks.c.digest, tag_checks.c.checked_at).where(
                        tag_checks.c.repository_id == repo.id, tag_checks.c.tag == reference
                    )
                )
            ).first()
            if row is None or is_stale(row.checked_at):
                return None
            digest = row.digest
        row = (
            await conn.execute(
                select(pending.c.manifest, pending.c.media_type, pending.c.fetched_at).where(
                    pending.c.repository_id == repo.id, pending.c.digest == digest
                )
            )
        ).first()
    if row is None:
        return None
    return _as_stored(row.manifest, images.parse(row.manifest, row.media_type), row.fetched_at)


def is_stale(checked_at: float) -> bool:
    return clock() - checked_at >= TAG_RECHECK_SECONDS


async def _authorize_import(svc: Services, caller: Caller, account_id: str, name: str, repo: Repository | None) -> None:
    """ECR's rule: importing an upstream image takes ecr:BatchImportUpstreamImage on the repository
    (creating it, ecr:CreateRepository too, which insert_repository asks)."""
    if repo is not None:
        resource = await repository_resource(svc, caller, repo)
    else:
        async with svc.db.read() as conn:
            in_force = await registry_policy_in_force(conn, account_id, caller.region)
        resource = Resource(
            arn=repository_arn(caller.region, account_id, name), account_id=account_id, registry_policy_text=in_force
        )
    await authorize(caller, "ecr:BatchImportUpstreamImage", resource)


async def _fetch_manifest(
    svc: Services, source: _Source, name: str, reference: str
) -> tuple[UpstreamManifest, Manifest]:
    account_id = source.rule.account_id
    try:
        client = await source.client(svc)
    except (SecretNotFoundException, UnableToAccessSecretException, UnableToDecryptSecretValueException) as exc:
        raise image_failure(name, reference, account_id, exc.message) from exc
    try:
        fetched = await client.manifest(source.repository, reference)
    finally:
        await client.aclose()
    try:
        parsed = images.parse(fetched.data, fetched.media_type or None)
    except ManifestInvalid as exc:
        raise UpstreamError("invalid", f"the upstream's manifest is not valid: {exc.message}") from exc
    return fetched, parsed


async def pull_manifest(
    svc: Services, caller: Caller, account_id: str, name: str, reference: str, repo: Repository | None
) -> tuple[Repository, images.StoredImage] | None:
    """The image `reference` names in cached repository `name` (`repo`, None when it does not
    exist yet), fetched from the upstream if need be; None when no rule covers `name`. The caller
    has been authorised to pull (ecr:BatchGetImage) already."""
    source = await _source(svc, account_id, caller.region, name)
    if source is None:
        return None
    if repo is not None:
        held = await _pending_image(svc, repo, reference)
        if held is not None:
            if held.media_type in INDEX_MEDIA_TYPES:
                # No client request fetches what an index lacks: its completion must, again if it failed.
                _start_completion(svc, source, repo, images.parse(held.manifest, held.media_type))
            return repo, held
    await _authorize_import(svc, caller, account_id, name, repo)
    try:
        fetched, parsed = await _fetch_manifest(svc, source, name, reference)
    except UpstreamError as exc:
        if exc.reason == "not_found":
            return None
        raise image_failure(name, reference, account_id, exc.detail) from exc
    tag = None if is_digest(reference) else reference
    repo = await _record_manifest(svc, caller, account_id, name, fetched, parsed, tag)
    _start_completion(svc, source, repo, parsed)
    return repo, _as_stored(fetched.data, parsed, now())


async def _record_manifest(
    svc: Services,
    caller: Caller,
    account_id: str,
    name: str,
    fetched: UpstreamManifest,
    parsed: Manifest,
    tag: str | None,
) -> Repository:
    """Keep a fetched manifest (creating the repository through the PULL_THROUGH_CACHE creation
    template), and what the upstream said `tag` names now; a stored tag that named something
    else stops naming it until the new image is stored."""
    async with svc.db.write() as conn:
        repo = await repositories.find(conn, account_id, caller.region, name)
        if repo is None:
            template = await template_for(conn, account_id, caller.region, name, PULL_THROUGH_CACHE)
            settings = template.settings() if template else RepositorySettings()
            repo = await insert_repository(svc, conn, caller, account_id, name, settings)
        await _keep(conn, repo, fetched, parsed)
        if tag is not None:
            await _note_tag(conn, repo, tag, parsed.digest)
            stored = select(schema.images.c.id).where(
                schema.images.c.repository_id == repo.id, schema.images.c.digest == parsed.digest
            )
            await conn.execute(
                delete(schema.tags).where(
                    schema.tags.c.repository_id == repo.id,
                    schema.tags.c.name == tag,
                    schema.tags.c.image_id.not_in(stored),
                )
            )
    return repo


async def _keep(conn: Any, repo: Repository, fetched: UpstreamManifest, parsed: Manifest) -> None:
    """Keep a fetched manifest in `pull_through_manifests` until it is stored as an image."""
    try:
        async with conn.begin_nested():
            await conn.execute(
                insert(pending).values(
                    repository_id=repo.id,
                    digest=parsed.digest,
                    media_type=parsed.media_type,
                    manifest=fetched.data,
                    fetched_at=now(),
                )
            )
    except IntegrityError:
        pass  # fetched by another pull meanwhile: the same bytes


async def _note_tag(conn: Any, repo: Repository, tag: str, digest: str) -> None:
    values = {"digest": digest, "checked_at": clock()}
    changed = await conn.execute(
        update(tag_checks).where(tag_checks.c.repository_id == repo.id, tag_checks.c.tag == tag).values(**values)
    )
    if changed.rowcount == 0:
        await conn.execute(insert(tag_checks).values(repository_id=repo.id, tag=tag, **values))


async def recheck_tag(
    svc: Services, caller: Caller, account_id: str, repo: Repository, tag: str, image: images.StoredImage
) -> images.StoredImage:
    """A cached tag whose last check is older than the interval: ask the upstream what it names
    now. Whatever goes wrong upstream, the cached image keeps serving."""
    source = await _source(svc, account_id, repo.region, repo.name)
    if source is None:
        return image
    try:
        await _authorize_import(svc, caller, account_id, repo.name, repo)
        fetched, parsed = await _fetch_manifest(svc, source, repo.name, tag)
    except (UpstreamError, DockyardError) as exc:
        log.warning("re-checking %s:%s against its upstream failed: %s", repo.name, tag, exc)
        async with svc.db.write() as conn:
            await conn.execute(
                update(tag_checks)
                .where(tag_checks.c.repository_id == repo.id, tag_checks.c.tag == tag)
                .values(checked_at=clock() - TAG_RECHECK_SECONDS + RECHECK_RETRY_SECONDS)
            )
        return image
    if parsed.digest == image.digest:
        async with svc.db.write() as conn:
            await _note_tag(conn, repo, tag, parsed.digest)
        return image
    repo = await _record_manifest(svc, caller, account_id, repo.name, fetched, parsed, tag)
    _start_completion(svc, source, repo, parsed)
    return _as_stored(fetched.data, parsed, now())


# --- storing fetched images --------------------------------------------------------------------


def _start_completion(svc: Services, source: _Source, repo: Repository, manifest: Manifest) -> None:
    """Fetch, in the background, what an image needs that clients have not asked for yet (an
    index: its children too), then store it: a client that already holds some layers never asks
    for them, and one pulling a multi-platform image asks for one platform only."""
    key = (repo.id, manifest.digest)
    if key in _completing:
        return
    _completing.add(key)
    task = asyncio.get_running_loop().create_task(_complete(svc, source, repo, manifest))
    _tasks.add(task)

    def done(finished: asyncio.Task[Any]) -> None:
        _tasks.discard(finished)
        _completing.discard(key)

    task.add_done_callback(done)


async def _complete(svc: Services, source: _Source, repo: Repository, manifest: Manifest) -> None:
    try:
        await _fetch_contents(svc, source, repo, manifest)
        await store_ready(svc, repo)
    except Exception:  # noqa: BLE001 - background: the next pull that needs the bytes fetches them
        log.warning("completing %s@%s from its upstream failed", repo.name, manifest.digest, exc_info=True)


async def _fetch_contents(svc: Services, source: _Source, repo: Repository, manifest: Manifest) -> None:
    """The blobs of an image, or the children of an index with theirs, fetched and linked."""
    if manifest.is_index:
        await _fetch_children(svc, source, repo, manifest)
        return
    for digest in manifest.required_blob_digests():
        if await _linked_size(svc, repo, digest) is None:
            fetch = await _blob(svc, source, repo, digest)
            async for _ in fetch.chunks:
                pass


async def _fetch_children(svc: Services, source: _Source, repo: Repository, index: Manifest) -> None:
    """Each child of `index` that is no image of `repo` yet, CHILD_CONCURRENCY at a time. A child
    that fails does not stop the others: they are stored, and the index waits for the next try."""
    limit = asyncio.Semaphore(CHILD_CONCURRENCY)

    async def one(digest: str) -> None:
        async with limit:
            try:
                child = await _child(svc, source, repo, digest)
                if child is not None:
                    await _fetch_contents(svc, source, repo, child)
                    await store_ready(svc, repo)
            except Exception:  # noqa: BLE001 - background: the index's next pull tries it again
                log.warning("completing %s@%s from its upstream failed", repo.name, digest, exc_info=True)

    await asyncio.gather(*(one(digest) for digest in dict.fromkeys(index.child_digests())))


async def _child(svc: Services, source: _Source, repo: Repository, digest: str) -> Manifest | None:
    """Child manifest `digest` of an index, kept as a fetched manifest of `repo` (from the
    upstream if need be); None when `repo` holds it as an image already."""
    async with svc.db.read() as conn:
        if await _image_held(conn, repo, digest):
            return None
        row = (
            await conn.execute(
                select(pending.c.manifest, pending.c.media_type).where(
                    pending.c.repository_id == repo.id, pending.c.digest == digest
                )
            )
        ).first()
    if row is not None:
        return images.parse(row.manifest, row.media_type)
    fetched, parsed = await _fetch_manifest(svc, source, repo.name, digest)
    async with svc.db.write() as conn:
        await _keep(conn, repo, fetched, parsed)
    return parsed


async def _image_held(conn: Any, repo: Repository, digest: str) -> bool:
    held = await conn.execute(
        select(schema.images.c.id).where(schema.images.c.repository_id == repo.id, schema.images.c.digest == digest)
    )
    return held.first() is not None


async def store_ready(svc: Services, repo: Repository) -> None:
    """Store as images the fetched manifests of `repo` whose blobs (and children) are all there,
    with the tags the upstream gave them; children first, so an index can follow them."""
    caller = root_caller(repo.account_id, repo.region)
    progress = True
    while progress:
        progress = False
        async with svc.db.read() as conn:
            rows = (
                await conn.execute(
                    select(pending.c.digest, pending.c.media_type, pending.c.manifest).where(
                        pending.c.repository_id == repo.id
                    )
                )
            ).all()
            # Read first: a put that would be refused costs a turn of the single writer.
            rows = [row for row in rows if await _complete_in(conn, repo, row.manifest, row.media_type)]
        for row in rows:
            try:
                await images.put_manifest(svc, caller, repo.account_id, repo.name, row.manifest, row.media_type)
            except DockyardError:
                continue  # blobs or children still missing
            await _apply_tags(svc, caller, repo, row.digest, row.manifest, row.media_type)
            async with svc.db.write() as conn:
                await conn.execute(
                    delete(pending).where(pending.c.repository_id == repo.id, pending.c.digest == row.digest)
                )
            progress = True


async def _store_ready_quietly(svc: Services, repo: Repository) -> None:
    """store_ready after a blob is placed: the blob is served whatever becomes of the image,
    which the next blob placed (or the next pull) stores."""
    try:
        await store_ready(svc, repo)
    except Exception:  # noqa: BLE001 - the blob's response must not fail for the image's sake
        log.warning("storing the fetched images of %s failed", repo.name, exc_info=True)


async def _complete_in(conn: Any, repo: Repository, data: bytes, media_type: str) -> bool:
    """Whether every blob and child manifest `data` needs is in the repository."""
    manifest = images.parse(data, media_type)
    blobs = set(manifest.required_blob_digests())
    children = set(manifest.child_digests()) if manifest.manifests else set()
    if blobs:
        linked = await conn.execute(select(rb.c.digest).where(rb.c.repository_id == repo.id, rb.c.digest.in_(blobs)))
        if len(set(linked.scalars())) < len(blobs):
            return False
    if children:
        held = await conn.execute(
            select(schema.images.c.digest).where(
                schema.images.c.repository_id == repo.id, schema.images.c.digest.in_(children)
            )
        )
        if len(set(held.scalars())) < len(children):
            return False
    return True


async def _apply_tags(
    svc: Services, caller: Caller, repo: Repository, digest: str, data: bytes, media_type: str
) -> None:
    async with svc.db.read() as conn:
        names = (
            await conn.execute(
                select(tag_checks.c.tag).where(tag_checks.c.repository_id == repo.id, tag_checks.c.digest == digest)
            )
        ).scalars()
        wanted = list(names)
    for tag in wanted:
        try:
            await images.put_manifest(svc, caller, repo.account_id, repo.name, data, media_type, tag=tag)
        except ImageTagAlreadyExistsException:
            log.warning("tag %s of %s is immutable: the upstream's new %s stays untagged", tag, repo.name, digest)


# --- blobs -------------------------------------------------------------------------------------


@dataclass
class BlobPull:
    """A blob on its way from the upstream (or from the leader's upload): its size when known,
    and its bytes, which end in an exception (aborting the response) if the digest fails."""

    size: int | None
    chunks: AsyncIterator[bytes]


async def _linked_size(svc: Services, repo: Repository, digest: str) -> int | None:
    async with svc.db.read() as conn:
        return (
            await conn.execute(
                select(schema.blobs.c.size)
                .join(rb, rb.c.digest == schema.blobs.c.digest)
                .where(rb.c.repository_id == repo.id, rb.c.digest == digest)
            )
        ).scalar()


async def pull_blob(
    svc: Services, caller: Caller, account_id: str, name: str, digest: str, *, api: bool = False
) -> BlobPull | None:
    """A blob of cached repository `name` that it does not hold yet, from the upstream; None when
    no rule covers the repository or it does not exist. The caller has been authorised to pull
    from the repository already."""
    source = await _source(svc, account_id, caller.region, name)
    if source is None:
        return None
    async with svc.db.read() as conn:
        repo = await repositories.find(conn, account_id, caller.region, name)
    if repo is None:
        return None
    await _authorize_import(svc, caller, account_id, name, repo)
    try:
        return await _blob(svc, source, repo, digest)
    except UpstreamError as exc:
        if exc.reason == "not_found" and not api:
            return None
        raise layer_failure(name, digest, account_id, exc.detail) from exc
    except (SecretNotFoundException, UnableToAccessSecretException, UnableToDecryptSecretValueException) as exc:
        raise layer_failure(name, digest, account_id, exc.message) from exc


async def ensure_blob(svc: Services, caller: Caller, account_id: str, repo: Repository, digest: str) -> int | None:
    """GetDownloadUrlForLayer's miss: the whole blob fetched, stored and linked; its size, or
    None when no rule covers the repository."""
    pulled = await pull_blob(svc, caller, account_id, repo.name, digest, api=True)
    if pulled is None:
        return None
    await finish(pulled, repo.name, digest, account_id)
    return await _linked_size(svc, repo, digest)


async def finish(pulled: BlobPull, name: str, digest: str, account_id: str) -> None:
    """Read a blob pull to its end, so that the blob is stored, verified and linked."""
    try:
        async for _ in pulled.chunks:
            pass
    except UpstreamError as exc:
        raise layer_failure(name, digest, account_id, exc.detail) from exc


async def pending_reference(svc: Services, repo: Repository, digest: str) -> bool:
    """Whether a manifest of `repo` (a fetched one not stored yet included) names blob `digest`."""
    async with svc.db.read() as conn:
        return await _named_in(conn, repo, digest)


async def _blob(svc: Services, source: _Source, repo: Repository, digest: str) -> BlobPull:
    """Lead the upstream fetch of `digest`, or follow the one under way, or serve what is stored."""
    while True:
        upload_id = str(uuid.uuid4())
        outcome = await _take_lease(svc, repo, digest, upload_id)
        if outcome is None:
            return await _lead(svc, source, repo, digest, upload_id)
        if isinstance(outcome, int):
            await store_ready(svc, repo)
            return BlobPull(outcome, _stored(svc, digest, outcome))
        followed = await _follow(svc, repo, digest, outcome)
        if followed is not None:
            return followed


async def _take_lease(
    svc: Services, repo: Repository, digest: str, upload_id: str
) -> tuple[str, int | None] | int | None:
    """In one write transaction: the blob's size when it is stored already and a manifest of
    `repo` names it (then it is linked into `repo`: a fetch that just ended, or the layer of
    another cached image); else the fetch under way as (upload id, size); else None, and this
    request now leads the fetch, as `upload_id`."""
    async with svc.db.write() as conn:
        size = (await conn.execute(select(schema.blobs.c.size).where(schema.blobs.c.digest == digest))).scalar()
        if size is not None and await svc.blobs.size(digest) == size and await _named_in(conn, repo, digest):
            await link(conn, repo.id, digest, size)
            return int(size)
        row = (
            await conn.execute(
                select(fetches.c.upload_id, fetches.c.size, fetches.c.expires_at).where(fetches.c.digest == digest)
            )
        ).first()
        if row is not None and row.expires_at > now():
            return row.upload_id, row.size
        await conn.execute(delete(fetches).where(fetches.c.digest == digest))
        described = await _described_size(conn, repo, digest)
        await conn.execute(
            insert(fetches).values(digest=digest, upload_id=upload_id, size=described, expires_at=now() + LEASE_SECONDS)
        )
        await svc.blobs.start_upload(upload_id)
    return None


async def _named_in(conn: Any, repo: Repository, digest: str) -> bool:
    """Whether a manifest of `repo` (stored, or fetched and not stored yet) names blob `digest`:
    only then may bytes stored for another repository serve it (a digest is no permission)."""
    refs = schema.image_references
    stored = await conn.execute(
        select(refs.c.image_id)
        .join(schema.images, schema.images.c.id == refs.c.image_id)
        .where(schema.images.c.repository_id == repo.id, refs.c.digest == digest)
        .limit(1)
    )
    return stored.first() is not None or await _described_size(conn, repo, digest) is not None


async def _described_size(conn: Any, repo: Repository, digest: str) -> int | None:
    """The size a fetched manifest of `repo`, not stored yet, gives blob `digest`: what a
    response can announce before the upstream answers."""
    rows = await conn.execute(
        select(pending.c.manifest, pending.c.media_type).where(pending.c.repository_id == repo.id)
    )
    for row in rows:
        manifest = images.parse(row.manifest, row.media_type)
        for descriptor in (*([manifest.config] if manifest.config else []), *manifest.layers):
            if descriptor.digest == digest:
                return descriptor.size
    return None


async def _end_lease(svc: Services, digest: str, upload_id: str) -> None:
    async with svc.db.write() as conn:
        await conn.execute(delete(fetches).where(fetches.c.digest == digest, fetches.c.upload_id == upload_id))


class _Fetch:
    """The leader's fetch, run as a task of its own: a client that goes away does not stop it."""

    def __init__(self, svc: Services, source: _Source, repo: Repository, digest: str, upload_id: str) -> None:
        self.svc, self.source, self.repo, self.digest, self.upload_id = svc, source, repo, digest, upload_id
        self.queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(QUEUE_CHUNKS)
        self.attached = True
        self.started: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self.renewed = time.monotonic()

    async def run(self) -> None:
        try:
            client = await self.source.client(self.svc)
            try:
                async with client.blob(self.source.repository, self.digest) as blob:
                    self.started.set_result(blob.size)
                    await self._store(blob.chunks)
            finally:
                await client.aclose()
        except BaseException as exc:
            await self.svc.blobs.cancel_upload(self.upload_id)
            await _end_lease(self.svc, self.digest, self.upload_id)
            if not self.started.done():
                self.started.set_exception(exc)
            else:
                await self._send(exc)
            if not isinstance(exc, Exception):
                raise
            return
        await self._send(None)

    async def _store(self, chunks: AsyncIterator[bytes]) -> None:
        appended = await self.svc.blobs.append(self.upload_id, 0, None, self._tee(chunks))
        try:
            await self.svc.blobs.verify_upload(self.upload_id, appended.size, appended.writer, self.digest)
        except DigestMismatch as exc:
            raise UpstreamError("invalid", f"the upstream's bytes for {self.digest} have digest {exc}") from exc
        await self.svc.blobs.place_upload(self.upload_id, appended.size, appended.writer, self.digest)
        async with self.svc.db.write() as conn:
            # As a push's upload: the bytes are in place, and stay with the row and link committed beside them.
            if await self.svc.blobs.size(self.digest) != appended.size:
                raise UpstreamError("unavailable", f"the stored copy of {self.digest} went missing")
            await link(conn, self.repo.id, self.digest, appended.size)
            await conn.execute(
                delete(fetches).where(fetches.c.digest == self.digest, fetches.c.upload_id == self.upload_id)
            )
        await self.svc.blobs.cancel_upload(self.upload_id)
        await _store_ready_quietly(self.svc, self.repo)

    async def _tee(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield chunk
            await self._send(chunk)
            if time.monotonic() - self.renewed > RENEW_EVERY:
                await self._renew()

    async def _renew(self) -> None:
        self.renewed = time.monotonic()
        async with self.svc.db.write() as conn:
            await conn.execute(
                update(fetches)
                .where(fetches.c.digest == self.digest, fetches.c.upload_id == self.upload_id)
                .values(expires_at=now() + LEASE_SECONDS)
            )

    async def _send(self, item: bytes | BaseException | None) -> None:
        if self.attached:
            await self.queue.put(item)

    def detach(self) -> None:
        self.attached = False
        while not self.queue.empty():
            self.queue.get_nowait()

    async def stream(self) -> AsyncIterator[bytes]:
        """The bytes as they come, all but the last chunk at once: that one goes only once the
        digest checked out, so a client of bytes that fail never receives a whole response."""
        held = b""
        try:
            while True:
                item = await self.queue.get()
                if item is None:
                    if held:
                        yield held
                    return
                if isinstance(item, BaseException):
                    raise item
                if held:
                    yield held
                held = item
        finally:
            self.detach()


async def _lead(svc: Services, source: _Source, repo: Repository, digest: str, upload_id: str) -> BlobPull:
    fetch = _Fetch(svc, source, repo, digest, upload_id)
    task = asyncio.get_running_loop().create_task(fetch.run())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    size = await fetch.started  # the upstream's failure to answer at all raises here
    return BlobPull(await _known_size(svc, repo, digest, size), fetch.stream())


async def _known_size(svc: Services, repo: Repository, digest: str, size: int | None) -> int | None:
    """`size` (what the upstream or the fetch's lease said), else what a fetched manifest of
    `repo` gives: an upstream that streams without Content-Length still lets responses carry one."""
    if size is not None:
        return size
    async with svc.db.read() as conn:
        return await _described_size(conn, repo, digest)


async def byte_range(chunks: AsyncIterator[bytes], first: int, end: int) -> AsyncIterator[bytes]:
    """Bytes first..end (exclusive) of a blob's bytes as they arrive: each as soon as it is there.
    The rest of the blob is not waited for (the fetch goes on without this client)."""
    offset = 0
    async with aclosing(chunks):
        async for chunk in chunks:
            start, offset = offset, offset + len(chunk)
            if offset > first:
                yield chunk[max(first - start, 0) : end - start]
            if offset >= end:
                return


async def _stored(svc: Services, digest: str, size: int) -> AsyncIterator[bytes]:
    async for chunk in svc.blobs.read(digest, 0, size):
        yield chunk


def _upload_file(svc: Services, upload_id: str) -> Path | None:
    """The leader's upload on a filesystem store (<root>/uploads/<id>), which followers tail."""
    sample = svc.blobs.local_path("sha256:" + "0" * 64)
    return None if sample is None else sample.parents[3] / "uploads" / upload_id


async def _lease_of(svc: Services, digest: str) -> tuple[str, int | None] | None:
    async with svc.db.read() as conn:
        row = (
            await conn.execute(
                select(fetches.c.upload_id, fetches.c.size).where(
                    fetches.c.digest == digest, fetches.c.expires_at > now()
                )
            )
        ).first()
    return None if row is None else (row.upload_id, row.size)


async def _follow(svc: Services, repo: Repository, digest: str, holder: tuple[str, int | None]) -> BlobPull | None:
    """Share the fetch under way: tail its upload on a filesystem store, else wait for its end.
    None when the fetch ended without placing the blob (the caller may lead a new one)."""
    upload_id, size = holder
    path = _upload_file(svc, upload_id)
    handle = None
    if path is not None:
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the generator, across awaits
        except FileNotFoundError:
            handle = None
    if handle is None:
        while await _lease_of(svc, digest) is not None:
            await asyncio.sleep(LEASE_POLL)
        return await _placed(svc, repo, digest)
    size = await _known_size(svc, repo, digest, size)
    return BlobPull(size, _tail(svc, repo, digest, upload_id, handle, size))


async def _placed(svc: Services, repo: Repository, digest: str) -> BlobPull | None:
    """The blob another fetch placed, linked into `repo` too; None if it was not placed."""
    stored = await svc.blobs.size(digest)
    if stored is None:
        return None
    async with svc.db.write() as conn:
        known = (await conn.execute(select(schema.blobs.c.size).where(schema.blobs.c.digest == digest))).scalar()
        if known is None or known != stored:
            return None
        await link(conn, repo.id, digest, stored)
    await _store_ready_quietly(svc, repo)
    return BlobPull(stored, _stored(svc, digest, stored))


async def _tail(
    svc: Services, repo: Repository, digest: str, upload_id: str, handle: Any, size: int | None
) -> AsyncIterator[bytes]:
    """The leader's upload as it grows. Once its lease ends the blob must be in place, with as
    many bytes as were sent: the file read is the placed blob's own (a hard link of it)."""
    sent = 0
    last_check = 0.0
    ended = False
    # As for the leader's client, the last bytes wait for the end: a failed fetch never looks whole.
    held = b""
    try:
        while True:
            data = await asyncio.to_thread(handle.read, 1024 * 1024)
            if data:
                sent += len(data)
                if held:
                    yield held
                held = data
                continue
            if ended:
                break
            # Once every byte the leader announced is here, its end is close: look for it often.
            poll = FOLLOW_POLL if size is not None and sent >= size else LEASE_POLL
            if time.monotonic() - last_check < poll:
                await asyncio.sleep(FOLLOW_POLL)
                continue
            last_check = time.monotonic()
            lease = await _lease_of(svc, digest)
            # Ended: what the file grew to before that is read to its end, then checked.
            ended = lease is None or lease[0] != upload_id
        placed = await _placed(svc, repo, digest)
        if placed is None or placed.size != sent:
            raise UpstreamError("invalid", f"the shared fetch of {digest} failed")
        if held:
            yield held
    finally:
        handle.close()
