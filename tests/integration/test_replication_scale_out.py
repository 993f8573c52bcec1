"""Replication in the scale-out setup: three Dockyard nodes over one PostgreSQL and one
S3-compatible store (moto's server), every node running replication workers that compete for
the same jobs. Images pushed through all of them, one node killed with SIGKILL mid-way: each
image reaches each destination exactly once, counted in the destination repositories (their
images and their image_count) and in the destination's CloudTrail ReplicateImage events."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.test_replication import REPLICATION_TIMEOUT, configure, ecr_as, images_in, wait_for_status
from tests.support.clients import Boto3Clients, isolated_boto3_session
from tests.support.cluster import shared_parts_args, started_nodes
from tests.support.registry_http import RegistryHttp
from tests.support.server import DockyardServer, ServerFactory
from tests.support.services import (  # noqa: F401 - session fixtures
    PostgresCluster,
    RedisServer,
    S3Server,
    postgres_cluster,
    redis_server,
    s3_server,
)

BUCKET = "dockyard-replication-scale-out"
DESTINATIONS = ("us-west-2", "eu-west-1")
REPOSITORY = "fleet/app"
IMAGES = 24


@dataclass
class Cluster:
    nodes: list[DockyardServer]
    database_url: str


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_cluster: PostgresCluster,  # noqa: F811
    redis_server: RedisServer,  # noqa: F811
    s3_server: S3Server,  # noqa: F811
) -> Iterator[Cluster]:
    database_url = postgres_cluster.create_database("replication_scale_out")
    args = [*shared_parts_args(database_url, s3_server, BUCKET, redis_server), "--workers", "2"]
    factory = ServerFactory(tmp_path_factory.mktemp("replication-scale-out"))
    try:
        with started_nodes(factory, s3_server, [args] * 3) as nodes:
            yield Cluster(nodes, database_url)
    finally:
        factory.close()


async def _query(url: str, sql: str) -> list[Any]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql))).all())
    finally:
        await engine.dispose()


def query(cluster: Cluster, sql: str) -> list[Any]:
    return asyncio.run(_query(cluster.database_url, sql))


def waiting_jobs(cluster: Cluster) -> int:
    return int(query(cluster, "SELECT count(*) FROM image_replication_statuses WHERE status = 'IN_PROGRESS'")[0][0])


def replicate_image_events(node: DockyardServer, region: str) -> list[dict[str, Any]]:
    """The destination's ReplicateImage events for REPOSITORY in `node`'s trail, every page."""
    trail = isolated_boto3_session(node).client(
        "cloudtrail",
        endpoint_url=node.url,
        region_name=region,
        aws_access_key_id=node.access_key_id,
        aws_secret_access_key=node.secret_access_key,
    )
    pages = trail.get_paginator("lookup_events").paginate(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "ReplicateImage"}]
    )
    events = [json.loads(e["CloudTrailEvent"]) for page in pages for e in page["Events"]]
    return [e for e in events if e["requestParameters"]["repositoryName"] == REPOSITORY]


def test_each_replication_is_done_once_across_nodes_despite_a_killed_node(cluster: Cluster) -> None:
    first, doomed, last = cluster.nodes
    ecr = Boto3Clients(first)("ecr")
    configure(ecr, [(region, first.account_id) for region in DESTINATIONS], "fleet/")
    ecr.create_repository(repositoryName=REPOSITORY)
    registries = [RegistryHttp.for_server(node) for node in cluster.nodes]

    def push(number: int, nodes: tuple[int, ...]) -> tuple[str, str]:
        tag = f"t{number}"
        registry = registries[nodes[number % len(nodes)]]
        digest, _ = registry.push_image(REPOSITORY, tag, [f"fleet layer {number}".encode()])
        return tag, digest

    half = IMAGES // 2
    with ThreadPoolExecutor(4) as pool:
        pushed = dict(pool.map(lambda n: push(n, (0, 1, 2)), range(half)))
    # Killed with jobs queued or claimed: whatever it held is taken over by the other nodes.
    deadline = time.monotonic() + 60
    while waiting_jobs(cluster) == 0:
        assert len(pushed) < IMAGES * 4 and time.monotonic() < deadline, "replication never lagged behind"
        tag, digest = push(len(pushed), (0, 1, 2))
        pushed[tag] = digest
    doomed.kill()
    with ThreadPoolExecutor(4) as pool:
        pushed |= dict(pool.map(lambda n: push(n, (0, 2)), range(len(pushed), len(pushed) + half)))

    for digest in pushed.values():
        statuses = wait_for_status(ecr, REPOSITORY, digest)
        assert sorted(s["region"] for s in statuses) == sorted(DESTINATIONS)
    expected = {digest: [tag] for tag, digest in pushed.items()}
    for region in DESTINATIONS:
        replica = ecr_as(first, (first.access_key_id, first.secret_access_key), region)
        assert images_in(replica, REPOSITORY) == expected
    counted = query(
        cluster,
        "SELECT r.region, r.image_count, (SELECT count(*) FROM images i WHERE i.repository_id = r.id) "
        f"FROM repositories r WHERE r.name = '{REPOSITORY}' ORDER BY r.region",
    )
    assert [tuple(row) for row in counted] == sorted(
        [(region, len(pushed), len(pushed)) for region in (*DESTINATIONS, first.region)]
    )

    # The killed node's trail holds what it recorded before it died: read it once it is back.
    doomed.start()
    for region in DESTINATIONS:
        events = [e for node in cluster.nodes for e in replicate_image_events(node, region)]
        assert all("errorCode" not in e for e in events)
        by_id = {e["eventID"]: e for e in events}
        # One write, one event: a job taken over after its worker recorded an event and died
        # before closing it records that event again under the same eventID (at most one job
        # per killed worker process), which readers count once.
        assert len(events) - len(by_id) <= 2
        per_digest = Counter(e["requestParameters"]["imageDigest"] for e in by_id.values())
        assert per_digest == Counter(pushed.values())
    deadline = time.monotonic() + REPLICATION_TIMEOUT
    while waiting_jobs(cluster):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert query(cluster, "SELECT status, count(*) FROM image_replication_statuses GROUP BY status") == [
        ("COMPLETE", len(pushed) * len(DESTINATIONS))
    ]
