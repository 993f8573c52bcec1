"""GetDownloadUrlForLayer URLs answer Range requests as the registry door's blob GET does, on the
filesystem store and the S3 store alike (against moto's S3 server): the same window, headers and
refusals, with an unsatisfiable range refused as S3 refuses it (416, InvalidRange)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from tests.support.clients import Boto3Clients, ContainersConfig
from tests.support.registry_http import RegistryHttp, digest_of
from tests.support.server import DockyardServer, ServerFactory
from tests.support.services import S3Server, s3_server  # noqa: F401 - session fixture

SIZE = 2048


@dataclass(frozen=True)
class Layer:
    data: bytes
    digest: str
    url: str
    registry: RegistryHttp
    repository: str


def _s3_node(factory: ServerFactory, s3: S3Server) -> DockyardServer:
    bucket = f"layer-ranges-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(bucket)
    args = ["--blob-store", f"s3://{bucket}/registry", "--s3-endpoint-url", s3.endpoint_url, "--s3-region", s3.region]
    return factory(args=args, env=s3.env())


@pytest.fixture(scope="module", params=["filesystem", "s3"])
def layer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, containers_config: ContainersConfig
) -> Iterator[Layer]:
    """A 2048-byte layer of an image, its download URL, and the registry door serving it."""
    factory = ServerFactory(tmp_path_factory.mktemp("layer-ranges"), on_started=[containers_config.trust_server])
    try:
        if request.param == "filesystem":
            server: DockyardServer = request.getfixturevalue("dockyard_server")
        else:
            server = _s3_node(factory, request.getfixturevalue("s3_server"))
        ecr = Boto3Clients(server)("ecr")
        repository = f"layer-ranges-{uuid.uuid4().hex[:8]}"
        ecr.create_repository(repositoryName=repository)
        registry = RegistryHttp.for_server(server)
        data = secrets.token_bytes(SIZE)
        registry.push_image(repository, "v1", [data])
        url = ecr.get_download_url_for_layer(repositoryName=repository, layerDigest=digest_of(data))["downloadUrl"]
        yield Layer(data, digest_of(data), url, registry, repository)
        ecr.delete_repository(repositoryName=repository, force=True)
    finally:
        factory.close()


@pytest.mark.parametrize(
    ("request_range", "status", "window"),
    [
        ("bytes=500-1499", 206, (500, 1499)),
        ("bytes=500-", 206, (500, 2047)),
        ("bytes=-500", 206, (1548, 2047)),
        ("bytes=2000-5000", 206, (2000, 2047)),
        ("bytes=0-0", 206, (0, 0)),
        ("bytes=500-0", 416, None),
        ("bytes=5000-10000", 416, None),
        ("bytes=2048-", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=0-1,5-9", 200, (0, 2047)),
        ("items=0-10", 200, (0, 2047)),
        ("bytes=x-y", 200, (0, 2047)),
        (None, 200, (0, 2047)),
    ],
)
def test_a_layer_url_answers_a_range_as_the_registry_door_does(
    layer: Layer, request_range: str | None, status: int, window: tuple[int, int] | None
) -> None:
    headers = {} if request_range is None else {"Range": request_range}
    response = requests.get(layer.url, headers=headers, timeout=30)  # no credentials at all
    blob_get = layer.registry.request("GET", f"/v2/{layer.repository}/blobs/{layer.digest}", headers=headers)
    assert (response.status_code, blob_get.status_code) == (status, status), response.text
    assert response.headers.get("content-range") == blob_get.headers.get("content-range")
    if status == 416:
        assert response.headers["content-range"] == f"bytes */{SIZE}"
        assert response.headers["content-type"] == "application/xml"
        assert response.text == (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            "<Error><Code>InvalidRange</Code><Message>The requested range is not satisfiable</Message>"
            f"<RangeRequested>{request_range}</RangeRequested><ActualObjectSize>{SIZE}</ActualObjectSize></Error>"
        )
        return
    assert window is not None
    first, last = window
    assert response.content == blob_get.content == layer.data[first : last + 1]
    assert response.headers["content-length"] == str(last - first + 1)
    assert response.headers["accept-ranges"] == "bytes"
    if status == 206:
        assert response.headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
    else:
        assert "content-range" not in response.headers
