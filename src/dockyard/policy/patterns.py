"""Wildcard and policy-variable matching shared by Action, Resource and condition values.

A pattern set is compiled once when a policy is parsed: exact values go into a set, wildcard
patterns into one combined regular expression. Only patterns that contain policy variables
(``${aws:username}``) are resolved per request, and the regular expressions built from them
are cached, so evaluation stays cheap on the hot path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol

MatchMode = Literal["glob", "literal", "arn"]


class ContextLookup(Protocol):
    """Request context as the matchers see it: lower-case key to its values (None: absent)."""

    def values(self, key: str) -> tuple[str, ...] | None: ...


@dataclass(frozen=True, slots=True)
class Variable:
    """``${key}`` or ``${key, 'default'}`` inside a pattern; key is stored lower-case."""

    key: str
    default: str | None


Fragment = str | Variable  # str: regular-expression source for the static part

_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_VARIABLE_BODY = re.compile(r"\s*([^\s,']+)\s*(?:,\s*'([^']*)'\s*)?")
_SPECIAL_CHARACTERS = frozenset("*?$")  # ${*}, ${?}, ${$} stand for the literal character
# An ARN has six colon-separated components; ArnLike compares them one by one, so a
# wildcard in the first five may not run across a colon (the resource part may).
_ARN_FIXED_COMPONENTS = 5


def has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


@lru_cache(maxsize=4096)
def _compiled(source: str, flags: int) -> re.Pattern[str]:
    return re.compile(source, flags)


class _Translator:
    """Turns pattern text into regular-expression source, tracking ARN components."""

    __slots__ = ("mode", "colons")

    def __init__(self, mode: MatchMode, arn_aware: bool) -> None:
        self.mode = mode
        # colons seen so far; -1 disables component tracking (plain glob behaviour)
        self.colons = 0 if arn_aware else -1

    def static(self, text: str) -> str:
        if self.mode == "literal":
            return re.escape(text)
        out: list[str] = []
        for char in text:
            in_fixed = 0 <= self.colons < _ARN_FIXED_COMPONENTS
            if char == "*":
                out.append("[^:]*" if in_fixed else ".*")
            elif char == "?":
                out.append("[^:]" if in_fixed else ".")
            else:
                if char == ":" and self.colons >= 0:
                    self.colons += 1
                out.append(re.escape(char))
        return "".join(out)


def _fragments(pattern: str, mode: MatchMode, variables: bool) -> tuple[Fragment, ...]:
    translator = _Translator(mode, mode == "arn" and pattern.count(":") >= _ARN_FIXED_COMPONENTS)
    fragments: list[Fragment] = []
    position = 0
    for found in _VARIABLE.finditer(pattern) if variables else ():
        fragments.append(translator.static(pattern[position : found.start()]))
        body = found.group(1).strip()
        if body in _SPECIAL_CHARACTERS:
            fragments.append(re.escape(body))
        elif parsed := _VARIABLE_BODY.fullmatch(found.group(1)):
            fragments.append(Variable(parsed.group(1).lower(), parsed.group(2)))
        else:
            fragments.append(translator.static(found.group(0)))
        position = found.end()
    fragments.append(translator.static(pattern[position:]))
    return tuple(fragment for fragment in fragments if fragment != "")


def resolve_variable(variable: Variable, lookup: ContextLookup) -> str | None:
    """The variable's value, its default, or None when it cannot be resolved."""
    found = lookup.values(variable.key)
    # Policy variables only work with single-valued keys.
    if found is not None and len(found) == 1:
        return found[0]
    return variable.default


def _resolve(fragments: tuple[Fragment, ...], lookup: ContextLookup) -> str | None:
    parts: list[str] = []
    for fragment in fragments:
        if isinstance(fragment, Variable):
            value = resolve_variable(fragment, lookup)
            if value is None:
                return None  # an unresolvable variable makes the pattern match nothing
            parts.append(re.escape(value))
        else:
            parts.append(fragment)
    return "".join(parts)


def contains_variable(pattern: str) -> bool:
    return _VARIABLE.search(pattern) is not None


class PatternSet:
    """A list of policy values matched as "any of them" against one request value.

    mode "glob": ``*`` and ``?`` wildcards (Action, Resource, StringLike).
    mode "literal": exact comparison (StringEquals); wildcard characters are ordinary.
    mode "arn": ArnLike/ArnEquals, wildcards confined to their ARN component.
    """

    __slots__ = ("patterns", "mode", "ignore_case", "variables", "match_all", "_exact", "_regex", "_dynamic")

    def __init__(
        self,
        patterns: Iterable[str],
        mode: MatchMode,
        *,
        ignore_case: bool = False,
        variables: bool = False,
    ) -> None:
        self.patterns = tuple(patterns)
        self.mode = mode
        self.ignore_case = ignore_case
        self.variables = variables
        self.match_all = mode != "literal" and "*" in self.patterns
        exact: set[str] = set()
        static_sources: list[str] = []
        dynamic: list[tuple[Fragment, ...]] = []
        for pattern in self.patterns:
            if variables and contains_variable(pattern):
                dynamic.append(_fragments(pattern, mode, variables))
            elif mode == "literal" or not has_wildcard(pattern):
                exact.add(pattern.casefold() if ignore_case else pattern)
            else:
                static_sources.append("".join(str(f) for f in _fragments(pattern, mode, False)))
        self._exact = frozenset(exact)
        self._regex = _compiled("|".join(f"(?:{s})" for s in static_sources), self._flags) if static_sources else None
        self._dynamic = tuple(dynamic)

    @property
    def _flags(self) -> int:
        return re.DOTALL | (re.IGNORECASE if self.ignore_case else 0)

    def matches(self, value: str, lookup: ContextLookup | None = None) -> bool:
        if self.match_all:
            return True
        if (value.casefold() if self.ignore_case else value) in self._exact:
            return True
        if self._regex is not None and self._regex.fullmatch(value):
            return True
        if self._dynamic and lookup is not None:
            flags = self._flags
            for fragments in self._dynamic:
                source = _resolve(fragments, lookup)
                if source is not None and _compiled(source, flags).fullmatch(value):
                    return True
        return False

    def _key(self) -> tuple[object, ...]:
        return (self.patterns, self.mode, self.ignore_case, self.variables)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PatternSet) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"PatternSet({list(self.patterns)!r}, {self.mode!r})"
