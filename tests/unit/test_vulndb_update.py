"""The pieces of `dockyard vulndb update`: archive URLs, verification (zip, OSV entries, the MD5 a
bucket states), the swap of one ecosystem's advisories, per-ecosystem ages and their gauges."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import tempfile
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

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
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
