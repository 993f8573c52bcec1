"""Severities as ECR reports them: CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL or UNDEFINED.

ECR takes the distribution's own rating of a vulnerability when there is one, else the CVSS base
score rated as NVD does (v3/v4: 9.0 critical, 7.0 high, 4.0 medium, 0.1 low; v2 has no critical).
Scores come from the vectors, computed by the `cvss` library."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

# `cvss` is imported by parse_cvss, with the first advisory read: the scan hooks every process
# loads need only RANK (issue 19: memory at rest).

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
# Higher is worse; UNDEFINED ranks below everything so no threshold is ever met by it.
RANK = {name: len(SEVERITIES) - i for i, name in enumerate(SEVERITIES)}

# Ratings distributions and advisory databases use, lower-cased, with Debian's "*" marks removed.
_RATINGS = {
    "critical": "CRITICAL",
    "important": "HIGH",  # Red Hat, SUSE
    "high": "HIGH",
    "moderate": "MEDIUM",  # Red Hat, GitHub
    "medium": "MEDIUM",
    "low": "LOW",
    "negligible": "INFORMATIONAL",  # Ubuntu
    "unimportant": "INFORMATIONAL",  # Debian
}


def from_rating(rating: object) -> str | None:
    """ECR's severity for a distribution's or database's own word, or None when it says nothing."""
    if not isinstance(rating, str):
        return None
    return _RATINGS.get(rating.strip().rstrip("*").strip().lower())


def from_score(score: Decimal | float, version: int) -> str:
    value = Decimal(str(score))
    if version >= 3:
        thresholds = ((Decimal("9.0"), "CRITICAL"), (Decimal("7.0"), "HIGH"), (Decimal("4.0"), "MEDIUM"))
    else:
        thresholds = ((Decimal("7.0"), "HIGH"), (Decimal("4.0"), "MEDIUM"))
    for floor, name in thresholds:
        if value >= floor:
            return name
    return "LOW" if value > 0 else "INFORMATIONAL"


@dataclass(frozen=True)
class Cvss:
    version: int  # 2, 3 or 4
    vector: str
    score: Decimal

    @property
    def severity(self) -> str:
        return from_score(self.score, self.version)


def parse_cvss(kind: str, vector: str) -> Cvss | None:
    """An OSV severity entry ({"type": "CVSS_V3", "score": "CVSS:3.1/..."}) scored; None if invalid."""
    from cvss import CVSS2, CVSS3, CVSS4
    from cvss.exceptions import CVSSError

    try:
        if kind == "CVSS_V2":
            return Cvss(2, vector, CVSS2(vector.removeprefix("(").removesuffix(")")).base_score)
        if kind == "CVSS_V3":
            return Cvss(3, vector, CVSS3(vector).base_score)
        if kind == "CVSS_V4":
            return Cvss(4, vector, CVSS4(vector).base_score)
    except (CVSSError, ValueError, KeyError, IndexError):
        return None
    return None


def worst(severities: list[str]) -> str:
    return max(severities, key=RANK.__getitem__, default="UNDEFINED")
