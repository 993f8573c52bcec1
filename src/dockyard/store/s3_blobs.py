"""Blobs in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, R2, ...), through aiobotocore.

Layout under s3://<bucket>/<prefix>:

    blobs/<algorithm>/<hex>          a verified blob, named by its digest
    uploads/<id>/state-<offset>      an upload as it stood at <offset> bytes (JSON, see _State)
    uploads/<id>/tail-<offset>-<w>   the bytes past the last full part at <offset>, by writer <w>
    uploads/<id>/data                the multipart upload of the parts, completed when the upload is

Why so: a layer push is an S3 multipart upload, so any node can add to it. S3 wants every part
but the last to be at least 5 MiB, while a registry client may PATCH chunks of any size; what does
not fill a part yet waits in a small tail object (not in the database: blob bytes then never go
through PostgreSQL's write-ahead log, and the metadata schema stays as it is). Each append writes
a new state object named by the size it reaches rather than overwriting one: the metadata database
records the size an append was acknowledged at, and the next append starts from exactly that
state, so bytes of an append that failed after writing (a refused range, a node killed before its
database commit) are never seen again. Their parts are overwritten by number or left out when the
upload completes. Every append names itself (a random writer id) in the state and tail objects it
writes, so a state always points at its own tail, and a node trusts its running hash only for a
state it wrote itself: two nodes wrongly fed the same chunk at once cannot mix their bytes.

A blob becomes visible only once verified: the completed upload is hashed (with this node's
running hash when it saw every byte, otherwise by reading the object back, so any node can finish
an upload another started), and only then copied to its digest's key. Memory stays at one part
per upload in flight."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from dockyard.store.blobs import READ_SIZE, DigestMismatch, StoredFile, UploadGone, _Hashing, _hex

# Parts are this big (S3's minimum is 5 MiB); one part per upload in flight is held in memory.
PART_SIZE = 8 * 1024 * 1024
# CopyObject copies up to 5 GiB in one request; bigger blobs are copied part by part.
COPY_LIMIT = 5 * 1024**3
COPY_PART_SIZE = 512 * 1024 * 1024
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, key prefix) from s3://bucket[/prefix]; the prefix ends with "/" unless empty."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"blob store {url!r} is not s3://BUCKET[/PREFIX]")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


@dataclass
class _State:
    """An upload at one offset: its multipart upload, the parts so far and the tail's length."""

    multipart_id: str
    parts: list[tuple[int, str, int]] = field(default_factory=list)  # (number, ETag, size)
    tail: int = 0
    # The append that wrote this state (and its tail object); "" for the empty upload.
    writer: str = ""

    def to_json(self) -> bytes:
        fields = {"multipart_id": self.multipart_id, "parts": self.parts, "tail": self.tail, "writer": self.writer}
        return json.dumps(fields).encode()

    @classmethod
    def from_json(cls, data: bytes) -> _State:
        raw = json.loads(data)
        return cls(raw["multipart_id"], [tuple(p) for p in raw["parts"]], raw["tail"], raw["writer"])

    def tail_name(self, offset: int) -> str:
        return f"tail-{offset}-{self.writer}"

    @property
    def next_part(self) -> int:
        return self.parts[-1][0] + 1 if self.parts else 1


class S3BlobStore:
    """The BlobStore interface (dockyard.store.blobs) over one bucket and key prefix."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        redirect: bool = False,
        url_lifetime_seconds: int = 3600,
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.endpoint_url = endpoint_url
        self.region = region
        self.redirect = redirect
        self.url_lifetime_seconds = url_lifetime_seconds
        self._client: Any = None
        self._exit = AsyncExitStack()
        self._opening = asyncio.Lock()
        # Running hashes of uploads appended on this node, with the writer id of the state they
        # match; another node (or a state another node wrote since) re-reads the bytes instead.
        self._hashing: dict[str, tuple[_Hashing, str]] = {}
        # The size the last append on this node left each upload at (finish_upload completes that).
        self._sizes: dict[str, int] = {}

    # -- keys and the client ------------------------------------------------------------------

    def blob_key(self, digest: str) -> str:
        algorithm, hexpart = _hex(digest)
        return f"{self.prefix}blobs/{algorithm}/{hexpart}"

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

    async def _state(self, upload_id: str, offset: int) -> _State:
        raw = await self._get(self._upload_key(upload_id, f"state-{offset}"))
        if raw is None:
            raise UploadGone(upload_id)
        return _State.from_json(raw)

    # -- uploads ------------------------------------------------------------------------------

    async def start_upload(self, upload_id: str) -> None:
        s3 = await self._s3()
        created = await s3.create_multipart_upload(
            Bucket=self.bucket, Key=self._upload_key(upload_id, "data"), ContentType="application/octet-stream"
        )
        await self._put(self._upload_key(upload_id, "state-0"), _State(created["UploadId"]).to_json())
        self._hashing[upload_id] = (_Hashing(0), "")
        self._sizes[upload_id] = 0

    async def append(self, upload_id: str, offset: int, chunks: AsyncIterator[bytes]) -> int:
        """Add `chunks` to the upload as it stood at `offset`; returns the new size."""
        state = await self._state(upload_id, offset)
        buffer = bytearray()
        if state.tail:
            tail = await self._get(self._upload_key(upload_id, state.tail_name(offset)))
            if tail is None or len(tail) != state.tail:
                raise UploadGone(upload_id)
            buffer += tail
        hashing = self._running_hash(upload_id, offset, state)
        size = offset
        async for chunk in chunks:
            buffer += chunk
            size += len(chunk)
            if hashing is not None:
                hashing.hasher.update(chunk)
            while len(buffer) >= PART_SIZE:
                await self._upload_part(upload_id, state, bytes(buffer[:PART_SIZE]))
                del buffer[:PART_SIZE]
        if size != offset:
            state.tail, state.writer = len(buffer), uuid.uuid4().hex
            if buffer:
                await self._put(self._upload_key(upload_id, state.tail_name(size)), bytes(buffer))
            await self._put(self._upload_key(upload_id, f"state-{size}"), state.to_json())
        if hashing is not None:
            hashing.offset = size
            self._hashing[upload_id] = (hashing, state.writer)
        self._sizes[upload_id] = size
        return size

    def _running_hash(self, upload_id: str, offset: int, state: _State) -> _Hashing | None:
        """This node's hash of the upload's first `offset` bytes, if it hashed exactly the bytes of
        `state`; taken out, as the bytes it goes on to hash may be refused."""
        kept = self._hashing.pop(upload_id, None)
        if kept is None:
            return None
        hashing, writer = kept
        return hashing if hashing.offset == offset and writer == state.writer else None

    async def _upload_part(self, upload_id: str, state: _State, data: bytes) -> None:
        number = state.next_part
        try:
            uploaded = await (await self._s3()).upload_part(
                Bucket=self.bucket,
                Key=self._upload_key(upload_id, "data"),
                UploadId=state.multipart_id,
                PartNumber=number,
                Body=data,
            )
        except ClientError as exc:
            if _missing(exc):
                raise UploadGone(upload_id) from exc
            raise
        state.parts.append((number, uploaded["ETag"], len(data)))

    async def finish_upload(
        self, upload_id: str, digest: str, before_move: Callable[[int], Awaitable[None]] | None = None
    ) -> int:
        """Verify the upload against `digest`, then copy it to the digest's key. It finishes the
        upload as the last append on this node left it (uploads.complete appends first)."""
        size = self._sizes.pop(upload_id, None)
        if size is None:
            raise UploadGone(upload_id)
        state = await self._state(upload_id, size)
        hashing = self._running_hash(upload_id, size, state)
        algorithm, expected = _hex(digest)
        tail = b""
        if state.tail:
            tail = await self._get(self._upload_key(upload_id, state.tail_name(size))) or b""
            if len(tail) != state.tail:
                raise UploadGone(upload_id)
        if not state.parts:
            # Smaller than one part: the bytes are at hand, verified and written in one go.
            if hashlib.new(algorithm, tail).hexdigest() != expected:
                raise DigestMismatch(f"{algorithm}:{hashlib.new(algorithm, tail).hexdigest()}")
            if before_move is not None:
                await before_move(size)
            await self._put(self.blob_key(digest), tail)
        else:
            data_key = self._upload_key(upload_id, "data")
            # Completed already when an earlier attempt named the wrong digest: the client may try again.
            if await self._object_size(data_key) != size:
                if tail:
                    await self._upload_part(upload_id, state, tail)
                await self._complete(upload_id, state)
            if hashing is not None and algorithm == "sha256":
                actual = hashing.hasher.hexdigest()
            else:
                actual = await self._hash_object(data_key, algorithm)
            if actual != expected:
                raise DigestMismatch(f"{algorithm}:{actual}")
            if before_move is not None:
                await before_move(size)
            await self._copy(data_key, self.blob_key(digest), size)
        await self._remove_upload(upload_id, state.multipart_id)
        return size

    async def _complete(self, upload_id: str, state: _State) -> None:
        try:
            await (await self._s3()).complete_multipart_upload(
                Bucket=self.bucket,
                Key=self._upload_key(upload_id, "data"),
                UploadId=state.multipart_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag, _ in state.parts]},
            )
        except ClientError as exc:
            if _missing(exc):
                raise UploadGone(upload_id) from exc
            raise

    async def _hash_object(self, key: str, algorithm: str) -> str:
        hasher = hashlib.new(algorithm)
        async for data in self._read_key(key):
            await asyncio.to_thread(hasher.update, data)
        return hasher.hexdigest()

    async def _copy(self, source: str, target: str, size: int) -> None:
        s3 = await self._s3()
        copy_source = {"Bucket": self.bucket, "Key": source}
        if size <= COPY_LIMIT:
            await s3.copy_object(Bucket=self.bucket, Key=target, CopySource=copy_source)
            return
        created = await s3.create_multipart_upload(Bucket=self.bucket, Key=target)
        parts = []
        for number, first in enumerate(range(0, size, COPY_PART_SIZE), start=1):
            last = min(first + COPY_PART_SIZE, size) - 1
            copied = await s3.upload_part_copy(
                Bucket=self.bucket,
                Key=target,
                UploadId=created["UploadId"],
                PartNumber=number,
                CopySource=copy_source,
                CopySourceRange=f"bytes={first}-{last}",
            )
            parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
        await s3.complete_multipart_upload(
            Bucket=self.bucket, Key=target, UploadId=created["UploadId"], MultipartUpload={"Parts": parts}
        )

    async def cancel_upload(self, upload_id: str) -> None:
        self._hashing.pop(upload_id, None)
        self._sizes.pop(upload_id, None)
        raw = await self._get(self._upload_key(upload_id, "state-0"))
        await self._remove_upload(upload_id, _State.from_json(raw).multipart_id if raw else None)

    async def _remove_upload(self, upload_id: str, multipart_id: str | None) -> None:
        s3 = await self._s3()
        if multipart_id is not None:
            try:
                await s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._upload_key(upload_id, "data"), UploadId=multipart_id
                )
            except ClientError as exc:
                if not _missing(exc):
                    raise
        keys = [obj["Key"] async for obj in self._list(self._upload_key(upload_id, ""))]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            await s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    # -- blobs --------------------------------------------------------------------------------

    async def put(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if await self.size(digest) is None:
            await self._put(self.blob_key(digest), data)
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

    def read(self, digest: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the blob, streamed from the object store."""
        return self._read_key(self.blob_key(digest), start, end)

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


def _timestamp(value: datetime | str) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(value).timestamp()
