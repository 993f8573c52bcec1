"""Byte ranges of a blob GET (RFC 9110 §14), read one way for every URL that serves blob bytes:
the registry door's blob URLs and the ECR door's layer download URLs. Each door renders an
unsatisfiable range in its own error format."""

from __future__ import annotations

import re
from dataclasses import dataclass

BYTE_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


@dataclass(frozen=True)
class ByteRange:
    """Bytes first..last (inclusive) of a blob of `size` bytes."""

    first: int
    last: int
    size: int

    @property
    def end(self) -> int:
        """The exclusive end, as blob reads take it."""
        return self.last + 1

    @property
    def headers(self) -> dict[str, str]:
        """The headers of the 206 response that carries the range."""
        return {
            "Content-Range": f"bytes {self.first}-{self.last}/{self.size}",
            "Content-Length": str(self.end - self.first),
        }


class RangeNotSatisfiable(Exception):
    """A well-formed range that selects none of the blob's bytes: a 416."""

    def __init__(self, value: str, size: int) -> None:
        super().__init__(f"the range {value!r} is not satisfiable: the blob has {size} bytes")
        self.value, self.size = value, size

    @property
    def headers(self) -> dict[str, str]:
        # RFC 9110 §15.5.17: a 416 names the representation's current length.
        return {"Content-Range": f"bytes */{self.size}"}


def requested_range(value: str | None, size: int) -> ByteRange | None:
    """The range a GET's Range header (`value`) asks of a blob of `size` bytes; None for the
    whole blob. Ranges not served here (several at once, other units, malformed) are ignored,
    as RFC 9110 allows: the whole blob is the answer."""
    if value is None:
        return None
    match = BYTE_RANGE.fullmatch(value.strip())
    if not match or not (match[1] or match[2]):
        return None
    if not match[1]:
        suffix = int(match[2])
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(value, size)
        return ByteRange(max(size - suffix, 0), size - 1, size)
    first = int(match[1])
    last = int(match[2]) if match[2] else size - 1
    if first >= size or last < first:
        raise RangeNotSatisfiable(value, size)
    return ByteRange(first, min(last, size - 1), size)
