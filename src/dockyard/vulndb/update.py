"""Downloading OSV's per-ecosystem archives (`<source>/<ECOSYSTEM>/all.zip`, as osv.dev publishes
them in its public bucket, or a mirror laid out the same way), only when they changed (ETag and
Last-Modified validators), verified before they replace anything.

Each download (name lookup, transfer, verification, reading the archive) runs in a daemon thread of
its own with a blocking client. Cancelling an update abandons that thread rather than waiting for
it: a name lookup cannot be interrupted, and one stuck on a host without a network would otherwise
hold up a server's shutdown (asyncio's own lookups run in the loop's executor, which shutdown joins).
An abandoned thread stops at its next chunk, or when its lookup or a timeout ends."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol, TypeVar
from urllib.parse import quote

from dockyard.config import DEFAULT_VULNDB_URL
from dockyard.store.database import Database
from dockyard.vulndb import store
from dockyard.vulndb.osv import Advisory, OsvError, parse_record

# httpx (and what its package loads) is imported with the first download, not by every process
# that imports this module (the CLI does, for its options): issue 19, memory at rest.
if TYPE_CHECKING:
    import httpx

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
# Seconds: between bytes of a download, and for connecting.
TIMEOUT, CONNECT_TIMEOUT = 60.0, 20.0
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
    kept: bool = False  # a failed update: whether data from an earlier one is there (and stays)

    def describe(self) -> str:
        if self.state == "updated":
            return f"{self.ecosystem}: {self.advisories} advisories ({self.downloaded} bytes downloaded)"
        if self.state == "unchanged":
            return f"{self.ecosystem}: unchanged"
        if self.kept:
            return f"{self.ecosystem}: update failed, the previous data is kept: {self.error}"
        return f"{self.ecosystem}: update failed, and there is no data for it yet: {self.error}"


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


def client() -> httpx.Client:
    import httpx

    # trust_env: HTTPS_PROXY, HTTP_PROXY, NO_PROXY and SSL_CERT_FILE apply, as for any other client.
    timeout = httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT)
    return httpx.Client(timeout=timeout, trust_env=True, follow_redirects=True)


async def update(
    db: Database,
    base_url: str,
    ecosystems: Iterable[str],
    progress: Progress | None = None,
    http: httpx.Client | None = None,
) -> list[Outcome]:
    """Bring each ecosystem's advisories up to date from `base_url`; a failure leaves its old data.
    `http` is a blocking client, used from download threads (each download makes its own by default)."""
    outcomes = []
    for ecosystem in ecosystems:
        outcome = await update_ecosystem(db, http, base_url, ecosystem, progress)
        if progress is not None:
            progress.done(outcome)
        outcomes.append(outcome)
    return outcomes


@dataclass(frozen=True)
class Fetched:
    """A downloaded and verified archive, read."""

    advisories: list[Advisory]
    size: int
    validators: store.Validators


async def update_ecosystem(
    db: Database, http: httpx.Client | None, base_url: str, ecosystem: str, progress: Progress | None
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
    relay = _Relay(asyncio.get_running_loop(), progress)
    stop = threading.Event()
    import httpx

    try:
        fetched = await in_daemon_thread(lambda: fetch(http, url, headers, ecosystem, relay, stop), stop)
        if fetched is None:
            await store.mark_unchanged(db, ecosystem)
            return Outcome(ecosystem, "unchanged")
        count = await store.replace_ecosystem(db, ecosystem, fetched.advisories, fetched.validators)
        return Outcome(ecosystem, "updated", count, fetched.size)
    except (httpx.HTTPError, ArchiveError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        await store.mark_failed(db, ecosystem, reason)
        return Outcome(ecosystem, "failed", error=reason, kept=await store.has_data(db, ecosystem))


T = TypeVar("T")


async def in_daemon_thread(work: Callable[[], T], stop: threading.Event) -> T:
    """`work()` in a daemon thread of its own. Cancelled, this returns at once: `stop` is set and
    the thread is left to finish by itself (no interpreter or event loop shutdown waits for it)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = work(), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, whatever it is
            result, error = None, exc
        # A closed loop (RuntimeError): nobody waits for this any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="dockyard-vulndb-download", daemon=True).start()
    try:
        return await future
    finally:
        stop.set()


class Cancelled(Exception):
    """The update that started a download no longer waits for it."""


def fetch(
    http: httpx.Client | None,
    url: str,
    headers: dict[str, str],
    ecosystem: str,
    progress: Progress,
    stop: threading.Event,
) -> Fetched | None:
    """Download, verify and read one archive (in a download thread); None when it has not changed."""
    import httpx

    owned = http is None
    http = http or client()
    try:
        with tempfile.TemporaryFile() as spool:
            with http.stream("GET", url, headers=headers) as response:
                if response.status_code == httpx.codes.NOT_MODIFIED:
                    return None
                if response.status_code != httpx.codes.OK:
                    raise ArchiveError(f"{url}: HTTP {response.status_code}")
                size = _download(response, spool, ecosystem, progress, stop)
                validators = store.Validators(url, response.headers.get("etag"), response.headers.get("last-modified"))
            return Fetched(read_archive(spool), size, validators)
    finally:
        if owned:
            http.close()


class _Relay:
    """Progress reported from a download thread, passed on in the event loop's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, progress: Progress | None) -> None:
        self.loop = loop
        self.progress = progress

    def _call(self, method: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self.loop.call_soon_threadsafe(method, *args)

    def downloading(self, ecosystem: str, total: int | None) -> None:
        if self.progress is not None:
            self._call(self.progress.downloading, ecosystem, total)

    def advance(self, size: int) -> None:
        if self.progress is not None:
            self._call(self.progress.advance, size)

    def done(self, outcome: Outcome) -> None:
        if self.progress is not None:
            self._call(self.progress.done, outcome)


def _download(
    response: httpx.Response, spool: IO[bytes], ecosystem: str, progress: Progress, stop: threading.Event
) -> int:
    length = response.headers.get("content-length")
    progress.downloading(ecosystem, int(length) if length and length.isdigit() else None)
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    # Raw bytes: what the object store hashed is the archive, not a content-decoded form of it.
    for chunk in response.iter_raw(CHUNK_BYTES):
        if stop.is_set():
            raise Cancelled(ecosystem)
        spool.write(chunk)
        md5.update(chunk)
        size += len(chunk)
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
