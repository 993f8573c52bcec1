"""The audit trail on disk: CloudTrail events as JSON lines, appended durably, rotated, searchable.

Each process appends to its own file in <data dir>/audit/ (named by its start time and process id),
so several workers or a `dockyard lifecycle run` never interleave partial lines; a file past the
size limit is closed and a new one started, and files older than the retention are removed.

Durability without a disk flush per request: one writer thread per process owns the file and
group-commits. A mutating call's event is handed over with `record_durably`, which returns only
once the line is written and fsync'd (the middleware holds back the end of that call's response
until then, so an acknowledged write is always in the trail); every event queued meanwhile shares
that fsync. Read-only events (pulls, Describe*, List*) are handed over with `record`, which
costs the request a list append; the writer flushes them within `flush_seconds` (or at once past
BATCH events), so a crash loses at most that last second of read-only events."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dockyard.core import client_json as wire_json
from dockyard.observe import metrics

log = logging.getLogger("dockyard.audit")

SUFFIX = ".jsonl"
# Events are plain trees built here: no cycle check needed.
_encode = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False).encode
_BUFFERED = metrics.AUDIT_EVENTS.labels("false")
_DURABLE = metrics.AUDIT_EVENTS.labels("true")
BATCH = 1000
_NAME_TIME = "%Y%m%dT%H%M%SZ"


def _now_name(counter: int) -> str:
    return f"{time.strftime(_NAME_TIME, time.gmtime())}-{os.getpid()}-{counter:04d}{SUFFIX}"


def _file_start(path: Path) -> float:
    """When a trail file was started (from its name); 0 for names we did not write."""
    try:
        return datetime.strptime(path.name.split("-", 1)[0], _NAME_TIME).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


class TrailClosed(RuntimeError):
    pass


class AuditTrail:
    def __init__(
        self,
        directory: Path,
        *,
        max_file_bytes: int = 64 * 1024 * 1024,
        retention_days: float = 90.0,
        flush_seconds: float = 1.0,
        durable: bool = True,
    ) -> None:
        self.directory = directory
        # False only where the database's commits are not durable either (throwaway benchmarks).
        self.durable = durable
        self.max_file_bytes = max_file_bytes
        self.retention_seconds = retention_days * 86400
        self.flush_seconds = flush_seconds
        self._wake = threading.Condition(threading.Lock())
        self._pending: list[dict[str, Any]] = []
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._oldest = 0.0
        self._urgent = False
        self._closed = False
        self._queued = 0  # events handed over so far
        self._written = 0  # events on disk so far
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._size = 0
        self._files_opened = 0

    # --- writing --------------------------------------------------------------------------

    def start(self) -> AuditTrail:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._expire_old_files()
        self._thread = threading.Thread(target=self._run, name="dockyard-audit", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._closed

    def record(self, event: dict[str, Any]) -> None:
        """Queue a read-only event: on disk within flush_seconds."""
        with self._wake:
            self._enqueue(event)
            # The writer sleeps without a deadline while nothing is pending: give it one.
            if len(self._pending) in (1, BATCH):
                self._wake.notify()
        _BUFFERED.inc()

    async def record_durably(self, event: dict[str, Any]) -> None:
        """Queue an event and return once it is written and fsync'd (shared with its batch)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._wake:
            self._enqueue(event)
            self._waiters.append((loop, done))
            self._urgent = True
            self._wake.notify()
        _DURABLE.inc()
        await done

    def _enqueue(self, event: dict[str, Any]) -> None:
        if self._closed or self._thread is None:
            raise TrailClosed("the audit trail is not running")
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(event)
        self._queued += 1

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every event queued before this call is on disk."""
        deadline = time.monotonic() + timeout
        with self._wake:
            target = self._queued
            self._urgent = True
            self._wake.notify_all()
            while self._written < target and self._thread is not None and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the audit trail did not flush in time")
                self._wake.wait(remaining)

    def close(self) -> None:
        with self._wake:
            if self._closed:
                return
            self._closed = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(30)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._closed and not self._pending and not self._waiters:
                    self._written = self._queued
                    self._wake.notify_all()
                    return
                while not self._ready():
                    timeout = None
                    if self._pending:
                        timeout = max(0.0, self._oldest + self.flush_seconds - time.monotonic())
                    self._wake.wait(timeout)
                batch, self._pending = self._pending, []
                waiters, self._waiters = self._waiters, []
                self._urgent = False
                written = self._queued
            error: BaseException | None = None
            try:
                if batch:
                    self._write(batch)
            except Exception as exc:  # noqa: BLE001 - reported to every waiter and the log
                error = exc
                log.exception("could not append %d events to the audit trail", len(batch))
            with self._wake:
                self._written = written
                self._wake.notify_all()
            for loop, done in waiters:
                loop.call_soon_threadsafe(_settle, done, error)

    def _ready(self) -> bool:
        if self._closed or self._urgent or len(self._pending) >= BATCH:
            return True
        return bool(self._pending) and time.monotonic() - self._oldest >= self.flush_seconds

    def _write(self, batch: list[dict[str, Any]]) -> None:
        data = "".join(_encode(e) + "\n" for e in batch).encode()
        if self._fd is None or (self._size and self._size + len(data) > self.max_file_bytes):
            self._rotate()
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        if self.durable:
            os.fsync(self._fd)
        self._size += len(data)

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._files_opened += 1
        path = self.directory / _now_name(self._files_opened)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._expire_old_files()

    def _expire_old_files(self) -> None:
        cutoff = time.time() - self.retention_seconds
        for path in self.files():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:
                pass

    # --- reading --------------------------------------------------------------------------

    def files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX))

    def lookup(self, query: Query) -> tuple[list[dict[str, Any]], str | None]:
        """Events matching `query`, newest first, one page; and the token of the next page."""
        after = decode_token(query.next_token) if query.next_token else None
        found: list[tuple[str, str, dict[str, Any]]] = []
        for event in self._scan(query):
            key = (event["eventTime"], event.get("eventID", ""))
            if after is not None and key >= after:
                continue
            found.append((key[0], key[1], event))
        found.sort(key=lambda item: (item[0], item[1]), reverse=True)
        page = found[: query.limit]
        token = encode_token(page[-1][0], page[-1][1]) if len(found) > query.limit else None
        return [event for _, _, event in page], token

    def _scan(self, query: Query) -> Iterator[dict[str, Any]]:
        start_text, end_text = _iso(query.start), _iso(query.end)
        needles = [f'"recipientAccountId":{json.dumps(query.account_id)}']
        needles += query.needles()
        for path in self.files():
            try:
                if _file_start(path) > query.end or path.stat().st_mtime < query.start:
                    continue
                with open(path, encoding="utf-8") as handle:
                    for line in handle:
                        if not all(n in line for n in needles):
                            continue
                        when = _event_time_of(line)
                        if when is None or when < start_text or when > end_text:
                            continue
                        try:
                            event = json.loads(line)
                        except ValueError:
                            continue  # a line cut short by a crash
                        if query.matches(event):
                            yield event
            except FileNotFoundError:
                continue  # removed by retention meanwhile


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(max(0.0, min(epoch, 253402300799.0))))


def _event_time_of(line: str) -> str | None:
    index = line.find('"eventTime":"')
    if index < 0:
        return None
    return line[index + 13 : index + 33]


class InvalidToken(ValueError):
    pass


def encode_token(event_time: str, event_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([event_time, event_id]).encode()).decode()


def decode_token(token: str) -> tuple[str, str]:
    try:
        value = wire_json.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
            return value[0], value[1]
    except (ValueError, binascii.Error, UnicodeError):
        pass
    raise InvalidToken(token)


@dataclass(frozen=True)
class Query:
    account_id: str
    region: str
    start: float
    end: float
    limit: int = 50
    # (AttributeKey, AttributeValue) as LookupEvents names them.
    attribute: tuple[str, str] | None = None
    next_token: str | None = None

    def needles(self) -> list[str]:
        """Substrings every matching line contains (a cheap test before parsing it)."""
        if self.attribute is None:
            return []
        key, value = self.attribute
        field = {"EventName": "eventName", "EventSource": "eventSource", "EventId": "eventID"}.get(key)
        if field is not None:
            return [f'"{field}":{json.dumps(value)}']
        if key == "ReadOnly":
            return [f'"readOnly":{value.lower()}'] if value.lower() in ("true", "false") else ['"readOnly":?']
        return [json.dumps(value)[1:-1]]

    def matches(self, event: dict[str, Any]) -> bool:
        if event.get("recipientAccountId") != self.account_id or event.get("awsRegion") != self.region:
            return False
        if self.attribute is None:
            return True
        key, value = self.attribute
        return _ATTRIBUTE_TESTS[key](event, value)


def _resources(event: dict[str, Any]) -> list[dict[str, Any]]:
    return list(event.get("resources") or [])


def _test_resource_name(event: dict[str, Any], value: str) -> bool:
    from dockyard.audit.events import resource_name

    return any(resource_name(r) == value or r.get("ARN") == value for r in _resources(event))


def _test_username(event: dict[str, Any], value: str) -> bool:
    from dockyard.audit.events import username

    return username(event) == value


_ATTRIBUTE_TESTS: dict[str, Callable[[dict[str, Any], str], bool]] = {
    "EventId": lambda e, v: e.get("eventID") == v,
    "EventName": lambda e, v: e.get("eventName") == v,
    "EventSource": lambda e, v: e.get("eventSource") == v,
    "ReadOnly": lambda e, v: str(e.get("readOnly")).lower() == v.lower(),
    "Username": _test_username,
    "AccessKeyId": lambda e, v: (e.get("userIdentity") or {}).get("accessKeyId") == v,
    "ResourceType": lambda e, v: any(r.get("type") == v for r in _resources(e)),
    "ResourceName": _test_resource_name,
}
