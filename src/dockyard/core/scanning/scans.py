"""Image scanning, as ECR's basic scanning presents it: StartImageScan, DescribeImageScanFindings,
the registry scanning configuration, the scan fields of DescribeImages; and the state the
background worker (workers/scans.py) moves scans through.

A scan row per image holds the latest scan: IN_PROGRESS from the moment it is asked for (by
StartImageScan, on push, or by continuous scanning), then COMPLETE with its findings, or FAILED
with a description. One scan per image per quota window (24 hours, as ECR) may be started by hand
or on push; continuous re-matching after a vulnerability database import does not count."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import (
    DockyardError,
    ImageArchivedException,
    InvalidParameterException,
    LimitExceededException,
    UnsupportedImageTypeException,
)
from dockyard.core.identity.access import authorize
from dockyard.core.identity.caller import Caller
from dockyard.core.operations.account_settings import governed_registry
from dockyard.core.paging import decode_token, encode_token, page_size
from dockyard.core.registry import blobs as core_blobs
from dockyard.core.registry import images
from dockyard.core.registry.manifests import OCI_EMPTY, OCI_MANIFEST
from dockyard.core.registry.repositories import Repository, open_repository
from dockyard.core.scanning.scan_hooks import (
    CONTINUOUS_SCAN,
    MANUAL,
    NO_DATA_ERROR,
    frequency_of,
    is_scannable,
    registry_scanning,
    rule_for,
    scan_status,
)
from dockyard.core.services import Services, now
from dockyard.store import schema
from dockyard.store.claims import ClaimedQueue
from dockyard.vulndb import store as vulndb

if TYPE_CHECKING:
    # The scanner (package readers, version orderings, the SBOM writer) is imported where a scan
    # or a match runs: a worker that serves no scan never pays for it.
    from dockyard.scanner.inventory import Inventory
    from dockyard.scanner.matching import Finding

scans = schema.image_scans
findings_table = schema.image_scan_findings

# ECR's basic scanning allows one scan per image per 24 hours; tests and private setups may change it.
QUOTA_ENV = "DOCKYARD_SCAN_QUOTA_SECONDS"
DEFAULT_QUOTA_SECONDS = 24 * 3600.0
DEFAULT_PAGE = 100

COMPLETE_DESCRIPTION = "The scan was completed successfully."
UNSUPPORTED_DESCRIPTION = "UnsupportedImageError: The operating system and/or package manager are not supported."
# A scan whose image's package ecosystems have no vulnerability data at all fails with NO_DATA_ERROR
# (in ECR's "<Error>: <sentence>" style) rather than completing with zero findings; the pull gate
# recognises it by this prefix.
LOAD_DATA_HINT = "run `dockyard vulndb update` or `dockyard vulndb import`"
EMPTY_CONFIG = b"{}"


class ScanNotFoundException(DockyardError):
    code = "ScanNotFoundException"


def quota_seconds() -> float:
    return float(os.environ.get(QUOTA_ENV, DEFAULT_QUOTA_SECONDS))


def _describe_id(image_id: dict[str, Any]) -> str:
    digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")
    return f"{{imageDigest:'{digest or 'null'}', imageTag:'{tag or 'null'}'}}"


# --- the ECR operations -------------------------------------------------------------------------


async def start_image_scan(
    svc: Services, caller: Caller, account_id: str, repository: str, image_id: dict[str, Any]
) -> dict[str, Any]:
    async with svc.db.write() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:StartImageScan")
        image = await images.resolve_image(conn, repo, image_id)
        status = (await conn.execute(select(schema.images.c.status).where(schema.images.c.id == image.id))).scalar()
        if status != "ACTIVE":
            raise ImageArchivedException("The specified image is archived and cannot be scanned.")
        if not is_scannable(images.parse(image.manifest, image.media_type)):
            raise UnsupportedImageTypeException("The image type is not supported for scanning.")
        existing = (await conn.execute(select(scans.c.requested_at).where(scans.c.image_id == image.id))).first()
        moment = now()
        if existing is not None and moment - existing.requested_at < quota_seconds():
            raise LimitExceededException("The scan quota per image has been exceeded. Wait and try again.")
        values = {
            "repository_id": repo.id,
            "status": "IN_PROGRESS",
            "description": None,
            "trigger": MANUAL,
            "requested_at": moment,
            "claimed_by": None,
            "claimed_at": None,
        }
        if existing is None:
            await conn.execute(insert(scans).values(image_id=image.id, **values))
        else:
            await conn.execute(update(scans).where(scans.c.image_id == image.id).values(**values))
    return {
        "registryId": repo.account_id,
        "repositoryName": repo.name,
        "imageId": images.image_id_of(image, image_id),
        "imageScanStatus": {"status": "IN_PROGRESS"},
    }


async def describe_image_scan_findings(
    svc: Services,
    caller: Caller,
    account_id: str,
    repository: str,
    image_id: dict[str, Any],
    max_results: int | None = None,
    next_token: str | None = None,
) -> dict[str, Any]:
    offset = decode_token(next_token) or 0
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InvalidParameterException(
            "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'"
        )
    limit = page_size(max_results, DEFAULT_PAGE)
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:DescribeImageScanFindings")
        image = await images.resolve_image(conn, repo, image_id)
        row = (await conn.execute(select(scans).where(scans.c.image_id == image.id))).first()
        if row is None:
            raise ScanNotFoundException(
                f"Image scan does not exist for the image with '{_describe_id(image_id)}' in the repository with "
                f"name '{repo.name}' in the registry with id '{repo.account_id}'"
            )
        page = []
        if row.status == "COMPLETE":
            page = (
                await conn.execute(
                    select(findings_table)
                    .where(findings_table.c.image_id == image.id, findings_table.c.position >= offset)
                    .order_by(findings_table.c.position)
                    .limit(limit + 1)
                )
            ).all()
    result: dict[str, Any] = {
        "registryId": repo.account_id,
        "repositoryName": repo.name,
        "imageId": images.image_id_of(image, image_id),
        "imageScanStatus": scan_status(row, svc.settings.vulndb_max_age_days),
    }
    if row.status == "COMPLETE":
        result["imageScanFindings"] = {
            "imageScanCompletedAt": row.completed_at,
            "vulnerabilitySourceUpdatedAt": row.source_updated_at,
            "findingSeverityCounts": json.loads(row.severity_counts or "{}"),
            "findings": [_finding_shape(f) for f in page[:limit]],
        }
        if len(page) > limit:
            result["nextToken"] = encode_token(page[limit].position)
    return result


def _finding_shape(row: Any) -> dict[str, Any]:
    finding: dict[str, Any] = {"name": row.name}
    if row.description:
        finding["description"] = row.description
    if row.uri:
        finding["uri"] = row.uri
    finding["severity"] = row.severity
    finding["attributes"] = [{"key": k, "value": v} for k, v in json.loads(row.attributes or "[]")]
    return finding


# --- registry scanning configuration ------------------------------------------------------------


def _configuration(scan_type: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"scanType": scan_type, "rules": rules}


def _check_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    frequencies = [r["scanFrequency"] for r in rules]
    if len(set(frequencies)) != len(frequencies):
        raise InvalidParameterException(
            "Invalid parameter at 'rules' failed to satisfy constraint: "
            "'each scanFrequency may appear in one rule only'"
        )
    return [
        {
            "scanFrequency": r["scanFrequency"],
            "repositoryFilters": [
                {"filter": f["filter"], "filterType": f["filterType"]} for f in r.get("repositoryFilters", [])
            ],
        }
        for r in rules
    ]


async def put_registry_scanning_configuration(
    svc: Services, caller: Caller, scan_type: str | None, rules: list[dict[str, Any]] | None
) -> dict[str, Any]:
    await authorize(
        caller, "ecr:PutRegistryScanningConfiguration", await governed_registry(svc, caller, caller.account_id)
    )
    stored_rules = _check_rules(rules or [])
    kind = scan_type or "BASIC"
    table = schema.registry_scanning_configurations
    async with svc.db.write() as conn:
        where = (table.c.account_id == caller.account_id, table.c.region == caller.region)
        await conn.execute(delete(table).where(*where))
        await conn.execute(
            insert(table).values(
                account_id=caller.account_id,
                region=caller.region,
                scan_type=kind,
                rules=json.dumps(stored_rules),
                updated_at=now(),
            )
        )
    return {"registryScanningConfiguration": _configuration(kind, stored_rules)}


async def get_registry_scanning_configuration(svc: Services, caller: Caller) -> dict[str, Any]:
    await authorize(
        caller, "ecr:GetRegistryScanningConfiguration", await governed_registry(svc, caller, caller.account_id)
    )
    async with svc.db.read() as conn:
        config = await registry_scanning(conn, caller.account_id, caller.region)
    return {"registryId": caller.account_id, "scanningConfiguration": _configuration(config.scan_type, config.rules)}


async def batch_get_repository_scanning_configuration(
    svc: Services, caller: Caller, account_id: str, names: list[str]
) -> dict[str, Any]:
    found: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    async with svc.db.read() as conn:
        config = await registry_scanning(conn, account_id, caller.region)
        for name in dict.fromkeys(names):
            try:
                repo = await open_repository(
                    conn, caller, account_id, name, "ecr:BatchGetRepositoryScanningConfiguration"
                )
            except DockyardError as exc:
                if exc.code != "RepositoryNotFoundException":
                    raise
                failures.append(
                    {"repositoryName": name, "failureCode": "REPOSITORY_NOT_FOUND", "failureReason": exc.message}
                )
                continue
            frequency, filters = frequency_of(config, repo)
            found.append(
                {
                    "repositoryArn": repo.arn,
                    "repositoryName": repo.name,
                    # The repository's own flag, as ECR reports it: a registry rule sets the
                    # frequency, not this (a CONTINUOUS_SCAN repository may say false).
                    "scanOnPush": repo.scan_on_push,
                    "scanFrequency": frequency,
                    "appliedScanFilters": filters,
                }
            )
    return {"scanningConfigurations": found, "failures": failures}


# --- the worker's side --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanJob:
    image_id: int
    repository_id: int
    repository: str
    account_id: str
    region: str
    digest: str
    media_type: str
    manifest: bytes

    @property
    def key(self) -> tuple[int]:
        return (self.image_id,)


QUEUE = ClaimedQueue(
    scans, key=(scans.c.image_id,), open=scans.c.status == "IN_PROGRESS", oldest_first=scans.c.requested_at
)


async def claim_next(svc: Services, node: str, lease_seconds: float) -> ScanJob | None:
    """Take the oldest waiting scan (or one whose node stopped renewing its claim)."""
    async with QUEUE.claim_next(svc.db, node, lease_seconds) as claimed:
        if claimed is None:
            return None
        conn, row = claimed
        image = schema.images
        repos = schema.repositories
        found = (
            await conn.execute(
                select(
                    image.c.id,
                    image.c.repository_id,
                    image.c.digest,
                    image.c.media_type,
                    image.c.manifest,
                    repos.c.name,
                    repos.c.account_id,
                    repos.c.region,
                )
                .join(repos, repos.c.id == image.c.repository_id)
                .where(image.c.id == row.image_id)
            )
        ).one()
    return ScanJob(
        found.id, found.repository_id, found.name, found.account_id, found.region, found.digest,
        found.media_type, bytes(found.manifest),
    )  # fmt: skip


@dataclass(frozen=True)
class Evaluation:
    """An inventory matched against the vulnerability database as it is now."""

    findings: list[Finding]
    source_updated_at: float | None
    ecosystems: tuple[str, ...]  # of the inventory's packages
    missing: tuple[str, ...]  # those the database holds no advisory for

    @property
    def status(self) -> str:
        # Never COMPLETE with nothing checked: an image none of whose packages could be matched fails.
        return "COMPLETE" if len(self.missing) < len(self.ecosystems) else "FAILED"

    @property
    def description(self) -> str:
        if not self.ecosystems:
            return UNSUPPORTED_DESCRIPTION
        if self.status == "FAILED":
            return no_data_description(self.missing)
        if self.missing:
            return (
                f"{COMPLETE_DESCRIPTION} No vulnerability data is loaded for {_listed(self.missing)}, so "
                f"those packages were not checked: {LOAD_DATA_HINT}."
            )
        return COMPLETE_DESCRIPTION


def _listed(ecosystems: tuple[str, ...]) -> str:
    return ", ".join(ecosystems)


def no_data_description(missing: tuple[str, ...]) -> str:
    return (
        f"{NO_DATA_ERROR}: No vulnerability data is loaded for the image's package ecosystems "
        f"({_listed(missing)}). To scan it, {LOAD_DATA_HINT}, then scan the image again."
    )


async def _has_advisories(conn: AsyncConnection, ecosystem: str) -> bool:
    """An indexed probe (ecosystem_base leads ix_vulnerability_packages_name)."""
    affected = schema.vulnerability_packages
    return bool((await conn.execute(select(exists().where(affected.c.ecosystem_base == ecosystem)))).scalar())


async def ecosystem_data(conn: AsyncConnection, ecosystems: set[str]) -> dict[str, float]:
    """Which of `ecosystems` the database holds data for → when that data was last known current.
    Data imported before sources were recorded per ecosystem has only the database's last import time."""
    loaded = await vulndb.ecosystems_loaded(conn)
    found = {e: loaded[e] for e in ecosystems if e in loaded}
    unrecorded = [e for e in sorted(ecosystems - found.keys()) if await _has_advisories(conn, e)]
    if unrecorded:
        updated = await vulndb.source_updated_at(conn) or 0.0
        found |= dict.fromkeys(unrecorded, updated)
    return found


async def evaluate(svc: Services, inventory: Inventory) -> Evaluation:
    """Match `inventory` against the vulnerability database as it is now, noting which of its
    ecosystems have no data (their packages cannot be checked). vulnerabilitySourceUpdatedAt is
    the oldest load time of the data the image was matched against: the image is as current as that."""
    from dockyard.scanner.matching import lookup_keys, match, related_ids

    ecosystems = {p.ecosystem for p in inventory.packages}
    async with svc.db.read() as conn:
        covered = await ecosystem_data(conn, ecosystems)
        candidates = await vulndb.candidates(conn, lookup_keys(inventory))
        known = await vulndb.vulnerabilities(conn, related_ids(c for group in candidates.values() for c in group))
    missing = tuple(sorted(ecosystems - covered.keys()))
    updated = min(covered.values(), default=None)
    return Evaluation(match(inventory, candidates, known), updated, tuple(sorted(ecosystems)), missing)


async def _replace_findings(conn: AsyncConnection, image_id: int, found: list[Finding]) -> None:
    await conn.execute(delete(findings_table).where(findings_table.c.image_id == image_id))
    if found:
        await conn.execute(
            insert(findings_table),
            [
                {
                    "image_id": image_id,
                    "position": i,
                    "name": f.name,
                    "severity": f.severity,
                    "description": f.description,
                    "uri": f.uri,
                    "package_name": f.package_name,
                    "package_version": f.package_version,
                    "attributes": json.dumps(f.attributes),
                }
                for i, f in enumerate(found)
            ],
        )


def _outcome(evaluation: Evaluation) -> dict[str, Any]:
    """The scan row's values for `evaluation` (findings rows are written apart)."""
    from dockyard.scanner.matching import severity_counts

    values: dict[str, Any] = {"status": evaluation.status, "description": evaluation.description}
    if evaluation.status == "COMPLETE":
        values |= {
            "completed_at": now(),
            "source_updated_at": evaluation.source_updated_at,
            "severity_counts": json.dumps(severity_counts(evaluation.findings)),
        }
    return values


async def complete_scan(svc: Services, job: ScanJob, node: str, inventory: Inventory, evaluation: Evaluation) -> bool:
    """Store a finished scan; False when the claim was lost (the image went, or a new scan was asked for).
    The inventory is kept whatever the outcome: continuous scanning re-matches it when data arrives."""
    async with svc.db.write() as conn:
        owner = (
            await conn.execute(
                select(scans.c.claimed_by).where(scans.c.image_id == job.image_id, scans.c.status == "IN_PROGRESS")
            )
        ).first()
        if owner is None or owner.claimed_by != node:
            return False
        values = {"claimed_by": None, "claimed_at": None, "inventory": inventory.to_json()} | _outcome(evaluation)
        if evaluation.status == "COMPLETE":
            await _replace_findings(conn, job.image_id, evaluation.findings)
        await conn.execute(update(scans).where(scans.c.image_id == job.image_id).values(**values))
    return True


async def fail_scan(svc: Services, job: ScanJob, node: str, description: str) -> bool:
    async with svc.db.write() as conn:
        result = await conn.execute(
            update(scans)
            .where(QUEUE.held(job.key, node))
            .values(status="FAILED", description=description, claimed_by=None, claimed_at=None)
        )
    return bool(result.rowcount)


@dataclass(frozen=True)
class ScanResult:
    """An image's latest scan, as ECR's "ECR Image Scan" event reports it."""

    account_id: str
    region: str
    repository: str
    digest: str
    tags: list[str]
    status: str
    severity_counts: dict[str, int]


async def scan_result(svc: Services, image_id: int) -> ScanResult | None:
    repos, image, tags = schema.repositories, schema.images, schema.tags
    async with svc.db.read() as conn:
        row = (
            await conn.execute(
                select(
                    scans.c.status, scans.c.severity_counts, image.c.digest,
                    repos.c.name, repos.c.account_id, repos.c.region,
                )
                .join(image, image.c.id == scans.c.image_id)
                .join(repos, repos.c.id == scans.c.repository_id)
                .where(scans.c.image_id == image_id)
            )
        ).first()  # fmt: skip
        if row is None:
            return None
        names = (
            await conn.execute(select(tags.c.name).where(tags.c.image_id == image_id).order_by(tags.c.name))
        ).scalars()
        tag_list = list(names)
    counts = json.loads(row.severity_counts or "{}") if row.status == "COMPLETE" else {}
    return ScanResult(row.account_id, row.region, row.name, row.digest, tag_list, row.status, counts)


CONTINUOUS_MARK = "scans.continuous_generation"


async def vulndb_changed(svc: Services) -> bool:
    """True once per vulnerability database import, for exactly one node."""
    marks = schema.server_values
    async with svc.db.read() as conn:
        current = await vulndb.generation(conn)
        seen = (await conn.execute(select(marks.c.value).where(marks.c.name == CONTINUOUS_MARK))).scalar()
    if seen is not None and int(seen) >= current:
        return False
    if seen is None:
        return await _first_mark(svc, current)
    async with svc.db.write() as conn:
        result = await conn.execute(
            update(marks).where(marks.c.name == CONTINUOUS_MARK, marks.c.value == seen).values(value=str(current))
        )
        return bool(result.rowcount)


async def _first_mark(svc: Services, current: int) -> bool:
    """Set the mark where there is none yet. Every worker starts by finding none: the one whose
    insert lands acts on this generation, the others (who find it set once they hold the write
    lock, or whose insert loses the race on a database without one) leave it alone."""
    marks = schema.server_values
    try:
        async with svc.db.write() as conn:
            present = await conn.execute(select(marks.c.value).where(marks.c.name == CONTINUOUS_MARK))
            if present.first() is not None:
                return False
            await conn.execute(insert(marks).values(name=CONTINUOUS_MARK, value=str(current)))
    except IntegrityError:
        return False
    return current > 0


def _rematchable() -> Any:
    """Completed scans, and scans that failed only for want of vulnerability data."""
    return (scans.c.status == "COMPLETE") | (
        (scans.c.status == "FAILED") & scans.c.description.like(NO_DATA_ERROR + ":%")
    )


async def continuous_targets(svc: Services) -> list[tuple[int, Inventory]]:
    """Images in repositories that scan continuously whose stored inventory can be matched again."""
    from dockyard.scanner.inventory import Inventory

    repos = schema.repositories
    async with svc.db.read() as conn:
        rows = (
            await conn.execute(
                select(scans.c.image_id, scans.c.inventory, repos.c.name, repos.c.account_id, repos.c.region)
                .join(repos, repos.c.id == scans.c.repository_id)
                .where(_rematchable(), scans.c.inventory.is_not(None))
            )
        ).all()
        configs: dict[tuple[str, str], Any] = {}
        targets = []
        for row in rows:
            key = (row.account_id, row.region)
            if key not in configs:
                configs[key] = await registry_scanning(conn, *key)
            rule = rule_for(configs[key], row.name)
            if rule is not None and rule["scanFrequency"] == CONTINUOUS_SCAN:
                targets.append((row.image_id, Inventory.from_json(row.inventory)))
    return targets


def _finding_keys(found: list[Finding]) -> list[tuple[str, str, str, str]]:
    return [(f.name, f.severity, f.package_name, f.package_version) for f in found]


async def rematch(svc: Services, image_id: int, inventory: Inventory) -> bool:
    """Match a stored inventory again (continuous scanning), without reading the layers; True when
    the scan's outcome changed (its status, or the findings)."""
    evaluation = await evaluate(svc, inventory)
    async with svc.db.write() as conn:
        before = (
            await conn.execute(select(scans.c.status).where(scans.c.image_id == image_id, _rematchable()))
        ).first()
        if before is None:
            return False  # rescanned, or gone, since the targets were listed
        stored = (
            await conn.execute(
                select(findings_table.c.name, findings_table.c.severity, findings_table.c.package_name,
                       findings_table.c.package_version)
                .where(findings_table.c.image_id == image_id)
                .order_by(findings_table.c.position)
            )
        ).all()  # fmt: skip
        await conn.execute(update(scans).where(scans.c.image_id == image_id).values(**_outcome(evaluation)))
        if evaluation.status != "COMPLETE":
            return before.status != evaluation.status
        await _replace_findings(conn, image_id, evaluation.findings)
    return before.status != evaluation.status or [tuple(r) for r in stored] != _finding_keys(evaluation.findings)


# --- software bills of materials ----------------------------------------------------------------


async def _inventory_of(
    svc: Services, caller: Caller, account_id: str, repository: str, reference: str, action: str
) -> tuple[Repository, images.StoredImage, Inventory]:
    from dockyard.scanner.inventory import Inventory

    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, account_id, repository, action)
        image = await images.find_image(conn, repo, reference)
        if image is None:
            raise images.image_not_found(repo, reference)
        stored = (await conn.execute(select(scans.c.inventory).where(scans.c.image_id == image.id))).scalar()
    if stored is None:
        described = {"imageDigest" if reference.startswith("sha256:") else "imageTag": reference}
        raise ScanNotFoundException(
            f"Image scan does not exist for the image with '{_describe_id(described)}' in the repository with "
            f"name '{repo.name}' in the registry with id '{repo.account_id}'"
        )
    return repo, image, Inventory.from_json(stored)


async def image_sbom(
    svc: Services, caller: Caller, account_id: str, repository: str, reference: str
) -> tuple[str, bytes]:
    """(image digest, CycloneDX JSON) of the inventory the image's latest scan took."""
    from dockyard.scanner import sbom

    repo, image, inventory = await _inventory_of(
        svc, caller, account_id, repository, reference, "ecr:DescribeImageScanFindings"
    )
    return image.digest, sbom.cyclonedx_json(inventory, repo.name, image.digest)


async def attach_sbom(svc: Services, caller: Caller, account_id: str, repository: str, reference: str) -> str:
    """Push the image's SBOM into its repository as an OCI artifact whose subject is the image, so
    the referrers API lists it; returns the artifact manifest's digest."""
    from dockyard.scanner import sbom

    digest, document = await image_sbom(svc, caller, account_id, repository, reference)
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, account_id, repository, "ecr:PutImage")
        image = await images.find_image(conn, repo, digest)
    if image is None:
        raise images.image_not_found(repo, digest)
    document_digest = await svc.blobs.put(document)
    config_digest = await svc.blobs.put(EMPTY_CONFIG)
    async with svc.db.write() as conn:
        await core_blobs.link(conn, repo.id, document_digest, len(document))
        await core_blobs.link(conn, repo.id, config_digest, len(EMPTY_CONFIG))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": sbom.MEDIA_TYPE,
        "config": {"mediaType": OCI_EMPTY, "digest": config_digest, "size": len(EMPTY_CONFIG)},
        "layers": [{"mediaType": sbom.MEDIA_TYPE, "digest": document_digest, "size": len(document)}],
        "subject": {"mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest)},
        "annotations": {"org.opencontainers.image.created": _rfc3339(now())},
    }
    data = json.dumps(manifest, separators=(",", ":")).encode()
    _, stored = await images.put_manifest(svc, caller, account_id, repository, data, OCI_MANIFEST)
    return stored.digest


def _rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the registry's pull gate (administered with `dockyard gate`) -------------------------------


async def set_gate(svc: Services, account_id: str, region: str, severity: str | None) -> None:
    gates = schema.scan_gates
    async with svc.db.write() as conn:
        await conn.execute(delete(gates).where(gates.c.account_id == account_id, gates.c.region == region))
        if severity is not None:
            await conn.execute(
                insert(gates).values(account_id=account_id, region=region, severity=severity, updated_at=now())
            )


async def exempt(svc: Services, account_id: str, region: str, digest: str, reason: str | None, on: bool) -> None:
    table = schema.scan_gate_exemptions
    async with svc.db.write() as conn:
        where = (table.c.account_id == account_id, table.c.region == region, table.c.digest == digest)
        await conn.execute(delete(table).where(*where))
        if on:
            await conn.execute(
                insert(table).values(
                    account_id=account_id, region=region, digest=digest, reason=reason, created_at=now()
                )
            )


async def gate_status(svc: Services, account_id: str, region: str) -> dict[str, Any]:
    gates, table = schema.scan_gates, schema.scan_gate_exemptions
    async with svc.db.read() as conn:
        severity = (
            await conn.execute(
                select(gates.c.severity).where(gates.c.account_id == account_id, gates.c.region == region)
            )
        ).scalar()
        exemptions = (
            await conn.execute(
                select(table.c.digest, table.c.reason)
                .where(table.c.account_id == account_id, table.c.region == region)
                .order_by(table.c.digest)
            )
        ).all()
    return {"severity": severity, "exemptions": [{"digest": d, "reason": r} for d, r in exemptions]}
