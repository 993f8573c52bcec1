"""RPM databases in all three formats, from packages rpmbuild built and rpm installed: the SQLite
database rpm wrote, the same headers in a Berkeley DB hash database written by libdb (and read back
by rpm's own bdb_ro backend as a cross-check), and in rpm's NDB layout; then damaged copies."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from dockyard.scanner.inventory import Inventory
from dockyard.scanner.matching import match
from dockyard.scanner.rpmdb import read_bdb_rpmdb, read_ndb_rpmdb, read_sqlite_rpmdb
from tests.support.scan_images import advisories, bdb_packages, ndb_packages, rpm_header_blobs, rpm_sqlite_database
from tests.unit.test_scanner_inventory import layer, rpm_header_blob, scan

PACKAGES = [
    ("openssl-libs", "1.0.2k", "19.el7", 1),
    ("bash", "4.2.46", "34.el7", None),
    ("glibc", "2.17", "326.el7_9", None),
]
EXPECTED = {("openssl-libs", "1:1.0.2k-19.el7"), ("bash", "4.2.46-34.el7"), ("glibc", "2.17-326.el7_9")}
RHEL7 = b'NAME="Red Hat Enterprise Linux Server"\nID="rhel"\nVERSION_ID="7.9"\nPRETTY_NAME="RHEL 7.9"\n'
SLES15 = b'NAME="SLES"\nID="sles"\nVERSION_ID="15.5"\nPRETTY_NAME="SUSE Linux Enterprise Server 15 SP5"\n'


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, bytes]]:
    workdir = tmp_path_factory.mktemp("rpm")
    database = rpm_sqlite_database(workdir, PACKAGES)
    assert {(p.name, p.version) for p in read_sqlite_rpmdb(str(database))} == EXPECTED
    return rpm_header_blobs(database)


def names_versions(found: list) -> set[tuple[str, str]]:
    return {(p.name, p.version) for p in found}


@pytest.mark.parametrize("pagesize", [512, 4096, 65536])
def test_berkeley_db_packages_written_by_libdb(tmp_path: Path, blobs: list[tuple[int, bytes]], pagesize: int) -> None:
    # A tiny header fits on its hash page; rpmbuild's headers (over 1 KiB) go to overflow chains.
    tiny = rpm_header_blob({"name": "tzdata", "version": "2024a", "release": "1.el7", "arch": "noarch"})
    database = bdb_packages(tmp_path, [*blobs, (len(blobs) + 1, tiny)], pagesize)
    found = read_bdb_rpmdb(str(database))
    assert names_versions(found) == EXPECTED | {("tzdata", "2024a-1.el7")}
    # rpm reads the very same file through its own Berkeley DB reader.
    listed = subprocess.run(
        ["rpm", "-qa", "--qf", "%{NAME}\n", "--dbpath", str(tmp_path), "--define", "_db_backend bdb_ro"],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert sorted(listed) == sorted(p.name for p in found)


def test_ndb_packages_db(blobs: list[tuple[int, bytes]], tmp_path: Path) -> None:
    database = tmp_path / "Packages.db"
    database.write_bytes(ndb_packages(blobs, free_slots=3))
    assert names_versions(read_ndb_rpmdb(str(database))) == EXPECTED


def test_rhel7_image_with_berkeley_db_and_sles_image_with_ndb(tmp_path: Path, blobs: list[tuple[int, bytes]]) -> None:
    bdb = bdb_packages(tmp_path, blobs).read_bytes()
    rhel = scan(tmp_path, layer(tmp_path, "rhel7", {"etc/os-release": RHEL7, "var/lib/rpm/Packages": bdb}))
    assert rhel.os is not None and (rhel.os.ecosystem, rhel.os.release) == ("Red Hat", "enterprise_linux:7")
    assert {(p.name, p.version, p.kind, p.path) for p in rhel.packages} == {
        (n, v, "rpm", "/var/lib/rpm/Packages") for n, v in EXPECTED
    }
    ndb = ndb_packages(blobs)
    sles = scan(tmp_path, layer(tmp_path, "sles", {"etc/os-release": SLES15, "usr/lib/sysimage/rpm/Packages.db": ndb}))
    assert sles.os is not None and sles.os.ecosystem == "SUSE"
    assert names_versions(sles.packages) == EXPECTED


def test_an_rpm_advisory_matches_the_berkeley_db_inventory(tmp_path: Path, blobs: list[tuple[int, bytes]]) -> None:
    bdb = bdb_packages(tmp_path, blobs).read_bytes()
    inventory = scan(tmp_path, layer(tmp_path, "rhel7", {"etc/os-release": RHEL7, "var/lib/rpm/Packages": bdb}))
    fixed_later = {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1:1.0.2k-21.el7_9"}]}
    fixed_before = {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1:1.0.2k-16.el7"}]}
    findings = match(inventory, advisories("openssl-libs", "Red Hat", [fixed_later], [fixed_before]), {})
    assert [(f.name, f.package_name, f.package_version) for f in findings] == [
        ("CVE-2023-0001", "openssl-libs", "1:1.0.2k-19.el7")
    ]


def damaged(data: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    choice = seed % 3
    if choice == 0:
        return bytes(out[: rng.randrange(len(out))])
    for _ in range(rng.randint(1, 64)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    if choice == 2:
        out[rng.randrange(min(len(out), 4096))] = 0xFF
    return bytes(out)


@pytest.mark.parametrize("kind", ["bdb", "ndb"])
def test_damaged_databases_raise_value_error_or_read(tmp_path: Path, blobs: list[tuple[int, bytes]], kind: str) -> None:
    original = bdb_packages(tmp_path, blobs, 512).read_bytes() if kind == "bdb" else ndb_packages(blobs)
    reader = read_bdb_rpmdb if kind == "bdb" else read_ndb_rpmdb
    target = tmp_path / "damaged"
    for seed in range(300):
        target.write_bytes(damaged(original, seed))
        try:
            found = reader(str(target))
        except ValueError:
            continue
        assert all(isinstance(p.name, str) for p in found)


def test_a_damaged_database_is_a_note_not_a_failed_scan(tmp_path: Path) -> None:
    files = {"etc/os-release": RHEL7, "var/lib/rpm/Packages": b"\0" * 8192, "var/lib/rpm/Packages.db": b"RpmP" * 9}
    inventory = scan(tmp_path, layer(tmp_path, "broken", files))
    assert inventory.packages == []
    assert inventory.notes == [
        "/var/lib/rpm/Packages.db: not an rpm NDB database",
        "/var/lib/rpm/Packages: not a Berkeley DB hash database",
    ]


def test_inventory_round_trips_through_json(tmp_path: Path, blobs: list[tuple[int, bytes]]) -> None:
    database = tmp_path / "Packages.db"
    database.write_bytes(ndb_packages(blobs))
    inventory = scan(
        tmp_path, layer(tmp_path, "sles", {"etc/os-release": SLES15, "var/lib/rpm/Packages.db": database.read_bytes()})
    )
    assert Inventory.from_json(inventory.to_json()) == inventory
