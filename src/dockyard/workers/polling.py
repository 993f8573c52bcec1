"""What the background workers that take queued work one item at a time share: a task started
with the application that asks for work, does it, and when there was none waits a moment before
asking again; a failed turn is logged and the next one comes. Each worker names itself to the
database (`node`) when it claims an item, so a claim says which process holds it."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import socket
import uuid

POLL_INTERVAL = 0.5


def node_name() -> str:
    """This worker's name in claims: host, process and a random part (a restarted process is
    another claimant)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:64]


class PollingWorker(abc.ABC):
    """Subclasses say what one turn does (`run_once`: True when it found work, so the next turn
    comes at once)."""

    name = "dockyard-worker"
    log = logging.getLogger("dockyard.workers")

    def __init__(self, poll_interval: float = POLL_INTERVAL) -> None:
        self.poll_interval = poll_interval
        self.node = node_name()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @abc.abstractmethod
    async def run_once(self) -> bool:
        """One turn: take one queued item and carry it out; True when there was one."""

    async def _run(self) -> None:
        while True:
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad turn must not stop the worker for good
                self.log.exception("%s turn failed", self.name)
                busy = False
            if not busy:
                await asyncio.sleep(self.poll_interval)
