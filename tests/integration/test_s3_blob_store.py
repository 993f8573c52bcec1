"""S3BlobStore against a real S3-compatible server (moto's): two store objects stand for two nodes."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from dockyard.store import s3_blobs
from dockyard.store.blobs import DigestMismatch, UploadGone
from dockyard.store.s3_blobs import S3BlobStore, parse_s3_url
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


async def test_upload_started_on_one_node_finishes_on_another(s3_server: S3Server, bucket: str) -> None:  # noqa: F811
    one, two = store(s3_server, bucket), store(s3_server, bucket)
    data = random.Random(1).randbytes(20 * MiB + 123)
    try:
        await one.start_upload("u")
        size = await one.append("u", 0, pieces(data[: 3 * MiB]))
        assert size == 3 * MiB
        # An append that was never acknowledged (its size never recorded) is overwritten...
        assert await two.append("u", size, pieces(random.randbytes(9 * MiB))) == 12 * MiB
        # ...by the next append from the acknowledged size, on any node.
        assert await two.append("u", size, pieces(data[3 * MiB :], 100_000)) == len(data)
        with pytest.raises(DigestMismatch):
            await two.finish_upload("u", "sha256:" + "0" * 64)
        assert await one.size(digest_of(data)) is None
        # The client may still name the right digest (the upload completes as the last append left it).
        await two.append("u", len(data), pieces(b""))
        assert await two.finish_upload("u", digest_of(data)) == len(data)
        assert b"".join([c async for c in one.read(digest_of(data))]) == data
        assert b"".join([c async for c in one.read(digest_of(data), 10, 20)]) == data[10:20]
        assert [u async for u in one.stored_uploads()] == []
    finally:
        await one.close()
        await two.close()


async def test_small_and_empty_blobs(s3_server: S3Server, bucket: str) -> None:  # noqa: F811
    blobs = store(s3_server, bucket)
    try:
        for data in (b"hello", b""):
            upload_id = uuid.uuid4().hex
            await blobs.start_upload(upload_id)
            await blobs.append(upload_id, 0, pieces(data, 2))
            assert await blobs.finish_upload(upload_id, digest_of(data)) == len(data)
            assert await blobs.size(digest_of(data)) == len(data)
        assert await blobs.put(b"abc") == digest_of(b"abc")
        assert {b.name async for b in blobs.stored_blobs()} == {digest_of(b"hello"), digest_of(b""), digest_of(b"abc")}
        await blobs.delete(digest_of(b"abc"))
        assert await blobs.size(digest_of(b"abc")) is None
    finally:
        await blobs.close()


async def test_cancelled_upload_is_gone(s3_server: S3Server, bucket: str) -> None:  # noqa: F811
    blobs = store(s3_server, bucket)
    try:
        await blobs.start_upload("c")
        await blobs.append("c", 0, pieces(b"x" * (9 * MiB)))
        assert [u.name async for u in blobs.stored_uploads()] == ["c"]
        await blobs.cancel_upload("c")
        assert [u async for u in blobs.stored_uploads()] == []
        with pytest.raises(UploadGone):
            await blobs.append("c", 9 * MiB, pieces(b"more"))
    finally:
        await blobs.close()


async def test_blobs_beyond_one_copy_request_are_copied_in_parts(
    s3_server: S3Server,  # noqa: F811
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(s3_blobs, "COPY_LIMIT", 1)
    monkeypatch.setattr(s3_blobs, "COPY_PART_SIZE", 6 * MiB)
    blobs = store(s3_server, bucket)
    data = random.Random(2).randbytes(17 * MiB)
    try:
        await blobs.start_upload("big")
        await blobs.append("big", 0, pieces(data, MiB))
        assert await blobs.finish_upload("big", digest_of(data)) == len(data)
        assert b"".join([c async for c in blobs.read(digest_of(data))]) == data
    finally:
        await blobs.close()


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


async def test_a_node_trusts_its_running_hash_only_for_bytes_it_wrote(
    s3_server: S3Server,  # noqa: F811
    bucket: str,
) -> None:
    one, two = store(s3_server, bucket), store(s3_server, bucket)
    mine, theirs = random.Random(4).randbytes(9 * MiB), random.Random(5).randbytes(9 * MiB)
    try:
        await one.start_upload("r")
        await one.append("r", 0, pieces(mine))
        # A misbehaving client sends other bytes for the same range to another node at once.
        await two.append("r", 0, pieces(theirs))
        await one.append("r", len(mine), pieces(b""))
        with pytest.raises(DigestMismatch):
            await one.finish_upload("r", digest_of(mine))
        await one.append("r", len(mine), pieces(b""))
        assert await one.finish_upload("r", digest_of(theirs)) == len(theirs)
        assert b"".join([c async for c in one.read(digest_of(theirs))]) == theirs
    finally:
        await one.close()
        await two.close()
