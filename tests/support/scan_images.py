"""Layers with real package databases for scanning tests, as {path: bytes} maps for build_image.

- this machine's own /etc/os-release and /var/lib/dpkg/status (Debian 12 on the project's machines);
- an Alpine 3.18 apk database as apk itself writes it;
- Python distributions' dist-info METADATA, npm node_modules and a package-lock.json;
and OSV_FIXTURES, a directory of real OSV advisories for packages in them (tests/support/osv).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

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
