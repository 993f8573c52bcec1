"""OSV-format advisories (https://ossf.github.io/osv-schema/): reading them from the archives osv.dev
publishes (one zip of JSON records per ecosystem), from directories of JSON files, or single files,
and turning each record into what matching needs."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from dockyard.vulndb.severity import Cvss, from_rating, parse_cvss

OSV_URL = "https://osv.dev/vulnerability/"


class OsvError(ValueError):
    """A record that is not a usable OSV document."""


@dataclass(frozen=True)
class AffectedPackage:
    ecosystem: str  # as the record names it: "Debian:12", "PyPI", "Ubuntu:22.04:LTS"
    base: str  # the part before the first colon: "Debian"
    release: str  # the rest: "12", "22.04:LTS", "" for a release-less ecosystem
    name: str  # PyPI names normalised (PEP 503), others as given
    ranges: tuple[dict[str, Any], ...]  # ECOSYSTEM and SEMVER ranges: {"type", "events"}
    versions: tuple[str, ...]
    severity: str | None  # the distribution's rating for this package, if it gives one


@dataclass(frozen=True)
class Advisory:
    id: str
    modified: float
    published: float | None
    withdrawn: float | None
    summary: str
    details: str
    aliases: tuple[str, ...]
    upstream: tuple[str, ...]
    severity: str | None  # from the record's own ratings or CVSS; None when it has neither
    cvss2: Cvss | None
    cvss3: Cvss | None
    uri: str
    affected: tuple[AffectedPackage, ...] = field(default_factory=tuple)

    @property
    def related(self) -> tuple[str, ...]:
        return self.aliases + self.upstream


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _strings(value: object) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def match_name(ecosystem_base: str, name: str) -> str:
    return str(canonicalize_name(name)) if ecosystem_base == "PyPI" else name


def _cvss_entries(entries: object) -> dict[str, Cvss]:
    found: dict[str, Cvss] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("score"), str):
            parsed = parse_cvss(str(entry.get("type")), entry["score"])
            if parsed is not None:
                found.setdefault(str(entry.get("type")), parsed)
    return found


def _rating_entries(entries: object) -> str | None:
    """A distribution rating given as an OSV severity entry (type "Ubuntu", or a plain word)."""
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and not str(entry.get("type", "")).startswith("CVSS"):
            rated = from_rating(entry.get("score"))
            if rated:
                return rated
    return None


def _record_severity(record: dict[str, Any], cvss: dict[str, Cvss]) -> str | None:
    rated = _rating_entries(record.get("severity"))
    if rated:
        return rated
    for kind in ("CVSS_V3", "CVSS_V4", "CVSS_V2"):
        if kind in cvss:
            return cvss[kind].severity
    specific = record.get("database_specific")
    return from_rating(specific.get("severity")) if isinstance(specific, dict) else None


def _affected_severity(affected: dict[str, Any]) -> str | None:
    """The distribution's own rating of this package's exposure (Debian urgency, Ubuntu priority, ...)."""
    for key in ("ecosystem_specific", "database_specific"):
        specific = affected.get(key)
        if isinstance(specific, dict):
            for word in ("urgency", "severity", "priority"):
                rated = from_rating(specific.get(word))
                if rated:
                    return rated
    rated = _rating_entries(affected.get("severity"))
    if rated:
        return rated
    cvss = _cvss_entries(affected.get("severity"))
    for kind in ("CVSS_V3", "CVSS_V4", "CVSS_V2"):
        if kind in cvss:
            return cvss[kind].severity
    return None


def _affected(entry: object) -> AffectedPackage | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("package"), dict):
        return None
    package = entry["package"]
    ecosystem, name = package.get("ecosystem"), package.get("name")
    if not isinstance(ecosystem, str) or not isinstance(name, str) or not ecosystem or not name:
        return None
    base, _, release = ecosystem.partition(":")
    ranges = tuple(
        {"type": r["type"], "events": [e for e in r.get("events", []) if isinstance(e, dict)]}
        for r in entry.get("ranges", [])
        if isinstance(r, dict) and r.get("type") in ("ECOSYSTEM", "SEMVER")
    )
    return AffectedPackage(
        ecosystem, base, release, match_name(base, name), ranges, _strings(entry.get("versions")),
        _affected_severity(entry),
    )  # fmt: skip


def _uri(record: dict[str, Any], vuln_id: str) -> str:
    references = [r for r in record.get("references", []) if isinstance(r, dict) and isinstance(r.get("url"), str)]
    for reference in references:
        if reference.get("type") == "ADVISORY":
            return str(reference["url"])
    return str(references[0]["url"]) if references else OSV_URL + vuln_id


def parse_record(data: bytes | str | dict[str, Any]) -> Advisory:
    """An Advisory from one OSV JSON document."""
    try:
        record = json.loads(data) if isinstance(data, bytes | str) else data
    except ValueError as exc:
        raise OsvError(f"not JSON: {exc}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"]:
        raise OsvError("not an OSV record (no id)")
    vuln_id = record["id"]
    cvss = _cvss_entries(record.get("severity"))
    affected = tuple(a for a in map(_affected, record.get("affected") or []) if a is not None)
    return Advisory(
        id=vuln_id,
        modified=_timestamp(record.get("modified")) or 0.0,
        published=_timestamp(record.get("published")),
        withdrawn=_timestamp(record.get("withdrawn")),
        summary=str(record.get("summary") or ""),
        details=str(record.get("details") or ""),
        aliases=_strings(record.get("aliases")),
        upstream=_strings(record.get("upstream")),
        severity=_record_severity(record, cvss),
        cvss2=cvss.get("CVSS_V2"),
        cvss3=cvss.get("CVSS_V3"),
        uri=_uri(record, vuln_id),
        affected=affected,
    )


# --- where records come from --------------------------------------------------------------------


def _json_files(directory: Path) -> list[Path]:
    found = []
    for root, _dirs, files in os.walk(directory):
        found.extend(Path(root, f) for f in files if f.endswith(".json"))
    return sorted(found)


def count_records(path: Path) -> int:
    """How many documents iter_records(path) will yield (for a progress bar)."""
    if path.is_dir():
        return len(_json_files(path))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return sum(1 for n in archive.namelist() if n.endswith(".json"))
    return 1


def iter_records(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, JSON bytes) of every OSV document in a zip archive, a directory tree, or one file."""
    if path.is_dir():
        for file in _json_files(path):
            yield str(file), file.read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith(".json"):
                    yield f"{path}:{name}", archive.read(name)
    else:
        yield str(path), path.read_bytes()
