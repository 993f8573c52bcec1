"""Replication to another Dockyard site: a region another deployment serves
(--replication-site REGION=URL). The copy goes over the network as any client's push would:
an ECR GetAuthorizationToken signed with SigV4 (botocore) under the site's credentials, then the
OCI distribution API with HTTP Basic on its registry door. Each blob is first asked for with a
HEAD and skipped when the site has it, so a job retried after a failure resumes where it
stopped (at the first blob not yet stored) and a site that already holds shared layers receives
none of them again. A blob streams from the blob store to the site in chunks, never whole in
memory. Requests address the destination registry by its ECR host name, so the Host header
names its account and region whatever URL the site is reached at."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from dockyard.core.registry import blobs
from dockyard.core.remote_sites import (
    Site,
    SiteCredentialsMissing,
    basic_authorization,
    configured_site,
    ecr_call,
    registry_host,
    token_password,
)
from dockyard.core.replication.local import ReplicationRefused
from dockyard.core.replication.source import CarriedImage
from dockyard.core.services import Services

# httpx and botocore's signer (several MiB) are imported with the first copy to another site, not
# by a process that only ever replicates within this deployment (issue 19: memory at rest).
if TYPE_CHECKING:
    import httpx

SITE_UNAVAILABLE = "SiteUnavailable"
# Seconds: for a whole request, and for connecting.
TIMEOUT, CONNECT_TIMEOUT = 60.0, 10.0


class SiteUnavailable(Exception):
    """The site did not answer, or answered with a fault of its own: worth trying again later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.code = SITE_UNAVAILABLE
        self.reason = reason


def site_for(svc: Services, region: str) -> Site | None:
    """The site serving `region`, if the operator named one; ReplicationRefused without credentials."""
    try:
        return configured_site(svc.settings, region)
    except SiteCredentialsMissing as exc:
        raise ReplicationRefused("AccessDenied", str(exc)) from exc


def _check(response: httpx.Response, what: str) -> None:
    """SiteUnavailable on a fault of the site's, ReplicationRefused on a refusal."""
    if response.status_code >= 500 or response.status_code == 429:
        raise SiteUnavailable(f"{what}: HTTP {response.status_code}")
    if response.status_code >= 400:
        code = "AccessDenied" if response.status_code in (401, 403) else "SiteRefused"
        raise ReplicationRefused(code, f"{what}: HTTP {response.status_code} {response.text[:500]}")


async def _password(client: httpx.AsyncClient, site: Site) -> str:
    response = await ecr_call(client, site, "GetAuthorizationToken", {})
    _check(response, "GetAuthorizationToken")
    return token_password(response)[0]


async def _ensure_repository(client: httpx.AsyncClient, site: Site, registry: str, name: str) -> None:
    response = await ecr_call(client, site, "CreateRepository", {"registryId": registry, "repositoryName": name})
    if response.status_code == 400 and "RepositoryAlreadyExistsException" in response.text:
        return
    _check(response, f"CreateRepository {name}")


async def _stream(svc: Services, digest: str, size: int) -> AsyncIterator[bytes]:
    async for chunk in await blobs.open_stream(svc, digest, size):
        yield chunk


async def _push_blob(
    client: httpx.AsyncClient, svc: Services, base: str, headers: dict[str, str], digest: str, size: int
) -> None:
    import httpx

    held = await client.head(f"{base}/blobs/{digest}", headers=headers)
    if held.status_code == 200:
        return
    started = await client.post(f"{base}/blobs/uploads/", headers=headers)
    _check(started, f"upload of {digest}")
    location = started.headers["Location"]
    if location.startswith("/"):
        location = str(httpx.URL(base).join(location))
    put = await client.put(
        location,
        params={"digest": digest},
        content=_stream(svc, digest, size),
        headers=headers | {"Content-Length": str(size), "Content-Type": "application/octet-stream"},
    )
    _check(put, f"upload of {digest}")


async def replicate(svc: Services, site: Site, registry: str, repository: str, carried: list[CarriedImage]) -> None:
    """Push `carried` into `repository` of registry `registry` at `site`."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT)) as client:
            password = await _password(client, site)
            await _ensure_repository(client, site, registry, repository)
            headers = {"Authorization": basic_authorization(password), "Host": registry_host(registry, site.region)}
            base = f"{site.url}/v2/{repository}"
            for image in carried:
                for digest, size in image.blobs.items():
                    await _push_blob(client, svc, base, headers, digest, size)
                for reference in (image.digest, *image.tags):
                    response = await client.put(
                        f"{base}/manifests/{reference}",
                        content=image.manifest,
                        headers=headers | {"Content-Type": image.media_type},
                    )
                    _check(response, f"manifest {reference}")
    except httpx.TransportError as exc:
        raise SiteUnavailable(f"{site.url}: {type(exc).__name__}: {exc}") from exc
