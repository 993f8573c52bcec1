"""The vulnerability database and matching: OSV import (zip, directory), ecosystem-correct version
ranges, severities (distribution rating, CVSS, aliases), finding names and de-duplication."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from dockyard.core.services import now
from dockyard.scanner.inventory import Inventory, OperatingSystem, Package
from dockyard.scanner.matching import Finding, lookup_keys, match, related_ids, release_matches
from dockyard.scanner.versions import in_range, is_affected
from dockyard.store.database import Database, upgrade
from dockyard.vulndb import osv
from dockyard.vulndb import store as vulndb
from dockyard.vulndb.severity import from_rating, from_score, parse_cvss
from tests.support.scan_images import OSV_FIXTURES


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database at the newest schema, migrated once and copied for each test."""
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


async def findings_for(db: Database, inventory: Inventory) -> list[Finding]:
    async with db.read() as conn:
        candidates = await vulndb.candidates(conn, lookup_keys(inventory))
        known = await vulndb.vulnerabilities(conn, related_ids(c for g in candidates.values() for c in g))
    return match(inventory, candidates, known)


def summary(findings: list[Finding]) -> list[tuple[str, str, str, str]]:
    return [(f.name, f.severity, f.package_name, f.package_version) for f in findings]


DEBIAN = OperatingSystem("debian", "12", "Debian GNU/Linux 12 (bookworm)", "Debian", "12")


def deb(name: str, version: str, source: str | None = None) -> Package:
    return Package(name, version, "dpkg", "Debian", "12", source or name, version)


GO_STDLIB = [{"introduced": "0"}, {"fixed": "1.19.10"}, {"introduced": "1.20.0-0"}, {"fixed": "1.20.5"}]


@pytest.mark.parametrize(
    ("ecosystem", "range_type", "version", "events", "expected"),
    [
        # dpkg: "deb12u14" is after "deb12u3" (numerically, not as text), epochs count
        ("Debian", "ECOSYSTEM", "2.36-9+deb12u14", [{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}], False),
        ("Debian", "ECOSYSTEM", "2.36-9+deb12u2", [{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}], True),
        ("Debian", "ECOSYSTEM", "1:1.2.13.dfsg-1", [{"introduced": "0"}, {"fixed": "1.2.14"}], False),
        ("Debian", "ECOSYSTEM", "1.0~rc1-1", [{"introduced": "0"}, {"fixed": "1.0-1"}], True),
        # apk: -rN revisions, _pN suffixes
        ("Alpine", "ECOSYSTEM", "3.1.0-r4", [{"introduced": "0"}, {"fixed": "3.1.1-r0"}], True),
        ("Alpine", "ECOSYSTEM", "1.2.13-r1", [{"introduced": "0"}, {"fixed": "1.2.12-r2"}], False),
        ("Alpine", "ECOSYSTEM", "9.3_p2-r0", [{"introduced": "0"}, {"fixed": "9.3_p10-r0"}], True),
        # rpm: epoch beats version
        ("Rocky Linux", "ECOSYSTEM", "1:3.0.7-24.el9", [{"introduced": "0"}, {"fixed": "3.0.7-25.el9"}], False),
        ("Rocky Linux", "ECOSYSTEM", "3.0.7-24.el9", [{"introduced": "0"}, {"fixed": "3.0.7-25.el9"}], True),
        # PEP 440: 1.26.10 is after 1.26.5; pre-releases before their release
        ("PyPI", "ECOSYSTEM", "1.26.10", [{"introduced": "0"}, {"fixed": "1.26.5"}], False),
        ("PyPI", "ECOSYSTEM", "5.4rc1", [{"introduced": "0"}, {"fixed": "5.4"}], True),
        ("PyPI", "ECOSYSTEM", "2.31.0", [{"introduced": "2.3.0"}, {"fixed": "2.31.0"}], False),
        ("PyPI", "ECOSYSTEM", "2.2.0", [{"introduced": "2.3.0"}, {"fixed": "2.31.0"}], False),
        ("PyPI", "ECOSYSTEM", "2.0", [{"introduced": "1.0"}, {"last_affected": "2.0"}], True),
        ("PyPI", "ECOSYSTEM", "2.0.1", [{"introduced": "1.0"}, {"last_affected": "2.0"}], False),
        # semver: several introduced/fixed pairs; pre-releases
        ("Go", "SEMVER", "1.19.8", GO_STDLIB, True),
        ("Go", "SEMVER", "1.19.12", GO_STDLIB, False),
        ("Go", "SEMVER", "1.20.1", GO_STDLIB, True),
        ("npm", "SEMVER", "1.2.5", [{"introduced": "1.0.0"}, {"fixed": "1.2.6"}], True),
        ("npm", "SEMVER", "0.2.4", [{"introduced": "1.0.0"}, {"fixed": "1.2.6"}], False),
        ("npm", "SEMVER", "4.17.20", [{"fixed": "4.17.21"}, {"introduced": "0"}], True),  # events out of order
    ],
)  # fmt: skip
def test_version_ranges_are_ecosystem_correct(
    ecosystem: str, range_type: str, version: str, events: list[dict[str, str]], expected: bool
) -> None:
    assert in_range(version, ecosystem, range_type, events) is expected


def test_explicit_versions_and_unreadable_ones() -> None:
    assert is_affected("5.3.1", "PyPI", [], ["5.3", "5.3.1"])
    assert in_range("not a version!", "PyPI", "ECOSYSTEM", [{"introduced": "0"}]) is None
    assert in_range("1.0", "UnknownEcosystem", "ECOSYSTEM", [{"introduced": "0"}]) is None
    assert not is_affected("not a version!", "PyPI", [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}], [])


def test_severities() -> None:
    assert from_rating("unimportant") == "INFORMATIONAL"
    assert from_rating("low*") == "LOW"  # Debian marks
    assert from_rating("Important") == "HIGH"
    assert from_rating("MODERATE") == "MEDIUM"
    assert from_rating("not yet assigned") is None
    assert [from_score(s, 3) for s in (9.8, 9.0, 8.9, 7.0, 6.9, 4.0, 3.9, 0.1, 0.0)] == [
        "CRITICAL", "CRITICAL", "HIGH", "HIGH", "MEDIUM", "MEDIUM", "LOW", "LOW", "INFORMATIONAL",
    ]  # fmt: skip
    assert from_score(10.0, 2) == "HIGH"
    cvss = parse_cvss("CVSS_V3", "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N")
    assert cvss is not None and cvss.score == Decimal("6.1") and cvss.severity == "MEDIUM"
    assert parse_cvss("CVSS_V3", "CVSS:3.1/garbage") is None


async def test_import_from_a_zip_archive_and_replacement_by_newer_records(db: Database, tmp_path: Path) -> None:
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(OSV_FIXTURES.rglob("*.json")):
            out.write(path, path.name)
        out.writestr("broken.json", "{not json")
        out.writestr("noid.json", json.dumps({"affected": []}))
    assert osv.count_records(archive) == len(list(OSV_FIXTURES.rglob("*.json"))) + 2
    result = await vulndb.import_records(db, str(archive), osv.iter_records(archive))
    assert result.records == len(list(OSV_FIXTURES.rglob("*.json")))
    assert len(result.skipped) == 2 and any("broken.json" in s for s in result.skipped)

    again = await vulndb.import_records(db, "again", osv.iter_records(OSV_FIXTURES))
    assert again.records == result.records  # same modification times: stored again
    older = json.loads((OSV_FIXTURES / "PyPI" / "GHSA-8q59-q68h-6hv4.json").read_text())
    older |= {"modified": "2001-01-01T00:00:00Z", "summary": "older"}
    stale = await vulndb.import_records(db, "stale", [("old.json", json.dumps(older).encode())])
    assert (stale.records, stale.unchanged) == (0, 1)

    status = await vulndb.status(db)
    assert status.advisories == result.records
    assert status.by_ecosystem["PyPI"] == 5 and status.by_ecosystem["Debian"] == 5
    assert [i["source"] for i in status.imports] == ["stale", "again", str(archive)]
    assert status.updated_at is not None and status.updated_at <= now()


async def test_findings_for_debian_python_npm_and_go(db: Database) -> None:
    await vulndb.import_records(db, "fixtures", osv.iter_records(OSV_FIXTURES))
    inventory = Inventory(
        DEBIAN,
        [
            deb("apt", "2.6.1"),
            deb("tar", "1.34+dfsg-1.2+deb12u1"),
            deb("coreutils", "9.1-1"),
            deb("libc6", "2.36-9+deb12u14", "glibc"),
            deb("libc-bin", "2.36-9+deb12u14", "glibc"),
            deb("curl", "7.88.1-10+deb12u14"),
            Package("PyYAML", "5.3.1", "python", "PyPI"),
            Package("urllib3", "1.26.4", "python", "PyPI"),
            Package("requests", "2.31.0", "python", "PyPI"),
            Package("Jinja2", "3.1.4", "python", "PyPI"),
            Package("lodash", "4.17.20", "npm", "npm"),
            Package("minimist", "1.2.5", "npm", "npm"),
            Package("stdlib", "1.19.8", "go", "Go"),
        ],
    )
    findings = await findings_for(db, inventory)
    assert summary(findings) == [
        ("CVE-2020-14343", "CRITICAL", "PyYAML", "5.3.1"),  # GHSA and PYSEC records folded into one
        ("CVE-2021-44906", "CRITICAL", "minimist", "1.2.5"),
        ("CVE-2021-23337", "HIGH", "lodash", "4.17.20"),
        ("CVE-2021-33503", "HIGH", "urllib3", "1.26.4"),
        ("CVE-2023-29403", "HIGH", "stdlib", "1.19.8"),  # severity from the CVE record it aliases
        ("CVE-2017-18018", "MEDIUM", "coreutils", "9.1-1"),
        ("CVE-2011-3374", "LOW", "apt", "2.6.1"),  # severity from the upstream CVE record
        ("CVE-2005-2541", "INFORMATIONAL", "tar", "1.34+dfsg-1.2+deb12u1"),  # Debian's rating beats CVSS 10.0
    ]
    tar = next(f for f in findings if f.name == "CVE-2005-2541")
    assert dict(tar.attributes) == {
        "package_version": "1.34+dfsg-1.2+deb12u1",
        "package_name": "tar",
        "CVSS2_VECTOR": "AV:N/AC:L/Au:N/C:C/I:C/A:C",
        "CVSS2_SCORE": "10.0",
    }
    assert tar.uri == "https://security-tracker.debian.org/tracker/CVE-2005-2541"
    pyyaml = findings[0]
    assert dict(pyyaml.attributes)["CVSS3_SCORE"] == "9.8"
    assert pyyaml.as_ecr()["attributes"][:2] == [
        {"key": "package_version", "value": "5.3.1"},
        {"key": "package_name", "value": "PyYAML"},
    ]


async def test_releases_keep_advisories_apart(db: Database) -> None:
    await vulndb.import_records(db, "fixtures", osv.iter_records(OSV_FIXTURES))
    alpine_317 = OperatingSystem("alpine", "3.17.5", "Alpine Linux v3.17", "Alpine", "v3.17")
    inventory = Inventory(alpine_317, [Package("libssl3", "3.0.8-r4", "apk", "Alpine", "v3.17", "openssl")])
    assert summary(await findings_for(db, inventory)) == [("CVE-2023-2650", "MEDIUM", "openssl", "3.0.8-r4")]
    debian_11 = Inventory(None, [Package("curl", "7.74.0-1.3+deb11u7", "dpkg", "Debian", "11", "curl")])
    assert summary(await findings_for(db, debian_11)) == [("CVE-2023-38545", "CRITICAL", "curl", "7.74.0-1.3+deb11u7")]
    assert release_matches("", "12") and release_matches("22.04:LTS", "22.04")
    assert not release_matches("12", "11") and not release_matches("Pro:22.04:LTS", "22.04")


async def test_withdrawn_advisories_do_not_match(db: Database) -> None:
    record = json.loads((OSV_FIXTURES / "npm" / "GHSA-35jh-r3h4-6jhm.json").read_text())
    record |= {"withdrawn": "2024-01-01T00:00:00Z", "modified": "2030-01-01T00:00:00Z"}
    await vulndb.import_records(db, "withdrawn", [("w.json", json.dumps(record).encode())])
    inventory = Inventory(None, [Package("lodash", "4.17.20", "npm", "npm")])
    assert await findings_for(db, inventory) == []
