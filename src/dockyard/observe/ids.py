"""Request and event IDs: UUID-shaped (as AWS's are), from a per-process PRNG.

They identify, they do not protect, so they need no system entropy per request: os.urandom costs a
system call, and a manifest GET makes two IDs. Each process (a forked worker too) seeds its own
generator from the system once."""

from __future__ import annotations

import os
import random

_generator = random.Random(os.urandom(32))
_VARIANT = "89ab"


def _reseed() -> None:
    _generator.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """A random (version 4) UUID in its canonical text form."""
    text = f"{_generator.getrandbits(128):032x}"
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{_VARIANT[int(text[16], 16) & 3]}{text[17:20]}-{text[20:]}"
