"""The pieces of `dockyard vulndb update`: archive URLs, verification (zip, OSV entries, the MD5 a
bucket states), the swap of one ecosystem's advisories, per-ecosystem ages and their gauges."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from dockyard.observe.scrape import _vulndb_metrics
from dockyard.store.database import Database, upgrade
from dockyard.vulndb import store as vulndb
from dockyard.vulndb import update
from tests.support.console_app import console_app


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schema") / "metadata.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
async def db(tmp_path: Path, migrated: Path) -> AsyncIterator[Database]:
    path = tmp_path / "metadata.db"
    shutil.copyfile(migrated, path)
    database = Database(f"sqlite+aiosqlite:///{path}", durable=False)
    yield database
    await database.close()


def record(vuln_id: str, ecosystem: str = "Debian:12", name: str = "openssl") -> dict[str, object]:
    return {
        "id": vuln_id,
        "modified": "2024-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": ecosystem, "name": name}, "versions": ["1.0"]}],
    }


def zipped(*records: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for item in records:
            archive.writestr(f"{item['id']}.json", json.dumps(item))
    return buffer.getvalue()


def test_archive_urls_and_ecosystem_lists() -> None:
    assert update.archive_url("https://m.example/osv/", "Red Hat") == "https://m.example/osv/Red%20Hat/all.zip"
    assert update.archive_url(update.DEFAULT_URL, "crates.io") == (
        "https://osv-vulnerabilities.storage.googleapis.com/crates.io/all.zip"
    )
    assert update.parse_ecosystems(["PyPI, Red Hat,,PyPI", "Go"]) == ["PyPI", "Red Hat", "Go"]


def test_an_archive_is_read_whole_or_refused() -> None:
    with tempfile.TemporaryFile() as good:
        good.write(zipped(record("DSA-1"), record("DSA-2")))
        good.seek(0)
        assert sorted(a.id for a in update.read_archive(good)) == ["DSA-1", "DSA-2"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("DSA-1.json", json.dumps(record("DSA-1")))
        archive.writestr("DSA-2.json", json.dumps({"summary": "no id"}))
    for body in (buffer.getvalue(), b"not a zip", zipped()):
        with pytest.raises(update.ArchiveError):
            update.read_archive(io.BytesIO(body))


async def test_a_download_whose_md5_differs_from_the_stated_one_is_refused(db: Database) -> None:
    body = zipped(record("DSA-1"))
    stated = {"value": hashlib.md5(body, usedforsecurity=False).digest()}

    def answer(request: httpx.Request) -> httpx.Response:
        header = "crc32c=AAAAAA==,md5=" + base64.b64encode(stated["value"]).decode()
        return httpx.Response(200, stream=httpx.ByteStream(body), headers={"x-goog-hash": header, "etag": '"1"'})

    with httpx.Client(transport=httpx.MockTransport(answer)) as http:
        (ok,) = await update.update(db, "http://mirror", ["Debian"], http=http)
        assert (ok.state, ok.advisories) == ("updated", 1)
        stated["value"] = hashlib.md5(b"something else", usedforsecurity=False).digest()
        (refused,) = await update.update(db, "http://mirror", ["Debian"], http=http)
    assert refused.state == "failed" and "MD5" in (refused.error or "")
    status = await vulndb.status(db)
    assert [(s.ecosystem, s.advisories) for s in status.sources] == [("Debian", 1)]
    assert status.sources[0].error is not None


async def test_replacing_an_ecosystem_keeps_records_other_ecosystems_name(db: Database) -> None:
    shared = {
        "id": "GHSA-1",
        "modified": "2024-01-01T00:00:00Z",
        "affected": [
            {"package": {"ecosystem": "PyPI", "name": "a"}, "versions": ["1"]},
            {"package": {"ecosystem": "npm", "name": "a"}, "versions": ["1"]},
        ],
    }
    source = vulndb.Validators("http://mirror/PyPI/all.zip", '"1"', None)
    await vulndb.replace_ecosystem(db, "PyPI", update.read_archive(io.BytesIO(zipped(shared))), source)
    await vulndb.replace_ecosystem(db, "npm", update.read_archive(io.BytesIO(zipped(shared))), source)
    # PyPI's next archive drops GHSA-1: npm still names it, so it stays, for npm only.
    await vulndb.replace_ecosystem(
        db, "PyPI", update.read_archive(io.BytesIO(zipped(record("PYSEC-1", "PyPI")))), source
    )
    status = await vulndb.status(db)
    assert status.by_ecosystem == {"PyPI": 1, "npm": 1}
    assert status.advisories == 2
    async with db.read() as conn:
        loaded = await vulndb.ecosystems_loaded(conn)
        assert set(loaded) == {"PyPI", "npm"}
        assert all(abs(moment - time.time()) < 600 for moment in loaded.values())
        assert set(await vulndb.candidates(conn, [("PyPI", "a"), ("npm", "a")])) == {("npm", "a")}


async def test_imports_record_their_ecosystems(db: Database) -> None:
    documents = [
        ("a.json", json.dumps(record("DSA-1")).encode()),
        ("b.json", json.dumps(record("ALSA-1", "Alpine:v3.19")).encode()),
    ]
    await vulndb.import_records(db, "/archives", documents)
    async with db.read() as conn:
        assert set(await vulndb.ecosystems_loaded(conn)) == {"Debian", "Alpine"}
    assert await vulndb.validators(db, "Debian") == vulndb.Validators("/archives", None, None)


def test_the_gauges_name_each_ecosystem_and_the_oldest_age() -> None:
    moment = time.time()
    families = {f.name: f for f in _vulndb_metrics({"PyPI": (3, moment - 100), "Debian": (7, moment - 1000)})}
    assert {s.labels["ecosystem"]: s.value for s in families["dockyard_vulndb_advisories"].samples} == {
        "PyPI": 3,
        "Debian": 7,
    }
    (age,) = families["dockyard_vulndb_age_seconds"].samples
    assert 1000 <= age.value < 1100
    assert "dockyard_vulndb_age_seconds" not in {f.name for f in _vulndb_metrics({})}


async def test_a_failure_with_no_earlier_data_does_not_claim_to_keep_any(db: Database) -> None:
    body: dict[str, object] = {"value": b"", "status": 503}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(body["status"], stream=httpx.ByteStream(body["value"]), headers={"etag": '"1"'})

    with httpx.Client(transport=httpx.MockTransport(answer)) as http:
        (first,) = await update.update(db, "http://mirror", ["Debian"], http=http)
        assert (first.state, first.kept) == ("failed", False)
        assert "kept" not in first.describe() and "no data for it yet" in first.describe()
        body.update(value=zipped(record("DSA-1")), status=200)
        (loaded,) = await update.update(db, "http://mirror", ["Debian"], http=http)
        assert loaded.state == "updated"
        body.update(value=b"", status=503)
        (second,) = await update.update(db, "http://mirror", ["Debian"], http=http)
    assert (second.state, second.kept) == ("failed", True)
    assert "the previous data is kept" in second.describe()


def _pypi(prefix: str, count: int) -> list[vulndb.Advisory]:
    documents = [record(f"{prefix}-{n}", "PyPI", f"package-{n}") for n in range(count)]
    return update.read_archive(io.BytesIO(zipped(*documents)))


async def test_a_swap_stages_in_batches_without_the_write_lock_and_readers_see_old_or_new(
    db: Database, tmp_path: Path
) -> None:
    source = vulndb.Validators("http://mirror/PyPI/all.zip", '"1"', None)
    await vulndb.replace_ecosystem(db, "PyPI", _pypi("OLD", 300), source)
    old_ids = {f"OLD-{n}" for n in range(300)}
    seen: list[tuple[int, set[str]]] = []

    def pypi_ids(conn: sqlite3.Connection) -> set[str]:
        rows = conn.execute("SELECT DISTINCT vulnerability_id FROM vulnerability_packages WHERE ecosystem_base='PyPI'")
        return {row[0] for row in rows}

    def between_batches(staged: int) -> None:
        # Another process's write goes through at once (the lock is free between batches), and a
        # reader sees the old advisories whole: nothing staged shows.
        with contextlib.closing(sqlite3.connect(tmp_path / "metadata.db", timeout=30, isolation_level=None)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO leases (name, holder, expires_at) VALUES (?, 'other', 0)", (f"probe-{staged}",))
            conn.execute("COMMIT")
            seen.append((staged, pypi_ids(conn)))

    await vulndb.replace_ecosystem(db, "PyPI", _pypi("NEW", 1200), source, staged=between_batches)
    assert [count for count, _ in seen] == [500, 1000, 1200]
    assert all(ids == old_ids for _, ids in seen)
    with contextlib.closing(sqlite3.connect(tmp_path / "metadata.db")) as conn:
        assert pypi_ids(conn) == {f"NEW-{n}" for n in range(1200)}
        assert conn.execute("SELECT count(*) FROM vulnerabilities").fetchone() == (1200,)
        for table in ("vulndb_staged_vulnerabilities", "vulndb_staged_packages"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    status = await vulndb.status(db)
    assert status.by_ecosystem == {"PyPI": 1200}


def test_an_in_process_app_stops_at_once_while_its_first_download_hangs_in_a_name_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looking_up, release = threading.Event(), threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def hung_lookup(*args: object, **kwargs: object) -> object:
        # As on a host without a network whose resolver never answers.
        looking_up.set()
        release.wait()
        raise socket.gaierror(socket.EAI_AGAIN, "temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hung_lookup)
    stopped = threading.Event()

    def run_app() -> None:
        apps = console_app(
            tmp_path,
            vulndb_url="http://osv.invalid",
            vulndb_ecosystems=["PyPI"],
            vulndb_update_interval_seconds=86400.0,
        )
        for _console in apps:
            assert looking_up.wait(60), "the fresh app did not start fetching its data"
        stopped.set()

    runner = threading.Thread(target=run_app, daemon=True)
    try:
        runner.start()
        assert looking_up.wait(60), "the fresh app did not start fetching its data"
        started = time.monotonic()
        assert stopped.wait(30), "the app's shutdown waited for the hung name lookup"
        assert time.monotonic() - started < 30
    finally:
        release.set()
        monkeypatch.setattr(socket, "getaddrinfo", real_getaddrinfo)
        runner.join(60)
