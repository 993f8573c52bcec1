"""Where scanning meets pushes and pulls: queueing a scan when an image is pushed, and the pull gate.

Both run inside the caller's transaction (core/images.py), so they only read and write rows; the
scanning itself happens later, in the background worker (workers/scans.py).

The gate refuses to serve (a manifest GET or HEAD) an image whose latest completed scan found
a vulnerability at or above a threshold severity. The threshold is the registry's (`dockyard gate
set`), overridden per repository by the repository tag `dockyard:scan-gate` (a severity, or OFF).
A digest is exempt when its repository carries the tag `dockyard:scan-gate-exempt/<digest>`, or
when the registry exempts it (`dockyard gate exempt`).

An image that could not be scanned because no vulnerability data is loaded for its packages is
refused too while the gate is on, unless the server is started with `--scan-gate-missing-data allow`:
an unknown image is not a clean one."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import AccessDeniedException
from dockyard.core.registry.manifests import Manifest
from dockyard.core.registry.repositories import Repository
from dockyard.core.services import now
from dockyard.policy.patterns import wildcard_match
from dockyard.store import schema
from dockyard.vulndb.severity import RANK

scans = schema.image_scans
findings = schema.image_scan_findings

IMAGE_CONFIG_TYPES = frozenset(
    {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
)
GATE_TAG = "dockyard:scan-gate"
EXEMPT_TAG_PREFIX = "dockyard:scan-gate-exempt/"
GATE_OFF = "OFF"
GATE_SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL")
# What the gate does with an image whose scan failed for want of vulnerability data.
MISSING_DATA_REFUSE = "refuse"
MISSING_DATA_ALLOW = "allow"
MISSING_DATA_CHOICES = (MISSING_DATA_REFUSE, MISSING_DATA_ALLOW)
# The scan description prefix of such a failure (scans.NO_DATA_ERROR, which imports this module).
NO_DATA_ERROR = "VulnerabilityDataUnavailableError"
# How many of the worst findings a refused pull names.
NAMED_FINDINGS = 5

DEFAULT_SCAN_TYPE = "BASIC"
SCAN_ON_PUSH = "SCAN_ON_PUSH"
CONTINUOUS_SCAN = "CONTINUOUS_SCAN"
MANUAL = "MANUAL"


def is_scannable(manifest: Manifest) -> bool:
    """A container image (not an index, not an artifact such as an SBOM or a signature)."""
    return (
        not manifest.is_index
        and manifest.config is not None
        and manifest.config.media_type in IMAGE_CONFIG_TYPES
        # An image's artifact type is its config's media type unless the manifest names another.
        and manifest.artifact_type in (None, manifest.config.media_type)
    )


DAY = 86400.0
DEFAULT_MAX_AGE_DAYS = 7.0


def is_stale(source_updated_at: float | None, max_age_days: float, moment: float | None = None) -> bool:
    """Whether vulnerability data last updated at `source_updated_at` is older than the allowed age."""
    if source_updated_at is None:
        return False
    return (moment if moment is not None else time.time()) - source_updated_at > max_age_days * DAY


def stale_notice(source_updated_at: float, max_age_days: float) -> str:
    updated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(source_updated_at))
    return (
        f"The vulnerability data is stale: it was last updated at {updated}, more than {max_age_days:g} days "
        "ago. Run `dockyard vulndb update` or `dockyard vulndb import`."
    )


def is_no_data_failure(status: str, description: str | None) -> bool:
    """Whether a scan failed only because no vulnerability data is loaded for its image's packages."""
    return status == "FAILED" and (description or "").startswith(NO_DATA_ERROR + ":")


def scan_status(row: Any, max_age_days: float = DEFAULT_MAX_AGE_DAYS) -> dict[str, str]:
    """ECR's ImageScanStatus of an image_scans row. A completed scan's description says so when the
    data it was matched against has grown stale since (judged now, not when the scan ran)."""
    status = {"status": row.status}
    description = row.description
    if row.status == "COMPLETE" and is_stale(row.source_updated_at, max_age_days):
        description = f"{description} {stale_notice(row.source_updated_at, max_age_days)}".strip()
    if description:
        status["description"] = description
    return status


async def image_scan_details(
    conn: AsyncConnection, image_ids: list[int], max_age_days: float = DEFAULT_MAX_AGE_DAYS
) -> dict[int, dict[str, Any]]:
    """DescribeImages' imageScanStatus and imageScanFindingsSummary, by image id (scanned images only)."""
    details: dict[int, dict[str, Any]] = {}
    for start in range(0, len(image_ids), 400):
        rows = await conn.execute(select(scans).where(scans.c.image_id.in_(image_ids[start : start + 400])))
        for row in rows:
            detail: dict[str, Any] = {"imageScanStatus": scan_status(row, max_age_days)}
            if row.status == "COMPLETE":
                detail["imageScanFindingsSummary"] = {
                    "imageScanCompletedAt": row.completed_at,
                    "vulnerabilitySourceUpdatedAt": row.source_updated_at,
                    "findingSeverityCounts": json.loads(row.severity_counts or "{}"),
                }
            details[row.image_id] = detail
    return details


# --- registry scanning configuration ------------------------------------------------------------


@dataclass(frozen=True)
class RegistryScanning:
    scan_type: str
    rules: list[dict[str, Any]]


async def registry_scanning(conn: AsyncConnection, account_id: str, region: str) -> RegistryScanning:
    table = schema.registry_scanning_configurations
    row = (
        await conn.execute(
            select(table.c.scan_type, table.c.rules).where(table.c.account_id == account_id, table.c.region == region)
        )
    ).first()
    return registry_scanning_of(row.scan_type, row.rules) if row is not None else registry_scanning_of(None, None)


def registry_scanning_of(scan_type: str | None, rules: str | None) -> RegistryScanning:
    """The configuration from its stored columns (None for a registry that never set one)."""
    if scan_type is None or rules is None:
        return RegistryScanning(DEFAULT_SCAN_TYPE, [])
    return RegistryScanning(scan_type, json.loads(rules))


def filter_matches(pattern: str, name: str) -> bool:
    """ECR's WILDCARD filters: '*' stands for any run of characters; without one, the filter
    matches every repository name that contains it."""
    if "*" not in pattern:
        return pattern in name
    # Linear in the name whatever the pattern (a backtracking regex is exponential in its stars).
    return wildcard_match(pattern, name, question_mark=False)


def rule_for(config: RegistryScanning, repository: str) -> dict[str, Any] | None:
    """The registry rule that applies to `repository`: continuous scanning wins over scan on push."""
    matching = [
        rule
        for rule in config.rules
        if any(filter_matches(f["filter"], repository) for f in rule.get("repositoryFilters", []))
    ]
    for frequency in (CONTINUOUS_SCAN, SCAN_ON_PUSH, MANUAL):
        for rule in matching:
            if rule["scanFrequency"] == frequency:
                return rule
    return None


def frequency_of(config: RegistryScanning, repo: Repository) -> tuple[str, list[dict[str, str]]]:
    """(scan frequency, the filters that gave it) for `repo`: a registry rule, else the repository's
    own scanOnPush (PutImageScanningConfiguration), else manual."""
    rule = rule_for(config, repo.name)
    if rule is not None and rule["scanFrequency"] != MANUAL:
        return rule["scanFrequency"], list(rule.get("repositoryFilters", []))
    if repo.scan_on_push:
        return SCAN_ON_PUSH, []
    return MANUAL, list(rule.get("repositoryFilters", [])) if rule else []


async def queue_scan_on_push(
    conn: AsyncConnection, repo: Repository, manifest: Manifest, image_id: int, config: RegistryScanning | None = None
) -> None:
    """Queue a scan of a newly pushed image if its repository scans on push (or continuously).
    `config` is the registry's scanning configuration, when the caller has already read it."""
    if not is_scannable(manifest):
        return
    if config is None:
        config = await registry_scanning(conn, repo.account_id, repo.region)
    frequency, _ = frequency_of(config, repo)
    if frequency == MANUAL:
        return
    existing = (await conn.execute(select(scans.c.image_id).where(scans.c.image_id == image_id))).first()
    if existing is None:
        await conn.execute(
            insert(scans).values(
                image_id=image_id, repository_id=repo.id, status="IN_PROGRESS", trigger=SCAN_ON_PUSH, requested_at=now()
            )
        )


# --- the pull gate ------------------------------------------------------------------------------


async def _gate_tags(conn: AsyncConnection, repo: Repository, digest: str) -> dict[str, str]:
    tags = schema.repository_tags
    rows = await conn.execute(
        select(tags.c.key, tags.c.value).where(
            tags.c.repository_id == repo.id, tags.c.key.in_([GATE_TAG, EXEMPT_TAG_PREFIX + digest])
        )
    )
    return {row.key: row.value for row in rows}


async def gate_threshold(conn: AsyncConnection, repo: Repository, repository_tags: dict[str, str]) -> str | None:
    """The severity at which pulls from `repo` are refused, or None when the gate is off."""
    tagged = repository_tags.get(GATE_TAG)
    if tagged is not None:
        value = tagged.strip().upper()
        return value if value in GATE_SEVERITIES else None
    gates = schema.scan_gates
    return (
        await conn.execute(
            select(gates.c.severity).where(gates.c.account_id == repo.account_id, gates.c.region == repo.region)
        )
    ).scalar()


async def _registry_exempts(conn: AsyncConnection, repo: Repository, digest: str) -> bool:
    table = schema.scan_gate_exemptions
    row = await conn.execute(
        select(table.c.digest).where(
            table.c.account_id == repo.account_id, table.c.region == repo.region, table.c.digest == digest
        )
    )
    return row.first() is not None


async def check_pull(
    conn: AsyncConnection, repo: Repository, image_id: int, digest: str, *, refuse_missing_data: bool = True
) -> None:
    """Raise AccessDeniedException if the gate refuses to serve this image."""
    repository_tags = await _gate_tags(conn, repo, digest)
    threshold = await gate_threshold(conn, repo, repository_tags)
    if threshold is None or EXEMPT_TAG_PREFIX + digest in repository_tags:
        return
    if refuse_missing_data:
        await _check_data_present(conn, repo, image_id, digest)
    floor = RANK[threshold]
    # The findings rows are those of the latest completed scan: a scan in progress or one that
    # failed leaves them in place, so starting a new scan never opens the gate.
    worst = (
        await conn.execute(
            select(findings.c.name, findings.c.severity, findings.c.package_name, findings.c.package_version)
            .where(findings.c.image_id == image_id)
            .order_by(findings.c.position)
        )
    ).all()
    offending = [f for f in worst if RANK.get(f.severity, 0) >= floor]
    if not offending or await _registry_exempts(conn, repo, digest):
        return
    named = ", ".join(
        f"{f.name} ({f.severity}, {f.package_name} {f.package_version})" for f in offending[:NAMED_FINDINGS]
    )
    more = f" and {len(offending) - NAMED_FINDINGS} more" if len(offending) > NAMED_FINDINGS else ""
    raise AccessDeniedException(
        f"Pull of image {digest} from repository '{repo.name}' refused by the scan gate: its latest scan "
        f"found {len(offending)} vulnerabilities of severity {threshold} or higher: {named}{more}. "
        f"To allow it anyway, tag the repository with '{EXEMPT_TAG_PREFIX}{digest}'."
    )


async def _check_data_present(conn: AsyncConnection, repo: Repository, image_id: int, digest: str) -> None:
    row = (await conn.execute(select(scans.c.status, scans.c.description).where(scans.c.image_id == image_id))).first()
    if row is None or not is_no_data_failure(row.status, row.description):
        return
    if await _registry_exempts(conn, repo, digest):
        return
    raise AccessDeniedException(
        f"Pull of image {digest} from repository '{repo.name}' refused by the scan gate: its latest scan "
        f"failed. {row.description} To allow it anyway, tag the repository with '{EXEMPT_TAG_PREFIX}{digest}'."
    )
