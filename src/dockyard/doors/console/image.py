"""One image's page: what it is (tags, URI, digest, media type, size, status, push and pull
times), what it holds (an index's platforms, each its own page; an image's config and layers),
its scan (severity badges and the findings, sorted and filtered on the server so it all works
without JavaScript) and what refers to it (signatures, SBOMs, attestations).

Each part is read under its own permission: a caller who may describe the image but not read
its manifest, scan or referrers still sees what it may, with why the rest is hidden."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.responses import Response

from dockyard.core.errors import DockyardError
from dockyard.core.registry import image_browse, image_details, referrers
from dockyard.core.replication import configuration as replication_configuration
from dockyard.core.scanning import scans
from dockyard.core.signing import configuration as signing_configuration
from dockyard.doors.console.repository import SECTION, refused, repository_of, tab, tab_path
from dockyard.doors.console.web import ErrorView, Page, Visit

T = TypeVar("T")
SEVERITY_RANK = {"CRITICAL": 0, "HIGH": 1, "MEDIUM": 2, "LOW": 3, "INFORMATIONAL": 4, "UNDEFINED": 5}
FINDING_SORTS = ("severity", "name", "package")
# Findings read per call, and at most this many calls: a page lists what one image can hold.
FINDINGS_BATCH = 1000
FINDINGS_BATCHES = 20
FINDINGS_SHOWN = 200
SIGNATURE_TYPES = {
    "application/vnd.dev.cosign.artifact.sig.v1+json": "Signature (cosign)",
    "application/vnd.cncf.notary.signature": "Signature (Notation)",
    "application/vnd.dev.sigstore.bundle.v0.3+json": "Signature (Sigstore bundle)",
}
OTHER_TYPES = {
    "application/spdx+json": "SBOM (SPDX)",
    "application/vnd.cyclonedx+json": "SBOM (CycloneDX)",
    "application/vnd.in-toto+json": "Attestation (in-toto)",
}


@dataclass(frozen=True)
class Part:
    """One part of the page: what it shows, or why it cannot be shown."""

    value: Any = None
    error: ErrorView | None = None


async def _part(read: Awaitable[T]) -> Part:
    try:
        return Part(await read)
    except DockyardError as exc:
        return Part(error=ErrorView.of(exc))


def platform_label(platform: dict[str, Any] | None) -> str:
    if not platform:
        return "unknown platform"
    parts = [platform.get("os", ""), platform.get("architecture", ""), platform.get("variant", "")]
    return "/".join(part for part in parts if part) or "unknown platform"


def manifest_contents(manifest: bytes) -> dict[str, Any]:
    """What the page lists of a manifest: an index's children, or an image's config and layers."""
    try:
        document = json.loads(manifest)
    except ValueError:
        document = {}
    document = document if isinstance(document, dict) else {}
    children = []
    for child in document.get("manifests") or []:
        annotations = child.get("annotations") or {}
        # BuildKit lists an attestation manifest beside each platform's image.
        kind = "Attestation" if annotations.get("vnd.docker.reference.type") == "attestation-manifest" else ""
        children.append({**child, "label": kind or platform_label(child.get("platform"))})
    layers = document.get("layers") or []
    return {"children": children, "config": document.get("config"), "layers": layers, "is_index": bool(children)}


def referrer_kind(artifact_type: str | None) -> str:
    if not artifact_type:
        return "Artifact"
    return SIGNATURE_TYPES.get(artifact_type) or OTHER_TYPES.get(artifact_type) or artifact_type


@dataclass(frozen=True)
class FindingsView:
    """The findings as the address asks: filtered by severity and text, sorted by a column."""

    severity: str
    search: str
    sort: str
    order: str

    @classmethod
    def of(cls, visit: Visit) -> FindingsView:
        severity = visit.param("severity").upper()
        sort = visit.param("fsort", "severity")
        order = visit.param("forder", "asc")
        return cls(
            severity=severity if severity in SEVERITY_RANK else "",
            search=visit.param("fq").strip()[:200],
            sort=sort if sort in FINDING_SORTS else "severity",
            order=order if order in ("asc", "desc") else "asc",
        )

    def query(self, digest: str, **changes: str) -> dict[str, str]:
        values = {"digest": digest, "severity": self.severity.lower(), "fq": self.search}
        values |= {"fsort": self.sort, "forder": self.order} | changes
        defaults = {"severity": "", "fq": "", "fsort": "severity", "forder": "asc"}
        return {key: value for key, value in values.items() if defaults.get(key) != value}

    def sorted_by(self, digest: str, column: str) -> dict[str, str]:
        order = "desc" if column == self.sort and self.order == "asc" else "asc"
        return self.query(digest, fsort=column, forder=order)

    def apply(self, findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
        needle = self.search.lower()
        chosen = [
            f
            for f in findings
            if (not self.severity or f["severity"] == self.severity)
            and (not needle or needle in f["name"].lower() or needle in f["package"].lower())
        ]
        keys = {
            "severity": lambda f: (SEVERITY_RANK.get(f["severity"], 9), f["name"]),
            "name": lambda f: (f["name"], SEVERITY_RANK.get(f["severity"], 9)),
            "package": lambda f: (f["package"].lower(), SEVERITY_RANK.get(f["severity"], 9), f["name"]),
        }
        return sorted(chosen, key=keys[self.sort], reverse=self.order == "desc")


def _finding_row(finding: dict[str, Any]) -> dict[str, Any]:
    attributes = {a["key"]: a.get("value") or "" for a in finding.get("attributes") or []}
    package = " ".join(part for part in (attributes.get("package_name"), attributes.get("package_version")) if part)
    uri = finding.get("uri") or ""
    return {
        "name": finding.get("name", ""),
        "severity": finding.get("severity", "UNDEFINED"),
        "package": package,
        "fixed_in": attributes.get("fixed_in_version") or attributes.get("fixedInVersion") or "",
        "description": finding.get("description", ""),
        "uri": uri if uri.startswith(("https://", "http://")) else "",
    }


async def _scan(visit: Visit, name: str, digest: str) -> dict[str, Any]:
    """The scan's status and summary and every finding (the API's pages read one after another)."""
    token: str | None = None
    found: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    for _ in range(FINDINGS_BATCHES):
        result = await scans.describe_image_scan_findings(
            visit.svc, visit.caller, visit.account_id, name, {"imageDigest": digest}, FINDINGS_BATCH, token
        )
        found.extend((result.get("imageScanFindings") or {}).get("findings") or [])
        token = result.get("nextToken")
        if not token:
            break
    return {
        "status": result["imageScanStatus"],
        "summary": result.get("imageScanFindings"),
        "findings": [_finding_row(f) for f in found],
    }


async def image_page(visit: Visit) -> Response:
    repo = repository_of(visit)
    digest = visit.param("digest")
    try:
        described = await image_details.describe_images(
            visit.svc, visit.caller, visit.account_id, repo.name, [{"imageDigest": digest}]
        )
    except DockyardError as exc:
        return refused(visit, exc, "error.html", "images")
    detail = described["imageDetails"][0]
    manifest = await _part(image_browse.image_manifest(visit.svc, visit.caller, visit.account_id, repo.name, digest))
    scan = await _part(_scan(visit, repo.name, digest))
    if isinstance(scan.error, ErrorView) and scan.error.code == "ScanNotFoundException":
        scan = Part(None)
    refs = await _part(
        referrers.list_image_referrers(
            visit.svc, visit.caller, visit.account_id, repo.name, digest, artifact_status="ANY", max_results=50
        )
    )
    image_id = {"imageDigest": digest}
    replication = await _part(
        replication_configuration.describe_image_replication_status(
            visit.svc, visit.caller, visit.account_id, repo.name, image_id
        )
    )
    signing = await _part(
        signing_configuration.describe_image_signing_status(
            visit.svc, visit.caller, visit.account_id, repo.name, image_id
        )
    )
    view = FindingsView.of(visit)
    findings = view.apply(scan.value["findings"]) if scan.value else []
    referring = [{**r, "kind": referrer_kind(r.get("artifactType"))} for r in (refs.value or {}).get("referrers", [])]
    return tab(
        visit,
        "image_detail.html",
        "images",
        image=detail,
        digest=digest,
        image_uri=f"{repo.uri}@{digest}",
        contents=manifest_contents(manifest.value[0]) if manifest.value else None,
        manifest_error=manifest.error,
        scan=scan.value,
        scan_error=scan.error,
        findings=findings[:FINDINGS_SHOWN],
        findings_matching=len(findings),
        findings_view=view,
        severities=list(SEVERITY_RANK),
        signatures=[r for r in referring if r["kind"].startswith("Signature")],
        other_referrers=[r for r in referring if not r["kind"].startswith("Signature")],
        referrers_error=refs.error,
        replication=(replication.value or {}).get("replicationStatuses", []),
        replication_error=replication.error,
        signing=(signing.value or {}).get("signingStatuses", []),
        signing_error=signing.error,
    )


PAGES = [
    Page(tab_path("image"), image_page, section=SECTION),
]
