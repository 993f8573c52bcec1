"""The RPM database in its SQLite form (rpmdb.sqlite: Fedora 33+, RHEL/UBI/Rocky/Alma 9, Amazon
Linux 2023). Each row of its Packages table is an RPM header blob, which rpmfile parses once it is
given back the header magic the database leaves out.

The Berkeley DB (`Packages`) and NDB (`Packages.db`) formats of older releases are not read."""

from __future__ import annotations

import io
import sqlite3
from dataclasses import dataclass

from rpmfile import headers as rpm_headers
from rpmfile.errors import RPMError

# Header magic, version 1, and four reserved bytes: what an rpmdb row omits before the index.
_HEADER_PREAMBLE = b"\x8e\xad\xe8\x01\x00\x00\x00\x00"


@dataclass(frozen=True)
class RpmPackage:
    name: str
    version: str  # [epoch:]version-release, as RPM compares it
    arch: str | None
    source_name: str | None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list) and value:
        return _text(value[0])
    return None


def source_name(source_rpm: str | None) -> str | None:
    """'openssl-3.0.7-24.el9.src.rpm' -> 'openssl'."""
    if not source_rpm or not source_rpm.endswith(".rpm"):
        return None
    stem = source_rpm.removesuffix(".rpm").rsplit(".", 1)[0]  # drop ".src"/".nosrc"
    parts = stem.rsplit("-", 2)
    return parts[0] if len(parts) == 3 else None


def parse_header(blob: bytes) -> RpmPackage | None:
    try:
        _, values = rpm_headers._readheader(io.BytesIO(_HEADER_PREAMBLE + blob), False)
    except (RPMError, AssertionError, ValueError, IndexError, TypeError, OSError) as exc:
        raise ValueError(f"unreadable rpm header: {exc}") from exc
    name, version, release = (_text(values.get(k)) for k in ("name", "version", "release"))
    if not name or not version or name == "gpg-pubkey":
        return None  # imported signing keys are rows too
    epoch = values.get("serial")
    evr = f"{version}-{release}" if release else version
    if isinstance(epoch, int) and epoch > 0:
        evr = f"{epoch}:{evr}"
    return RpmPackage(name, evr, _text(values.get("arch")), source_name(_text(values.get("sourcerpm"))))


def read_sqlite_rpmdb(path: str) -> list[RpmPackage]:
    connection = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        rows = connection.execute("SELECT blob FROM Packages").fetchall()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"unreadable rpm database: {exc}") from exc
    finally:
        connection.close()
    packages = []
    for (blob,) in rows:
        package = parse_header(bytes(blob))
        if package is not None:
            packages.append(package)
    return packages
