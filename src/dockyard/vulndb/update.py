"""Downloading OSV's per-ecosystem archives (`<source>/<ECOSYSTEM>/all.zip`, as osv.dev publishes
them in its public bucket, or a mirror laid out the same way), only when they changed (ETag and
Last-Modified validators), verified before they replace anything."""

from __future__ import annotations

import base64
import hashlib
import logging
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Protocol
from urllib.parse import quote

import httpx

from dockyard.config import DEFAULT_VULNDB_URL
from dockyard.store.database import Database
from dockyard.vulndb import store
from dockyard.vulndb.osv import Advisory, OsvError, parse_record

DEFAULT_URL = DEFAULT_VULNDB_URL
# The ecosystems the scanner reads packages of (OSV's spelling).
DEFAULT_ECOSYSTEMS = (
    "AlmaLinux",
    "Alpine",
    "Debian",
    "Go",
    "Maven",
    "npm",
    "Packagist",
    "PyPI",
    "Red Hat",
    "Rocky Linux",
    "RubyGems",
    "SUSE",
    "Ubuntu",
    "crates.io",
)
CHUNK_BYTES = 1024 * 1024
TIMEOUT = httpx.Timeout(60.0, connect=20.0)
log = logging.getLogger("dockyard.vulndb")


class Progress(Protocol):
    """How an update reports: a bar on a terminal, log lines on a server."""

    def downloading(self, ecosystem: str, total: int | None) -> None: ...

    def advance(self, size: int) -> None: ...

    def done(self, outcome: Outcome) -> None: ...


@dataclass(frozen=True)
class Outcome:
    ecosystem: str
    state: str  # "updated", "unchanged" or "failed"
    advisories: int = 0
    downloaded: int = 0  # bytes
    error: str | None = None

    def describe(self) -> str:
        if self.state == "updated":
            return f"{self.ecosystem}: {self.advisories} advisories ({self.downloaded} bytes downloaded)"
        if self.state == "unchanged":
            return f"{self.ecosystem}: unchanged"
        return f"{self.ecosystem}: update failed, the previous data is kept: {self.error}"


class ArchiveError(ValueError):
    """A download that is not a complete, readable OSV archive."""


def archive_url(base_url: str, ecosystem: str) -> str:
    return f"{base_url.rstrip('/')}/{quote(ecosystem, safe='')}/all.zip"


def parse_ecosystems(values: Iterable[str]) -> list[str]:
    """Ecosystem names from comma-separated values, in order, without repeats ("Red Hat" has a space)."""
    names: list[str] = []
    for value in values:
        for name in value.split(","):
            if name.strip() and name.strip() not in names:
                names.append(name.strip())
    return names


def client() -> httpx.AsyncClient:
    # trust_env: HTTPS_PROXY, HTTP_PROXY, NO_PROXY and SSL_CERT_FILE apply, as for any other client.
    return httpx.AsyncClient(timeout=TIMEOUT, trust_env=True, follow_redirects=True)


async def update(
    db: Database,
    base_url: str,
    ecosystems: Iterable[str],
    progress: Progress | None = None,
    http: httpx.AsyncClient | None = None,
) -> list[Outcome]:
    """Bring each ecosystem's advisories up to date from `base_url`; a failure leaves its old data."""
    owned = http is None
    http = http or client()
    try:
        outcomes = []
        for ecosystem in ecosystems:
            outcome = await update_ecosystem(db, http, base_url, ecosystem, progress)
            if progress is not None:
                progress.done(outcome)
            outcomes.append(outcome)
        return outcomes
    finally:
        if owned:
            await http.aclose()


async def update_ecosystem(
    db: Database, http: httpx.AsyncClient, base_url: str, ecosystem: str, progress: Progress | None
) -> Outcome:
    url = archive_url(base_url, ecosystem)
    known = await store.validators(db, ecosystem)
    headers = {}
    # Validators count only for the archive they came from: a new source URL downloads in full.
    if known is not None and known.source == url:
        if known.etag:
            headers["If-None-Match"] = known.etag
        if known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
    try:
        with tempfile.TemporaryFile() as spool:
            async with http.stream("GET", url, headers=headers) as response:
                if response.status_code == httpx.codes.NOT_MODIFIED:
                    await store.mark_unchanged(db, ecosystem)
                    return Outcome(ecosystem, "unchanged")
                if response.status_code != httpx.codes.OK:
                    raise ArchiveError(f"{url}: HTTP {response.status_code}")
                size = await _download(response, spool, ecosystem, progress)
                validators = store.Validators(url, response.headers.get("etag"), response.headers.get("last-modified"))
            advisories = read_archive(spool)
        count = await store.replace_ecosystem(db, ecosystem, advisories, validators)
        return Outcome(ecosystem, "updated", count, size)
    except (httpx.HTTPError, ArchiveError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        await store.mark_failed(db, ecosystem, reason)
        return Outcome(ecosystem, "failed", error=reason)


async def _download(response: httpx.Response, spool: IO[bytes], ecosystem: str, progress: Progress | None) -> int:
    length = response.headers.get("content-length")
    if progress is not None:
        progress.downloading(ecosystem, int(length) if length and length.isdigit() else None)
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    # Raw bytes: what the object store hashed is the archive, not a content-decoded form of it.
    async for chunk in response.aiter_raw(CHUNK_BYTES):
        spool.write(chunk)
        md5.update(chunk)
        size += len(chunk)
        if progress is not None:
            progress.advance(len(chunk))
    if length and length.isdigit() and int(length) != size:
        raise ArchiveError(f"received {size} bytes of {length}")
    expected = _goog_md5(response.headers.get_list("x-goog-hash"))
    if expected is not None and expected != md5.digest():
        raise ArchiveError("the archive's MD5 does not match the one the source published (x-goog-hash)")
    spool.seek(0)
    return size


def _goog_md5(values: list[str]) -> bytes | None:
    """The MD5 that Google Cloud Storage (and mirrors like it) state in x-goog-hash: md5=<base64>."""
    for value in values:
        for item in value.split(","):
            kind, _, digest = item.strip().partition("=")
            if kind == "md5" and digest:
                try:
                    return base64.b64decode(digest, validate=True)
                except ValueError:
                    raise ArchiveError(f"x-goog-hash: unreadable md5 {digest!r}") from None
    return None


def read_archive(spool: IO[bytes]) -> list[Advisory]:
    """Every advisory of an archive, or ArchiveError: a damaged zip or any entry that is not an
    OSV record refuses the whole archive (a partial one would silently drop advisories)."""
    try:
        with zipfile.ZipFile(spool) as archive:
            damaged = archive.testzip()
            if damaged is not None:
                raise ArchiveError(f"damaged archive entry {damaged}")
            advisories = []
            for name in archive.namelist():
                if name.endswith(".json"):
                    try:
                        advisories.append(parse_record(archive.read(name)))
                    except OsvError as exc:
                        raise ArchiveError(f"{name}: {exc}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise ArchiveError(f"not a readable zip archive: {exc}") from None
    if not advisories:
        raise ArchiveError("the archive holds no advisories")
    return advisories


class LogProgress:
    """Progress as log lines (the server's scheduled updates)."""

    def downloading(self, ecosystem: str, total: int | None) -> None:
        log.info("downloading %s advisories (%s bytes)", ecosystem, total if total is not None else "unknown")

    def advance(self, size: int) -> None:
        """Byte counts are too fine-grained for a log."""

    def done(self, outcome: Outcome) -> None:
        level = logging.WARNING if outcome.state == "failed" else logging.INFO
        log.log(level, "vulnerability data %s", outcome.describe(), extra={"fields": {"ecosystem": outcome.ecosystem}})
