"""The dependency list cargo-auditable embeds in Rust executables: a `.dep-v0` ELF section holding
zlib-compressed JSON, `{"packages": [{"name", "version", "source", "kind", "dependencies", "root"}]}`.

The section is found through the ELF section headers, read with pyelftools. Images are untrusted
input: every offset and size is checked against the file before anything is read, and the
decompressed JSON is capped, so a damaged or hostile binary reads as "no data", never as an error
or a hang."""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.construct import ConstructError
from elftools.elf.elffile import ELFFile

SECTION = ".dep-v0"
# Real dependency lists compress to kilobytes; these bounds leave room for very large programs.
MAX_COMPRESSED = 8 * 1024 * 1024
MAX_JSON = 64 * 1024 * 1024
MAX_SECTIONS = 1 << 16
CRATES_IO = "crates.io"
_PARSE_ERRORS = (
    ELFError, ConstructError, struct.error, ValueError, KeyError, IndexError, OverflowError, EOFError, TypeError,
    AttributeError,
)  # fmt: skip


@dataclass(frozen=True)
class Crate:
    name: str
    version: str
    source: str  # "crates.io", "local" (the root crate), "git", "registry", ...
    kind: str  # "runtime" or "build"


@dataclass(frozen=True)
class CargoAudit:
    crates: tuple[Crate, ...] = field(default_factory=tuple)

    def from_crates_io(self) -> list[Crate]:
        """The crates OSV's crates.io ecosystem can know about (not the local root crate, nor git ones)."""
        return [c for c in self.crates if c.source == CRATES_IO]


def read_audit_data(file: BinaryIO) -> CargoAudit | None:
    """The dependency list of the ELF executable in `file` (seekable), or None: not ELF, built
    without cargo-auditable, or damaged."""
    compressed = _section_bytes(file)
    return parse_audit_data(compressed) if compressed is not None else None


def _section_bytes(file: BinaryIO) -> bytes | None:
    try:
        elf = ELFFile(file)
        size = elf.stream_len
        sections = elf.num_sections()
        # The table must lie within the file: a forged count or entry size would otherwise make the
        # name lookup below walk (or fail on) headers that are not there.
        if not 0 < sections <= MAX_SECTIONS or elf["e_shoff"] + sections * elf["e_shentsize"] > size:
            return None
        section = elf.get_section_by_name(SECTION)
        if section is None or section["sh_type"] == "SHT_NOBITS":
            return None
        offset, length = section["sh_offset"], section["sh_size"]
        if length == 0 or length > MAX_COMPRESSED or offset + length > size:
            return None
        file.seek(offset)
        data = file.read(length)
    except _PARSE_ERRORS:
        return None
    return data if len(data) == length else None


def parse_audit_data(compressed: bytes) -> CargoAudit | None:
    """The crates of a `.dep-v0` section's content; None if it is not zlib-compressed audit JSON."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(compressed, MAX_JSON)
    except zlib.error:
        return None
    if inflater.unconsumed_tail:  # larger than MAX_JSON
        return None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    packages = document.get("packages") if isinstance(document, dict) else None
    if not isinstance(packages, list):
        return None
    crates = []
    for entry in packages:
        if not isinstance(entry, dict):
            continue
        name, version, source = entry.get("name"), entry.get("version"), entry.get("source")
        kind = entry.get("kind", "runtime")
        if isinstance(name, str) and isinstance(version, str) and isinstance(source, str) and name and version:
            crates.append(Crate(name, version, source, kind if isinstance(kind, str) else "runtime"))
    return CargoAudit(tuple(crates))
