"""What only the S3 store has, against a real S3-compatible server (moto's); what every blob store
does is tests/integration/test_blob_stores.py."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from dockyard.store.blobs.s3 import S3BlobStore, parse_s3_url
from tests.support.services import S3Server, s3_server  # noqa: F401 - session fixture

MiB = 1024 * 1024


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def pieces(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
def bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:  # noqa: F811
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    name = f"blobs-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(name)
    yield name


def store(s3_server: S3Server, bucket: str, **kw: object) -> S3BlobStore:  # noqa: F811
    return S3BlobStore(f"s3://{bucket}/reg", endpoint_url=s3_server.endpoint_url, region=s3_server.region, **kw)


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b/")
    with pytest.raises(ValueError):
        parse_s3_url("file:///tmp")


async def test_presigned_url_only_when_redirecting(s3_server: S3Server, bucket: str) -> None:  # noqa: F811
    plain, redirecting = store(s3_server, bucket), store(s3_server, bucket, redirect=True)
    try:
        digest = await plain.put(b"layer")
        assert await plain.download_url(digest) is None
        url = await redirecting.download_url(digest)
        assert url is not None and url.startswith(s3_server.endpoint_url) and "Signature" in url
        await redirecting.ping()
    finally:
        await plain.close()
        await redirecting.close()
