"""Several Dockyard nodes sharing one deployment's parts, as the scale-out setup runs them:
PostgreSQL for metadata, an S3-compatible store (moto's server) for blobs, Redis for throttling.
Nodes start all at once, as a deployment's do (the schema migration must not run twice), and
stop all at once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from tests.support.server import DockyardServer, ServerFactory, access_key_id, secret_access_key
from tests.support.services import RedisServer, S3Server


def shared_parts_args(database_url: str, s3_server: S3Server, bucket: str, redis_server: RedisServer) -> list[str]:
    """`dockyard serve` options that point a node at the shared database, bucket and Redis."""
    s3_server.create_bucket(bucket)
    return [
        "--database-url",
        database_url,
        "--blob-store",
        f"s3://{bucket}/registry",
        "--s3-endpoint-url",
        s3_server.endpoint_url,
        "--s3-region",
        s3_server.region,
        "--redis-url",
        redis_server.url,
    ]


@contextmanager
def started_nodes(
    factory: ServerFactory, s3_server: S3Server, args_per_node: Sequence[Sequence[str]]
) -> Iterator[list[DockyardServer]]:
    """One node per entry of `args_per_node`, all with the same root key, started together."""
    key = (access_key_id(), secret_access_key())
    nodes = [factory(args=list(args), env=s3_server.env(), access_key=key, start=False) for args in args_per_node]
    try:
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(lambda node: node.start(), nodes))
        yield nodes
    finally:
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(lambda node: node.stop(), nodes))
