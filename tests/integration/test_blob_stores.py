"""One suite every blob store passes (the filesystem store and the S3 store, against moto's S3
server), as CNCF distribution runs one driver suite over every storage driver.

Two store objects over the same storage stand for two nodes (or two worker processes). The
contract the core relies on (dockyard.core.registry.uploads): appends to an upload happen under its
`upload_lock`, each starting from the (size, writer) the metadata recorded for the last
acknowledged append; a blob is exactly the bytes of the state it was verified for."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from dockyard.store.blobs.filesystem import FilesystemBlobStore
from dockyard.store.blobs.interface import BlobStore, DigestMismatch, UploadBusy, UploadGone
from dockyard.store.blobs.s3 import S3BlobStore
from tests.support.services import S3Server, s3_server  # noqa: F401 - session fixture

MiB = 1024 * 1024
Pair = tuple[BlobStore, BlobStore]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def pieces(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(store: BlobStore, digest: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(digest, start, end)])


@pytest.fixture(params=["filesystem", "s3"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], BlobStore]]:
    if request.param == "filesystem":
        yield lambda: FilesystemBlobStore(tmp_path / "blobs")
        return
    s3: S3Server = request.getfixturevalue("s3_server")
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    bucket = f"blobs-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(bucket)
    yield lambda: S3BlobStore(f"s3://{bucket}/reg", endpoint_url=s3.endpoint_url, region=s3.region)


@pytest.fixture
async def pair(make_store: Callable[[], BlobStore]) -> AsyncIterator[Pair]:
    one, two = make_store(), make_store()
    yield one, two
    await one.close()
    await two.close()


async def finish(store: BlobStore, upload_id: str, size: int, writer: str | None, digest: str) -> None:
    async with store.upload_lock(upload_id):
        await store.verify_upload(upload_id, size, writer, digest)
        await store.place_upload(upload_id, size, writer, digest)
    await store.cancel_upload(upload_id)


async def test_an_upload_started_on_one_node_finishes_on_another(pair: Pair) -> None:
    one, two = pair
    data = random.Random(1).randbytes(20 * MiB + 123)
    upload = uuid.uuid4().hex
    await one.start_upload(upload)
    async with one.upload_lock(upload):
        first = await one.append(upload, 0, None, pieces(data[: 3 * MiB]))
    assert first.size == 3 * MiB
    async with two.upload_lock(upload):
        # An append never acknowledged (its result never recorded) is overwritten...
        await two.append(upload, first.size, first.writer, pieces(random.randbytes(9 * MiB)))
    async with two.upload_lock(upload):
        # ...by the next append from the acknowledged state, on any node.
        last = await two.append(upload, first.size, first.writer, pieces(data[3 * MiB :], 100_000))
    assert last.size == len(data)
    async with two.upload_lock(upload):
        with pytest.raises(DigestMismatch):
            await two.verify_upload(upload, last.size, last.writer, "sha256:" + "0" * 64)
    assert await one.size(digest_of(data)) is None
    # Verified on the node that did not write the last bytes: it reads them back.
    await finish(one, upload, last.size, last.writer, digest_of(data))
    assert await read_all(two, digest_of(data)) == data
    assert await read_all(two, digest_of(data), 10, 20) == data[10:20]
    assert [u async for u in one.stored_uploads()] == []


async def test_small_and_empty_blobs(pair: Pair) -> None:
    blobs, _ = pair
    for data in (b"hello", b""):
        upload = uuid.uuid4().hex
        await blobs.start_upload(upload)
        async with blobs.upload_lock(upload):
            appended = await blobs.append(upload, 0, None, pieces(data, 2))
        await finish(blobs, upload, appended.size, appended.writer, digest_of(data))
        assert await blobs.size(digest_of(data)) == len(data)
    assert await blobs.put(b"abc") == digest_of(b"abc")
    assert {b.name async for b in blobs.stored_blobs()} == {digest_of(b"hello"), digest_of(b""), digest_of(b"abc")}
    await blobs.delete(digest_of(b"abc"))
    assert await blobs.size(digest_of(b"abc")) is None


async def test_a_cancelled_upload_is_gone(pair: Pair) -> None:
    blobs, _ = pair
    upload = uuid.uuid4().hex
    await blobs.start_upload(upload)
    async with blobs.upload_lock(upload):
        appended = await blobs.append(upload, 0, None, pieces(b"x" * (9 * MiB)))
    assert [u.name async for u in blobs.stored_uploads()] == [upload]
    await blobs.cancel_upload(upload)
    assert [u async for u in blobs.stored_uploads()] == []
    with pytest.raises(UploadGone):
        async with blobs.upload_lock(upload):
            await blobs.append(upload, appended.size, appended.writer, pieces(b"more"))


async def test_racing_appends_never_mix_their_bytes(pair: Pair) -> None:
    """Two requests append the same range at once on two nodes: either the second is turned away
    (UploadBusy), or each append's state names only its own bytes, so whichever the metadata
    records, verification is over exactly those bytes."""
    one, two = pair
    mine, theirs = random.Random(4).randbytes(9 * MiB + 5), random.Random(5).randbytes(9 * MiB + 5)
    upload = uuid.uuid4().hex
    await one.start_upload(upload)
    async with one.upload_lock(upload):
        a = await one.append(upload, 0, None, pieces(mine))
        try:
            async with two.upload_lock(upload):
                b = await two.append(upload, 0, None, pieces(theirs))
        except UploadBusy:
            b = None
        with pytest.raises(DigestMismatch):
            await one.verify_upload(upload, a.size, a.writer, digest_of(theirs))
        await one.verify_upload(upload, a.size, a.writer, digest_of(mine))
    if b is not None:
        with pytest.raises(DigestMismatch):
            await one.verify_upload(upload, b.size, b.writer, digest_of(mine))
        await finish(one, upload, b.size, b.writer, digest_of(theirs))
        assert await read_all(two, digest_of(theirs)) == theirs
    else:
        await finish(one, upload, a.size, a.writer, digest_of(mine))
        assert await read_all(two, digest_of(mine)) == mine


async def test_a_stored_blob_is_never_replaced(pair: Pair) -> None:
    """Placing verified bytes where a sound blob stands leaves the blob as it was; a damaged one
    (of the wrong size) is put right."""
    one, two = pair
    data = random.Random(6).randbytes(MiB)
    digest = await one.put(data)
    before = [f async for f in one.stored_blobs()]
    upload = uuid.uuid4().hex
    await two.start_upload(upload)
    async with two.upload_lock(upload):
        appended = await two.append(upload, 0, None, pieces(data))
    await finish(two, upload, appended.size, appended.writer, digest)
    assert [f async for f in one.stored_blobs()] == before
    assert await read_all(one, digest) == data


async def test_the_upload_lock_admits_one_request_at_a_time(pair: Pair) -> None:
    one, two = pair
    upload = uuid.uuid4().hex
    await one.start_upload(upload)
    if isinstance(one, S3BlobStore):
        # Object stores need no lock: appends write disjoint objects (see the S3 store's docstring).
        async with one.upload_lock(upload), two.upload_lock(upload):
            return
    async with one.upload_lock(upload):
        with pytest.raises(UploadBusy):
            async with two.upload_lock(upload):
                pass
    async with two.upload_lock(upload):
        pass
