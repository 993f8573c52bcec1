"""Image layers read as streams: gzip, zstd or plain tar, one member at a time, never unpacked to disk.

A layer is a tar of the files it changes; a whiteout (`.wh.NAME`) in a higher layer deletes NAME
from the layers below, and an opaque marker (`.wh..wh..opq`) empties its directory of everything
the layers below put there. Only the files a caller selects are kept, each through a handler that
reads the member's stream and returns what to keep (its bytes, a temporary copy, a parsed summary).
"""

from __future__ import annotations

import gzip
import posixpath
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

import zstandard

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
CHUNK_SIZE = 1024 * 1024
MAX_SYMLINK_HOPS = 16

# Reads one member's bytes and returns what to keep of it (None keeps nothing).
Handler = Callable[[BinaryIO], object]
# Decides, from a member's normalised path and header, whether and how to keep it.
Selector = Callable[[str, tarfile.TarInfo], Handler | None]


class LayerError(Exception):
    """A layer that cannot be read: truncated, corrupt, or not a tar archive at all."""

    def __init__(self, digest: str, reason: str) -> None:
        super().__init__(f"layer {digest} could not be read: {reason}")
        self.digest = digest
        self.reason = reason


class Layer(Protocol):
    """One layer blob: its digest, and a way to open its (compressed) bytes as a stream."""

    @property
    def digest(self) -> str: ...

    def open(self) -> BinaryIO: ...


@dataclass(frozen=True)
class PathLayer:
    """A layer blob on the local filesystem (picklable, so a scan process can open it itself)."""

    digest: str
    path: str

    def open(self) -> BinaryIO:
        return open(self.path, "rb")  # noqa: SIM115 - the caller closes it


@dataclass
class Entry:
    """A kept file of the merged filesystem: the layer that last wrote it and what its handler kept."""

    path: str
    layer: str
    value: object = None
    link: str | None = None  # a symbolic link's target, as stored


@dataclass
class FileView:
    """The kept files of the image's merged filesystem, by path without a leading slash."""

    entries: dict[str, Entry] = field(default_factory=dict)

    def resolve(self, path: str) -> Entry | None:
        """The regular file at `path`, following symbolic links between kept entries."""
        current = normalise(path)
        for _ in range(MAX_SYMLINK_HOPS):
            entry = self.entries.get(current)
            if entry is None or entry.link is None:
                return entry
            base = posixpath.dirname(current)
            target = entry.link if entry.link.startswith("/") else posixpath.join("/", base, entry.link)
            current = normalise(target)
        return None

    def files(self) -> Iterator[Entry]:
        return (e for e in self.entries.values() if e.link is None)

    def _remove_tree(self, path: str, *, keep_self: bool = False) -> None:
        prefix = path + "/" if path else ""
        doomed = [p for p in self.entries if p.startswith(prefix) or (p == path and not keep_self)]
        for p in doomed:
            del self.entries[p]


def normalise(name: str) -> str:
    """A member name as an absolute path without its leading slash: './etc/x' and '/etc/x' are 'etc/x'."""
    return posixpath.normpath("/" + name).lstrip("/")


class _Prefixed:
    """A stream whose first bytes were already read to sniff its compression."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            if len(data) < size:
                data += self._rest.read(size - len(data))
            return data
        return self._rest.read(size)


def decompressed(raw: BinaryIO) -> BinaryIO:
    """The tar stream inside a layer blob, whatever its media type claims: the bytes decide."""
    head = raw.read(4)
    stream = _Prefixed(head, raw)
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[arg-type]
    if head.startswith(ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)  # type: ignore[return-value]
    return stream  # type: ignore[return-value]


_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, zstandard.ZstdError, UnicodeDecodeError)


def read_layers(layers: Iterable[Layer], select: Selector) -> FileView:
    """The merged view of the selected files of `layers`, lowest first."""
    view = FileView()
    for layer in layers:
        try:
            with layer.open() as raw:
                _merge_layer(view, layer.digest, decompressed(raw), select)
        except LayerError:
            raise
        except _READ_ERRORS as exc:
            raise LayerError(layer.digest, str(exc) or type(exc).__name__) from exc
    return view


def _merge_layer(view: FileView, digest: str, stream: BinaryIO, select: Selector) -> None:
    own: dict[str, Entry | None] = {}  # None: an unkept file that hides whatever lies below it
    whiteouts: list[str] = []
    opaque: list[str] = []
    with tarfile.open(fileobj=stream, mode="r|") as archive:  # type: ignore[call-overload]
        for member in archive:
            path = normalise(member.name)
            directory, name = posixpath.split(path)
            if name == OPAQUE_MARKER:
                opaque.append(directory)
            elif name.startswith(WHITEOUT_PREFIX):
                whiteouts.append(posixpath.join(directory, name[len(WHITEOUT_PREFIX) :]))
            else:
                entry = _keep(archive, member, path, digest, select, own, view)
                if entry is not None or path in view.entries:
                    own[path] = entry
    for directory in opaque:
        view._remove_tree(directory, keep_self=True)
    for path in whiteouts:
        view._remove_tree(path)
    for path, entry in own.items():
        if entry is None:
            view.entries.pop(path, None)
        else:
            view.entries[path] = entry


def _keep(
    archive: tarfile.TarFile,
    member: tarfile.TarInfo,
    path: str,
    digest: str,
    select: Selector,
    own: dict[str, Entry | None],
    view: FileView,
) -> Entry | None:
    handler = select(path, member)
    if handler is None:
        return None
    if member.issym():
        return Entry(path, digest, link=member.linkname)
    if member.islnk():
        target = normalise(member.linkname)
        found = own.get(target) or view.entries.get(target)
        return Entry(path, digest, found.value, found.link) if found else None
    if not member.isreg():
        return None
    stream = archive.extractfile(member)
    if stream is None:
        return None
    value = handler(stream)  # type: ignore[arg-type]
    return Entry(path, digest, value) if value is not None else None


def read_capped(limit: int) -> Handler:
    """A handler keeping a member's bytes, or nothing when it is larger than `limit`."""

    def handle(stream: BinaryIO) -> bytes | None:
        data = stream.read(limit + 1)
        return data if len(data) <= limit else None

    return handle
