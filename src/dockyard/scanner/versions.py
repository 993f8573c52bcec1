"""Version ordering per ecosystem, from maintained libraries: `packaging` for PEP 440 (PyPI) and
`univers` for dpkg (Debian, Ubuntu), apk (Alpine, Wolfi), RPM, semver (npm, Go, crates.io),
RubyGems, Maven, NuGet and Composer.

OSV's rule for a range: walk its events in version order; `introduced` opens the range (at "0",
from the very first version), `fixed` closes it at that version, `last_affected` just after it.
Only <, > and == are used: univers derives <= and >= of some schemes (apk) from the raw strings."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from packaging.version import InvalidVersion as Pep440Invalid
from packaging.version import Version as Pep440Version
from univers import versions as uv


class Comparable(Protocol):
    def __lt__(self, other: Any) -> bool: ...
    def __le__(self, other: Any) -> bool: ...


Parser = Callable[[str], Comparable]

_UNIVERS: dict[str, type[uv.Version]] = {
    "Debian": uv.DebianVersion,
    "Ubuntu": uv.DebianVersion,
    "Alpine": uv.AlpineLinuxVersion,
    "Wolfi": uv.AlpineLinuxVersion,
    "Chainguard": uv.AlpineLinuxVersion,
    "Red Hat": uv.RpmVersion,
    "Rocky Linux": uv.RpmVersion,
    "AlmaLinux": uv.RpmVersion,
    "openSUSE": uv.RpmVersion,
    "SUSE": uv.RpmVersion,
    "Mageia": uv.RpmVersion,
    "npm": uv.SemverVersion,
    "Go": uv.GolangVersion,
    "crates.io": uv.SemverVersion,
    "RubyGems": uv.RubygemsVersion,
    "Maven": uv.MavenVersion,
    "NuGet": uv.NugetVersion,
    "Packagist": uv.ComposerVersion,
}


def parser_for(ecosystem: str, range_type: str = "ECOSYSTEM") -> Parser | None:
    """How to read versions of `ecosystem` (an OSV ecosystem name without its release)."""
    if range_type == "SEMVER":
        return uv.SemverVersion
    if ecosystem == "PyPI":
        return Pep440Version
    return _UNIVERS.get(ecosystem)


def parse(parser: Parser, text: str) -> Comparable | None:
    try:
        return parser(text.removeprefix("v") if parser in (uv.SemverVersion, uv.GolangVersion) else text)
    except (uv.InvalidVersion, Pep440Invalid, ValueError, TypeError, AttributeError):
        return None


def in_range(version: str, ecosystem: str, range_type: str, events: Iterable[Mapping[str, str]]) -> bool | None:
    """Whether `version` falls in an OSV range; None when a version cannot be read."""
    parser = parser_for(ecosystem, range_type)
    if parser is None:
        return None
    current = parse(parser, version)
    if current is None:
        return None
    ordered: list[_Event] = []
    for event in events:
        for kind in ("introduced", "fixed", "last_affected"):
            if kind in event:
                value = str(event[kind])
                bound = None if kind == "introduced" and value == "0" else parse(parser, value)
                if bound is None and not (kind == "introduced" and value == "0"):
                    return None
                # "0" sorts first; at equal versions the order the record gives them is kept.
                ordered.append((0 if bound is None else 1, bound, kind))
    ordered.sort(key=functools.cmp_to_key(_compare))
    affected = False
    for _, bound, kind in ordered:
        if bound is None:  # introduced at "0"
            affected = True
        elif kind == "introduced":
            affected = affected or not current < bound
        else:
            closed = current > bound if kind == "last_affected" else not current < bound  # type: ignore[operator]
            affected = affected and not closed
    return affected


_Event = tuple[int, Comparable | None, str]


def _compare(a: _Event, b: _Event) -> int:
    if a[0] != b[0]:
        return a[0] - b[0]
    if a[1] is None or b[1] is None or a[1] == b[1]:
        return 0
    return -1 if a[1] < b[1] else 1


def is_affected(version: str, ecosystem: str, ranges: Iterable[Mapping[str, Any]], versions: Iterable[str]) -> bool:
    """OSV's `affected` test: listed explicitly, or inside any readable range."""
    if version in set(versions):
        return True
    return any(in_range(version, ecosystem, r.get("type", ""), r.get("events", [])) for r in ranges)
