"""Layers with real package databases for scanning tests, as {path: bytes} maps for build_image.

- this machine's own /etc/os-release and /var/lib/dpkg/status (Debian 12 on the project's machines);
- an Alpine 3.18 apk database as apk itself writes it;
- Python distributions' dist-info METADATA, npm node_modules and a package-lock.json;
- Java archives: Debian's own jars from /usr/share/java (built by Maven, with their pom.properties),
  and a war and a Spring Boot style jar nesting them; RubyGems specifications and a Composer
  installed.json as RubyGems and Composer 2 (or 1) write them (no Ruby or PHP on this machine);
- RPM databases: packages built by rpmbuild and installed by rpm into an rpmdb.sqlite; their header
  blobs loaded into a Berkeley DB hash database by libdb's own db5.3_load (the `Packages` file of
  RHEL 7/8 and Amazon Linux 2), and laid out in rpm's NDB format (`Packages.db`, SUSE) by
  `ndb_packages`, as rpm's lib/backend/ndb/rpmpkg.c writes it (Debian's rpm has no NDB backend);
- a Rust executable as cargo-auditable builds it: this machine's /bin/true with a `.dep-v0`
  section added by binutils' objcopy;
and OSV_FIXTURES, a directory of real OSV advisories for packages in them (tests/support/osv).
"""

from __future__ import annotations

import io
import json
import sqlite3
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

from dockyard.vulndb.store import Candidate, Vulnerability

OSV_FIXTURES = Path(__file__).parent / "osv"

ALPINE_OS_RELEASE = b"""NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.18.4
PRETTY_NAME="Alpine Linux v3.18"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"
"""

# (package, version, origin): what `apk add openssl` leaves in an alpine:3.18.0 base.
ALPINE_PACKAGES = (
    ("musl", "1.2.4-r2", "musl"),
    ("busybox", "1.36.1-r5", "busybox"),
    ("libcrypto3", "3.1.0-r4", "openssl"),
    ("libssl3", "3.1.0-r4", "openssl"),
    ("openssl", "3.1.0-r4", "openssl"),
    ("zlib", "1.2.13-r1", "zlib"),
)


def debian_base() -> dict[str, bytes]:
    """This machine's OS identity and dpkg database."""
    return {
        "etc/os-release": Path("/etc/os-release").read_bytes(),
        "var/lib/dpkg/status": Path("/var/lib/dpkg/status").read_bytes(),
    }


def dpkg_field(package: str, field: str = "source:Version") -> str:
    """A field of an installed package as dpkg itself reports it (`Version`, `source:Version`, ...)."""
    return subprocess.run(
        ["dpkg-query", "-W", "-f", "${" + field + "}", package], check=True, capture_output=True, text=True
    ).stdout


def apk_installed(packages: tuple[tuple[str, str, str], ...] = ALPINE_PACKAGES) -> bytes:
    """An apk installed database in apk's own format: one block of `X:value` lines per package."""
    blocks = []
    for name, version, origin in packages:
        blocks.append(
            f"C:Q1{name.encode().hex()[:26]}=\nP:{name}\nV:{version}\nA:x86_64\nS:123456\nI:345678\n"
            f"T:{name} package\nU:https://alpinelinux.org\nL:MIT\no:{origin}\nm:Natanael Copa <ncopa@alpinelinux.org>\n"
            f"t:1684155000\nc:0123456789abcdef0123456789abcdef01234567\nF:usr/lib\nR:lib{name}.so.1\n"
        )
    return ("\n".join(blocks) + "\n").encode()


def alpine_base() -> dict[str, bytes]:
    return {"etc/os-release": ALPINE_OS_RELEASE, "lib/apk/db/installed": apk_installed()}


def python_packages(packages: dict[str, str], site: str = "usr/local/lib/python3.11/site-packages") -> dict[str, bytes]:
    """dist-info directories as pip writes them."""
    files = {}
    for name, version in packages.items():
        dist = f"{site}/{name.replace('-', '_')}-{version}.dist-info"
        files[f"{dist}/METADATA"] = (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {name}\n"
            f"Requires-Python: >=3.7\n\n{name} is installed here.\n"
        ).encode()
        files[f"{dist}/INSTALLER"] = b"pip\n"
        files[f"{dist}/RECORD"] = f"{name}/__init__.py,,\n".encode()
    return files


def npm_app(installed: dict[str, str], locked: dict[str, str]) -> dict[str, bytes]:
    """An app with `installed` packages in node_modules and `locked` ones only in package-lock.json."""
    files = {
        "app/package.json": json.dumps({"name": "app", "version": "1.0.0"}).encode(),
    }
    for name, version in installed.items():
        files[f"app/node_modules/{name}/package.json"] = json.dumps({"name": name, "version": version}).encode()
    lock = {
        "name": "app",
        "version": "1.0.0",
        "lockfileVersion": 3,
        "packages": {"": {"name": "app", "version": "1.0.0"}}
        | {
            f"node_modules/{n}": {"version": v, "resolved": f"https://registry.npmjs.org/{n}/-/{n}-{v}.tgz"}
            for n, v in locked.items()
        },
    }
    files["app/package-lock.json"] = json.dumps(lock).encode()
    return files


# --- RPM ----------------------------------------------------------------------------------------

RPM_SPEC = """Name: %{pname}
Version: %{pver}
Release: %{prel}
%{?pepoch:Epoch: %{pepoch}}
Summary: %{pname} for scanner tests
License: MIT
BuildArch: noarch
%description
%{pname} for scanner tests.
%files
"""
RPM_NOISE = ("--quiet", "--define", "_build_id_links none")


def rpm_sqlite_database(workdir: Path, packages: list[tuple[str, str, str, int | None]]) -> Path:
    """An rpmdb.sqlite holding `packages` (name, version, release, epoch), built and installed by rpm."""
    top, dbpath = workdir / "rpmbuild", workdir / "rpmdb"
    spec = workdir / "package.spec"
    spec.write_text(RPM_SPEC)
    built = []
    for name, version, release, epoch in packages:
        defines = ["--define", f"pname {name}", "--define", f"pver {version}", "--define", f"prel {release}"]
        if epoch is not None:
            defines += ["--define", f"pepoch {epoch}"]
        subprocess.run(
            ["rpmbuild", "-bb", *RPM_NOISE, "--define", f"_topdir {top}", *defines, str(spec)],
            check=True, capture_output=True,
        )  # fmt: skip
        built.append(top / "RPMS" / "noarch" / f"{name}-{version}-{release}.noarch.rpm")
    dbpath.mkdir()
    rpm = ["rpm", "--dbpath", str(dbpath), "--define", "_db_backend sqlite"]
    subprocess.run([*rpm, "--initdb"], check=True, capture_output=True)
    subprocess.run(
        [*rpm, "-i", "--justdb", "--nodeps", "--noscripts", *map(str, built)], check=True, capture_output=True
    )
    # Fold the write-ahead log in, so the one file is the whole database, as in an image.
    with sqlite3.connect(dbpath / "rpmdb.sqlite") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")
    return dbpath / "rpmdb.sqlite"


def rpm_header_blobs(sqlite_database: Path) -> list[tuple[int, bytes]]:
    """(package number, header blob) of every row, as the other formats store them too."""
    with sqlite3.connect(sqlite_database) as db:
        return [(n, bytes(b)) for n, b in db.execute("SELECT hnum, blob FROM Packages ORDER BY hnum")]


def bdb_packages(workdir: Path, blobs: list[tuple[int, bytes]], pagesize: int = 4096) -> Path:
    """A Berkeley DB hash `Packages` database written by libdb (db5.3_load), keyed as rpm keys it:
    the package number in host (little-endian) byte order."""
    lines = []
    for number, blob in blobs:
        lines.append("".join(f"\\{b:02x}" for b in struct.pack("<I", number)))
        lines.append("".join(f"\\{b:02x}" for b in blob))
    target = workdir / "Packages"
    subprocess.run(
        ["db5.3_load", "-T", "-t", "hash", "-c", f"db_pagesize={pagesize}", str(target)],
        input=("\n".join(lines) + "\n").encode(), check=True, capture_output=True,
    )  # fmt: skip
    return target


NDB_PAGE_SIZE = 4096
NDB_BLOCK_SIZE = 16


def ndb_packages(blobs: list[tuple[int, bytes]], free_slots: int = 1) -> bytes:
    """An NDB `Packages.db`: a header (magic "RpmP", version 0, generation, slot pages) in the first
    two 16-byte slots, a page of slots ("Slot", package index, block offset, block count; index 0 is
    free), then each blob ("BlbS", package index, Adler-32 checksum, length, data, a trailer of
    checksum, length and "BlbE") padded to whole 16-byte blocks."""
    slot_pages = 1
    block = slot_pages * NDB_PAGE_SIZE // NDB_BLOCK_SIZE
    slots, data = [], b""
    for number, blob in blobs:
        checksum = zlib.adler32(blob)
        record = struct.pack("<4sIII", b"BlbS", number, checksum, len(blob)) + blob
        record += b"\0" * (-(len(record) + 12) % NDB_BLOCK_SIZE) + struct.pack("<II4s", checksum, len(blob), b"BlbE")
        slots.append(struct.pack("<4sIII", b"Slot", number, block, len(record) // NDB_BLOCK_SIZE))
        block += len(record) // NDB_BLOCK_SIZE
        data += record
    slots += [struct.pack("<4sIII", b"Slot", 0, 0, 0)] * free_slots
    header = struct.pack("<4sIII", b"RpmP", 0, 1, slot_pages) + b"\0" * 16
    table = header + b"".join(slots)
    if len(table) > slot_pages * NDB_PAGE_SIZE:
        raise ValueError("too many packages for one slot page")
    table += b"".join([struct.pack("<4sIII", b"Slot", 0, 0, 0)] * ((slot_pages * NDB_PAGE_SIZE - len(table)) // 16))
    return table + data


def advisories(name: str, ecosystem: str, affecting: list[dict], not_affecting: list[dict]) -> dict:
    """Candidates for `name` as the vulnerability database hands them to matching: CVE-2023-0001,
    whose OSV ranges include the installed version, and CVE-2023-0002, whose ranges do not."""
    candidates = []
    for cve, ranges in (("CVE-2023-0001", affecting), ("CVE-2023-0002", not_affecting)):
        vulnerability = Vulnerability(
            id=cve, summary="summary", details="details", related=(), severity="HIGH", cvss2_vector=None,
            cvss2_score=None, cvss3_vector=None, cvss3_score=None, uri=f"https://osv.dev/vulnerability/{cve}",
        )  # fmt: skip
        candidates.append(
            Candidate(vulnerability=vulnerability, ecosystem_base=ecosystem, ecosystem_release="", name=name,
                      ranges=tuple(ranges), versions=(), severity=None)
        )  # fmt: skip
    return {(ecosystem, name): candidates}


# --- Java, RubyGems, Composer -------------------------------------------------------------------

DEBIAN_JARS = ("commons-io", "guava", "commons-lang3")


def debian_jar(name: str) -> bytes:
    """A jar Debian ships in /usr/share/java (its versioned file: the bare name is a symlink)."""
    return Path(f"/usr/share/java/{name}.jar").resolve().read_bytes()


def zip_of(members: dict[str, bytes], stored: bool = False) -> bytes:
    buffer = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def web_archive(libraries: dict[str, bytes]) -> bytes:
    """A war as Maven's war plugin lays it out: the app's own pom.properties, its libraries under
    WEB-INF/lib (stored, as the plugin stores jars)."""
    members = {
        "META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\r\nCreated-By: Maven WAR Plugin 3.4.0\r\n\r\n",
        "META-INF/maven/com.example/shop/pom.properties": b"artifactId=shop\ngroupId=com.example\nversion=1.4.0\n",
        "WEB-INF/web.xml": b"<web-app/>",
    }
    members |= {f"WEB-INF/lib/{name}": data for name, data in libraries.items()}
    return zip_of(members, stored=True)


def gem_specification(name: str, version: str, default: bool = False) -> tuple[str, bytes]:
    """(path, text) of an installed gem's specification as `gem install` writes it (Ruby 3.1's
    RubyGems 3.3: Gem::Specification#to_ruby); default gems live under specifications/default."""
    directory = "usr/lib/ruby/gems/3.1.0/specifications" + ("/default" if default else "")
    text = f"""# -*- encoding: utf-8 -*-
# stub: {name} {version} ruby lib

Gem::Specification.new do |s|
  s.name = "{name}".freeze
  s.version = "{version}"

  s.required_rubygems_version = Gem::Requirement.new(">= 1.3.2".freeze) if s.respond_to? :required_rubygems_version=
  s.metadata = {{ "source_code_uri" => "https://github.com/ruby/{name}" }} if s.respond_to? :metadata=
  s.require_paths = ["lib".freeze]
  s.authors = ["Hiroshi SHIBATA".freeze]
  s.bindir = "exe".freeze
  s.date = "2021-07-09"
  s.homepage = "https://github.com/ruby/{name}".freeze
  s.licenses = ["MIT".freeze]
  s.required_ruby_version = Gem::Requirement.new(">= 2.2".freeze)
  s.rubygems_version = "3.3.15".freeze
  s.summary = "{name} for scanner tests".freeze

  s.installed_by_version = "3.3.15" if s.respond_to? :installed_by_version
end
"""
    return f"{directory}/{name}-{version}.gemspec", text.encode()


def composer_installed(packages: dict[str, str], composer_version: int = 2) -> bytes:
    """vendor/composer/installed.json: Composer 2's {"packages": [...]} or Composer 1's bare list."""
    entries = [
        {
            "name": name,
            "version": version,
            "version_normalized": version.removeprefix("v") + ".0",
            "source": {"type": "git", "url": f"https://github.com/{name}.git", "reference": "0" * 40},
            "type": "library",
            "installation-source": "dist",
            "license": ["MIT"],
            "install-path": f"../{name}",
        }
        for name, version in packages.items()
    ]
    if composer_version == 1:
        return json.dumps(entries, indent=4).encode()
    return json.dumps({"packages": entries, "dev": True, "dev-package-names": []}, indent=4).encode()


# --- Rust: cargo-auditable's dependency list ----------------------------------------------------

AUDITED_CRATES = [
    # What `cargo auditable build` records for a small program: the program itself, then its crates.
    {"name": "hello", "version": "0.1.0", "source": "local", "dependencies": [1, 2], "root": True},
    {"name": "hyper", "version": "0.14.9", "source": "crates.io", "dependencies": [2]},
    {"name": "smallvec", "version": "1.6.0", "source": "crates.io"},
    {"name": "cc", "version": "1.0.79", "source": "crates.io", "kind": "build"},
    {"name": "patched", "version": "0.1.0", "source": "git"},
]


def cargo_auditable_binary(workdir: Path, crates: list[dict] | None = None, section: bytes | None = None) -> bytes:
    """A real ELF executable (this machine's /bin/true) with a `.dep-v0` section added by binutils'
    objcopy, as cargo-auditable writes it: zlib-compressed JSON of the crates (or `section` as is)."""
    workdir.mkdir(parents=True, exist_ok=True)
    data = (
        section if section is not None else zlib.compress(json.dumps({"packages": crates or AUDITED_CRATES}).encode())
    )
    (workdir / "dep-v0").write_bytes(data)
    target = workdir / "hello"
    subprocess.run(
        ["objcopy", "--add-section", f".dep-v0={workdir / 'dep-v0'}", "/bin/true", str(target)],
        check=True,
        capture_output=True,
    )
    return target.read_bytes()
