"""The registry door's whole-blob response on local files: the server sends the file itself
(`http.response.pathsend`), and nothing on the way hands work to a thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from dockyard.core.registry.blobs import BlobDamaged
from dockyard.doors.registry import _blob_file

DIGEST = "sha256:" + "ab" * 32
HEADERS = {"Docker-Content-Digest": DIGEST, "ETag": f'"{DIGEST}"'}


async def _send_through_pathsend(response: Any) -> list[dict[str, Any]]:
    scope = {"type": "http", "method": "GET", "headers": [], "extensions": {"http.response.pathsend": {}}}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await response(scope, receive, send)
    return sent


async def test_a_pull_hands_the_path_to_the_server_without_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"x" * 1000)

    async def no_thread(*args: object, **kwargs: object) -> None:
        raise AssertionError("a whole-blob pull handed work to a thread")

    monkeypatch.setattr(anyio.to_thread, "run_sync", no_thread)
    start, body = await _send_through_pathsend(_blob_file(blob, DIGEST, 1000, HEADERS))
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    assert start["status"] == 200
    assert headers["content-length"] == "1000"
    assert headers["etag"] == f'"{DIGEST}"', "the digest stays the ETag, not one made from the file's stat"
    assert headers["docker-content-digest"] == DIGEST
    assert body == {"type": "http.response.pathsend", "path": str(blob)}


def test_a_blob_removed_after_its_check_is_unknown(tmp_path: Path) -> None:
    with pytest.raises(BlobDamaged) as raised:
        _blob_file(tmp_path / "gone", DIGEST, 1000, HEADERS)
    assert raised.value.damage == "missing"
