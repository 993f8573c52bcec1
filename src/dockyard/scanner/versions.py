"""Version ordering per ecosystem, from maintained libraries: `packaging` for PEP 440 (PyPI) and
`univers` for dpkg (Debian, Ubuntu), apk (Alpine, Wolfi), RPM, semver (npm, Go, crates.io),
RubyGems, Maven and NuGet. Packagist is ordered as Composer orders it (`ComposerVersion` below):
univers' Composer scheme compares pre-releases as plain strings ("beta" after "RC1") and puts
patch releases ("1.0.0-p1") before their release.

OSV's rule for a range: walk its events in version order; `introduced` opens the range (at "0",
from the very first version), `fixed` closes it at that version, `last_affected` just after it.
Only <, > and == are used: univers derives <= and >= of some schemes (apk) from the raw strings."""

from __future__ import annotations

import functools
import re
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
}


def parser_for(ecosystem: str, range_type: str = "ECOSYSTEM") -> Parser | None:
    """How to read versions of `ecosystem` (an OSV ecosystem name without its release)."""
    if range_type == "SEMVER":
        return uv.SemverVersion
    if ecosystem == "PyPI":
        return Pep440Version
    if ecosystem == "Packagist":
        return ComposerVersion
    return _UNIVERS.get(ecosystem)


# PHP's version_compare: the order of its special forms (a part matches the first name it starts
# with); numbers ("#") sit between release candidates and patch levels, unknown words below "dev".
_SPECIAL_FORMS = (("dev", 0), ("alpha", 1), ("a", 1), ("beta", 2), ("b", 2), ("RC", 3), ("rc", 3), ("#", 4),
                  ("pl", 5), ("p", 5))  # fmt: skip
_UNKNOWN_FORM = -6
_COMPOSER_VERSION = re.compile(r"v?(\d+(?:\.\d+){0,3})(?:[._+-]?([A-Za-z0-9._+-]*))?")


class ComposerVersion:
    """A Packagist version as Composer compares it: its numeric part padded to four numbers (Composer's
    VersionParser normalisation), then PHP's version_compare over the parts. Branch names
    ("dev-main") have no place in the order and are refused."""

    def __init__(self, text: str) -> None:
        match = _COMPOSER_VERSION.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"not a Composer version: {text!r}")
        numbers = match.group(1).split(".")
        self.text = text
        self.parts = [*numbers, *["0"] * (4 - len(numbers)), *_php_canonical_parts(match.group(2) or "")]

    def _compare(self, other: ComposerVersion) -> int:
        return _php_version_compare(self.parts, other.parts)

    def __lt__(self, other: Any) -> bool:
        return self._compare(other) < 0

    def __le__(self, other: Any) -> bool:
        return self._compare(other) <= 0

    def __gt__(self, other: Any) -> bool:
        return self._compare(other) > 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ComposerVersion) and self._compare(other) == 0

    def __hash__(self) -> int:
        return hash(tuple(self.parts))

    def __repr__(self) -> str:
        return f"ComposerVersion({self.text!r})"


def _php_canonical_parts(text: str) -> list[str]:
    """version_compare's canonical form, split: '-', '_', '+' and any other non-alphanumeric become
    '.', and a '.' goes between a run of digits and a run of letters."""
    parts: list[str] = []
    for run in re.findall(r"\d+|[A-Za-z]+", text):
        parts.append(run)
    return parts


def _special_form(part: str) -> int:
    return next((order for name, order in _SPECIAL_FORMS if part.startswith(name)), _UNKNOWN_FORM)


def _compare_parts(a: str, b: str) -> int:
    if a.isdigit() and b.isdigit():
        return (int(a) > int(b)) - (int(a) < int(b))
    left = 4 if a.isdigit() else _special_form(a)
    right = 4 if b.isdigit() else _special_form(b)
    return (left > right) - (left < right)


def _php_version_compare(a: list[str], b: list[str]) -> int:
    for left, right in zip(a, b, strict=False):
        if compared := _compare_parts(left, right):
            return compared
    # A longer version is newer if it goes on with a number, else as its next part against "#".
    if len(a) > len(b):
        return 1 if a[len(b)].isdigit() else _compare_parts(a[len(b)], "#")
    if len(b) > len(a):
        return -1 if b[len(a)].isdigit() else _compare_parts("#", b[len(a)])
    return 0


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
