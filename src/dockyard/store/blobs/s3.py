"""Blobs in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, R2, ...), through aiobotocore.

Layout under s3://<bucket>/<prefix>:

    blobs/<algorithm>/<hex>              a verified blob, named by its digest
    archive/<algorithm>/<hex>            a blob in the archive tier, in the operator's colder
                                         storage class (one that reads at once: GLACIER_IR...)
    uploads/<id>/state-<size>-<writer>   an upload as the append <writer> left it (JSON, see _State)
    uploads/<id>/part-<writer>-<n>       a full part (PART_SIZE bytes) written by that append
    uploads/<id>/tail-<writer>           the bytes past its last full part

Why so: S3 wants every part of a multipart upload but the last to be at least 5 MiB, while a
registry client may PATCH chunks of any size, so bytes wait in objects until the upload is
finished, and only then become one object, by server-side copies of the parts.

Every object an append writes carries its own random writer id, so no object is ever
overwritten: two nodes fed the same range at once write disjoint objects, and the metadata
database, which records (size, writer) of the one append it acknowledged, decides which state
counts. A finished blob is made of exactly the objects that state names, and its digest is checked
over those bytes: with this node's running hash when this node wrote exactly that state, by reading
the objects back otherwise. A blob becomes visible only once verified, is written with
If-None-Match so a sound one is never replaced, and memory stays at one part per upload in flight."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from dockyard.store.blobs.interface import (
    READ_SIZE,
    Appended,
    DigestMismatch,
    RunningHash,
    StoredFile,
    UploadGone,
    UploadStates,
    new_writer,
    split_digest,
)

# Parts are this big (S3's minimum is 5 MiB); one part per upload in flight is held in memory.
PART_SIZE = 8 * 1024 * 1024
# CopyObject copies up to 5 GiB; bigger objects are copied in parts of COPY_PART_SIZE.
COPY_LIMIT = 5 * 1024 * 1024 * 1024
COPY_PART_SIZE = 512 * 1024 * 1024
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, key prefix) from s3://bucket[/prefix]; the prefix ends with "/" unless empty."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"blob store {url!r} is not s3://BUCKET[/PREFIX]")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code"))


def _missing(exc: ClientError) -> bool:
    return _code(exc) in _MISSING


@dataclass
class _State:
    """An upload as one append left it: its full parts, in order, and its tail's length."""

    parts: list[str] = field(default_factory=list)  # object names under uploads/<id>/
    tail: int = 0
    writer: str | None = None

    def to_json(self) -> bytes:
        return json.dumps({"parts": self.parts, "tail": self.tail, "writer": self.writer}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> _State:
        raw = json.loads(data)
        return cls(list(raw["parts"]), int(raw["tail"]), raw["writer"])

    @property
    def tail_name(self) -> str:
        return f"tail-{self.writer}"

    @property
    def size(self) -> int:
        return len(self.parts) * PART_SIZE + self.tail


class S3BlobStore:
    """The BlobStore interface (dockyard.store.blobs.filesystem) over one bucket and key prefix."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        redirect: bool = False,
        url_lifetime_seconds: int = 3600,
        archive_storage_class: str = "GLACIER_IR",
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.archive_storage_class = archive_storage_class
        self.endpoint_url = endpoint_url
        self.region = region
        self.redirect = redirect
        self.url_lifetime_seconds = url_lifetime_seconds
        self._client: Any = None
        self._exit = AsyncExitStack()
        self._opening = asyncio.Lock()
        # Running hashes of uploads appended on this node, each for the (size, writer) it covers;
        # another node (or a state another append wrote since) re-reads the bytes instead.
        self._hashing: dict[str, RunningHash] = {}
        # Nodes share the bucket with no lock between them: the metadata database's
        # compare-and-set decides racing appends, so it keeps the uploads' state.
        self.upload_states: UploadStates | None = None

    # -- keys and the client ------------------------------------------------------------------

    def blob_key(self, digest: str) -> str:
        algorithm, hexpart = split_digest(digest)
        return f"{self.prefix}blobs/{algorithm}/{hexpart}"

    def archive_key(self, digest: str) -> str:
        algorithm, hexpart = split_digest(digest)
        return f"{self.prefix}archive/{algorithm}/{hexpart}"

    def _upload_key(self, upload_id: str, name: str) -> str:
        return f"{self.prefix}uploads/{upload_id}/{name}"

    async def _s3(self) -> Any:
        """The client, made on first use inside the running event loop (each worker has its own)."""
        if self._client is None:
            async with self._opening:
                if self._client is None:
                    config = AioConfig(
                        # Path-style addressing: what MinIO, Ceph and most self-hosted stores expect.
                        s3={"addressing_style": "path"} if self.endpoint_url else {},
                        retries={"max_attempts": 5, "mode": "standard"},
                        max_pool_connections=64,
                    )
                    session = get_session()
                    self._client = await self._exit.enter_async_context(
                        session.create_client(
                            "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
                        )
                    )
        return self._client

    async def close(self) -> None:
        await self._exit.aclose()
        self._client = None

    async def ping(self) -> None:
        await (await self._s3()).head_bucket(Bucket=self.bucket)

    # -- small objects ------------------------------------------------------------------------

    async def _get(self, key: str) -> bytes | None:
        try:
            response = await (await self._s3()).get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        async with response["Body"] as body:
            return bytes(await body.read())

    async def _put(self, key: str, data: bytes) -> None:
        await (await self._s3()).put_object(Bucket=self.bucket, Key=key, Body=data)

    async def _state(self, upload_id: str, size: int, writer: str | None) -> _State:
        if size == 0 and writer is None:
            return _State()
        raw = await self._get(self._upload_key(upload_id, f"state-{size}-{writer}"))
        if raw is None:
            raise UploadGone(upload_id)
        return _State.from_json(raw)

    async def _tail(self, upload_id: str, state: _State) -> bytes:
        if not state.tail:
            return b""
        tail = await self._get(self._upload_key(upload_id, state.tail_name))
        if tail is None or len(tail) != state.tail:
            raise UploadGone(upload_id)
        return tail

    # -- uploads ------------------------------------------------------------------------------

    async def start_upload(self, upload_id: str) -> None:
        # Nothing to write yet: the empty state is implied.
        self._hashing[upload_id] = RunningHash(0)

    @asynccontextmanager
    async def upload_lock(self, upload_id: str) -> AsyncIterator[None]:
        """No lock is needed: appends write disjoint objects, and the metadata's record of (size,
        writer) is the one place where racing appends are decided (dockyard.core.registry.uploads)."""
        yield

    async def append(self, upload_id: str, offset: int, writer: str | None, chunks: AsyncIterator[bytes]) -> Appended:
        """Add `chunks` to the upload as the append `writer` left it at `offset` bytes."""
        state = await self._state(upload_id, offset, writer)
        buffer = bytearray(await self._tail(upload_id, state))
        hashing = self._hashing.pop(upload_id, None)
        if hashing is None or not hashing.matches(offset, writer):
            hashing = RunningHash(0) if offset == 0 else None
        mine = _State(list(state.parts), 0, new_writer())
        size = offset
        async for chunk in chunks:
            buffer += chunk
            size += len(chunk)
            if hashing is not None:
                hashing.hasher.update(chunk)
            while len(buffer) >= PART_SIZE:
                name = f"part-{mine.writer}-{len(mine.parts)}"
                await self._put(self._upload_key(upload_id, name), bytes(buffer[:PART_SIZE]))
                mine.parts.append(name)
                del buffer[:PART_SIZE]
        if size == offset:
            if hashing is not None:
                self._hashing[upload_id] = hashing
            return Appended(offset, writer)
        mine.tail = len(buffer)
        if buffer:
            await self._put(self._upload_key(upload_id, mine.tail_name), bytes(buffer))
        await self._put(self._upload_key(upload_id, f"state-{size}-{mine.writer}"), mine.to_json())
        if hashing is not None:
            hashing.offset, hashing.writer = size, mine.writer
            self._hashing[upload_id] = hashing
        return Appended(size, mine.writer)

    async def verify_upload(self, upload_id: str, size: int, writer: str | None, digest: str) -> None:
        algorithm, expected = split_digest(digest)
        hashing = self._hashing.get(upload_id)
        if hashing is not None and hashing.matches(size, writer) and algorithm == "sha256":
            actual = hashing.hasher.copy().hexdigest()
        else:
            state = await self._state(upload_id, size, writer)
            hasher = hashlib.new(algorithm)
            for name in state.parts:
                async for data in self._read_key(self._upload_key(upload_id, name)):
                    await asyncio.to_thread(hasher.update, data)
            hasher.update(await self._tail(upload_id, state))
            actual = hasher.hexdigest()
        if actual != expected:
            raise DigestMismatch(f"{algorithm}:{actual}")

    async def place_upload(self, upload_id: str, size: int, writer: str | None, digest: str) -> None:
        """Write the verified upload under its digest: one object made of exactly the objects the
        state names, conditional on no blob being there (one of the wrong size is damaged, and
        is replaced)."""
        found = await self.size(digest)
        if found == size:
            return
        self._hashing.pop(upload_id, None)
        state = await self._state(upload_id, size, writer)
        tail = await self._tail(upload_id, state)
        condition = {"IfNoneMatch": "*"} if found is None else {}
        try:
            if not state.parts:
                await (await self._s3()).put_object(
                    Bucket=self.bucket, Key=self.blob_key(digest), Body=tail, **condition
                )
            else:
                await self._compose(upload_id, state, tail, self.blob_key(digest), condition)
        except ClientError as exc:
            # Another request placed the same verified bytes first.
            if _code(exc) not in ("PreconditionFailed", "412"):
                raise

    async def _compose(
        self, upload_id: str, state: _State, tail: bytes, target: str, condition: dict[str, str]
    ) -> None:
        s3 = await self._s3()
        created = await s3.create_multipart_upload(Bucket=self.bucket, Key=target)
        multipart = created["UploadId"]
        try:
            parts = []
            for number, name in enumerate(state.parts, start=1):
                copied = await s3.upload_part_copy(
                    Bucket=self.bucket,
                    Key=target,
                    UploadId=multipart,
                    PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": self._upload_key(upload_id, name)},
                )
                parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
            if tail:
                number = len(parts) + 1
                uploaded = await s3.upload_part(
                    Bucket=self.bucket, Key=target, UploadId=multipart, PartNumber=number, Body=tail
                )
                parts.append({"PartNumber": number, "ETag": uploaded["ETag"]})
            await s3.complete_multipart_upload(
                Bucket=self.bucket, Key=target, UploadId=multipart, MultipartUpload={"Parts": parts}, **condition
            )
        except BaseException:
            await s3.abort_multipart_upload(Bucket=self.bucket, Key=target, UploadId=multipart)
            raise

    async def cancel_upload(self, upload_id: str) -> None:
        self._hashing.pop(upload_id, None)
        s3 = await self._s3()
        keys = [obj["Key"] async for obj in self._list(self._upload_key(upload_id, ""))]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            await s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    # -- blobs --------------------------------------------------------------------------------

    async def put(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        found = await self.size(digest)
        if found != len(data):
            condition = {"IfNoneMatch": "*"} if found is None else {}
            try:
                await (await self._s3()).put_object(
                    Bucket=self.bucket, Key=self.blob_key(digest), Body=data, **condition
                )
            except ClientError as exc:
                if _code(exc) not in ("PreconditionFailed", "412"):
                    raise
        return digest

    async def _object_size(self, key: str) -> int | None:
        try:
            head = await (await self._s3()).head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    async def size(self, digest: str) -> int | None:
        return await self._object_size(self.blob_key(digest))

    async def read(self, digest: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the blob, streamed from the object store. A missing object raises
        FileNotFoundError, as a missing file does in the filesystem store."""
        try:
            async for data in self._read_key(self.blob_key(digest), start, end):
                yield data
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(digest) from exc
            raise

    async def _read_key(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if end is not None and end <= start:
            return
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            arguments["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        response = await (await self._s3()).get_object(**arguments)
        async with response["Body"] as body:
            while data := await body.read(READ_SIZE):
                yield data

    def local_path(self, digest: str) -> None:
        return None

    async def download_url(self, digest: str) -> str | None:
        """A presigned GET of the blob when configured to redirect pulls (as ECR sends them to S3)."""
        if not self.redirect:
            return None
        url = (await self._s3()).generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.blob_key(digest)},
            ExpiresIn=self.url_lifetime_seconds,
        )
        return str(await url if inspect.isawaitable(url) else url)

    async def delete(self, digest: str) -> None:
        await (await self._s3()).delete_object(Bucket=self.bucket, Key=self.blob_key(digest))

    # -- listings for garbage collection -------------------------------------------------------

    async def _list(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        paginator = (await self._s3()).get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj

    async def stored_blobs(self) -> AsyncIterator[StoredFile]:
        root = f"{self.prefix}blobs/"
        async for obj in self._list(root):
            algorithm, _, hexpart = obj["Key"][len(root) :].partition("/")
            yield StoredFile(f"{algorithm}:{hexpart}", int(obj["Size"]), _timestamp(obj["LastModified"]))

    async def stored_uploads(self) -> AsyncIterator[StoredFile]:
        """One entry per upload: its objects' total size and latest change."""
        root = f"{self.prefix}uploads/"
        found: dict[str, tuple[int, float]] = {}
        async for obj in self._list(root):
            upload_id = obj["Key"][len(root) :].partition("/")[0]
            size, changed = found.get(upload_id, (0, 0.0))
            found[upload_id] = (size + int(obj["Size"]), max(changed, _timestamp(obj["LastModified"])))
        for upload_id, (size, changed) in found.items():
            yield StoredFile(upload_id, size, changed)

    # -- the archive tier ---------------------------------------------------------------------

    async def archive_blob(self, digest: str) -> None:
        await self._copy_verified(self.blob_key(digest), self.archive_key(digest), digest, self.archive_storage_class)

    async def restore_blob(self, digest: str) -> None:
        await self._copy_verified(self.archive_key(digest), self.blob_key(digest), digest, "STANDARD")

    async def archived_size(self, digest: str) -> int | None:
        return await self._object_size(self.archive_key(digest))

    async def read_archived(self, digest: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        try:
            async for data in self._read_key(self.archive_key(digest), start, end):
                yield data
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(digest) from exc
            raise

    async def delete_archived(self, digest: str) -> None:
        await (await self._s3()).delete_object(Bucket=self.bucket, Key=self.archive_key(digest))

    async def stored_archived_blobs(self) -> AsyncIterator[StoredFile]:
        root = f"{self.prefix}archive/"
        async for obj in self._list(root):
            algorithm, _, hexpart = obj["Key"][len(root) :].partition("/")
            yield StoredFile(f"{algorithm}:{hexpart}", int(obj["Size"]), _timestamp(obj["LastModified"]))

    async def _copy_verified(self, source: str, target: str, digest: str, storage_class: str) -> None:
        """Copy object `source` to `target` in `storage_class`, once its bytes hash to `digest`
        (the copy is server-side; the check reads the source once). A sound target stays."""
        size = await self._object_size(source)
        if size is None:
            raise FileNotFoundError(digest)
        if await self._object_size(target) == size:
            return
        algorithm, expected = split_digest(digest)
        hasher = hashlib.new(algorithm)
        async for data in self._read_key(source):
            await asyncio.to_thread(hasher.update, data)
        if hasher.hexdigest() != expected:
            raise DigestMismatch(f"{algorithm}:{hasher.hexdigest()}")
        s3 = await self._s3()
        copy_source = {"Bucket": self.bucket, "Key": source}
        if size <= COPY_LIMIT:
            await s3.copy_object(Bucket=self.bucket, Key=target, CopySource=copy_source, StorageClass=storage_class)
            return
        created = await s3.create_multipart_upload(Bucket=self.bucket, Key=target, StorageClass=storage_class)
        multipart = created["UploadId"]
        try:
            parts = []
            for number, first in enumerate(range(0, size, COPY_PART_SIZE), start=1):
                last = min(first + COPY_PART_SIZE, size) - 1
                copied = await s3.upload_part_copy(
                    Bucket=self.bucket,
                    Key=target,
                    UploadId=multipart,
                    PartNumber=number,
                    CopySource=copy_source,
                    CopySourceRange=f"bytes={first}-{last}",
                )
                parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
            await s3.complete_multipart_upload(
                Bucket=self.bucket, Key=target, UploadId=multipart, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            await s3.abort_multipart_upload(Bucket=self.bucket, Key=target, UploadId=multipart)
            raise


def _timestamp(value: datetime | str) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(value).timestamp()
