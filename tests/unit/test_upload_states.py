"""On the filesystem store an upload's state lives beside its bytes (store.blobs.filesystem
UploadStateFiles): starting an upload and appending to it commit no database transaction, and
completing it commits one, the blob's row and link. Whose an upload is, where it stands, and
what garbage collection removes are unchanged (test_oci_conformance, test_trust_upload_integrity,
test_ops_gc and test_crash_safety hold that through the registry API)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from dockyard.core.errors import UploadNotFoundException
from dockyard.core.registry import gc, repositories, uploads
from dockyard.core.registry.manifests import compute_digest
from dockyard.core.registry.repositories import RepositorySettings
from dockyard.core.services import Services
from dockyard.store import schema
from dockyard.store.blobs.filesystem import FilesystemBlobStore, UploadStateFiles
from dockyard.store.blobs.interface import UploadGone, UploadState
from tests.support import core_services
from tests.support.core_services import ACCOUNT, caller


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Services]:
    services = await core_services.with_repository(tmp_path)
    yield services
    await services.close()


@contextmanager
def writes_committed(svc: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The write transactions opened, and the statements that change a row, while inside."""
    opened: list[str] = []
    original = svc.db.write

    def counted(*args: Any, **kwargs: Any) -> AbstractAsyncContextManager[Any]:
        opened.append("write")
        return original(*args, **kwargs)

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if re.match(r"\s*(INSERT|UPDATE|DELETE)", statement):
            opened.append(statement.split()[0] + " " + statement.split()[2])

    monkeypatch.setattr(svc.db, "write", counted)
    event.listen(Engine, "before_cursor_execute", note)
    try:
        yield opened
    finally:
        event.remove(Engine, "before_cursor_execute", note)
        monkeypatch.setattr(svc.db, "write", original)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def upload_rows(svc: Services) -> int:
    async with svc.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(schema.uploads))).scalar_one())


async def test_a_chunked_push_commits_one_write_transaction(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = b"a" * 3000, b"b" * 2000
    digest = compute_digest(first + second)
    with writes_committed(svc, monkeypatch) as written:
        upload = await uploads.start_upload(svc, caller(), ACCOUNT, "app")
        await uploads.append(svc, caller(), ACCOUNT, "app", upload.id, chunks(first), start=0, last_byte=2999)
        standing = await uploads.append(svc, caller(), ACCOUNT, "app", upload.id, chunks(second))
        assert written == [], "starting and appending write no row"
        assert await upload_rows(svc) == 0
        assert standing.size == 5000 and standing.parts == 2
        status = await uploads.find_upload(svc, caller(), ACCOUNT, "app", upload.id, "ecr:UploadLayerPart")
        assert status.size == 5000
        await uploads.complete(svc, caller(), ACCOUNT, "app", upload.id, digest)
    assert written[0] == "write" and "write" not in written[1:], written
    assert not [w for w in written if "uploads" in w], written
    with pytest.raises(UploadNotFoundException):
        await uploads.find_upload(svc, caller(), ACCOUNT, "app", upload.id, "ecr:UploadLayerPart")
    assert not list((svc.settings.blob_root / "uploads").iterdir()), "nothing of the upload is left"


async def test_an_upload_is_its_repositorys_even_after_the_name_is_reused(svc: Services) -> None:
    upload = await uploads.start_upload(svc, caller(), ACCOUNT, "app")
    await uploads.append(svc, caller(), ACCOUNT, "app", upload.id, chunks(b"x" * 10))
    state = await svc.blobs.upload_states.load(upload.id) if svc.blobs.upload_states else None
    assert state is not None and state.size == 10 and state.repository_id == upload.repository.id
    await repositories.create_repository(svc, caller(), ACCOUNT, "other", RepositorySettings())
    with pytest.raises(UploadNotFoundException):
        await uploads.append(svc, caller(), ACCOUNT, "other", upload.id, chunks(b"y"))
    await repositories.delete_repository(svc, caller(), ACCOUNT, "app", force=True)
    await repositories.create_repository(svc, caller(), ACCOUNT, "app", RepositorySettings())
    with pytest.raises(UploadNotFoundException):
        await uploads.find_upload(svc, caller(), ACCOUNT, "app", upload.id, "ecr:UploadLayerPart")


async def test_a_state_saved_after_its_bytes_went_names_no_upload(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    states = store.upload_states
    assert isinstance(states, UploadStateFiles)
    (tmp_path / "uploads" / "u1").touch()
    state = UploadState(1, 1.5, 2.0, 2.0, size=0)
    await states.save("u1", state)
    assert await states.load("u1") == state
    (tmp_path / "uploads" / "u1").unlink()  # a cancel or a completion took the bytes' name
    assert await states.load("u1") is None
    with pytest.raises(UploadGone):
        await states.save("u1", UploadState(1, 1.5, 2.0, 3.0, size=7, parts=1, writer="w"))
    assert not list((tmp_path / "uploads").iterdir())


async def test_gc_expires_idle_uploads_and_clears_what_a_crash_left(svc: Services) -> None:
    idle = await uploads.start_upload(svc, caller(), ACCOUNT, "app")
    await uploads.append(svc, caller(), ACCOUNT, "app", idle.id, chunks(b"z" * 5000))
    live = await uploads.start_upload(svc, caller(), ACCOUNT, "app")
    folder = svc.settings.blob_root / "uploads"
    (folder / "bytes-without-state").write_bytes(b"q" * 7)
    (folder / "state-without-bytes.state").write_text("{}")
    states = svc.blobs.upload_states
    assert states is not None
    state = await states.load(live.id)
    assert state is not None
    await states.save(
        live.id, UploadState(state.repository_id, state.repository_created, time.time(), time.time() + 60)
    )
    storage = await gc.storage_report(svc)
    assert (storage.upload_sessions, storage.upload_bytes) == (2, 5000)

    dry = await gc.collect(svc, dry_run=True, grace_seconds=0, upload_expiry_seconds=0, now=time.time() + 1)
    assert dry.uploads == [(idle.id, 5000)]
    assert sorted(dry.orphan_upload_files) == [("bytes-without-state", 7), ("state-without-bytes", 0)]
    done = await gc.collect(svc, dry_run=False, grace_seconds=0, upload_expiry_seconds=0, now=time.time() + 1)
    assert done.uploads == dry.uploads and sorted(done.orphan_upload_files) == sorted(dry.orphan_upload_files)
    assert sorted(p.name for p in folder.iterdir()) == sorted([live.id, f"{live.id}.state"])
    await uploads.find_upload(svc, caller(), ACCOUNT, "app", live.id, "ecr:UploadLayerPart")
