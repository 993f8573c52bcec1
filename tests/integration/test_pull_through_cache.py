"""Pull through cache, the data path: real clients pull `<prefix>/<repository>` from Dockyard, which
fetches from an upstream registry started here (Debian's docker-registry, behind a proxy that
counts what is asked of it and can be told to lie), stores what it fetched and serves it after.

Rules are rows written into the server's database: this is the data path's test, not the API's."""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
from sqlalchemy import insert

from bench.targets import REFERENCE_BINARY, REFERENCE_CONFIG
from dockyard.config import Settings
from dockyard.core.identity.caller import root_caller
from dockyard.core.registry import images, pull_through
from dockyard.core.services import Services
from dockyard.store import schema
from dockyard.store.database import upgrade_async
from tests.support.clients import Boto3Clients, Podman, Skopeo
from tests.support.docker_engine import DockerEngine
from tests.support.images import BuiltImage, build_image, build_index
from tests.support.registry_http import RegistryHttp, registry_password
from tests.support.server import HOST, DockyardServer, ServerFactory, free_port

POLL_LIMIT = 120.0
HOP_BY_HOP = {"connection", "transfer-encoding", "keep-alive", "content-length"}


def _wait_for(condition: Any, what: str, limit: float = POLL_LIMIT) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Upstream:
    """docker-registry on one port, and a proxy in front of it on another: it records every
    request (method, path), serves `lies[path]` instead of what the registry has, and answers
    502 while the registry is stopped."""

    def __init__(self, work: Path, credentials: tuple[str, str] | None = None) -> None:
        self.work = work
        # With credentials the registry asks for them (htpasswd: HTTP Basic).
        self.credentials = credentials
        self.registry_port = free_port()
        self.requests: list[tuple[str, str]] = []
        self.lies: dict[str, bytes] = {}
        # Paths whose bodies stop after so many bytes until the event is set: a fetch under way.
        self.gates: dict[str, tuple[int, threading.Event]] = {}
        self.process: subprocess.Popen[bytes] | None = None
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                return

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                upstream.forward(self)

            def do_HEAD(self) -> None:  # noqa: N802 - the stdlib's name
                upstream.forward(self)

        self.proxy = ThreadingHTTPServer((HOST, 0), Handler)
        self.thread = threading.Thread(target=self.proxy.serve_forever, daemon=True)
        self.thread.start()
        self.start()

    @property
    def registry(self) -> str:
        return f"{HOST}:{self.registry_port}"

    @property
    def address(self) -> str:
        """Where rules point: the proxy, on plain HTTP."""
        return f"http://{HOST}:{self.proxy.server_address[1]}"

    def start(self) -> None:
        binary = shutil.which(REFERENCE_BINARY)
        assert binary, "docker-registry is not installed (scripts/test installs it)"
        root = self.work / "registry"
        root.mkdir(parents=True, exist_ok=True)
        config = self.work / "registry.yml"
        text = REFERENCE_CONFIG.format(root=root, host=HOST, port=self.registry_port)
        if self.credentials is not None:
            user, password = self.credentials
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
            (self.work / "htpasswd").write_text(f"{user}:{hashed}\n")
            text += f"auth:\n  htpasswd:\n    realm: upstream\n    path: {self.work / 'htpasswd'}\n"
        config.write_text(text)
        with (self.work / "registry.log").open("ab") as log:
            self.process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
        _wait_for(self._up, "the upstream registry to listen", 30)

    def _up(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.registry}/v2/", timeout=2) as response:
                return response.status == 200
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # up, and asking for credentials
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def close(self) -> None:
        self.stop()
        self.proxy.shutdown()
        self.proxy.server_close()

    def blob_fetches(self) -> Counter[str]:
        return Counter(path for method, path in self.requests if method == "GET" and "/blobs/" in path)

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        self.requests.append((handler.command, handler.path))
        if handler.path in self.lies:
            body = self.lies[handler.path]
            handler.send_response(200)
            handler.send_header("Content-Type", "application/octet-stream")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if handler.command == "GET":
                handler.wfile.write(body)
            return
        connection = http.client.HTTPConnection(HOST, self.registry_port, timeout=30)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
            connection.request(handler.command, handler.path, headers=headers)
            response = connection.getresponse()
            body = response.read()
        except OSError:
            handler.send_response(502)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        finally:
            connection.close()
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP:
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "GET":
            return
        held, gate = self.gates.get(handler.path, (len(body), None))
        handler.wfile.write(body[:held])
        handler.wfile.flush()
        if gate is not None:
            gate.wait(POLL_LIMIT)
        handler.wfile.write(body[held:])

    def push(self, skopeo: Skopeo, image: BuiltImage, name: str) -> None:
        creds = ["--dest-creds", ":".join(self.credentials)] if self.credentials else []
        skopeo.copy(image, f"docker://{self.registry}/{name}", *creds)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    running = Upstream(tmp_path_factory.mktemp("upstream"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def cache(
    tmp_path_factory: pytest.TempPathFactory, containers_config: Any, skopeo: Skopeo, podman: Podman
) -> Iterator[DockyardServer]:
    factory = ServerFactory(tmp_path_factory.mktemp("cache"), on_started=[containers_config.trust_server])
    # The upstreams these tests start listen on loopback: the operator lets rules name it.
    server = factory(args=["--workers", "2", "--pull-through-upstream", HOST])
    password = registry_password(server)
    skopeo.login(server.registry, password)
    podman.login(server.registry, password)
    yield server
    factory.close()


def add_rule(server: DockyardServer, prefix: str, upstream_url: str) -> None:
    """A rule for a registry that needs no secret, pointed at a local one (plain HTTP)."""
    ecr = Boto3Clients(server)("ecr")
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix=prefix, upstreamRegistryUrl=upstream_url, upstreamRegistry="quay"
    )


@pytest.fixture(scope="module")
def rules(cache: DockyardServer, upstream: Upstream) -> DockyardServer:
    add_rule(cache, "hub", upstream.address)
    add_rule(cache, "nowhere", f"http://{HOST}:{free_port()}")
    return cache


def stored_image(boto3: Boto3Clients, repository: str, tag: str) -> dict[str, Any] | None:
    ecr = boto3("ecr")
    try:
        details = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    except (ecr.exceptions.ImageNotFoundException, ecr.exceptions.RepositoryNotFoundException):
        return None
    return details[0] if details else None


def stored_blob(server: DockyardServer, digest: str) -> Path:
    algorithm, hexpart = digest.split(":")
    return server.data_dir / "storage" / "blobs" / algorithm / hexpart[:2] / hexpart


def _blob_rows(server: DockyardServer) -> set[str]:
    with sqlite3.connect(server.data_dir / "metadata.db") as db:
        return {row[0] for row in db.execute("SELECT digest FROM blobs")}


def test_skopeo_and_podman_pull_through_and_the_cache_serves_with_the_upstream_down(
    rules: DockyardServer, upstream: Upstream, skopeo: Skopeo, podman: Podman, tmp_path: Path
) -> None:
    image = build_image(tmp_path / "src", "v1", layers=[300_000, 5000], seed="first")
    upstream.push(skopeo, image, "team/app:v1")
    source = f"docker://{rules.registry}/hub/team/app:v1"

    skopeo.copy(source, f"oci:{tmp_path / 'pulled'}:v1")
    assert skopeo.inspect_raw(source) == image.manifest.data
    podman("pull", f"{rules.registry}/hub/team/app:v1")
    assert podman.inspect(f"{rules.registry}/hub/team/app:v1")["Digest"] == image.digest

    boto3 = Boto3Clients(rules)
    stored = _wait_for(lambda: stored_image(boto3, "hub/team/app", "v1"), "the image to be stored")
    assert stored["imageDigest"] == image.digest
    for blob in image.blobs:
        assert stored_blob(rules, blob.digest).read_bytes() == blob.data

    upstream.stop()
    try:
        asked = len(upstream.requests)
        again = tmp_path / "again"
        skopeo.copy(source, f"oci:{again}:v1")
        skopeo.copy(f"docker://{rules.registry}/hub/team/app@{image.digest}", f"oci:{again}:pinned")
        index = json.loads((again / "index.json").read_text())
        assert {m["digest"] for m in index["manifests"]} == {image.digest}
        assert len(upstream.requests) == asked  # served without asking the upstream
    finally:
        upstream.start()


def test_an_index_pulled_for_one_platform_is_stored_whole_with_its_tag(
    rules: DockyardServer, upstream: Upstream, skopeo: Skopeo, podman: Podman, tmp_path: Path
) -> None:
    index = build_index(tmp_path / "src", "multi", layers=[2000], platforms=["linux/amd64", "linux/arm64"])
    skopeo.copy(index, f"docker://{upstream.registry}/multi:v1", "--all")
    arm = index.for_platform("linux/arm64")
    amd = index.for_platform("linux/amd64")
    podman("pull", "--platform", "linux/arm64", f"{rules.registry}/hub/multi:v1")
    assert podman.inspect(f"{rules.registry}/hub/multi:v1")["Architecture"] == "arm64"
    assert skopeo.inspect_raw(f"docker://{rules.registry}/hub/multi:v1") == index.index.data

    # The platform no client asked for is fetched too, and the index stored with its tag, as ECR
    # lists an image after any pull through its cache.
    boto3 = Boto3Clients(rules)
    _wait_for(lambda: stored_image(boto3, "hub/multi", "v1"), "the index to be stored with its tag")
    described = boto3("ecr").describe_images(repositoryName="hub/multi")["imageDetails"]
    by_digest = {detail["imageDigest"]: detail for detail in described}
    assert set(by_digest) == {index.digest, arm.digest, amd.digest}
    assert by_digest[index.digest]["imageTags"] == ["v1"]
    got = boto3("ecr").batch_get_image(repositoryName="hub/multi", imageIds=[{"imageTag": "v1"}])
    assert got["failures"] == []
    assert got["images"][0]["imageId"] == {"imageTag": "v1", "imageDigest": index.digest}
    assert got["images"][0]["imageManifest"].encode() == index.index.data

    fetched = upstream.blob_fetches()
    for image in (arm, amd):
        for blob in image.blobs:
            assert fetched[f"/v2/multi/blobs/{blob.digest}"] == 1, blob.digest
            assert stored_blob(rules, blob.digest).read_bytes() == blob.data
    assert skopeo.inspect_raw(f"docker://{rules.registry}/hub/multi@{amd.digest}") == amd.manifest.data


def test_a_child_that_failed_is_fetched_again_when_the_index_is_pulled_again(
    rules: DockyardServer, upstream: Upstream, skopeo: Skopeo, podman: Podman, tmp_path: Path
) -> None:
    index = build_index(tmp_path / "src", "again", layers=[3000], platforms=["linux/amd64", "linux/arm64"])
    skopeo.copy(index, f"docker://{upstream.registry}/multi-again:v1", "--all")
    arm, amd = index.for_platform("linux/arm64"), index.for_platform("linux/amd64")
    lied = f"/v2/multi-again/blobs/{amd.layers[0].digest}"
    upstream.lies[lied] = bytes(b ^ 0xFF for b in amd.layers[0].data)
    try:
        podman("pull", "--platform", "linux/arm64", f"{rules.registry}/hub/multi-again:v1")
        boto3 = Boto3Clients(rules)
        _wait_for(lambda: upstream.blob_fetches()[lied], "the amd64 layer to be asked for")
        assert stored_image(boto3, "hub/multi-again", "v1") is None  # a child is missing
    finally:
        del upstream.lies[lied]

    source = f"docker://{rules.registry}/hub/multi-again:v1"

    def pulled_again_and_stored() -> dict[str, Any] | None:
        assert skopeo.inspect_raw(source) == index.index.data
        return stored_image(boto3, "hub/multi-again", "v1")

    stored = _wait_for(pulled_again_and_stored, "the index to be stored once its child could be fetched")
    assert stored["imageDigest"] == index.digest
    assert stored_blob(rules, amd.layers[0].digest).read_bytes() == amd.layers[0].data
    fetched = upstream.blob_fetches()
    for blob in (*arm.blobs, amd.config):
        assert fetched[f"/v2/multi-again/blobs/{blob.digest}"] == 1, blob.digest
    assert fetched[lied] >= 2  # refused once, then fetched again


def test_concurrent_first_pulls_fetch_each_layer_from_the_upstream_once(
    rules: DockyardServer, upstream: Upstream, skopeo: Skopeo, tmp_path: Path
) -> None:
    image = build_image(tmp_path / "src", "v1", layers=[3_000_000, 2_000_000, 1_000_000], seed="crowd")
    upstream.push(skopeo, image, "crowd:v1")
    source = f"docker://{rules.registry}/hub/crowd:v1"
    with ThreadPoolExecutor(6) as pool:
        copies = [pool.submit(skopeo.copy, source, f"oci:{tmp_path / f'pull{n}'}:v1") for n in range(6)]
        for copy in copies:
            copy.result()
    boto3 = Boto3Clients(rules)
    _wait_for(lambda: stored_image(boto3, "hub/crowd", "v1"), "the image to be stored")
    fetched = upstream.blob_fetches()
    for blob in image.blobs:
        assert fetched[f"/v2/crowd/blobs/{blob.digest}"] == 1, blob.digest
    for n in range(6):
        assert (tmp_path / f"pull{n}" / "blobs" / "sha256" / image.layers[0].digest.split(":")[1]).exists()


def test_bytes_that_fail_their_digest_are_refused_and_nothing_is_stored(
    rules: DockyardServer, upstream: Upstream, skopeo: Skopeo, tmp_path: Path
) -> None:
    image = build_image(tmp_path / "src", "v1", layers=[200_000], seed="liar")
    upstream.push(skopeo, image, "liar:v1")
    layer = image.layers[0]
    upstream.lies[f"/v2/liar/blobs/{layer.digest}"] = bytes(b ^ 0xFF for b in layer.data)
    result = skopeo.copy(f"docker://{rules.registry}/hub/liar:v1", f"oci:{tmp_path / 'pulled'}:v1", check=False)
    assert result.returncode != 0

    client = RegistryHttp.for_server(rules)
    # The client's stream is cut off before its last bytes: it never sees a whole response.
    with pytest.raises(requests.exceptions.RequestException):
        client.request("GET", f"/v2/hub/liar/blobs/{layer.digest}")
    assert not stored_blob(rules, layer.digest).exists()
    assert stored_image(Boto3Clients(rules), "hub/liar", "v1") is None
    assert layer.digest not in _blob_rows(rules)

    # A manifest that is not what its digest says is refused too.
    upstream.push(skopeo, image, "liar2:v1")
    upstream.lies[f"/v2/liar2/manifests/{image.digest}"] = image.manifest.data.replace(b"{", b"{ ", 1)
    refused = client.request("GET", f"/v2/hub/liar2/manifests/{image.digest}")
    assert refused.status_code == 404
    assert refused.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_batch_get_image_and_layer_urls_through_the_cache(
    rules: DockyardServer, upstream: Upstream, skopeo: Skopeo, tmp_path: Path
) -> None:
    image = build_image(tmp_path / "src", "v3", layers=[100_000], seed="api")
    upstream.push(skopeo, image, "api/app:v3")
    ecr = Boto3Clients(rules)("ecr")
    got = ecr.batch_get_image(repositoryName="hub/api/app", imageIds=[{"imageTag": "v3"}])
    assert got["failures"] == []
    assert got["images"][0]["imageManifest"].encode() == image.manifest.data
    assert got["images"][0]["imageId"] == {"imageTag": "v3", "imageDigest": image.digest}
    assert ecr.describe_repositories(repositoryNames=["hub/api/app"])["repositories"]

    layer = image.layers[0]
    url = ecr.get_download_url_for_layer(repositoryName="hub/api/app", layerDigest=layer.digest)["downloadUrl"]
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == layer.data

    missing = ecr.batch_get_image(repositoryName="hub/api/app", imageIds=[{"imageTag": "nope"}])
    assert [f["failureCode"] for f in missing["failures"]] == ["ImageNotFound"]


def test_upstream_failures_answer_as_ecr_does(rules: DockyardServer, upstream: Upstream) -> None:
    client = RegistryHttp.for_server(rules)
    missing = client.request("GET", "/v2/hub/not/there/manifests/latest")
    assert missing.status_code == 404

    down = client.request("GET", "/v2/nowhere/app/manifests/latest")
    assert down.status_code == 404
    assert down.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert "upstream" in down.json()["errors"][0]["message"]

    ecr = Boto3Clients(rules)("ecr")
    with pytest.raises(ecr.exceptions.ClientError) as refused:
        ecr.batch_get_image(repositoryName="nowhere/app", imageIds=[{"imageTag": "latest"}])
    assert refused.value.response["Error"]["Code"] == "UnableToGetUpstreamImageException"
    not_covered = client.request("GET", "/v2/elsewhere/app/manifests/latest")
    assert not_covered.json()["errors"][0]["code"] == "NAME_UNKNOWN"


async def test_a_tag_is_checked_again_only_after_a_day(
    upstream: Upstream, skopeo: Skopeo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build_image(tmp_path / "one", "latest", layers=[1000], seed="day one")
    second = build_image(tmp_path / "two", "latest", layers=[1000], seed="day two")
    await asyncio.to_thread(upstream.push, skopeo, first, "daily:latest")
    url = f"sqlite+aiosqlite:///{tmp_path / 'metadata.db'}"
    await upgrade_async(url)
    settings = Settings(data_dir=tmp_path, database_url=url, pull_through_upstreams=[HOST])
    svc = Services.from_settings(settings)
    account, region = "123456789012", "us-east-1"
    moment = time.time()
    today = moment
    monkeypatch.setattr(pull_through, "clock", lambda: today)
    try:
        async with svc.db.write() as conn:
            await conn.execute(
                insert(schema.pull_through_cache_rules).values(
                    account_id=account,
                    region=region,
                    ecr_repository_prefix="hub",
                    upstream_registry_url=upstream.address,
                    upstream_registry="docker-hub",
                    created_at=moment,
                    updated_at=moment,
                )
            )
        caller = root_caller(account, region)

        async def pulled() -> str:
            _, image = await images.get_manifest(svc, caller, account, "hub/daily", "latest", record_pull=False)
            await asyncio.gather(*list(pull_through._tasks))
            return image.digest

        assert await pulled() == first.digest
        await asyncio.to_thread(upstream.push, skopeo, second, "daily:latest")
        asked = len(upstream.requests)
        assert await pulled() == first.digest  # stored, and checked less than a day ago
        assert len(upstream.requests) == asked

        today = moment + pull_through.TAG_RECHECK_SECONDS - 1
        assert await pulled() == first.digest
        today = moment + pull_through.TAG_RECHECK_SECONDS + 1
        assert await pulled() == second.digest
        assert await pulled() == second.digest
        _, image = await images.get_manifest(svc, caller, account, "hub/daily", "latest", record_pull=False)
        assert image.id != 0  # stored as an image once its blobs were in
    finally:
        await svc.close()


def test_an_upstream_that_asks_for_credentials_gets_the_rule_secret(
    rules: DockyardServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    private = Upstream(tmp_path / "private", credentials=("puller", "s3cret-token"))
    try:
        image = build_image(tmp_path / "src", "v1", layers=[50_000], seed="private")
        private.push(skopeo, image, "team/app:v1")
        clients = Boto3Clients(rules)
        secret = clients("secretsmanager").create_secret(
            Name="ecr-pullthroughcache/private",
            SecretString=json.dumps({"username": "puller", "accessToken": "s3cret-token"}),
        )
        clients("ecr").create_pull_through_cache_rule(
            ecrRepositoryPrefix="private",
            upstreamRegistryUrl=private.address,
            upstreamRegistry="docker-hub",
            credentialArn=secret["ARN"],
        )
        source = f"docker://{rules.registry}/private/team/app:v1"
        skopeo.copy(source, f"oci:{tmp_path / 'pulled'}:v1")
        assert skopeo.inspect_raw(source) == image.manifest.data
        assert _wait_for(lambda: stored_image(clients, "private/team/app", "v1"), "the image to be stored")
    finally:
        private.close()


def test_ranges_of_a_blob_still_being_fetched_are_answered(
    rules: DockyardServer, upstream: Upstream, skopeo: Skopeo, tmp_path: Path
) -> None:
    image = build_image(tmp_path / "src", "v1", layers=[2_000_000], seed="ranges")
    upstream.push(skopeo, image, "ranged:v1")
    layer = image.layers[0]
    size = len(layer.data)
    path = f"/v2/ranged/blobs/{layer.digest}"
    gate = threading.Event()
    upstream.gates[path] = (size // 2, gate)
    client = RegistryHttp.for_server(rules)
    blob = f"/v2/hub/ranged/blobs/{layer.digest}"
    try:
        # The manifest's fetch starts the layer's: its first half arrives, the rest waits.
        assert client.request("GET", "/v2/hub/ranged/manifests/v1").status_code == 200
        early = client.request("GET", blob, headers={"Range": "bytes=100-1099"})
        assert early.status_code == 206
        assert early.headers["Content-Range"] == f"bytes 100-1099/{size}"
        assert early.content == layer.data[100:1100]
        refused = client.request("GET", blob, headers={"Range": f"bytes={size}-"})
        assert refused.status_code == 416
        assert refused.headers["Content-Range"] == f"bytes */{size}"

        with ThreadPoolExecutor(2) as pool:
            tail = pool.submit(client.request, "GET", blob, headers={"Range": "bytes=-1000"})
            whole = pool.submit(client.request, "GET", blob)
            gate.set()
            assert tail.result().status_code == 206
            assert tail.result().content == layer.data[-1000:]
            # A client sharing the fetch is told the size the manifest gives.
            assert whole.result().headers["Content-Length"] == str(size)
            assert whole.result().content == layer.data
    finally:
        gate.set()
        del upstream.gates[path]
    assert upstream.blob_fetches()[path] == 1


@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    engine = DockerEngine(tmp_path_factory.mktemp("docker-engine")).start()
    yield engine
    engine.stop()


def test_docker_pulls_through_the_cache(
    rules: DockyardServer, upstream: Upstream, skopeo: Skopeo, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    image = build_image(tmp_path / "src", "v1", layers=[150_000, 4000], seed="docker engine")
    upstream.push(skopeo, image, "engine/app:v1")
    docker = docker_engine.client(tmp_path / "docker-config")
    assert "Login Succeeded" in docker.login(rules.registry, registry_password(rules)).stdout
    reference = f"{rules.registry}/hub/engine/app:v1"
    docker("pull", reference)
    inspected = json.loads(docker("image", "inspect", reference).stdout)[0]
    assert f"{rules.registry}/hub/engine/app@{image.digest}" in inspected["RepoDigests"]
    assert _wait_for(lambda: stored_image(Boto3Clients(rules), "hub/engine/app", "v1"), "the image to be stored")
    fetched = upstream.blob_fetches()
    for blob in image.blobs:
        assert fetched[f"/v2/engine/app/blobs/{blob.digest}"] == 1, blob.digest
