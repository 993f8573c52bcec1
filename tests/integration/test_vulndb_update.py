"""`dockyard vulndb update` and the server's scheduled refresh, against a local HTTP server that
serves OSV-format archives the way osv.dev's bucket does (ETag, Last-Modified, 304s)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import socket
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dockyard.commands import main as cli
from tests.support.server import DockyardServer

POLL_SECONDS = 60.0


def advisory(vuln_id: str, package: str, fixed: str) -> dict[str, Any]:
    return {
        "id": vuln_id,
        "modified": "2024-01-02T00:00:00Z",
        "summary": f"{vuln_id} in {package}",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
            }
        ],
    }


def archive(*records: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for record in records:
            zipped.writestr(f"{record['id']}.json", json.dumps(record))
    return buffer.getvalue()


class Mirror:
    """An OSV bucket stand-in: <ECOSYSTEM>/all.zip with an ETag and Last-Modified, 304 when they match."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}
        self.log: list[tuple[str, int, float]] = []
        self._lock = threading.Lock()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with mirror._lock:
                    found = mirror.files.get(self.path)
                    if found is None:
                        status = 404
                    elif self.headers.get("If-None-Match") == found[1]:
                        status = 304
                    else:
                        status = 200
                    mirror.log.append((self.path, status, time.monotonic()))
                self.send_response(status)
                if found is not None:
                    self.send_header("ETag", found[1])
                    self.send_header("Last-Modified", found[2])
                body = found[0] if found is not None and status == 200 else b""
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def publish(self, ecosystem: str, body: bytes) -> None:
        with self._lock:
            etag = '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'
            self.files[f"/{ecosystem.replace(' ', '%20')}/all.zip"] = (body, etag, formatdate(usegmt=True))

    def statuses(self) -> list[int]:
        with self._lock:
            return [status for _, status, _ in self.log]

    def times(self) -> list[float]:
        with self._lock:
            return [moment for _, _, moment in self.log]


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    served = Mirror()
    served.thread.start()
    yield served
    served.server.shutdown()
    served.server.server_close()


def dockyard(*args: str) -> Any:
    return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)


def update(mirror: Mirror, data_dir: Path) -> Any:
    return dockyard("vulndb", "update", "--url", mirror.url, "--ecosystems", "PyPI", "--data-dir", str(data_dir))


def status(data_dir: Path) -> dict[str, Any]:
    result = dockyard("vulndb", "status", "--json", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def advisory_ids(data_dir: Path) -> set[str]:
    import sqlite3

    with sqlite3.connect(data_dir / "metadata.db") as conn:
        return {row[0] for row in conn.execute("SELECT id FROM vulnerabilities")}


def test_update_downloads_only_what_changed_and_refuses_a_corrupt_archive(mirror: Mirror, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    mirror.publish("PyPI", archive(advisory("PYSEC-1", "requests", "2.0"), advisory("PYSEC-2", "flask", "1.0")))

    first = update(mirror, data_dir)
    assert first.exit_code == 0, first.output
    assert "PyPI: 2 advisories" in first.output
    assert mirror.statuses() == [200]
    assert advisory_ids(data_dir) == {"PYSEC-1", "PYSEC-2"}

    unchanged = update(mirror, data_dir)
    assert unchanged.exit_code == 0, unchanged.output
    assert "PyPI: unchanged" in unchanged.output
    assert mirror.statuses() == [200, 304]

    # A changed archive: an advisory appears, one disappears.
    mirror.publish("PyPI", archive(advisory("PYSEC-1", "requests", "2.0"), advisory("PYSEC-3", "django", "4.0")))
    changed = update(mirror, data_dir)
    assert changed.exit_code == 0, changed.output
    assert mirror.statuses() == [200, 304, 200]
    assert advisory_ids(data_dir) == {"PYSEC-1", "PYSEC-3"}

    # Damaged archives are refused and the previous data stays.
    for body in (b"PK\x03\x04 this is not a zip", archive({"id": "PYSEC-9", "affected": []})[:-30], archive()):
        mirror.publish("PyPI", body)
        refused = update(mirror, data_dir)
        assert refused.exit_code != 0
        assert "previous data is kept" in refused.output
        assert advisory_ids(data_dir) == {"PYSEC-1", "PYSEC-3"}
    not_osv = io.BytesIO()
    with zipfile.ZipFile(not_osv, "w") as zipped:
        zipped.writestr("PYSEC-1.json", json.dumps(advisory("PYSEC-1", "requests", "2.0")))
        zipped.writestr("broken.json", "{not json")
    mirror.publish("PyPI", not_osv.getvalue())
    assert update(mirror, data_dir).exit_code != 0
    assert advisory_ids(data_dir) == {"PYSEC-1", "PYSEC-3"}

    report = status(data_dir)
    (source,) = report["sources"]
    assert source["ecosystem"] == "PyPI"
    assert source["advisories"] == 2
    assert source["source"] == f"{mirror.url}/PyPI/all.zip"
    assert source["error"] and "broken.json" in source["error"]
    assert report["ageSeconds"] is not None and report["ageSeconds"] < 3600
    text = dockyard("vulndb", "status", "--data-dir", str(data_dir)).output
    assert "PyPI" in text and "2 advisories" in text and "Age:" in text


def test_the_server_refreshes_on_schedule_once_per_cluster(mirror: Mirror, tmp_path: Path) -> None:
    interval = 5.0
    mirror.publish("PyPI", archive(advisory("PYSEC-1", "requests", "2.0")))
    server = DockyardServer(
        data_dir=tmp_path / "data",
        work_dir=tmp_path,
        extra_args=[
            "--workers",
            "2",
            "--vulndb-url",
            mirror.url,
            "--vulndb-ecosystems",
            "PyPI",
            "--vulndb-update-interval",
            str(interval),
        ],
    )
    server.start()
    try:
        deadline = time.monotonic() + POLL_SECONDS
        while "PYSEC-1" not in advisory_ids(server.data_dir):
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.2)
        mirror.publish("PyPI", archive(advisory("PYSEC-1", "requests", "2.0"), advisory("PYSEC-2", "flask", "1.0")))
        while "PYSEC-2" not in advisory_ids(server.data_dir):
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.2)
        # Wait for a round that found nothing new: the lease lets one of the two workers fetch per
        # interval (without it, both would fetch at every round, moments apart).
        while 304 not in mirror.statuses():
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.2)
        times = mirror.times()
        gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
        assert all(gap > interval / 2 for gap in gaps), mirror.log
        metrics = urllib.request.urlopen(server.metrics_url, timeout=30).read().decode()
        assert 'dockyard_vulndb_advisories{ecosystem="PyPI"} 2.0' in metrics
        assert "dockyard_vulndb_age_seconds" in metrics
    finally:
        server.stop()


def serve_fetching_from(url: str, tmp_path: Path) -> DockyardServer:
    """A fresh server (no vulnerability data) refreshing PyPI's from `url`, once a day."""
    return DockyardServer(
        data_dir=tmp_path / "data",
        work_dir=tmp_path,
        extra_args=[
            *("--workers", "2"),
            *("--vulndb-url", url, "--vulndb-ecosystems", "PyPI"),
            *("--vulndb-update-interval", "86400"),
        ],
    )


def test_a_fresh_server_fetches_its_data_without_waiting_an_interval(mirror: Mirror, tmp_path: Path) -> None:
    mirror.publish("PyPI", archive(advisory("PYSEC-1", "requests", "2.0")))
    server = serve_fetching_from(mirror.url, tmp_path)
    server.start()
    try:
        deadline = time.monotonic() + POLL_SECONDS
        while "PYSEC-1" not in advisory_ids(server.data_dir):
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.2)
        # One worker fetched it, under the lease: the other's first round found the lease taken.
        assert mirror.statuses() == [200]
    finally:
        server.stop()


class HungUpstream:
    """A source that accepts connections and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted = threading.Event()
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.listener.accept()
                self.held.append(connection)
                self.accepted.set()

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


def test_stopping_a_server_does_not_wait_for_a_download_from_a_hung_source(tmp_path: Path) -> None:
    upstream = HungUpstream()
    server = serve_fetching_from(upstream.url, tmp_path)
    try:
        server.start()
        assert upstream.accepted.wait(POLL_SECONDS), server.stderr()
        started = time.monotonic()
        code = server.stop(timeout=POLL_SECONDS)
        # The download's read timeout is a minute: stopping finished long before it, by itself.
        assert time.monotonic() - started < 30, server.stderr()
        assert code == 0, server.stderr()
    finally:
        server.stop()
        upstream.close()


def test_a_failed_first_download_is_tried_again_soon(mirror: Mirror, tmp_path: Path) -> None:
    """Nothing published yet (the mirror answers 404): the fresh server tries again within seconds,
    backing off, rather than a whole interval (a day) later, and gets the data once it is there."""
    server = serve_fetching_from(mirror.url, tmp_path)
    server.start()
    try:
        deadline = time.monotonic() + POLL_SECONDS
        while 404 not in mirror.statuses():
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.2)
        mirror.publish("PyPI", archive(advisory("PYSEC-1", "requests", "2.0")))
        while "PYSEC-1" not in advisory_ids(server.data_dir):
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.2)
        assert mirror.statuses()[-1] == 200
    finally:
        server.stop()
