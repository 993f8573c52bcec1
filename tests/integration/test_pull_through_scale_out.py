"""The pull through cache on the scale-out setup: two Dockyard nodes over one PostgreSQL, one
S3-compatible store (moto's server) and one Redis. First pulls of one image through both nodes
at once fetch each layer from the upstream once: the fetch's lease is a database row every node
sees, and a node that does not lead waits for the blob to be placed in the object store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.test_pull_through_cache import Upstream, add_rule, stored_image
from tests.support.clients import Boto3Clients, ContainersConfig, Skopeo
from tests.support.cluster import shared_parts_args, started_nodes
from tests.support.images import build_image, read_blob
from tests.support.registry_http import registry_password
from tests.support.server import HOST, DockyardServer, ServerFactory
from tests.support.services import (  # noqa: F401 - session fixtures
    PostgresCluster,
    RedisServer,
    S3Server,
    postgres_cluster,
    redis_server,
    s3_server,
)

BUCKET = "dockyard-pull-through"
POLL_LIMIT = 120.0
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    running = Upstream(tmp_path_factory.mktemp("upstream"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_cluster: PostgresCluster,  # noqa: F811
    redis_server: RedisServer,  # noqa: F811
    s3_server: S3Server,  # noqa: F811
    containers_config: ContainersConfig,
    skopeo: Skopeo,
) -> Iterator[list[DockyardServer]]:
    database_url = postgres_cluster.create_database("pull_through")
    args = [
        *shared_parts_args(database_url, s3_server, BUCKET, redis_server),
        "--workers",
        "2",
        "--pull-through-upstream",
        HOST,
    ]
    factory = ServerFactory(tmp_path_factory.mktemp("pull-through-nodes"), on_started=[containers_config.trust_server])
    with started_nodes(factory, s3_server, [args, args]) as started:
        password = registry_password(started[0])
        for node in started:
            skopeo.login(node.registry, password)
        yield started


def test_concurrent_first_pulls_through_two_nodes_fetch_each_layer_once(
    nodes: list[DockyardServer], upstream: Upstream, skopeo: Skopeo, tmp_path: Path
) -> None:
    add_rule(nodes[0], "hub", upstream.address)
    image = build_image(tmp_path / "src", "v1", layers=[6 * MiB, 2 * MiB, 50_000], seed="two nodes")
    upstream.push(skopeo, image, "shared/app:v1")

    pulls = [(node, n) for n in range(3) for node in nodes]

    def pull(node: DockyardServer, n: int) -> None:
        skopeo.copy(f"docker://{node.registry}/hub/shared/app:v1", f"oci:{tmp_path / f'pull{n}-{node.port}'}:v1")

    with ThreadPoolExecutor(len(pulls)) as pool:
        for copy in [pool.submit(pull, node, n) for node, n in pulls]:
            copy.result()
    for node, n in pulls:
        for blob in image.blobs:
            assert read_blob(tmp_path / f"pull{n}-{node.port}", blob.digest) == blob.data

    fetched = upstream.blob_fetches()
    for blob in image.blobs:
        assert fetched[f"/v2/shared/app/blobs/{blob.digest}"] == 1, blob.digest
    deadline = time.monotonic() + POLL_LIMIT
    while stored_image(Boto3Clients(nodes[1]), "hub/shared/app", "v1") is None:
        assert time.monotonic() < deadline, "the image was never stored"
        time.sleep(0.1)
