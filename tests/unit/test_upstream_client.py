"""The pull through cache's upstream client against scripted registries (httpx.MockTransport):
the Bearer token realm dance registries like Docker Hub, GHCR and Quay use, Basic, rate limits,
redirects to blob storage, and manifests that are not what their digest says."""

from __future__ import annotations

import base64
import hashlib
import json

import httpx
import pytest

from dockyard.core.registry.manifests import OCI_MANIFEST
from dockyard.core.registry.upstream_client import UpstreamClient, UpstreamError

BASE = "https://registry.example"
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "a" * 64, "size": 2},
        "layers": [],
    }
).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


def _manifest_response() -> httpx.Response:
    return httpx.Response(
        200, content=MANIFEST, headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": DIGEST}
    )


async def test_a_bearer_realm_gives_a_token_for_the_repository_with_the_secret_credentials() -> None:
    seen: list[httpx.Request] = []

    def registry(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "auth.example":
            expected = "Basic " + base64.b64encode(b"user:token").decode()
            assert request.headers["authorization"] == expected
            assert request.url.params["scope"] == "repository:library/alpine:pull"
            assert request.url.params["service"] == "registry.example"
            return httpx.Response(200, json={"token": "t0k3n", "expires_in": 300})
        if request.headers.get("authorization") != "Bearer t0k3n":
            challenge = 'Bearer realm="https://auth.example/token",service="registry.example"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return _manifest_response()

    client = UpstreamClient(BASE, ("user", "token"), transport=httpx.MockTransport(registry))
    fetched = await client.manifest("library/alpine", "latest")
    assert (fetched.digest, fetched.media_type, fetched.data) == (DIGEST, OCI_MANIFEST, MANIFEST)
    await client.manifest("library/alpine", "latest")  # the token is kept: no second dance
    assert sum(1 for r in seen if r.url.host == "auth.example") == 1
    await client.aclose()


async def test_basic_is_answered_with_the_credentials_and_refused_without() -> None:
    def registry(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != "Basic " + base64.b64encode(b"user:token").decode():
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="upstream"'})
        return _manifest_response()

    client = UpstreamClient(BASE, ("user", "token"), transport=httpx.MockTransport(registry))
    assert (await client.manifest("app", DIGEST)).digest == DIGEST
    anonymous = UpstreamClient(BASE, None, transport=httpx.MockTransport(registry))
    with pytest.raises(UpstreamError) as refused:
        await anonymous.manifest("app", "latest")
    assert refused.value.reason == "unauthorized"


async def test_a_rate_limit_is_waited_out_and_blobs_follow_redirects() -> None:
    calls = {"manifest": 0}

    def registry(request: httpx.Request) -> httpx.Response:
        if "/manifests/" in request.url.path:
            calls["manifest"] += 1
            if calls["manifest"] == 1:
                return httpx.Response(429, headers={"Retry-After": "0"})
            return _manifest_response()
        if request.url.host == "storage.example":
            assert "authorization" not in request.headers
            return httpx.Response(200, content=b"blob bytes")
        return httpx.Response(307, headers={"Location": "https://storage.example/blob?sig=1"})

    client = UpstreamClient(BASE, None, transport=httpx.MockTransport(registry))
    assert (await client.manifest("app", "latest")).digest == DIGEST
    assert calls["manifest"] == 2
    async with client.blob("app", "sha256:" + "b" * 64) as blob:
        assert b"".join([chunk async for chunk in blob.chunks]) == b"blob bytes"


async def test_a_manifest_that_is_not_what_its_digest_says_is_refused() -> None:
    def registry(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=MANIFEST + b" ", headers={"Content-Type": OCI_MANIFEST})

    client = UpstreamClient(BASE, None, transport=httpx.MockTransport(registry))
    with pytest.raises(UpstreamError) as refused:
        await client.manifest("app", DIGEST)
    assert refused.value.reason == "invalid"

    def lying(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=MANIFEST, headers={"Docker-Content-Digest": "sha256:" + "c" * 64})

    client = UpstreamClient(BASE, None, transport=httpx.MockTransport(lying))
    with pytest.raises(UpstreamError):
        await client.manifest("app", "latest")


async def test_missing_and_failing_upstreams_say_which() -> None:
    def registry(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404 if "missing" in request.url.path else 503)

    client = UpstreamClient(BASE, None, transport=httpx.MockTransport(registry))
    with pytest.raises(UpstreamError) as missing:
        await client.manifest("missing", "latest")
    assert missing.value.reason == "not_found"
    with pytest.raises(UpstreamError) as failing:
        await client.manifest("app", "latest")
    assert failing.value.reason == "unavailable"


async def test_a_registry_reached_at_another_address_is_named_in_host_and_signed_in_at_once() -> None:
    seen: list[httpx.Request] = []

    def site(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert request.headers["host"] == "123456789012.dkr.ecr.us-west-2.amazonaws.com"
        assert request.headers["authorization"] == "Basic " + base64.b64encode(b"AWS:pw").decode()
        return _manifest_response()

    client = UpstreamClient(
        "http://127.0.0.1:9",
        ("AWS", "pw"),
        host="123456789012.dkr.ecr.us-west-2.amazonaws.com",
        basic=True,
        transport=httpx.MockTransport(site),
    )
    await client.manifest("team/app", "v1")
    assert len(seen) == 1  # no anonymous request first
    await client.aclose()
