"""What is installed in an image: its operating system and packages, from the package databases in
its merged filesystem.

- OS: /etc/os-release (or /usr/lib/os-release), else /etc/debian_version or /etc/alpine-release.
- dpkg: /var/lib/dpkg/status and the per-package files of /var/lib/dpkg/status.d (distroless).
- apk: /lib/apk/db/installed (and /usr/lib/apk/db/installed).
- rpm: under /var/lib/rpm or /usr/lib/sysimage/rpm, rpmdb.sqlite, else Packages.db (NDB), else
  Packages (Berkeley DB), the order rpm itself prefers them in when an image has more than one.
- Python: *.dist-info/METADATA and *.egg-info (PKG-INFO), wherever they are.
- npm: node_modules/<name>/package.json, package-lock.json and node_modules/.package-lock.json.
- Go: the build information of Go executables (toolchain and modules).
- crates.io: the dependency list cargo-auditable embeds in Rust executables (`.dep-v0`).
- Maven: META-INF/maven/*/*/pom.properties in jar, war and ear archives, nested ones too.
- RubyGems: specifications/*.gemspec (and specifications/default/) of every gem directory.
- Packagist: vendor/composer/installed.json, as Composer 1 and 2 write it.

OS packages are matched by their source package (dpkg Source, apk origin), as the distributions
publish their advisories, so one finding covers all binary packages built from one source.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

from debian.deb822 import Deb822
from packageurl import PackageURL
from packaging.metadata import parse_email
from packaging.utils import canonicalize_name

from dockyard.scanner import cargo, java, rpmdb
from dockyard.scanner.gobuild import ELF_MAGIC, GoBuildInfo, read_build_info
from dockyard.scanner.layers import Entry, FileView, Handler, Layer, read_capped, read_layers

MAX_SMALL_FILE = 1024 * 1024
MAX_DATABASE_FILE = 256 * 1024 * 1024
MIN_EXECUTABLE_SIZE = 4096
# An executable is copied (in memory up to the first size, on disk beyond) to read its ELF sections.
EXECUTABLE_IN_MEMORY = 16 * 1024 * 1024
MAX_EXECUTABLE = 2 * 1024 * 1024 * 1024

OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
DEBIAN_VERSION = "etc/debian_version"
ALPINE_RELEASE = "etc/alpine-release"
DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_DIR = "var/lib/dpkg/status.d/"
APK_INSTALLED = ("lib/apk/db/installed", "usr/lib/apk/db/installed")
_RPM_DIRS = ("var/lib/rpm", "usr/lib/sysimage/rpm")
RPM_SQLITE = tuple(f"{d}/rpmdb.sqlite" for d in _RPM_DIRS)
RPM_NDB = tuple(f"{d}/Packages.db" for d in _RPM_DIRS)
RPM_BDB = tuple(f"{d}/Packages" for d in _RPM_DIRS)
RPM_DATABASES: tuple[tuple[str, Callable[[str], list[rpmdb.RpmPackage]]], ...] = (
    *((p, rpmdb.read_sqlite_rpmdb) for p in RPM_SQLITE),
    *((p, rpmdb.read_ndb_rpmdb) for p in RPM_NDB),
    *((p, rpmdb.read_bdb_rpmdb) for p in RPM_BDB),
)
_PYTHON_METADATA = re.compile(r"(?:^|/)[^/]+\.(?:dist-info/METADATA|egg-info/PKG-INFO|egg-info)$")
_NPM_MANIFEST = re.compile(r"(?:^|/)node_modules/(?:@[^/]+/)?[^/@.][^/]*/package\.json$")
_GEMSPEC = re.compile(r"(?:^|/)specifications/(?:default/)?[^/]+\.gemspec$")
_COMPOSER_INSTALLED = re.compile(r"(?:^|/)vendor/composer/installed\.json$")
_NPM_LOCK = re.compile(r"(?:^|/)(?:package-lock\.json|node_modules/\.package-lock\.json)$")


@dataclass(frozen=True)
class OperatingSystem:
    id: str  # os-release ID: debian, ubuntu, alpine, rhel, ...
    version_id: str
    pretty_name: str
    ecosystem: str | None  # OSV ecosystem: Debian, Ubuntu, Alpine, ...
    release: str  # OSV release within it: "12", "22.04", "v3.18"


@dataclass(frozen=True)
class Package:
    """One installed package. `ecosystem`/`release` name its OSV ecosystem; matching uses
    `match_name`/`match_version` (the source package for OS packages)."""

    name: str
    version: str
    kind: str  # dpkg, apk, rpm, python, npm, go, maven, gem, composer, cargo
    ecosystem: str
    release: str = ""
    source_name: str | None = None
    source_version: str | None = None
    arch: str | None = None
    path: str = ""
    layer: str = ""

    @property
    def match_name(self) -> str:
        name = self.source_name or self.name
        return str(canonicalize_name(name)) if self.ecosystem == "PyPI" else name

    @property
    def match_version(self) -> str:
        return self.source_version or self.version

    def purl(self, os: OperatingSystem | None) -> str:
        qualifiers: dict[str, str] = {}
        if self.arch:
            qualifiers["arch"] = self.arch
        if os is not None and self.kind in ("dpkg", "apk", "rpm"):
            qualifiers["distro"] = f"{os.id}-{os.version_id}" if os.version_id else os.id
        kind, namespace, name = _purl_parts(self, os)
        return PackageURL(kind, namespace, name, self.version, qualifiers or None).to_string()


def _purl_parts(package: Package, os: OperatingSystem | None) -> tuple[str, str | None, str]:
    vendor = os.id if os else None
    if package.kind == "dpkg":
        return "deb", vendor or "debian", package.name
    if package.kind in ("apk", "rpm"):
        return package.kind, vendor, package.name
    if package.kind == "python":
        return "pypi", None, str(canonicalize_name(package.name))
    if package.kind == "go":
        namespace, _, name = package.name.rpartition("/")
        return "golang", namespace or None, name
    if package.kind == "maven":
        group, _, artifact = package.name.partition(":")
        return "maven", group, artifact
    if package.kind == "gem":
        return "gem", None, package.name
    if package.kind == "composer":
        vendor_name, _, name = package.name.partition("/")
        return "composer", vendor_name, name
    if package.kind == "cargo":
        return "cargo", None, package.name
    namespace, _, name = package.name.rpartition("/")  # npm: "@scope/name"
    return "npm", namespace or None, name


@dataclass
class Inventory:
    os: OperatingSystem | None
    packages: list[Package] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "os": asdict(self.os) if self.os else None,
                "packages": [asdict(p) for p in self.packages],
                "notes": self.notes,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Inventory:
        data = json.loads(text)
        os = OperatingSystem(**data["os"]) if data.get("os") else None
        return cls(os, [Package(**p) for p in data.get("packages", [])], list(data.get("notes", [])))


# --- which files to keep ------------------------------------------------------------------------


class Selector:
    """Decides which members of a layer the inventory needs, and how to keep each one.
    RPM databases are copied into `spool_dir` (SQLite needs a file); everything else stays in memory."""

    def __init__(self, spool_dir: str) -> None:
        self.spool_dir = spool_dir
        self._spooled = 0

    def __call__(self, path: str, member: tarfile.TarInfo) -> Handler | None:
        if path in OS_RELEASE or path in (DEBIAN_VERSION, ALPINE_RELEASE):
            return read_capped(MAX_SMALL_FILE)
        if path == DPKG_STATUS or path in APK_INSTALLED or _NPM_LOCK.search(path):
            return read_capped(MAX_DATABASE_FILE)
        if _COMPOSER_INSTALLED.search(path):
            return read_capped(MAX_DATABASE_FILE)
        if path.startswith(DPKG_STATUS_DIR) and not path.endswith(".md5sums"):
            return read_capped(MAX_SMALL_FILE)
        if path in RPM_SQLITE or path in RPM_NDB or path in RPM_BDB:
            return self._spool
        if _PYTHON_METADATA.search(path) or _NPM_MANIFEST.search(path) or _GEMSPEC.search(path):
            return read_capped(MAX_SMALL_FILE)
        if java.ARCHIVE_NAME.search(path):
            return java.read_java_archive
        if member.isreg() and member.mode & 0o111 and MIN_EXECUTABLE_SIZE <= member.size <= MAX_EXECUTABLE:
            return self._executable
        return None

    def _executable(self, stream: BinaryIO) -> GoBuildInfo | cargo.CargoAudit | None:
        """What a Rust (cargo-auditable) or Go executable records of its dependencies. Its ELF
        sections need a seekable copy; anything that is not ELF is left at its first bytes."""
        first = stream.read(1024 * 1024)
        if not first.startswith(ELF_MAGIC):
            return None
        with tempfile.SpooledTemporaryFile(max_size=EXECUTABLE_IN_MEMORY, dir=self.spool_dir) as copy:
            copy.write(first)
            while chunk := stream.read(1024 * 1024):
                copy.write(chunk)
            copy.seek(0)
            audit = cargo.read_audit_data(copy)  # type: ignore[arg-type]
            if audit is not None:
                return audit
            copy.seek(0)
            return read_build_info(copy)  # type: ignore[arg-type]

    def _spool(self, stream: BinaryIO) -> str | None:
        self._spooled += 1
        target = os.path.join(self.spool_dir, f"spooled-{self._spooled}")
        written = 0
        with open(target, "wb") as out:
            while chunk := stream.read(1024 * 1024):
                written += len(chunk)
                if written > MAX_DATABASE_FILE:
                    return None
                out.write(chunk)
        return target


def inventory_of(layers: Iterable[Layer], spool_dir: str) -> Inventory:
    """Read `layers` (lowest first) and list what the merged filesystem has installed."""
    view = read_layers(layers, Selector(spool_dir))
    return collect(view)


# --- from kept files to packages ----------------------------------------------------------------


def collect(view: FileView) -> Inventory:
    os_info = operating_system(view)
    inventory = Inventory(os_info)
    for collector in (_dpkg, _apk, _rpm, _python, _npm, _go, _cargo, _maven, _gems, _composer):
        inventory.packages.extend(collector(view, os_info, inventory.notes))
    return inventory


def _text(entry: Entry | None) -> str | None:
    if entry is None or not isinstance(entry.value, bytes):
        return None
    return entry.value.decode("utf-8", "replace")


def parse_os_release(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, raw = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        try:
            values[key] = " ".join(shlex.split(raw))
        except ValueError:
            values[key] = raw.strip("\"'")
    return values


def operating_system(view: FileView) -> OperatingSystem | None:
    for path in OS_RELEASE:
        text = _text(view.resolve(path))
        if text:
            fields = parse_os_release(text)
            os_id = fields.get("ID", "").lower()
            if os_id:
                version = fields.get("VERSION_ID", "")
                return _os(os_id, version, fields.get("PRETTY_NAME") or fields.get("NAME") or os_id)
    alpine = _text(view.resolve(ALPINE_RELEASE))
    if alpine:
        return _os("alpine", alpine.strip(), f"Alpine Linux v{alpine.strip()}")
    debian = _text(view.resolve(DEBIAN_VERSION))
    if debian:
        version = debian.strip().split(".")[0] if debian.strip()[:1].isdigit() else ""
        return _os("debian", version, f"Debian GNU/Linux {debian.strip()}")
    return None


def _major(version: str) -> str:
    return version.split(".")[0]


# os-release ID -> (OSV ecosystem, how its releases are named there)
_ECOSYSTEMS: dict[str, tuple[str, str]] = {
    "debian": ("Debian", "major"),
    "ubuntu": ("Ubuntu", "full"),
    "alpine": ("Alpine", "alpine"),
    "rocky": ("Rocky Linux", "major"),
    "almalinux": ("AlmaLinux", "major"),
    "rhel": ("Red Hat", "rhel"),
    "wolfi": ("Wolfi", "none"),
    "chainguard": ("Chainguard", "none"),
    "opensuse-leap": ("openSUSE", "leap"),
    "sles": ("SUSE", "sles"),
    "mageia": ("Mageia", "major"),
}


def _os(os_id: str, version: str, pretty: str) -> OperatingSystem:
    known = _ECOSYSTEMS.get(os_id)
    if known is None:
        return OperatingSystem(os_id, version, pretty, None, "")
    ecosystem, style = known
    release = {
        "major": _major(version),
        "full": version,
        "alpine": "v" + ".".join(version.split(".")[:2]) if version else "",
        "rhel": f"enterprise_linux:{_major(version)}" if version else "",
        "leap": f"Leap {version}" if version else "",
        "sles": f"Enterprise Server {version}" if version else "",
        "none": "",
    }[style]
    return OperatingSystem(os_id, version, pretty, ecosystem, release)


def _os_ecosystem(os_info: OperatingSystem | None, default: str) -> tuple[str, str]:
    if os_info is not None and os_info.ecosystem:
        return os_info.ecosystem, os_info.release
    return default, ""


def _dpkg(view: FileView, os_info: OperatingSystem | None, notes: list[str]) -> Iterator[Package]:
    ecosystem, release = _os_ecosystem(os_info, "Debian")
    sources = [e for e in view.files() if e.path == DPKG_STATUS or e.path.startswith(DPKG_STATUS_DIR)]
    for entry in sorted(sources, key=lambda e: e.path):
        text = _text(entry)
        if text is None:
            continue
        for paragraph in Deb822.iter_paragraphs(text.splitlines()):
            package = _dpkg_package(paragraph, ecosystem, release, entry)
            if package is not None:
                yield package


def _dpkg_package(paragraph: Deb822, ecosystem: str, release: str, entry: Entry) -> Package | None:
    name, version = paragraph.get("Package"), paragraph.get("Version")
    status = paragraph.get("Status", "install ok installed").split()
    if not name or not version or status[-1:] != ["installed"]:
        return None
    source_name, source_version = name, version
    source = paragraph.get("Source")
    if source:
        # "Source: glibc" or, when the binary's version differs (binNMU), "Source: bash (5.2.15-2)".
        source_name, _, rest = source.partition(" ")
        source_version = rest.strip().strip("()") or version
    return Package(
        name, version, "dpkg", ecosystem, release, source_name, source_version,
        paragraph.get("Architecture"), "/" + entry.path, entry.layer,
    )  # fmt: skip


def _apk(view: FileView, os_info: OperatingSystem | None, notes: list[str]) -> Iterator[Package]:
    ecosystem, release = _os_ecosystem(os_info, "Alpine")
    for path in APK_INSTALLED:
        entry = view.resolve(path)
        text = _text(entry)
        if entry is None or text is None:
            continue
        for block in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in block.splitlines():
                key, sep, value = line.partition(":")
                if sep and len(key) == 1:
                    fields.setdefault(key, value)
            if fields.get("P") and fields.get("V"):
                origin = fields.get("o") or fields["P"]
                yield Package(
                    fields["P"], fields["V"], "apk", ecosystem, release, origin, None,
                    fields.get("A"), "/" + entry.path, entry.layer,
                )  # fmt: skip
        return


def _rpm(view: FileView, os_info: OperatingSystem | None, notes: list[str]) -> Iterator[Package]:
    ecosystem, release = _os_ecosystem(os_info, "Red Hat")
    for path, reader in RPM_DATABASES:
        entry = view.resolve(path)
        if entry is None or not isinstance(entry.value, str):
            continue
        try:
            found = reader(entry.value)
        except ValueError as exc:
            notes.append(f"/{path}: {exc}")
            continue
        for rpm in found:
            yield Package(
                rpm.name, rpm.version, "rpm", ecosystem, release, None, None, rpm.arch, "/" + path, entry.layer
            )
        return


def _python(view: FileView, os_info: OperatingSystem | None, notes: list[str]) -> Iterator[Package]:
    for entry in view.files():
        if not _PYTHON_METADATA.search(entry.path) or not isinstance(entry.value, bytes):
            continue
        raw, _ = parse_email(entry.value)
        name, version = raw.get("name"), raw.get("version")
        if isinstance(name, str) and isinstance(version, str) and name and version:
            yield Package(name, version, "python", "PyPI", path="/" + entry.path, layer=entry.layer)


def _npm(view: FileView, os_info: OperatingSystem | None, notes: list[str]) -> Iterator[Package]:
    seen: set[tuple[str, str]] = set()
    entries = sorted(view.files(), key=lambda e: e.path)
    for entry in entries:
        if _NPM_MANIFEST.search(entry.path):
            found = _npm_manifest(entry)
        elif _NPM_LOCK.search(entry.path):
            found = _npm_lock(entry)
        else:
            continue
        for name, version in found:
            if (name, version) not in seen:
                seen.add((name, version))
                yield Package(name, version, "npm", "npm", path="/" + entry.path, layer=entry.layer)


def _json(entry: Entry) -> Any:
    try:
        return json.loads(entry.value) if isinstance(entry.value, bytes) else None
    except (ValueError, UnicodeDecodeError):
        return None


def _npm_manifest(entry: Entry) -> list[tuple[str, str]]:
    data = _json(entry)
    if isinstance(data, dict) and isinstance(data.get("name"), str) and isinstance(data.get("version"), str):
        return [(data["name"], data["version"])]
    return []


def _npm_lock(entry: Entry) -> list[tuple[str, str]]:
    data = _json(entry)
    if not isinstance(data, dict):
        return []
    found: list[tuple[str, str]] = []
    packages = data.get("packages")
    if isinstance(packages, dict):  # lockfileVersion 2 and 3
        for key, info in packages.items():
            if not key or not isinstance(info, dict) or info.get("link") or "node_modules/" not in key:
                continue
            name = info.get("name") or key.rsplit("node_modules/", 1)[1]
            if isinstance(info.get("version"), str):
                found.append((name, info["version"]))
        return found
    _npm_lock_v1(data.get("dependencies"), found)
    return found


def _npm_lock_v1(dependencies: object, found: list[tuple[str, str]]) -> None:
    if not isinstance(dependencies, dict):
        return
    for name, info in dependencies.items():
        if isinstance(info, dict):
            if isinstance(info.get("version"), str) and not info["version"].startswith(("file:", "link:")):
                found.append((name, info["version"]))
            _npm_lock_v1(info.get("dependencies"), found)


def _go(view: FileView, os_info: OperatingSystem | None, notes: list[str]) -> Iterator[Package]:
    for entry in view.files():
        info = entry.value
        if not isinstance(info, GoBuildInfo):
            continue
        where = {"path": "/" + entry.path, "layer": entry.layer}
        if info.go_version.startswith("go1"):
            # "go1.21.3", or "go1.21.3 X:boringcrypto" with experiments enabled
            yield Package("stdlib", info.go_version.removeprefix("go").split()[0], "go", "Go", **where)
        modules = ([info.main] if info.main else []) + list(info.deps)
        for module in modules:
            if module.version and module.version != "(devel)":
                yield Package(module.path, module.version.removeprefix("v"), "go", "Go", **where)


def _cargo(view: FileView, os_info: OperatingSystem | None, notes: list[str]) -> Iterator[Package]:
    for entry in sorted(view.files(), key=lambda e: e.path):
        if isinstance(entry.value, cargo.CargoAudit):
            for crate in entry.value.from_crates_io():
                yield Package(crate.name, crate.version, "cargo", "crates.io", path="/" + entry.path, layer=entry.layer)


def _maven(view: FileView, os_info: OperatingSystem | None, notes: list[str]) -> Iterator[Package]:
    for entry in sorted(view.files(), key=lambda e: e.path):
        archive = entry.value
        if not isinstance(archive, java.JavaArchive):
            continue
        notes.extend(f"/{entry.path}: {note}" for note in archive.notes)
        for artifact in archive.artifacts:
            path = f"/{entry.path}!/{artifact.inner_path}" if artifact.inner_path else f"/{entry.path}"
            name = f"{artifact.group_id}:{artifact.artifact_id}"  # as OSV names Maven packages
            yield Package(name, artifact.version, "maven", "Maven", path=path, layer=entry.layer)


# `s.name = "rake".freeze`, `s.version = "13.0.6"` (or `Gem::Version.new("13.0.6")`), as RubyGems
# writes installed specifications.
_GEMSPEC_FIELD = re.compile(
    r"^\s*\w+\.(name|version)\s*=\s*(?:Gem::Version\.new\(\s*)?([\"'])([^\"'\n]+)\2", re.MULTILINE
)


def _gems(view: FileView, os_info: OperatingSystem | None, notes: list[str]) -> Iterator[Package]:
    for entry in sorted(view.files(), key=lambda e: e.path):
        text = _text(entry) if _GEMSPEC.search(entry.path) else None
        if text is None:
            continue
        fields: dict[str, str] = {}
        for found in _GEMSPEC_FIELD.finditer(text):
            fields.setdefault(found.group(1), found.group(3))
        if "name" in fields and "version" in fields:
            yield Package(
                fields["name"], fields["version"], "gem", "RubyGems", path="/" + entry.path, layer=entry.layer
            )
        else:
            notes.append(f"/{entry.path}: no gem name and version found")


def _composer(view: FileView, os_info: OperatingSystem | None, notes: list[str]) -> Iterator[Package]:
    for entry in sorted(view.files(), key=lambda e: e.path):
        if not _COMPOSER_INSTALLED.search(entry.path):
            continue
        data = _json(entry)
        # Composer 2: {"packages": [...], ...}; Composer 1: the list itself.
        packages = data.get("packages") if isinstance(data, dict) else data
        if not isinstance(packages, list):
            notes.append(f"/{entry.path}: not a Composer installed.json")
            continue
        for info in packages:
            if isinstance(info, dict) and isinstance(info.get("name"), str) and isinstance(info.get("version"), str):
                yield Package(info["name"], info["version"], "composer", "Packagist", path="/" + entry.path,
                              layer=entry.layer)  # fmt: skip
