"""From an inventory and the advisories that name its packages to ECR-shaped findings.

A finding is one vulnerability in one package (the source package, for OS packages). It is named
by its CVE when the advisory is about exactly one (GHSA-, PYSEC-, DEBIAN-CVE- ... records are then
folded together), else by the advisory's own id. Its severity is the distribution's rating for the
package, else the record's rating or CVSS, else that of an alias or upstream record, else UNDEFINED.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dockyard.scanner.inventory import Inventory, Package
from dockyard.scanner.versions import is_affected
from dockyard.vulndb.severity import RANK
from dockyard.vulndb.store import Candidate, Vulnerability


@dataclass(frozen=True)
class Finding:
    name: str
    description: str
    uri: str
    severity: str
    package_name: str
    package_version: str
    attributes: tuple[tuple[str, str], ...]

    def as_ecr(self) -> dict[str, object]:
        """The ImageScanFinding shape."""
        finding: dict[str, object] = {"name": self.name, "severity": self.severity}
        if self.description:
            finding["description"] = self.description
        if self.uri:
            finding["uri"] = self.uri
        finding["attributes"] = [{"key": k, "value": v} for k, v in self.attributes]
        return finding


def lookup_keys(inventory: Inventory) -> set[tuple[str, str]]:
    """The (ecosystem, package name) pairs to fetch advisories for."""
    return {(p.ecosystem, p.match_name) for p in inventory.packages}


def related_ids(candidates: Iterable[Candidate]) -> set[str]:
    return {r for c in candidates for r in c.vulnerability.related}


def release_matches(advisory_release: str, package_release: str) -> bool:
    """An advisory for "Debian" covers every release; "Ubuntu:22.04:LTS" covers 22.04."""
    if not advisory_release:
        return True
    return advisory_release == package_release or advisory_release.startswith(package_release + ":")


def finding_name(vulnerability: Vulnerability) -> str:
    if vulnerability.id.startswith("CVE-"):
        return vulnerability.id
    cves = sorted({r for r in vulnerability.related if r.startswith("CVE-")})
    return cves[0] if len(cves) == 1 else vulnerability.id


def _borrowed(vulnerability: Vulnerability, known: Mapping[str, Vulnerability]) -> list[Vulnerability]:
    """The alias and upstream records on hand, CVE records first."""
    related = sorted(vulnerability.related, key=lambda r: not r.startswith("CVE-"))
    return [known[r] for r in related if r in known]


def _severity(candidate: Candidate, known: Mapping[str, Vulnerability]) -> str:
    if candidate.severity:
        return candidate.severity
    if candidate.vulnerability.severity:
        return candidate.vulnerability.severity
    for other in _borrowed(candidate.vulnerability, known):
        if other.severity:
            return other.severity
    return "UNDEFINED"


def _attributes(
    package: Package, vulnerability: Vulnerability, known: Mapping[str, Vulnerability]
) -> list[tuple[str, str]]:
    attributes = [("package_version", package.match_version), ("package_name", _reported_name(package))]
    sources = [vulnerability, *_borrowed(vulnerability, known)]
    for label, vector_of, score_of in (
        ("CVSS2", lambda v: v.cvss2_vector, lambda v: v.cvss2_score),
        ("CVSS3", lambda v: v.cvss3_vector, lambda v: v.cvss3_score),
    ):
        source = next((v for v in sources if vector_of(v)), None)
        if source is not None:
            attributes.append((f"{label}_VECTOR", vector_of(source)))
            attributes.append((f"{label}_SCORE", score_of(source)))
    return attributes


def _reported_name(package: Package) -> str:
    return package.source_name or package.name


def match(
    inventory: Inventory,
    candidates: Mapping[tuple[str, str], list[Candidate]],
    known: Mapping[str, Vulnerability],
) -> list[Finding]:
    """The findings for `inventory`, worst first; `known` holds alias/upstream records by id."""
    found: dict[tuple[str, str, str], Finding] = {}
    for package in inventory.packages:
        for candidate in candidates.get((package.ecosystem, package.match_name), []):
            if not release_matches(candidate.ecosystem_release, package.release):
                continue
            if not is_affected(package.match_version, package.ecosystem, candidate.ranges, candidate.versions):
                continue
            vulnerability = candidate.vulnerability
            finding = Finding(
                name=finding_name(vulnerability),
                description=vulnerability.details or vulnerability.summary,
                uri=vulnerability.uri,
                severity=_severity(candidate, known),
                package_name=_reported_name(package),
                package_version=package.match_version,
                attributes=tuple(_attributes(package, vulnerability, known)),
            )
            key = (finding.name, finding.package_name, finding.package_version)
            earlier = found.get(key)
            if earlier is None or RANK[finding.severity] > RANK[earlier.severity]:
                found[key] = finding
    return sorted(found.values(), key=lambda f: (-RANK[f.severity], f.name, f.package_name, f.package_version))


def severity_counts(findings: Iterable[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.severity] = counts.get(finding.severity, 0) + 1
    return counts
