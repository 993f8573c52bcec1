"""Request and event IDs: UUID-shaped (as AWS's are), from a per-process PRNG.

They identify, they do not protect, so they need no system entropy per request: os.urandom costs a
system call, and a manifest GET makes two IDs. Each process (a forked worker too) seeds its own
generator from the system once."""

from __future__ import annotations

import os
import random
import threading
import time

_generator = random.Random(os.urandom(32))
_VARIANT = "89ab"


# The last (millisecond, sequence) an ordered ID used in this process.
_last = [0, 0]
_order_lock = threading.Lock()


def _reseed() -> None:
    _generator.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """A random (version 4) UUID in its canonical text form."""
    text = f"{_generator.getrandbits(128):032x}"
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{_VARIANT[int(text[16], 16) & 3]}{text[17:20]}-{text[20:]}"


def new_ordered_id() -> str:
    """A version-4-shaped UUID whose text sorts by creation time (to the millisecond) and, within a
    process, by creation order: audit events of the same second are then listed newest first."""
    with _order_lock:
        millisecond = max(time.time_ns() // 1_000_000, _last[0])
        sequence = _last[1] + 1 if millisecond == _last[0] else 0
        if sequence > 0xFFF:
            millisecond, sequence = millisecond + 1, 0
        _last[0], _last[1] = millisecond, sequence
    stamp = f"{millisecond:012x}"
    rest = f"{_generator.getrandbits(64):016x}"
    return f"{stamp[:8]}-{stamp[8:]}-4{sequence:03x}-{_VARIANT[int(rest[0], 16) & 3]}{rest[1:4]}-{rest[4:16]}"
