"""The RPM database in its three formats. Each holds one RPM header blob per installed package,
which rpmfile parses once it is given back the header magic the databases leave out.

- SQLite (rpmdb.sqlite: Fedora 33+, RHEL/UBI/Rocky/Alma 9, Amazon Linux 2023): the Packages table.
- Berkeley DB (`Packages`: RHEL/CentOS 7 and 8, Amazon Linux 2): a hash database keyed by package
  number. Its pages are walked directly (no libdb): every hash page's data items are headers, kept
  inline on the page or, being large, on a chain of overflow pages.
- NDB (`Packages.db`: SUSE 15, openSUSE): rpm's own format. A slot table after the file header
  points at 16-byte blocks, each run of blocks one blob with its own header.

The files are read page by page through seeks, every offset and length checked against the file
and against caps, so a damaged or hostile database raises ValueError rather than running away."""

from __future__ import annotations

import io
import os
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from rpmfile import headers as rpm_headers
from rpmfile.errors import RPMError

# Header magic, version 1, and four reserved bytes: what an rpmdb row omits before the index.
_HEADER_PREAMBLE = b"\x8e\xad\xe8\x01\x00\x00\x00\x00"
# rpm refuses headers past 256 MiB (HEADER_DATA_MAX); real ones stay below a few MiB.
MAX_HEADER_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True)
class RpmPackage:
    name: str
    version: str  # [epoch:]version-release, as RPM compares it
    arch: str | None
    source_name: str | None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list) and value:
        return _text(value[0])
    return None


def source_name(source_rpm: str | None) -> str | None:
    """'openssl-3.0.7-24.el9.src.rpm' -> 'openssl'."""
    if not source_rpm or not source_rpm.endswith(".rpm"):
        return None
    stem = source_rpm.removesuffix(".rpm").rsplit(".", 1)[0]  # drop ".src"/".nosrc"
    parts = stem.rsplit("-", 2)
    return parts[0] if len(parts) == 3 else None


def parse_header(blob: bytes) -> RpmPackage | None:
    try:
        _, values = rpm_headers._readheader(io.BytesIO(_HEADER_PREAMBLE + blob), False)
    except (RPMError, AssertionError, ValueError, IndexError, KeyError, TypeError, OSError, struct.error) as exc:
        raise ValueError(f"unreadable rpm header: {exc}") from exc
    name, version, release = (_text(values.get(k)) for k in ("name", "version", "release"))
    if not name or not version or name == "gpg-pubkey":
        return None  # imported signing keys are rows too
    epoch = values.get("serial")
    evr = f"{version}-{release}" if release else version
    if isinstance(epoch, int) and epoch > 0:
        evr = f"{epoch}:{evr}"
    return RpmPackage(name, evr, _text(values.get("arch")), source_name(_text(values.get("sourcerpm"))))


def read_sqlite_rpmdb(path: str) -> list[RpmPackage]:
    connection = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        rows = connection.execute("SELECT blob FROM Packages").fetchall()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"unreadable rpm database: {exc}") from exc
    finally:
        connection.close()
    packages = []
    for (blob,) in rows:
        package = parse_header(bytes(blob))
        if package is not None:
            packages.append(package)
    return packages


def _parse_all(blobs: Iterator[bytes]) -> list[RpmPackage]:
    packages = []
    for blob in blobs:
        package = parse_header(blob)
        if package is not None:
            packages.append(package)
    return packages


def _read_at(handle: io.BufferedReader, offset: int, size: int, file_size: int) -> bytes:
    if offset < 0 or size < 0 or offset + size > file_size:
        raise ValueError(f"reference past the end of the file (offset {offset}, {size} bytes)")
    handle.seek(offset)
    return handle.read(size)


# --- Berkeley DB hash (db-5.3: dbinc/db_page.h) -------------------------------------------------

_BDB_HASH_MAGIC = 0x061561
_BDB_META = struct.Struct("<8xIIIIBBBxIIIIIIII")  # lsn, pgno, magic, version, pagesize, ...
_BDB_PAGE = struct.Struct("<8xIIIHHBB")  # lsn, pgno, prev, next, entries, hf_offset, level, type
_P_HASH_UNSORTED, _P_OVERFLOW, _P_HASHMETA, _P_HASH = 2, 7, 8, 13
_H_KEYDATA, _H_OFFPAGE = 1, 3
_OFFPAGE = struct.Struct("<B3xII")  # type, pgno, tlen
_DBMETA_CHKSUM = 0x01
_CHECKSUM_SIZE = 6  # PG_CHKSUM: two unused bytes and a 4-byte checksum


class _BdbFile:
    def __init__(self, handle: io.BufferedReader, file_size: int) -> None:
        self.handle = handle
        self.file_size = file_size
        meta = _read_at(handle, 0, 512, file_size) if file_size >= 512 else b""
        if len(meta) < _BDB_META.size:
            raise ValueError("not a Berkeley DB file")
        self.order = "<"
        if struct.unpack_from("<I", meta, 12)[0] != _BDB_HASH_MAGIC:
            if struct.unpack_from(">I", meta, 12)[0] != _BDB_HASH_MAGIC:
                raise ValueError("not a Berkeley DB hash database")
            self.order = ">"  # written on a big-endian machine
        _, _, _, pagesize, encrypt, kind, flags, _, last_pgno, *_ = struct.unpack(
            self.order + _BDB_META.format[1:], meta[: _BDB_META.size]
        )
        if encrypt or kind != _P_HASHMETA:
            raise ValueError("an encrypted or non-hash Berkeley DB database")
        if pagesize < 512 or pagesize > 65536 or pagesize & (pagesize - 1):
            raise ValueError(f"implausible page size {pagesize}")
        self.pagesize = pagesize
        self.pages = min(last_pgno + 1, file_size // pagesize)
        self.page_format = struct.Struct(self.order + _BDB_PAGE.format[1:])
        # With page checksums on, each page's index (or overflow data) follows the checksum.
        self.overhead = _BDB_PAGE.size + (_CHECKSUM_SIZE if flags & _DBMETA_CHKSUM else 0)
        self.offpage = struct.Struct(self.order + _OFFPAGE.format[1:])

    def page(self, number: int) -> bytes:
        if not 0 <= number < self.pages:
            raise ValueError(f"page {number} is outside the database")
        return _read_at(self.handle, number * self.pagesize, self.pagesize, self.file_size)

    def values(self) -> Iterator[bytes]:
        for number in range(1, self.pages):
            page = self.page(number)
            _, _, _, entries, _, _, kind = self.page_format.unpack_from(page)
            if kind not in (_P_HASH, _P_HASH_UNSORTED):
                continue
            yield from self._page_values(page, entries)

    def _page_values(self, page: bytes, entries: int) -> Iterator[bytes]:
        header = self.overhead
        if header + 2 * entries > len(page):
            raise ValueError("a hash page lists more items than it holds")
        offsets = struct.unpack_from(f"{self.order}{entries}H", page, header)
        # Items are pairs, key then data; each item ends where the one before it (in the index) starts.
        for index in range(1, entries, 2):
            start, end = offsets[index], offsets[index - 1]
            if not header + 2 * entries <= start < end <= len(page):
                raise ValueError("a hash page item lies outside its page")
            item = page[start:end]
            if item[0] == _H_KEYDATA:
                yield item[1:]
            elif item[0] == _H_OFFPAGE and len(item) >= self.offpage.size:
                _, first, total = self.offpage.unpack_from(item)
                yield self._overflow(first, total)

    def _overflow(self, first: int, total: int) -> bytes:
        if total > MAX_HEADER_SIZE:
            raise ValueError(f"a {total}-byte item is larger than any rpm header")
        data = bytearray()
        number, seen = first, set()
        while len(data) < total:
            if number in seen or number == 0:
                raise ValueError("a broken overflow page chain")
            seen.add(number)
            page = self.page(number)
            _, _, following, _, used, _, kind = self.page_format.unpack_from(page)
            if kind != _P_OVERFLOW or self.overhead + used > len(page):
                raise ValueError(f"page {number} is not an overflow page")
            data += page[self.overhead : self.overhead + used]
            number = following
        if len(data) != total:
            raise ValueError("an overflow chain longer than its item")
        return bytes(data)


def read_bdb_rpmdb(path: str) -> list[RpmPackage]:
    """The packages of a Berkeley DB `Packages` hash database."""
    with open(path, "rb") as handle:
        try:
            bdb = _BdbFile(handle, os.fstat(handle.fileno()).st_size)  # type: ignore[arg-type]
            return _parse_all(bdb.values())
        except (struct.error, IndexError) as exc:
            raise ValueError(f"unreadable Berkeley DB database: {exc}") from exc


# --- NDB (rpm: lib/backend/ndb/rpmpkg.c) --------------------------------------------------------

_NDB_MAGIC = b"RpmP"
_NDB_SLOT_MAGIC = b"Slot"
_NDB_BLOB_MAGIC = b"BlbS"
_NDB_PAGE_SIZE = 4096
_NDB_SLOT = struct.Struct("<4sIII")  # magic, package index, block offset, block count
_NDB_BLOB = struct.Struct("<4sIII")  # magic, package index, checksum, length
_NDB_BLOCK_SIZE = 16
# The file header takes the first two slots of the first slot page.
_NDB_HEADER_SLOTS = 2


def read_ndb_rpmdb(path: str) -> list[RpmPackage]:
    """The packages of an NDB `Packages.db` database."""
    with open(path, "rb") as handle:
        file_size = os.fstat(handle.fileno()).st_size
        try:
            return _parse_all(_ndb_blobs(handle, file_size))  # type: ignore[arg-type]
        except (struct.error, IndexError) as exc:
            raise ValueError(f"unreadable NDB database: {exc}") from exc


def _ndb_blobs(handle: io.BufferedReader, file_size: int) -> Iterator[bytes]:
    if file_size < _NDB_PAGE_SIZE:
        raise ValueError("not an rpm NDB database")
    magic, version, _, slot_pages = struct.unpack("<4sIII", _read_at(handle, 0, 16, file_size))
    if magic != _NDB_MAGIC or version != 0:
        raise ValueError("not an rpm NDB database")
    slots = _read_at(handle, 0, slot_pages * _NDB_PAGE_SIZE, file_size)
    for offset in range(_NDB_HEADER_SLOTS * _NDB_SLOT.size, len(slots), _NDB_SLOT.size):
        slot_magic, index, block, blocks = _NDB_SLOT.unpack_from(slots, offset)
        if slot_magic != _NDB_SLOT_MAGIC:
            raise ValueError("a damaged NDB slot table")
        if index == 0:
            continue  # a free slot
        blob_header = _read_at(handle, block * _NDB_BLOCK_SIZE, _NDB_BLOB.size, file_size)
        blob_magic, blob_index, _, length = _NDB_BLOB.unpack(blob_header)
        if blob_magic != _NDB_BLOB_MAGIC or blob_index != index:
            raise ValueError(f"slot {index} points at no blob of its own")
        if length > MAX_HEADER_SIZE or _NDB_BLOB.size + length > blocks * _NDB_BLOCK_SIZE:
            raise ValueError(f"blob {index} overruns its blocks")
        yield _read_at(handle, block * _NDB_BLOCK_SIZE + _NDB_BLOB.size, length, file_size)
