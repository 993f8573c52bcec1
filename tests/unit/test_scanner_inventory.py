"""Inventories from real package databases: this machine's dpkg status, apk, rpmdb.sqlite, Python,
npm and Go build information (from this machine's own Go binaries)."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import sqlite3
import struct
import subprocess
import tarfile
from pathlib import Path

from dockyard.scanner.gobuild import MAGIC, parse_build_info, read_build_info
from dockyard.scanner.inventory import Inventory, Package, inventory_of, parse_os_release
from dockyard.scanner.layers import PathLayer
from dockyard.scanner.rpmdb import read_sqlite_rpmdb, source_name
from tests.support.scan_images import alpine_base, debian_base, dpkg_field, npm_app, python_packages


def layer(tmp_path: Path, name: str, files: dict[str, bytes], modes: dict[str, int] | None = None) -> PathLayer:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = (modes or {}).get(path, 0o644)
            archive.addfile(info, io.BytesIO(data))
    path = tmp_path / name
    path.write_bytes(gzip.compress(buffer.getvalue(), compresslevel=1))
    return PathLayer(f"sha256:{name}", str(path))


def scan(tmp_path: Path, *layers: PathLayer) -> Inventory:
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    return inventory_of(layers, str(spool))


def by_name(inventory: Inventory, kind: str) -> dict[str, Package]:
    return {p.name: p for p in inventory.packages if p.kind == kind}


def test_this_machines_dpkg_database(tmp_path: Path) -> None:
    inventory = scan(tmp_path, layer(tmp_path, "base", debian_base()))
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\n"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    expected = {line.split()[0]: line.split()[1] for line in installed if line.split()[2] == "ii"}
    found = by_name(inventory, "dpkg")
    assert {n: p.version for n, p in found.items()} == expected
    assert inventory.os is not None and inventory.os.ecosystem == "Debian" and inventory.os.release == "12"
    libc = found["libc6"]
    assert (libc.source_name, libc.source_version) == ("glibc", dpkg_field("libc6"))
    assert libc.purl(inventory.os).startswith("pkg:deb/debian/libc6@")
    # A binNMU: the binary's version differs from its source's, which is what advisories name.
    bash = found["bash"]
    assert bash.source_version == dpkg_field("bash") and bash.version == dpkg_field("bash", "Version")


def test_distroless_status_d_and_os_release_symlink(tmp_path: Path) -> None:
    status = b"Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n\n"
    files = {
        "usr/lib/os-release": b'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Distroless"\n',
        "var/lib/dpkg/status.d/base-files": status,
        "var/lib/dpkg/status.d/base-files.md5sums": b"d41d8cd98f00b204e9800998ecf8427e  etc/issue\n",
        "var/lib/dpkg/status.d/libssl3": b"Package: libssl3\nSource: openssl\nVersion: 3.0.11-1~deb12u2\n",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("etc/os-release")
        link.type, link.linkname = tarfile.SYMTYPE, "../usr/lib/os-release"
        archive.addfile(link)
    (tmp_path / "distroless").write_bytes(buffer.getvalue())
    inventory = scan(tmp_path, PathLayer("sha256:d", str(tmp_path / "distroless")))
    assert inventory.os is not None and inventory.os.pretty_name == "Distroless"
    found = by_name(inventory, "dpkg")
    assert set(found) == {"base-files", "libssl3"}
    assert found["libssl3"].match_name == "openssl"


def test_alpine_apk_database(tmp_path: Path) -> None:
    inventory = scan(tmp_path, layer(tmp_path, "alpine", alpine_base()))
    assert inventory.os is not None
    assert (inventory.os.ecosystem, inventory.os.release, inventory.os.version_id) == ("Alpine", "v3.18", "3.18.4")
    found = by_name(inventory, "apk")
    assert found["libcrypto3"].version == "3.1.0-r4" and found["libcrypto3"].match_name == "openssl"
    assert found["busybox"].arch == "x86_64"
    assert found["libssl3"].purl(inventory.os) == "pkg:apk/alpine/libssl3@3.1.0-r4?arch=x86_64&distro=alpine-3.18.4"


def test_python_dist_info_egg_info_and_whiteouts(tmp_path: Path) -> None:
    site = "usr/lib/python3/dist-packages"
    first = python_packages({"PyYAML": "5.3.1", "requests": "2.25.1"}) | {
        f"{site}/six-1.16.0.egg-info": b"Metadata-Version: 1.1\nName: six\nVersion: 1.16.0\n",
        f"{site}/chardet-4.0.0.egg-info/PKG-INFO": b"Metadata-Version: 1.2\nName: chardet\nVersion: 4.0.0\n",
    }
    removal = {"usr/local/lib/python3.11/site-packages/.wh.requests-2.25.1.dist-info": b""}
    upgrade = python_packages({"requests": "2.31.0"})
    inventory = scan(
        tmp_path, layer(tmp_path, "one", first), layer(tmp_path, "two", removal), layer(tmp_path, "three", upgrade)
    )
    found = {(p.name, p.version) for p in inventory.packages if p.kind == "python"}
    assert found == {("PyYAML", "5.3.1"), ("requests", "2.31.0"), ("six", "1.16.0"), ("chardet", "4.0.0")}
    pyyaml = by_name(inventory, "python")["PyYAML"]
    assert pyyaml.match_name == "pyyaml" and pyyaml.purl(None) == "pkg:pypi/pyyaml@5.3.1"


def test_npm_node_modules_and_lock_files(tmp_path: Path) -> None:
    files = npm_app({"lodash": "4.17.20", "@babel/core": "7.22.0"}, {"minimist": "1.2.5", "lodash": "4.17.20"})
    files["app/node_modules/lodash/fp/package.json"] = b'{"name": "lodash-fp-internal", "version": "0.0.0"}'
    files["old/package-lock.json"] = json.dumps(
        {
            "lockfileVersion": 1,
            "dependencies": {"express": {"version": "4.17.1", "dependencies": {"qs": {"version": "6.7.0"}}}},
        }
    ).encode()
    inventory = scan(tmp_path, layer(tmp_path, "npm", files))
    found = sorted((p.name, p.version) for p in inventory.packages if p.kind == "npm")
    assert found == [
        ("@babel/core", "7.22.0"),
        ("express", "4.17.1"),
        ("lodash", "4.17.20"),
        ("minimist", "1.2.5"),
        ("qs", "6.7.0"),
    ]
    babel = next(p for p in inventory.packages if p.name == "@babel/core")
    assert babel.purl(None) == "pkg:npm/%40babel/core@7.22.0"


def test_go_build_info_of_a_real_binary(tmp_path: Path) -> None:
    # skopeo is a Go program, and scripts/test installs it for the integration tests anyway.
    found = shutil.which("skopeo")
    assert found, "skopeo is missing: scripts/test installs it"
    binary = Path(found)
    expected = (
        subprocess.run(["go", "version", str(binary)], capture_output=True, text=True) if shutil.which("go") else None
    )
    info = read_build_info(binary.open("rb"))
    assert info is not None and info.go_version.startswith("go1.")
    if expected is not None and expected.returncode == 0:
        assert info.go_version in expected.stdout
    inventory = scan(tmp_path, layer(tmp_path, "go", {"usr/bin/tool": binary.read_bytes()}, {"usr/bin/tool": 0o755}))
    stdlib = [p for p in inventory.packages if p.kind == "go" and p.name == "stdlib"]
    assert [p.version for p in stdlib] == [info.go_version.removeprefix("go").split()[0]]
    assert stdlib[0].path == "/usr/bin/tool"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_go_module_information_with_replacements() -> None:
    sentinel_start = bytes.fromhex("3077af0c9274080241e1c107e6d618e6")
    sentinel_end = bytes.fromhex("f932433186182072008242104116d8f2")
    modinfo = (
        b"path\texample.com/cmd/app\nmod\texample.com\tv1.2.3\th1:abc=\n"
        b"dep\tgolang.org/x/net\tv0.7.0\th1:x=\ndep\tgithub.com/old/lib\tv1.0.0\th1:y=\n"
        b"=>\tgithub.com/new/lib\tv1.1.0\th1:z=\nbuild\tGOOS=linux\n"
    )
    wrapped = sentinel_start + modinfo + sentinel_end
    header = MAGIC + bytes([8, 2]) + bytes(16)
    blob = header + _varint(len(b"go1.21.4")) + b"go1.21.4" + _varint(len(wrapped)) + wrapped
    info = parse_build_info(blob)
    assert info is not None and info.go_version == "go1.21.4"
    assert info.main is not None and (info.main.path, info.main.version) == ("example.com", "v1.2.3")
    assert [(d.path, d.version) for d in info.deps] == [
        ("golang.org/x/net", "v0.7.0"),
        ("github.com/new/lib", "v1.1.0"),
    ]
    # Found in a stream, across chunk boundaries, after an ELF header.
    stream = io.BytesIO(b"\x7fELF" + b"\0" * (1024 * 1024 - 7) + blob + b"\0" * 100)
    assert read_build_info(stream) == info
    # Go before 1.18 points at the strings instead: not read.
    assert parse_build_info(MAGIC + bytes([8, 0]) + bytes(40)) is None


def test_os_release_parsing() -> None:
    text = '# comment\nNAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nPRETTY_NAME=\'Ubuntu 22.04.3 LTS\'\nBAD LINE\n'
    assert parse_os_release(text) == {
        "NAME": "Ubuntu",
        "VERSION_ID": "22.04",
        "ID": "ubuntu",
        "PRETTY_NAME": "Ubuntu 22.04.3 LTS",
    }


# --- RPM ----------------------------------------------------------------------------------------

# RPM header tags and types (rpm's lib/rpmtag.h): NAME, VERSION, RELEASE, EPOCH, ARCH, SOURCERPM.
_TAGS = {"name": (1000, 6), "version": (1001, 6), "release": (1002, 6), "epoch": (1003, 4), "arch": (1022, 6)}
_SOURCERPM = (1044, 6)


def rpm_header_blob(values: dict[str, object]) -> bytes:
    """A header as rpmdb.sqlite stores it: entry count, data size, index entries, then the data."""
    entries, store = [], b""
    tags = {**_TAGS, "sourcerpm": _SOURCERPM}
    for key, value in values.items():
        tag, kind = tags[key]
        if kind == 4:
            store += b"\0" * (-len(store) % 4)
            entries.append(struct.pack("!iiii", tag, kind, len(store), 1))
            store += struct.pack("!I", value)
        else:
            entries.append(struct.pack("!iiii", tag, kind, len(store), 1))
            store += str(value).encode() + b"\0"
    return struct.pack("!ii", len(entries), len(store)) + b"".join(entries) + store


def test_rpmdb_sqlite(tmp_path: Path) -> None:
    database = tmp_path / "rpmdb.sqlite"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
        for header in (
            {"name": "openssl-libs", "version": "3.0.7", "release": "24.el9", "epoch": 1, "arch": "x86_64",
             "sourcerpm": "openssl-3.0.7-24.el9.src.rpm"},
            {"name": "bash", "version": "5.1.8", "release": "6.el9_1", "arch": "x86_64",
             "sourcerpm": "bash-5.1.8-6.el9_1.src.rpm"},
            {"name": "gpg-pubkey", "version": "fd431d51", "release": "4ae0493b"},
        ):  # fmt: skip
            db.execute("INSERT INTO Packages (blob) VALUES (?)", (rpm_header_blob(header),))
    found = {p.name: p for p in read_sqlite_rpmdb(str(database))}
    assert set(found) == {"openssl-libs", "bash"}
    assert found["openssl-libs"].version == "1:3.0.7-24.el9" and found["openssl-libs"].source_name == "openssl"
    assert found["bash"].version == "5.1.8-6.el9_1" and found["bash"].arch == "x86_64"

    files = {
        "etc/os-release": b'ID="rocky"\nVERSION_ID="9.3"\nPRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\n',
        "var/lib/rpm/rpmdb.sqlite": database.read_bytes(),
    }
    inventory = scan(tmp_path, layer(tmp_path, "rocky", files))
    assert inventory.os is not None and (inventory.os.ecosystem, inventory.os.release) == ("Rocky Linux", "9")
    assert {(p.name, p.version, p.kind) for p in inventory.packages} == {
        ("openssl-libs", "1:3.0.7-24.el9", "rpm"),
        ("bash", "5.1.8-6.el9_1", "rpm"),
    }


def test_rpm_source_names() -> None:
    assert source_name("openssl-3.0.7-24.el9.src.rpm") == "openssl"
    assert source_name("python3.11-3.11.5-1.el9.nosrc.rpm") == "python3.11"
    assert source_name(None) is None and source_name("garbage") is None
