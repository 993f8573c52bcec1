"""A client of upstream registries (OCI Distribution API) for the pull through cache.

It speaks the token flows real registries use: anonymous and authenticated Bearer token realms
(Docker Hub, GHCR, Quay: a 401 names the realm, the token comes from there), and HTTP Basic. It
follows redirects to blob storage (dropping credentials on the way, as httpx does across hosts),
waits out one rate-limit answer (429 with Retry-After, bounded), and checks every manifest it
returns against its digest. Blob bytes are handed over as they arrive; their digest is checked
by whoever stores them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from dockyard.core.registry.manifests import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])
# Manifests are small (ECR's limit is 4 MiB); more from an upstream is refused, never held.
MAX_MANIFEST = 4 * 1024 * 1024
# The longest a rate-limited request waits before its one retry.
MAX_RETRY_AFTER = 5.0
# Seconds: for a whole request, and for connecting.
TIMEOUT, CONNECT_TIMEOUT = 30.0, 10.0
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
Reason = Literal["not_found", "unauthorized", "unavailable", "invalid"]

# httpx (and what its package loads) costs every process MiBs at rest (issue 19): it is imported
# with the first upstream request, by the functions that make one.
if TYPE_CHECKING:
    import httpx


class UpstreamError(Exception):
    """The upstream could not give what was asked: `reason` says why, in the terms the cache's
    answer depends on (missing, refused credentials, unreachable or failing, wrong bytes)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class UpstreamManifest:
    data: bytes
    media_type: str
    digest: str


@dataclass(frozen=True)
class UpstreamBlob:
    """A blob response whose bytes have not been read yet: `size` when the upstream said it."""

    size: int | None
    chunks: AsyncIterator[bytes]


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class UpstreamClient:
    """One upstream registry at `base` (scheme, host and port), with the credentials (username,
    secret) a rule's secret holds. `host` names the registry in the Host header when it is
    reached at another address (another Dockyard site, by its ECR host name); `basic` sends the
    credentials with every request instead of waiting for a challenge (a registry known to take
    Basic)."""

    def __init__(
        self,
        base: str,
        credentials: tuple[str, str] | None = None,
        *,
        host: str | None = None,
        basic: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base = base.rstrip("/")
        self.credentials = credentials
        self.host_header = {"Host": host} if host else {}
        self._own = transport is not None
        self.http = _new_http(transport) if self._own else _shared_http()
        # Bearer tokens by scope, with when they stop being good.
        self._tokens: dict[str, tuple[str, float]] = {}
        if basic and credentials is not None:
            self._tokens["basic"] = ("", float("inf"))

    async def aclose(self) -> None:
        if self._own:
            await self.http.aclose()

    async def manifest(self, repository: str, reference: str) -> UpstreamManifest:
        """The manifest `reference` (tag or digest) names, its bytes checked against the digest
        asked for and against the one the upstream claims."""
        url = f"{self.base}/v2/{repository}/manifests/{reference}"
        response = await self._send("GET", url, repository, {"Accept": MANIFEST_ACCEPT}, stream=True)
        try:
            _raise_for(response, "manifest", f"{repository}:{reference}")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data.extend(chunk)
                if len(data) > MAX_MANIFEST:
                    raise UpstreamError("invalid", f"the upstream's manifest {reference} exceeds {MAX_MANIFEST} bytes")
        finally:
            await response.aclose()
        body = bytes(data)
        algorithm = reference.partition(":")[0] if ":" in reference else "sha256"
        digest = _checked_digest(body, algorithm)
        claimed = response.headers.get("docker-content-digest")
        if ":" in reference and digest != reference:
            raise UpstreamError("invalid", f"the upstream's manifest for {reference} has digest {digest}")
        if claimed and claimed.partition(":")[0] == algorithm and claimed != digest:
            raise UpstreamError("invalid", f"the upstream's manifest claims digest {claimed} but has digest {digest}")
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return UpstreamManifest(body, media_type, digest)

    @asynccontextmanager
    async def blob(self, repository: str, digest: str) -> AsyncIterator[UpstreamBlob]:
        """The blob's bytes as they come; the response is closed when the block ends."""
        url = f"{self.base}/v2/{repository}/blobs/{digest}"
        response = await self._send("GET", url, repository, {}, stream=True)
        try:
            _raise_for(response, "blob", digest)
            length = response.headers.get("content-length")
            size = int(length) if length and length.isdigit() else None
            yield UpstreamBlob(size, _chunks(response))
        finally:
            await response.aclose()

    async def _send(
        self, method: str, url: str, repository: str, headers: dict[str, str], *, stream: bool
    ) -> httpx.Response:
        """The response to a request, authenticated as the upstream's challenge asks; one 429 is
        waited out (at most MAX_RETRY_AFTER seconds) and retried."""
        import httpx

        scope = f"repository:{repository}:pull"
        for attempt in range(3):
            auth = self._authorization(scope)
            request = self.http.build_request(method, url, headers=headers | auth | self.host_header)
            try:
                response = await self.http.send(request, stream=stream)
            except httpx.HTTPError as exc:
                raise UpstreamError("unavailable", f"the upstream registry cannot be reached: {exc!r}") from exc
            if response.status_code == 401 and attempt == 0:
                challenge = response.headers.get("www-authenticate", "")
                await response.aclose()
                await self._answer(challenge, scope)
                continue
            if response.status_code == 429 and attempt < 2:
                await response.aclose()
                await asyncio.sleep(_retry_after(response.headers.get("retry-after")))
                continue
            return response
        return response

    def _authorization(self, scope: str) -> dict[str, str]:
        token = self._tokens.get(scope)
        if token is not None and token[1] > time.monotonic():
            return {"Authorization": f"Bearer {token[0]}"}
        if "basic" in self._tokens and self.credentials is not None:
            return {"Authorization": _basic(*self.credentials)}
        return {}

    async def _answer(self, challenge: str, scope: str) -> None:
        """Get what the challenge asks for: a token from a Bearer realm, or Basic credentials."""
        kind = challenge.split(" ", 1)[0].lower()
        if kind == "basic":
            if self.credentials is None:
                raise UpstreamError("unauthorized", "the upstream registry asks for credentials and the rule has none")
            self._tokens["basic"] = ("", float("inf"))
            return
        if kind != "bearer":
            raise UpstreamError("unauthorized", f"the upstream registry answers 401 with challenge {challenge!r}")
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.pop("realm", None)
        if not realm:
            raise UpstreamError("unauthorized", "the upstream registry's Bearer challenge names no realm")
        query = {"service": params["service"]} if "service" in params else {}
        query["scope"] = params.get("scope", scope)
        import httpx

        auth = httpx.BasicAuth(*self.credentials) if self.credentials else None
        try:
            response = await self.http.get(realm, params=query, auth=auth)
        except httpx.HTTPError as exc:
            raise UpstreamError("unavailable", f"the upstream's token service cannot be reached: {exc!r}") from exc
        if response.status_code in (401, 403):
            raise UpstreamError("unauthorized", "the upstream registry refused the credentials")
        if response.status_code != 200:
            raise UpstreamError("unavailable", f"the upstream's token service answered {response.status_code}")
        try:
            body = response.json()
            token = body.get("token") or body["access_token"]
            lifetime = float(body.get("expires_in", 60))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UpstreamError("unavailable", "the upstream's token service answered no token") from exc
        # Renewed a little early, so a token never expires on its way.
        self._tokens[scope] = (str(token), time.monotonic() + max(lifetime - 10, 1))


# One connection pool per event loop (a worker process has one): making a client costs
# milliseconds of CPU (its TLS context), and upstream connections are worth keeping.
_pools: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def _shared_http() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _pools.get(loop)
    if client is None or client.is_closed:
        for stale in [other for other in _pools if other.is_closed()]:
            del _pools[stale]
        client = _pools[loop] = _new_http()
    return client


def _new_http(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    import httpx

    timeout = httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT)
    return httpx.AsyncClient(timeout=timeout, follow_redirects=True, transport=transport)


async def _chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    import httpx

    try:
        async for chunk in response.aiter_bytes():
            if chunk:
                yield chunk
    except httpx.HTTPError as exc:
        raise UpstreamError("unavailable", f"the upstream broke off the transfer: {exc!r}") from exc


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _checked_digest(body: bytes, algorithm: str) -> str:
    try:
        return digest_of(body, algorithm)
    except ValueError as exc:
        raise UpstreamError("invalid", f"unsupported digest algorithm {algorithm!r}") from exc


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value or 1), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return 1.0


def _raise_for(response: httpx.Response, what: str, name: str) -> None:
    status = response.status_code
    if status == 200:
        return
    if status == 404:
        raise UpstreamError("not_found", f"the upstream registry has no {what} {name}")
    if status in (401, 403):
        raise UpstreamError("unauthorized", f"the upstream registry refused access to {what} {name} ({status})")
    raise UpstreamError("unavailable", f"the upstream registry answered {status} for {what} {name}")
