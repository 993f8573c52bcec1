"""Three Dockyard nodes over one PostgreSQL, one S3-compatible store (moto) and one Redis, as
behind a load balancer: whatever node a request lands on, the registry behaves as one."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.test_trust_upload_integrity import Tenant, attack
from tests.support.clients import Boto3Clients, ContainersConfig, Skopeo
from tests.support.cluster import shared_parts_args, started_nodes
from tests.support.images import build_image, read_blob
from tests.support.registry_http import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, RegistryHttp, digest_of
from tests.support.server import DockyardServer, ServerFactory, dockyard_command
from tests.support.services import (  # noqa: F401 - session fixtures
    PostgresCluster,
    RedisServer,
    S3Server,
    postgres_cluster,
    redis_server,
    s3_server,
)

BUCKET = "dockyard-scale-out"
# A limit on one rarely used operation, to see the nodes share their throttling buckets.
THROTTLED = "ListTagsForResource"
THROTTLE_BURST = 4
MiB = 1024 * 1024


@dataclass
class Cluster:
    nodes: list[DockyardServer]
    database_url: str

    def client(self, node: int) -> RegistryHttp:
        return RegistryHttp.for_server(self.nodes[node])

    def ecr(self, node: int = 0) -> object:
        return Boto3Clients(self.nodes[node])("ecr")


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_cluster: PostgresCluster,  # noqa: F811
    redis_server: RedisServer,  # noqa: F811
    s3_server: S3Server,  # noqa: F811
    containers_config: ContainersConfig,
) -> Iterator[Cluster]:
    database_url = postgres_cluster.create_database("scale_out")
    args = [
        *shared_parts_args(database_url, s3_server, BUCKET, redis_server),
        "--workers",
        "1",
        "--rate-limit",
        f"{THROTTLED}=0.001:{THROTTLE_BURST}",
    ]
    factory = ServerFactory(tmp_path_factory.mktemp("scale-out"), on_started=[containers_config.trust_server])
    # The third node answers blob GETs with redirects to the object store, as ECR does.
    with started_nodes(factory, s3_server, [args, args, [*args, "--s3-redirect"]]) as nodes:
        yield Cluster(nodes, database_url)


def make_repository(cluster: Cluster, name: str) -> None:
    ecr = Boto3Clients(cluster.nodes[0])("ecr")
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=name)


def test_every_node_is_ready(cluster: Cluster) -> None:
    for node in cluster.nodes:
        ready = requests.get(f"{node.url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "storage": "ok", "audit": "ok"}
        assert requests.get(f"{node.url}/healthz", timeout=10).status_code == 200


def test_push_through_one_node_pull_through_the_others(cluster: Cluster, skopeo: Skopeo, tmp_path: Path) -> None:
    make_repository(cluster, "scale/app")
    # A layer bigger than one multipart part, and a small one.
    image = build_image(tmp_path / "layout", "v1", layers=[12 * MiB, 3000])
    a, b, c = cluster.nodes
    # A token from one node is good on every node: they share the signing secret.
    password = cluster.client(0).password
    for node in cluster.nodes:
        skopeo.login(node.registry, password)

    skopeo.copy(image, f"docker://{a.registry}/scale/app:v1")

    for node in (b, c):
        assert skopeo.inspect_raw(f"docker://{node.registry}/scale/app:v1") == image.manifest.data
        out = tmp_path / f"pulled-{node.port}"
        skopeo.copy(f"docker://{node.registry}/scale/app:v1", f"oci:{out}:v1")
        for blob in image.blobs:
            assert read_blob(out, blob.digest) == blob.data


def test_pulls_redirect_to_the_object_store_when_configured(cluster: Cluster) -> None:
    make_repository(cluster, "scale/redirect")
    layer = random.Random(7).randbytes(3 * MiB)
    digest = cluster.client(0).push_blob("scale/redirect", layer)
    path = f"/v2/scale/redirect/blobs/{digest}"

    streamed = cluster.client(1).request("GET", path, allow_redirects=False)
    assert streamed.status_code == 200
    assert streamed.content == layer

    redirected = cluster.client(2).request("GET", path, allow_redirects=False)
    assert redirected.status_code == 307
    location = redirected.headers["Location"]
    assert "X-Amz-Signature=" in location or "Signature=" in location
    # A presigned URL needs no registry credentials.
    fetched = requests.get(location, timeout=30)
    assert fetched.status_code == 200
    assert fetched.content == layer
    ranged = requests.get(location, headers={"Range": "bytes=5-9"}, timeout=30)
    assert ranged.content == layer[5:10]

    # GetDownloadUrlForLayer hands out the same kind of URL on that node.
    ecr = Boto3Clients(cluster.nodes[2])("ecr")
    # GetDownloadUrlForLayer serves only layers of an image.
    manifest = _manifest(cluster.client(0), "scale/redirect", [layer])
    cluster.client(0).request(
        "PUT", "/v2/scale/redirect/manifests/v1", data=manifest, headers={"Content-Type": OCI_MANIFEST}
    ).raise_for_status()
    url = ecr.get_download_url_for_layer(repositoryName="scale/redirect", layerDigest=digest)["downloadUrl"]
    assert f"/{BUCKET}/registry/blobs/" in url and "/layers/" not in url
    assert requests.get(url, timeout=30).content == layer


def test_chunked_upload_continues_on_other_nodes(cluster: Cluster) -> None:
    make_repository(cluster, "scale/chunked")
    data = random.Random(1).randbytes(11 * MiB + 12345)
    pieces = [data[: 3 * MiB], data[3 * MiB : 9 * MiB], data[9 * MiB : 10 * MiB], data[10 * MiB :]]
    clients = [cluster.client(i) for i in range(3)]

    started = clients[0].request("POST", "/v2/scale/chunked/blobs/uploads/")
    assert started.status_code == 202
    location, offset = started.headers["Location"], 0
    for node, piece in zip((0, 1, 2), pieces[:3], strict=True):
        end = offset + len(piece) - 1
        patched = clients[node].request("PATCH", location, data=piece, headers={"Content-Range": f"{offset}-{end}"})
        assert patched.status_code == 202, patched.text
        assert patched.headers["Range"] == f"0-{end}"
        location, offset = patched.headers["Location"], end + 1
        # Every node knows where the upload stands.
        for client in clients:
            status = client.request("GET", location)
            assert status.status_code == 204
            assert status.headers["Range"] == f"0-{end}"

    # A chunk whose range does not match its length is refused after its bytes arrived: the
    # upload stays where it stood, and the next node continues from there.
    short = clients[1].request(
        "PATCH", location, data=pieces[3][:1000], headers={"Content-Range": f"{offset}-{offset + 4999}"}
    )
    assert short.status_code == 416
    assert clients[2].request("GET", location).headers["Range"] == f"0-{offset - 1}"

    # Completed on a node other than the one that saw the last bytes: the digest is recomputed
    # from the stored bytes there.
    done = clients[0].request("PUT", location, params={"digest": digest_of(data)}, data=pieces[3])
    assert done.status_code == 201, done.text
    for client in clients[:2]:
        assert client.request("GET", f"/v2/scale/chunked/blobs/{digest_of(data)}").content == data

    # A wrong digest never becomes a blob.
    started = clients[1].request("POST", "/v2/scale/chunked/blobs/uploads/")
    wrong = "sha256:" + "0" * 64
    refused = clients[2].request("PUT", started.headers["Location"], params={"digest": wrong}, data=data[:MiB])
    assert refused.status_code == 400
    assert clients[0].request("HEAD", f"/v2/scale/chunked/blobs/{wrong}").status_code == 404


def _manifest(client: RegistryHttp, repository: str, layers: list[bytes], label: str = "") -> bytes:
    """An OCI manifest over `layers` (pushed already) and a config made distinct by `label`."""
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"label": label}},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(layer) for layer in layers]},
        }
    ).encode()
    config_digest = client.push_blob(repository, config)
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": digest_of(layer), "size": len(layer)} for layer in layers],
        }
    ).encode()


def test_killed_node_loses_no_acknowledged_image(cluster: Cluster) -> None:
    make_repository(cluster, "scale/crash")
    victim, survivor = cluster.nodes[0], cluster.nodes[1]
    client = cluster.client(0)
    acknowledged: dict[str, tuple[str, list[bytes]]] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def pusher(worker: int) -> None:
        rng = random.Random(worker)
        n = 0
        while not stop.is_set():
            # Now and then a layer of more than one multipart part.
            layers = [rng.randbytes(rng.choice((rng.randint(1, MiB), 9 * MiB))) for _ in range(rng.randint(1, 2))]
            tag = f"w{worker}-{n}"
            n += 1
            try:
                digest, _ = client.push_image("scale/crash", tag, layers)
            except (requests.RequestException, AssertionError):
                return  # the node died under us: this push was never acknowledged
            with lock:
                acknowledged[tag] = (digest, layers)

    threads = [threading.Thread(target=pusher, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        # Killed once a few pushes were acknowledged, with the others in flight (however slow the machine).
        deadline = time.monotonic() + 60
        while len(acknowledged) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        victim.kill()
        stop.set()
        for thread in threads:
            thread.join(60)
        assert acknowledged, "no push completed before the kill: the test proved nothing"
        _check_acknowledged(cluster.client(1), acknowledged)
        assert survivor.running
    finally:
        stop.set()
        if not victim.running:
            victim.start()  # and it comes back into the cluster
    _check_acknowledged(cluster.client(0), acknowledged)


def _check_acknowledged(reader: RegistryHttp, acknowledged: dict[str, tuple[str, list[bytes]]]) -> None:
    for tag, (digest, layers) in acknowledged.items():
        manifest = reader.request("GET", f"/v2/scale/crash/manifests/{tag}")
        assert manifest.status_code == 200, (tag, manifest.text)
        assert manifest.headers["Docker-Content-Digest"] == digest
        for layer in layers:
            assert reader.request("GET", f"/v2/scale/crash/blobs/{digest_of(layer)}").content == layer


def test_nodes_racing_on_one_tag_leave_it_consistent(cluster: Cluster) -> None:
    make_repository(cluster, "scale/race")
    clients = [cluster.client(i) for i in range(3)]
    shared = random.Random(3).randbytes(9 * MiB)
    # Two nodes push the same blob at the same moment, more than once.
    with ThreadPoolExecutor(4) as pool:
        pushed = list(pool.map(lambda i: clients[i % 2].push_blob("scale/race", shared), range(4)))
    assert set(pushed) == {digest_of(shared)}

    manifests = [_manifest(clients[i], "scale/race", [shared], label=f"image-{i}") for i in range(2)]
    digests = [digest_of(m) for m in manifests]
    errors: list[str] = []

    def put(node: int, rounds: int) -> None:
        for _ in range(rounds):
            response = clients[node].request(
                "PUT", "/v2/scale/race/manifests/latest", data=manifests[node], headers={"Content-Type": OCI_MANIFEST}
            )
            if response.status_code != 201:
                errors.append(f"node {node}: {response.status_code} {response.text}")

    def delete_first_image(rounds: int) -> None:
        # Deleting image 0 (and so its tag) while node 0 keeps pushing it.
        for _ in range(rounds):
            response = clients[2].request("DELETE", f"/v2/scale/race/manifests/{digests[0]}")
            if response.status_code not in (202, 404):
                errors.append(f"delete: {response.status_code} {response.text}")

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(put, 0, 25), pool.submit(put, 1, 25), pool.submit(delete_first_image, 25)]
        for future in futures:
            future.result()
    assert not errors, errors[:5]

    # Image 1 was never deleted: it is there, whatever happened to the tag.
    for client in clients:
        assert client.request("GET", f"/v2/scale/race/manifests/{digests[1]}").status_code == 200
    # Every node agrees on the tag, and it names an image that exists, with all its blobs.
    seen = {
        client.request("GET", "/v2/scale/race/manifests/latest").headers.get("Docker-Content-Digest")
        for client in clients
    }
    assert len(seen) == 1
    (latest,) = seen
    if latest is not None:
        assert latest in digests
    described = Boto3Clients(cluster.nodes[1])("ecr").describe_images(repositoryName="scale/race")["imageDetails"]
    tagged = [d for d in described if "latest" in d.get("imageTags", [])]
    assert len(tagged) == (0 if latest is None else 1)
    assert asyncio.run(_dangling_tags(cluster.database_url)) == 0


async def _dangling_tags(url: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            query = text("SELECT count(*) FROM tags t LEFT JOIN images i ON i.id = t.image_id WHERE i.id IS NULL")
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


def test_throttling_buckets_are_shared_by_all_nodes(cluster: Cluster) -> None:
    make_repository(cluster, "scale/throttled")
    clients = [Boto3Clients(node)("ecr") for node in cluster.nodes]
    arn = clients[0].describe_repositories(repositoryNames=["scale/throttled"])["repositories"][0]["repositoryArn"]
    admitted = throttled = 0
    for i in range(THROTTLE_BURST * 2):
        try:
            clients[i % 3].list_tags_for_resource(resourceArn=arn)
            admitted += 1
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ThrottlingException", exc.response
            throttled += 1
    # One bucket for the account across the three nodes, not one per node.
    assert (admitted, throttled) == (THROTTLE_BURST, THROTTLE_BURST)


def test_blobs_live_in_the_object_store(cluster: Cluster, s3_server: S3Server) -> None:  # noqa: F811
    import boto3

    make_repository(cluster, "scale/where")
    layer = b"where do I live" * 1000
    digest = cluster.client(1).push_blob("scale/where", layer)
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.access_key_id,
        aws_secret_access_key=s3_server.secret_access_key,
        region_name=s3_server.region,
    )
    key = f"registry/blobs/sha256/{digest.removeprefix('sha256:')}"
    stored = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == digest.removeprefix("sha256:")
    # Nothing went to the nodes' own disks.
    for node in cluster.nodes:
        assert not (node.data_dir / "storage").exists()


def test_offline_commands_reach_the_shared_database_and_object_store(
    cluster: Cluster,
    s3_server: S3Server,  # noqa: F811
    tmp_path: Path,
) -> None:
    make_repository(cluster, "scale/report")
    layer = b"counted once, wherever it is stored" * 4096
    cluster.client(2).push_blob("scale/report", layer)
    store = {
        "DOCKYARD_DATABASE_URL": cluster.database_url,
        "DOCKYARD_BLOB_STORE": f"s3://{BUCKET}/registry",
        "DOCKYARD_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "DOCKYARD_S3_REGION": s3_server.region,
    }
    env = {**cluster.nodes[0].server_env(), **s3_server.env(), **store}
    operator = ["--json", "--data-dir", str(tmp_path / "operator")]
    done = subprocess.run(
        [*dockyard_command(), "storage", *operator], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["blobs"] >= 1 and report["totalBytes"] >= len(layer)
    # Nothing of the cluster's lives in the operator's own data directory.
    assert not (tmp_path / "operator" / "storage").exists()
    dry = subprocess.run(
        [*dockyard_command(), "gc", "--dry-run", *operator], capture_output=True, text=True, timeout=120, env=env
    )
    assert dry.returncode == 0, dry.stderr


def test_racing_patches_on_two_nodes_cannot_replace_a_stored_layer(cluster: Cluster) -> None:
    """The cross-tenant attack of tests/integration/test_trust_upload_integrity.py, its two racing
    PATCHes sent to two nodes (PostgreSQL and the S3 store between them)."""
    make_repository(cluster, "race/victim")
    make_repository(cluster, "race/attacker")
    victim = cluster.client(0)
    layer = random.Random(11).randbytes(3 * MiB)
    victim.push_image("race/victim", "v1", [layer])
    attackers = tuple(
        Tenant(node.url, node.hostport, cluster.client(i).password) for i, node in enumerate(cluster.nodes[:2])
    )

    def victim_blob() -> bytes:
        answer = cluster.client(2).request("GET", f"/v2/race/victim/blobs/{digest_of(layer)}")
        assert answer.status_code == 200, answer.text
        return answer.content

    attack(victim_blob, attackers, "race/attacker", layer, attempts=12)  # type: ignore[arg-type]
