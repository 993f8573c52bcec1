"""Reading an image's layers off the request path.

Layers on the local filesystem are read by a process of their own (`python -m
dockyard.scanner.child`, at a lower CPU priority): decompression and tar parsing never compete
with the server's event loop for the interpreter, a hostile layer cannot crash the server, and a
scan that overruns its time is simply killed. Blob stores without local files are read in a
thread instead, their async streams bridged to the blocking reader."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from dockyard.scanner.inventory import Inventory, inventory_of
from dockyard.scanner.layers import LayerError, PathLayer

CHILD_MODULE = "dockyard.scanner.child"


class ScanFailed(Exception):
    """The scan could not finish; the message is what DescribeImageScanFindings reports."""


async def inventory_in_process(layers: Sequence[PathLayer], timeout: float) -> Inventory:
    """Inventory `layers` in a child process, killed if it runs past `timeout` or we are cancelled."""
    request = json.dumps({"layers": [{"digest": layer.digest, "path": layer.path} for layer in layers]})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        CHILD_MODULE,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(request.encode()), timeout)
    except TimeoutError:
        raise ScanFailed(f"the scan did not finish within {timeout:.0f} seconds") from None
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    try:
        reply = json.loads(out)
    except ValueError:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise ScanFailed(f"the scan process ended unexpectedly (exit code {process.returncode}) {tail[0]}") from None
    if "error" in reply:
        raise ScanFailed(reply["error"])
    return Inventory.from_json(json.dumps(reply["inventory"]))


# --- blob stores without local files ------------------------------------------------------------


class _BridgedStream(io.RawIOBase):
    """A blocking stream over an async iterator of chunks that runs on `loop`; once `stop` is set
    (the scan timed out) it fails, so the reading thread ends."""

    def __init__(self, chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        self._chunks = chunks
        self._loop = loop
        self._stop = stop
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    async def _next(self) -> bytes:
        return await anext(self._chunks, b"")

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._done:
            if self._stop.is_set():
                raise OSError("the scan was stopped")
            chunk = asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
            self._pending, self._done = chunk, not chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


@dataclass(frozen=True)
class _StreamLayer:
    digest: str
    chunks: Callable[[], AsyncIterator[bytes]]
    loop: asyncio.AbstractEventLoop
    stop: threading.Event

    def open(self) -> BinaryIO:
        stream = _BridgedStream(self.chunks(), self.loop, self.stop)
        return io.BufferedReader(stream, 1024 * 1024)  # type: ignore[return-value]


async def inventory_in_thread(
    layers: Sequence[tuple[str, Callable[[], AsyncIterator[bytes]]]], timeout: float
) -> Inventory:
    """Inventory layers given as (digest, async chunk stream opener), e.g. from an object store."""
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    readable = [_StreamLayer(digest, chunks, loop, stop) for digest, chunks in layers]

    def work() -> Inventory:
        with tempfile.TemporaryDirectory(prefix="dockyard-scan-") as spool:
            return inventory_of(readable, spool)

    try:
        return await asyncio.wait_for(asyncio.to_thread(work), timeout)
    except LayerError as exc:
        raise ScanFailed(str(exc)) from exc
    except TimeoutError as exc:
        raise ScanFailed(f"the scan did not finish within {timeout:.0f} seconds") from exc
    finally:
        stop.set()
