"""dockyard.core.registry.storage_verify on a real filesystem blob store and SQLite metadata: each kind of damage
is found, a repair copies only a copy that hashes right, a pass resumes from its checkpoint, and
reads are held to the rate asked."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import insert

from dockyard.config import Settings
from dockyard.core.registry import blobs
from dockyard.core.registry.storage_verify import Checkpoint, Pacer, check_blob, open_repair_source, verify_store
from dockyard.core.services import Services
from dockyard.store import schema
from dockyard.store.blobs.filesystem import FilesystemBlobStore
from dockyard.store.database import upgrade_async

ACCOUNT = "123456789012"


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir()
    await upgrade_async(settings.sqlalchemy_url)
    services = Services.from_settings(settings)
    async with services.db.write() as conn:
        await conn.execute(insert(schema.accounts).values(account_id=ACCOUNT, created_at=0.0))
        await conn.execute(
            insert(schema.repositories).values(id=1, account_id=ACCOUNT, region="us-east-1", name="r", created_at=0.0)
        )
    yield services
    await services.close()


async def store_blob(svc: Services, data: bytes) -> str:
    """Put `data` in the store and record it as linked to repository 1, as a push would."""
    digest = await svc.blobs.put(data)
    async with svc.db.write() as conn:
        await conn.execute(insert(schema.blobs).values(digest=digest, size=len(data), created_at=0.0))
        await conn.execute(insert(schema.repository_blobs).values(repository_id=1, digest=digest, linked_at=0.0))
    return digest


def blob_file(svc: Services, digest: str) -> Path:
    path = svc.blobs.local_path(digest)
    assert path is not None
    return path


def checkpoint(svc: Services) -> Checkpoint:
    return Checkpoint(svc.settings.data_dir / "verify.json", "test-store")


async def test_each_kind_of_damage_is_found(svc: Services) -> None:
    healthy = await store_blob(svc, os.urandom(5000))
    missing = await store_blob(svc, os.urandom(5000))
    truncated = await store_blob(svc, os.urandom(5000))
    corrupted = await store_blob(svc, os.urandom(5000))
    blob_file(svc, missing).unlink()
    with open(blob_file(svc, truncated), "r+b") as handle:
        handle.truncate(100)
    data = bytearray(blob_file(svc, corrupted).read_bytes())
    data[10] ^= 0xFF
    blob_file(svc, corrupted).write_bytes(bytes(data))

    report = await verify_store(svc, checkpoint(svc))

    assert report.complete and report.checked == 4 and report.checked_bytes == 20000
    found = {d.digest: d for d in report.damaged}
    assert set(found) == {missing, truncated, corrupted}
    assert found[missing].damage == "missing"
    assert (found[truncated].damage, found[truncated].stored_size) == ("size", 100)
    assert found[corrupted].damage == "digest"
    assert found[corrupted].actual_digest == "sha256:" + hashlib.sha256(bytes(data)).hexdigest()
    assert await check_blob(svc.blobs, healthy, 5000, Pacer(None)) is None
    assert not checkpoint(svc).path.exists(), "a finished pass leaves no checkpoint"


async def test_repair_copies_only_a_good_copy(svc: Services, tmp_path: Path) -> None:
    good, corrupted, bad_copy, no_copy = (os.urandom(3000) for _ in range(4))
    digests = [await store_blob(svc, data) for data in (good, corrupted, bad_copy, no_copy)]
    backup = FilesystemBlobStore(tmp_path / "backup")
    for data in (good, corrupted, bad_copy):
        await backup.put(data)
    # The backup's copy of the third blob is corrupted too: it must not go in.
    backup.blob_path(digests[2]).write_bytes(b"x" * 3000)
    for digest in (digests[0], digests[2], digests[3]):
        blob_file(svc, digest).unlink()
    # Same size, other bytes: only re-hashing finds it, and the repair must replace it.
    blob_file(svc, digests[1]).write_bytes(b"y" * 3000)

    report = await verify_store(svc, checkpoint(svc), repair_from=open_repair_source(str(tmp_path / "backup")))

    outcome = {d.digest: d for d in report.damaged}
    assert [outcome[d].damage for d in digests] == ["missing", "digest", "missing", "missing"]
    assert outcome[digests[0]].repaired and outcome[digests[1]].repaired
    assert blob_file(svc, digests[0]).read_bytes() == good
    assert blob_file(svc, digests[1]).read_bytes() == corrupted
    assert not outcome[digests[2]].repaired and "damaged too" in (outcome[digests[2]].repair_error or "")
    assert not outcome[digests[3]].repaired and "no copy" in (outcome[digests[3]].repair_error or "")
    assert not blob_file(svc, digests[2]).exists(), "a copy that fails its digest replaces nothing"
    assert not list((svc.settings.blob_root / "uploads").iterdir()), "no upload is left behind"
    again = await verify_store(svc, checkpoint(svc))
    assert {d.digest for d in again.damaged} == {digests[2], digests[3]}


async def test_a_pass_resumes_from_its_checkpoint(svc: Services) -> None:
    digests = sorted([await store_blob(svc, os.urandom(1000)) for _ in range(5)])
    blob_file(svc, digests[0]).unlink()

    first = await verify_store(svc, checkpoint(svc), max_blobs=2)
    assert not first.complete and first.checked == 2
    assert [d.digest for d in first.damaged] == [digests[0]]
    assert checkpoint(svc).path.exists()

    # Damage before the checkpoint that was healed meanwhile is dropped; damage after it is found.
    blob_file(svc, digests[4]).unlink()
    rest = await verify_store(svc, checkpoint(svc))
    assert rest.resumed_after == digests[1]
    assert rest.complete and rest.checked == 5, "counts cover the whole pass"
    assert [d.digest for d in rest.damaged] == [digests[0], digests[4]]
    assert not checkpoint(svc).path.exists()

    await verify_store(svc, checkpoint(svc), max_blobs=3)
    restarted = await verify_store(svc, checkpoint(svc), restart=True)
    assert restarted.resumed_after is None and restarted.checked == 5


async def test_reads_are_held_to_the_rate(svc: Services) -> None:
    for _ in range(3):
        await store_blob(svc, os.urandom(256 * 1024))
    started = time.monotonic()
    report = await verify_store(svc, checkpoint(svc), rate=512 * 1024)
    # 768 KiB at 512 KiB/s: at least a second and a half, however fast the disk.
    assert report.checked_bytes == 3 * 256 * 1024
    assert time.monotonic() - started >= 1.5


async def test_a_read_never_ends_short_or_starts_on_nothing(svc: Services) -> None:
    # What object stores rely on (their HEADs are not checked per request): the stream itself.
    data = os.urandom(600_000)
    digest = await store_blob(svc, data)
    with open(blob_file(svc, digest), "r+b") as handle:
        handle.truncate(400_000)
    stream = await blobs.open_stream(svc, digest, len(data))
    received = bytearray()
    with pytest.raises(blobs.BlobDamaged) as short:
        async for chunk in stream:
            received += chunk
    assert short.value.damage == "size" and bytes(received) == data[:400_000]
    blob_file(svc, digest).unlink()
    with pytest.raises(blobs.BlobDamaged) as gone:
        await blobs.open_stream(svc, digest, len(data), 10, 20)
    assert gone.value.damage == "missing"
