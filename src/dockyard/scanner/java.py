"""Maven artifacts inside Java archives (jar, war, ear), from the `pom.properties` Maven writes into
every archive it builds, at META-INF/maven/<groupId>/<artifactId>/pom.properties. Shaded ("fat")
jars carry one per bundled artifact; archives nested inside archives (a war's WEB-INF/lib, a Spring
Boot jar's BOOT-INF/lib) are opened in turn.

Zip needs random access, so the archive is first copied to an anonymous temporary file; archives
past MAX_ARCHIVE_SIZE, nested ones past MAX_NESTED_SIZE, nesting past MAX_DEPTH and more than
MAX_NESTED_ARCHIVES inner archives are left unread, with a note saying so. A damaged archive is a
note, never an error."""

from __future__ import annotations

import io
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, BinaryIO

ARCHIVE_NAME = re.compile(r"\.(?:jar|war|ear)$", re.IGNORECASE)
_POM_PROPERTIES = re.compile(r"^META-INF/maven/[^/]+/[^/]+/pom\.properties$")
MAX_ARCHIVE_SIZE = 512 * 1024 * 1024
MAX_NESTED_SIZE = 64 * 1024 * 1024
MAX_PROPERTIES_SIZE = 64 * 1024
MAX_DEPTH = 4
MAX_NESTED_ARCHIVES = 2000
CHUNK_SIZE = 1024 * 1024
# What a damaged or hostile archive makes zipfile raise; NotImplementedError is its answer to a
# compression method it does not support.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, zlib.error, EOFError,
               OSError, ValueError)  # fmt: skip


@dataclass(frozen=True)
class MavenArtifact:
    group_id: str
    artifact_id: str
    version: str
    inner_path: str  # where in the archive: "" for the archive itself, "WEB-INF/lib/a.jar" when nested


@dataclass(frozen=True)
class JavaArchive:
    artifacts: tuple[MavenArtifact, ...]
    notes: tuple[str, ...]


@dataclass
class _Walk:
    artifacts: list[MavenArtifact]
    notes: list[str]
    nested: int = 0


def read_java_archive(stream: BinaryIO) -> JavaArchive:
    """The Maven artifacts of the archive in `stream` (a layer member)."""
    walk = _Walk([], [])
    with tempfile.TemporaryFile() as spool:
        size = 0
        while chunk := stream.read(CHUNK_SIZE):
            size += len(chunk)
            if size > MAX_ARCHIVE_SIZE:
                return JavaArchive((), (f"archive larger than {MAX_ARCHIVE_SIZE} bytes, not read",))
            spool.write(chunk)
        _walk_archive(spool, "", 0, walk)
    return JavaArchive(tuple(walk.artifacts), tuple(walk.notes))


def _walk_archive(archive: IO[bytes], where: str, depth: int, walk: _Walk) -> None:
    try:
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                if info.is_dir():
                    continue
                try:
                    _walk_member(zipped, info, where, depth, walk)
                except _ZIP_ERRORS as exc:  # one damaged member leaves the others readable
                    walk.notes.append(f"{where}{info.filename}: unreadable ({exc or type(exc).__name__})")
    except _ZIP_ERRORS as exc:
        walk.notes.append(f"{where.removesuffix('!/') or 'archive'}: unreadable ({exc or type(exc).__name__})")


def _walk_member(zipped: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, depth: int, walk: _Walk) -> None:
    if _POM_PROPERTIES.match(info.filename):
        artifact = _artifact(zipped, info, where)
        if artifact is not None:
            walk.artifacts.append(artifact)
    elif ARCHIVE_NAME.search(info.filename):
        _walk_nested(zipped, info, f"{where}{info.filename}", depth + 1, walk)


def _walk_nested(zipped: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, depth: int, walk: _Walk) -> None:
    walk.nested += 1
    if depth > MAX_DEPTH or walk.nested > MAX_NESTED_ARCHIVES:
        walk.notes.append(f"{where}: nested too deep or too many nested archives, not read")
        return
    if info.file_size > MAX_NESTED_SIZE:
        walk.notes.append(f"{where}: nested archive larger than {MAX_NESTED_SIZE} bytes, not read")
        return
    with zipped.open(info) as member:
        # The recorded size may lie; never read past the cap whatever it says.
        data = member.read(MAX_NESTED_SIZE + 1)
    if len(data) > MAX_NESTED_SIZE:
        walk.notes.append(f"{where}: nested archive larger than {MAX_NESTED_SIZE} bytes, not read")
        return
    _walk_archive(io.BytesIO(data), where + "!/", depth, walk)


def _artifact(zipped: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> MavenArtifact | None:
    with zipped.open(info) as member:
        data = member.read(MAX_PROPERTIES_SIZE + 1)
    if len(data) > MAX_PROPERTIES_SIZE:
        return None
    values = parse_properties(data.decode("latin-1"))
    group, artifact, version = (values.get(k, "").strip() for k in ("groupId", "artifactId", "version"))
    if not group or not artifact or not version:
        return None
    return MavenArtifact(group, artifact, version, where.removesuffix("!/"))


def parse_properties(text: str) -> dict[str, str]:
    """A Java .properties file's simple `key=value` / `key: value` lines (all pom.properties holds)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        match = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)", line)
        if match:
            values.setdefault(match.group(1), match.group(2))
    return values
