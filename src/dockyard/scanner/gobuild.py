"""The build information Go (1.18 and later) embeds in every binary: toolchain version, main module
and dependencies, found by its magic in the binary's byte stream, so no executable format parser
(and no seeking) is needed.

The blob starts with the 14-byte magic, a pointer size and a flags byte, padded to 32 bytes; with
flag 2 set, two varint-length-prefixed strings follow: the Go version and the module information
(`path`, `mod`, `dep` and `=>` lines, wrapped in 16-byte sentinels). Older binaries point at the
strings instead, which needs the executable's address map; those are not read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO

MAGIC = b"\xff Go buildinf:"
HEADER_SIZE = 32
INLINE_STRINGS = 0x2
# Module information of even very large programs stays far below this.
MAX_INFO_SIZE = 4 * 1024 * 1024
CHUNK_SIZE = 1024 * 1024
ELF_MAGIC = b"\x7fELF"
SENTINEL_SIZE = 16


@dataclass(frozen=True)
class GoModule:
    path: str
    version: str


@dataclass(frozen=True)
class GoBuildInfo:
    go_version: str  # "go1.21.3"
    main: GoModule | None
    deps: tuple[GoModule, ...] = field(default_factory=tuple)


def read_build_info(stream: BinaryIO) -> GoBuildInfo | None:
    """The build information of the ELF executable in `stream`, or None (not Go, or too old)."""
    first = stream.read(CHUNK_SIZE)
    if not first.startswith(ELF_MAGIC):
        return None
    window = first
    while True:
        found = window.find(MAGIC)
        if found >= 0:
            blob = window[found:]
            while len(blob) < MAX_INFO_SIZE and (more := stream.read(CHUNK_SIZE)):
                blob += more
            return parse_build_info(blob)
        more = stream.read(CHUNK_SIZE)
        if not more:
            return None
        window = window[-(len(MAGIC) - 1) :] + more


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated varint")


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = _varint(data, pos)
    if pos + length > len(data):
        raise ValueError("truncated string")
    return data[pos : pos + length], pos + length


def parse_build_info(blob: bytes) -> GoBuildInfo | None:
    """Parse a build information blob that starts with MAGIC."""
    if len(blob) < HEADER_SIZE or not blob.startswith(MAGIC) or not blob[15] & INLINE_STRINGS:
        return None
    try:
        version, pos = _string(blob, HEADER_SIZE)
        modinfo, _ = _string(blob, pos)
    except ValueError:
        return None
    if not version.startswith(b"go"):
        return None
    if len(modinfo) >= 2 * SENTINEL_SIZE + 1 and modinfo[-SENTINEL_SIZE - 1 : -SENTINEL_SIZE] == b"\n":
        modinfo = modinfo[SENTINEL_SIZE:-SENTINEL_SIZE]
    return _parse_modinfo(version.decode("ascii", "replace"), modinfo.decode("utf-8", "replace"))


def _parse_modinfo(version: str, modinfo: str) -> GoBuildInfo:
    main: GoModule | None = None
    deps: list[GoModule] = []
    for line in modinfo.splitlines():
        kind, _, rest = line.partition("\t")
        fields = rest.split("\t")
        if kind == "mod" and len(fields) >= 2:
            main = GoModule(fields[0], fields[1])
        elif kind == "dep" and len(fields) >= 2:
            deps.append(GoModule(fields[0], fields[1]))
        elif kind == "=>" and len(fields) >= 2 and deps:
            # A replacement: the module actually built in is the replacing one.
            deps[-1] = GoModule(fields[0], fields[1])
    return GoBuildInfo(version, main, tuple(deps))
