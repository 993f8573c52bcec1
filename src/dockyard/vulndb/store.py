"""The local vulnerability database in the metadata store: importing OSV records, and the lookups
matching needs. Nothing here reaches the network: data arrives through `import_records` (merged
record by record) or `replace_ecosystem` (an ecosystem's whole archive, swapped in at once).

A swap must not hold the write lock (and every push waiting on it) while a large archive is stored:
its rows go to staging tables first, in batches that are each their own short transaction, and one
transaction then moves them into place with set-based statements. Scans never read the staging
tables, so they see the old data or the new, never a mixture."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from dockyard.core.services import now
from dockyard.store import schema
from dockyard.store.database import Database

# The OSV reader (packaging, cvss) is imported by the functions that read records: a worker that
# only polls generation() never needs it (issue 19: memory at rest).
if TYPE_CHECKING:
    from dockyard.vulndb.osv import Advisory

vulns = schema.vulnerabilities
packages = schema.vulnerability_packages
imports = schema.vulndb_imports
sources = schema.vulndb_sources
staged_vulns = schema.vulndb_staged_vulnerabilities
staged_packages = schema.vulndb_staged_packages
BATCH_SIZE = 500
# Staged rows this old belong to an update that died (a killed process) and are cleared away.
STALE_STAGE_SECONDS = 6 * 3600.0
# Bound parameters per IN (...) list: well under SQLite's and PostgreSQL's limits.
LOOKUP_CHUNK = 400


@dataclass
class ImportResult:
    records: int = 0  # stored (new or newer than what was there)
    unchanged: int = 0  # already stored at the same or a newer modification time
    skipped: list[str] = field(default_factory=list)  # unreadable documents, with why
    ecosystems: set[str] = field(default_factory=set)  # the ecosystems (without release) records named


def _documents(name: str, data: bytes) -> Iterator[tuple[str, Any]]:
    """The records of one file: an OSV document, or a JSON list of them."""
    from dockyard.vulndb.osv import OsvError

    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise OsvError(f"{name}: not JSON: {exc}") from exc
    if isinstance(parsed, list):
        for i, item in enumerate(parsed):
            yield f"{name}[{i}]", item
    else:
        yield name, parsed


async def import_records(
    db: Database,
    source: str,
    documents: Iterable[tuple[str, bytes]],
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Store the advisories of `documents`, replacing older versions of the same records, in batches
    (each its own transaction, so a running registry keeps writing in between)."""
    from dockyard.vulndb.osv import OsvError, parse_record

    result = ImportResult()
    batch: list[Advisory] = []
    for name, data in documents:
        try:
            for where, record in _documents(name, data):
                try:
                    batch.append(parse_record(record))
                except OsvError as exc:
                    result.skipped.append(f"{where}: {exc}")
        except OsvError as exc:
            result.skipped.append(str(exc))
        if progress is not None:
            progress(1)
        if len(batch) >= BATCH_SIZE:
            await _store_batch(db, batch, result)
            batch = []
    if batch:
        await _store_batch(db, batch, result)
    async with db.write() as conn:
        moment = now()
        await conn.execute(
            insert(imports).values(
                source=source, imported_at=moment, records=result.records, skipped=len(result.skipped)
            )
        )
        for ecosystem in sorted(result.ecosystems):
            count = await _ecosystem_count(conn, ecosystem)
            # No validators: the next `vulndb update` downloads this ecosystem's archive in full.
            await _put_source(conn, ecosystem, source, None, None, moment, count)
    return result


async def _store_batch(db: Database, batch: list[Advisory], result: ImportResult) -> None:
    newest: dict[str, Advisory] = {}
    for advisory in batch:
        if advisory.id not in newest or advisory.modified >= newest[advisory.id].modified:
            newest[advisory.id] = advisory
    async with db.write() as conn:
        stored = dict(
            (await conn.execute(select(vulns.c.id, vulns.c.modified).where(vulns.c.id.in_(list(newest))))).all()
        )
        fresh = [a for a in newest.values() if a.id not in stored or a.modified >= stored[a.id]]
        result.ecosystems.update(p.base for a in newest.values() for p in a.affected)
        result.unchanged += len(batch) - len(fresh)
        if not fresh:
            return
        await _put_advisories(conn, fresh)
        result.records += len(fresh)


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), LOOKUP_CHUNK):
        yield items[start : start + LOOKUP_CHUNK]


async def _put_advisories(conn: AsyncConnection, advisories: list[Advisory]) -> None:
    """Store `advisories` (distinct ids), each replacing the stored record of its id whole."""
    ids = [a.id for a in advisories]
    for chunk in _chunks(ids):
        await conn.execute(delete(packages).where(packages.c.vulnerability_id.in_(chunk)))
        await conn.execute(delete(vulns).where(vulns.c.id.in_(chunk)))
    moment = now()
    for start in range(0, len(advisories), BATCH_SIZE):
        batch = advisories[start : start + BATCH_SIZE]
        await conn.execute(insert(vulns), [_vulnerability_row(a, moment) for a in batch])
        rows = [_package_row(a, p) for a in batch for p in a.affected]
        if rows:
            await conn.execute(insert(packages), rows)


async def _ecosystem_count(conn: AsyncConnection, ecosystem: str) -> int:
    query = select(func.count(func.distinct(packages.c.vulnerability_id))).where(packages.c.ecosystem_base == ecosystem)
    return int((await conn.execute(query)).scalar_one())


async def _put_source(
    conn: AsyncConnection,
    ecosystem: str,
    source: str,
    etag: str | None,
    last_modified: str | None,
    moment: float,
    advisories: int,
) -> None:
    await conn.execute(delete(sources).where(sources.c.ecosystem == ecosystem))
    await conn.execute(
        insert(sources).values(
            ecosystem=ecosystem,
            source=source,
            etag=etag,
            last_modified=last_modified,
            fetched_at=moment,
            changed_at=moment,
            advisories=advisories,
        )
    )


# --- one ecosystem's archive, swapped in whole --------------------------------------------------


@dataclass(frozen=True)
class Validators:
    """What makes the next download of an ecosystem's archive conditional."""

    source: str
    etag: str | None
    last_modified: str | None


async def validators(db: Database, ecosystem: str) -> Validators | None:
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(sources.c.source, sources.c.etag, sources.c.last_modified).where(
                    sources.c.ecosystem == ecosystem
                )
            )
        ).first()
    return Validators(row.source, row.etag, row.last_modified) if row is not None else None


async def replace_ecosystem(
    db: Database,
    ecosystem: str,
    advisories: list[Advisory],
    validators: Validators,
    staged: Callable[[int], None] | None = None,
) -> int:
    """Make `advisories` (a whole archive of `ecosystem`) the ecosystem's data: staged in batches
    (`staged(count)` after each), then swapped in by one short write transaction, so a scan reading
    meanwhile sees the old data or the new, never a mixture. Records the archive dropped lose this
    ecosystem's entries (and go, once no other ecosystem names them)."""
    newest: dict[str, Advisory] = {}
    for advisory in advisories:
        if advisory.id not in newest or advisory.modified >= newest[advisory.id].modified:
            newest[advisory.id] = advisory
    stage = uuid.uuid4().hex
    await _clear_stale_stages(db)
    try:
        ordered = list(newest.values())
        for start in range(0, len(ordered), BATCH_SIZE):
            await _stage_batch(db, stage, ordered[start : start + BATCH_SIZE])
            if staged is not None:
                staged(min(start + BATCH_SIZE, len(ordered)))
        count = await _swap_in(db, stage, ecosystem, validators, len(newest))
    finally:
        # Not on cancellation's path alone: a failed swap leaves nothing staged behind either.
        await _clear_stage(db, stage)
    return count


async def _stage_batch(db: Database, stage: str, batch: list[Advisory]) -> None:
    moment = now()
    async with db.write() as conn:
        await conn.execute(
            insert(staged_vulns),
            [{**_vulnerability_row(a, moment), "stage": stage, "staged_at": time.time()} for a in batch],
        )
        rows = [{**_package_row(a, p), "stage": stage} for a in batch for p in a.affected]
        if rows:
            await conn.execute(insert(staged_packages), rows)


_VULN_FIELDS = [c.name for c in vulns.columns]
_PACKAGE_FIELDS = [c.name for c in packages.columns if c.name != "id"]


async def _swap_in(db: Database, stage: str, ecosystem: str, validators: Validators, records: int) -> int:
    """Move a stage's rows into place: the one transaction of a swap, each step one statement."""
    staged_ids = select(staged_vulns.c.id).where(staged_vulns.c.stage == stage)
    others = aliased(packages)
    async with db.write() as conn:
        # Records the archive dropped go, unless another ecosystem still names them.
        named_here = select(packages.c.vulnerability_id).where(packages.c.ecosystem_base == ecosystem)
        named_elsewhere = exists().where(others.c.vulnerability_id == vulns.c.id, others.c.ecosystem_base != ecosystem)
        await conn.execute(
            delete(vulns).where(vulns.c.id.in_(named_here), vulns.c.id.not_in(staged_ids), ~named_elsewhere)
        )
        # A staged record replaces its stored version whole, with its entries for other ecosystems.
        await conn.execute(delete(packages).where(packages.c.ecosystem_base == ecosystem))
        await conn.execute(delete(packages).where(packages.c.vulnerability_id.in_(staged_ids)))
        await conn.execute(delete(vulns).where(vulns.c.id.in_(staged_ids)))
        await conn.execute(
            insert(vulns).from_select(
                _VULN_FIELDS,
                select(*(staged_vulns.c[name] for name in _VULN_FIELDS)).where(staged_vulns.c.stage == stage),
            )
        )
        await conn.execute(
            insert(packages).from_select(
                _PACKAGE_FIELDS,
                select(*(staged_packages.c[name] for name in _PACKAGE_FIELDS))
                .where(staged_packages.c.stage == stage)
                .order_by(staged_packages.c.id),
            )
        )
        moment = now()
        count = await _ecosystem_count(conn, ecosystem)
        await _put_source(conn, ecosystem, validators.source, validators.etag, validators.last_modified, moment, count)
        await conn.execute(
            insert(imports).values(source=validators.source, imported_at=moment, records=records, skipped=0)
        )
    return count


async def _clear_stage(db: Database, stage: str) -> None:
    async with db.write() as conn:
        await conn.execute(delete(staged_packages).where(staged_packages.c.stage == stage))
        await conn.execute(delete(staged_vulns).where(staged_vulns.c.stage == stage))


async def _clear_stale_stages(db: Database) -> None:
    stale = select(staged_vulns.c.stage).where(staged_vulns.c.staged_at < time.time() - STALE_STAGE_SECONDS)
    async with db.write() as conn:
        await conn.execute(delete(staged_packages).where(staged_packages.c.stage.in_(stale)))
        await conn.execute(delete(staged_vulns).where(staged_vulns.c.stage.in_(stale)))


async def has_data(db: Database, ecosystem: str) -> bool:
    """Whether the database holds advisories for `ecosystem` (from an update or an import)."""
    async with db.read() as conn:
        query = select(exists().where(packages.c.ecosystem_base == ecosystem))
        return bool((await conn.execute(query)).scalar())


async def mark_unchanged(db: Database, ecosystem: str) -> None:
    """The source answered that the archive has not changed: the data is current as of now."""
    async with db.write() as conn:
        await conn.execute(
            update(sources).where(sources.c.ecosystem == ecosystem).values(fetched_at=now(), error=None, error_at=None)
        )


async def mark_failed(db: Database, ecosystem: str, error: str) -> None:
    """An update failed: the previous data stays, and ages."""
    async with db.write() as conn:
        await conn.execute(
            update(sources).where(sources.c.ecosystem == ecosystem).values(error=error[:2000], error_at=now())
        )


async def ecosystems_loaded(conn: AsyncConnection) -> dict[str, float]:
    """Each ecosystem the database holds data for (OSV's name without a release: "Debian", "PyPI",
    "Red Hat") → when that data was last known current (downloaded, confirmed unchanged, or imported)."""
    rows = await conn.execute(select(sources.c.ecosystem, sources.c.fetched_at).where(sources.c.advisories > 0))
    return {ecosystem: float(fetched_at) for ecosystem, fetched_at in rows}


def _vulnerability_row(advisory: Advisory, moment: float) -> dict[str, Any]:
    cvss2, cvss3 = advisory.cvss2, advisory.cvss3
    return {
        "id": advisory.id,
        "modified": advisory.modified,
        "published": advisory.published,
        "withdrawn": advisory.withdrawn,
        "summary": advisory.summary,
        "details": advisory.details,
        "aliases": json.dumps(advisory.aliases),
        "upstream": json.dumps(advisory.upstream),
        "severity": advisory.severity,
        "cvss2_vector": cvss2.vector if cvss2 else None,
        "cvss2_score": str(cvss2.score) if cvss2 else None,
        "cvss3_vector": cvss3.vector if cvss3 else None,
        "cvss3_score": str(cvss3.score) if cvss3 else None,
        "uri": advisory.uri,
        "imported_at": moment,
    }


def _package_row(advisory: Advisory, affected: Any) -> dict[str, Any]:
    return {
        "vulnerability_id": advisory.id,
        "ecosystem": affected.ecosystem,
        "ecosystem_base": affected.base,
        "ecosystem_release": affected.release,
        "name": affected.name,
        "ranges": json.dumps(affected.ranges),
        "versions": json.dumps(affected.versions),
        "severity": affected.severity,
    }


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vulnerability:
    id: str
    summary: str
    details: str
    related: tuple[str, ...]  # aliases, then upstream ids
    severity: str | None
    cvss2_vector: str | None
    cvss2_score: str | None
    cvss3_vector: str | None
    cvss3_score: str | None
    uri: str


@dataclass(frozen=True)
class Candidate:
    """One affected-package entry of a vulnerability that may concern an installed package."""

    vulnerability: Vulnerability
    ecosystem_base: str
    ecosystem_release: str
    name: str
    ranges: tuple[dict[str, Any], ...]
    versions: tuple[str, ...]
    severity: str | None


def _vulnerability(row: Any) -> Vulnerability:
    return Vulnerability(
        id=row.id,
        summary=row.summary or "",
        details=row.details or "",
        related=tuple(json.loads(row.aliases or "[]")) + tuple(json.loads(row.upstream or "[]")),
        severity=row.severity,
        cvss2_vector=row.cvss2_vector,
        cvss2_score=row.cvss2_score,
        cvss3_vector=row.cvss3_vector,
        cvss3_score=row.cvss3_score,
        uri=row.uri or "",
    )


_VULN_COLUMNS = (
    vulns.c.id,
    vulns.c.summary,
    vulns.c.details,
    vulns.c.aliases,
    vulns.c.upstream,
    vulns.c.severity,
    vulns.c.cvss2_vector,
    vulns.c.cvss2_score,
    vulns.c.cvss3_vector,
    vulns.c.cvss3_score,
    vulns.c.uri,
)


async def candidates(conn: AsyncConnection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[Candidate]]:
    """Affected-package entries for (ecosystem, package name) pairs, withdrawn advisories left out."""
    by_ecosystem: dict[str, set[str]] = {}
    for ecosystem, name in keys:
        by_ecosystem.setdefault(ecosystem, set()).add(name)
    found: dict[tuple[str, str], list[Candidate]] = {}
    for ecosystem, names in by_ecosystem.items():
        ordered = sorted(names)
        for start in range(0, len(ordered), LOOKUP_CHUNK):
            query = (
                select(
                    *_VULN_COLUMNS,
                    packages.c.ecosystem_base,
                    packages.c.ecosystem_release,
                    packages.c.name,
                    packages.c.ranges,
                    packages.c.versions,
                    packages.c.severity.label("package_severity"),
                )
                .join(vulns, vulns.c.id == packages.c.vulnerability_id)
                .where(
                    packages.c.ecosystem_base == ecosystem,
                    packages.c.name.in_(ordered[start : start + LOOKUP_CHUNK]),
                    vulns.c.withdrawn.is_(None),
                )
                .order_by(packages.c.id)
            )
            for row in await conn.execute(query):
                found.setdefault((row.ecosystem_base, row.name), []).append(
                    Candidate(
                        _vulnerability(row),
                        row.ecosystem_base,
                        row.ecosystem_release,
                        row.name,
                        tuple(json.loads(row.ranges)),
                        tuple(json.loads(row.versions)),
                        row.package_severity,
                    )
                )
    return found


async def vulnerabilities(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, Vulnerability]:
    """Records by id (aliases and upstream records lend a severity or CVSS to those without)."""
    wanted = sorted(set(ids))
    found: dict[str, Vulnerability] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        rows = await conn.execute(select(*_VULN_COLUMNS).where(vulns.c.id.in_(wanted[start : start + LOOKUP_CHUNK])))
        for row in rows:
            found[row.id] = _vulnerability(row)
    return found


async def source_updated_at(conn: AsyncConnection) -> float | None:
    """When the database last changed: ECR's vulnerabilitySourceUpdatedAt."""
    return (await conn.execute(select(func.max(imports.c.imported_at)))).scalar()


async def generation(conn: AsyncConnection) -> int:
    """A number that grows with every import (continuous scanning re-matches when it does)."""
    return int((await conn.execute(select(func.max(imports.c.id)))).scalar() or 0)


@dataclass(frozen=True)
class Source:
    ecosystem: str
    source: str
    advisories: int
    fetched_at: float
    changed_at: float
    error: str | None
    error_at: float | None


@dataclass(frozen=True)
class Status:
    advisories: int
    by_ecosystem: dict[str, int]
    imports: list[dict[str, Any]]
    updated_at: float | None
    sources: list[Source] = field(default_factory=list)

    @property
    def oldest_fetch(self) -> float | None:
        """When the least recently updated ecosystem was last known current: the database's age."""
        return min((s.fetched_at for s in self.sources), default=None)


async def status(db: Database, recent: int = 10) -> Status:
    async with db.read() as conn:
        total = (await conn.execute(select(func.count()).select_from(vulns))).scalar_one()
        rows = await conn.execute(
            select(packages.c.ecosystem_base, func.count(func.distinct(packages.c.vulnerability_id)))
            .group_by(packages.c.ecosystem_base)
            .order_by(packages.c.ecosystem_base)
        )
        by_ecosystem = {base: count for base, count in rows}
        history = await conn.execute(select(imports).order_by(imports.c.id.desc()).limit(recent))
        done = [dict(row._mapping) for row in history]
        updated = await source_updated_at(conn)
        known = await conn.execute(select(sources).order_by(sources.c.ecosystem))
        listed = [
            Source(r.ecosystem, r.source, r.advisories, r.fetched_at, r.changed_at, r.error, r.error_at) for r in known
        ]
    return Status(total, by_ecosystem, done, updated, listed)
