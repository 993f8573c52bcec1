"""Wildcard and policy-variable matching shared by Action, Resource and condition values.

Every AWS-style wildcard match in Dockyard goes through this module, and none of it can
backtrack: a pattern such as ``*a*a*a*a*a*a*a*b`` turned into a regular expression makes
the engine try every way of sharing the value out between the stars, which is exponential
in the number of stars and held a worker for half a minute on one repository name.

Here a pattern is cut at its ``*`` into segments of fixed length (literal text and ``?``).
The first segment must match at the start of the value, the last one at its end, and every
segment in between at its leftmost place after the one before: the leftmost place never
loses a match, because the star that follows can absorb whatever a later place would have
skipped. Each segment is searched once, left to right, so a match costs at most
O(len(value) x len(pattern)) character comparisons, done by ``str.find``/``startswith`` or,
for a segment with ``?``, by a regular expression with no repetition at all (one attempt per
position, each at most as long as the segment); when that product is large (a long
User-Agent), by word-wide bit operations that try every position at once.

A pattern set is compiled once when a policy is parsed: exact values go into a set, wildcard
patterns into matchers. Only patterns that contain policy variables (``${aws:username}``) are
resolved per request, and the matchers built from them are cached.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
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


class _Mark(Enum):
    ANY_RUN = "*"
    ANY_ONE = "?"
    # ArnLike: the colon that closes the fifth ARN component; wildcards before it stay
    # within their component, after it (the resource part) they may cross colons.
    HEAD_END = ":"


Token = str | _Mark  # str: literal text
Fragment = Token | Variable

_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_VARIABLE_BODY = re.compile(r"\s*([^\s,']+)\s*(?:,\s*'([^']*)'\s*)?")
_SPECIAL_CHARACTERS = frozenset("*?$")  # ${*}, ${?}, ${$} stand for the literal character
# An ARN has six colon-separated components; ArnLike compares them one by one, so a
# wildcard in the first five may not run across a colon (the resource part may).
_ARN_FIXED_COMPONENTS = 5


def has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def contains_variable(pattern: str) -> bool:
    return _VARIABLE.search(pattern) is not None


def _fold_character(char: str) -> str:
    # One character for one, so that "?" still stands for exactly one character after folding.
    for folded in (char.casefold(), char.lower()):
        if len(folded) == 1:
            return folded
    return char


def fold_case(text: str) -> str:
    """Case-insensitive form of `text`, character for character (same length)."""
    if text.isascii():
        return text.lower()
    return "".join(map(_fold_character, text))


# Above this much work (places to try x segment length) a segment with "?" is searched with one
# bit per place instead: a few integer operations per literal character, each covering every
# place at once (a 16 KiB User-Agent against a 3,000-character segment: 2 ms instead of 60).
_BIT_PARALLEL_WORK = 200_000


@dataclass(frozen=True, slots=True)
class _Segment:
    """Literal text and ``?`` between two stars: always exactly `length` characters."""

    length: int
    literal: str | None  # the whole segment when it has no "?"
    # Otherwise escaped literals and "." only: no repetition or alternation, so the engine
    # makes one attempt per position, each at most `length` characters long.
    positional: re.Pattern[str] | None
    characters: tuple[tuple[int, str], ...]  # with "?": its literal characters and their offsets

    @classmethod
    def of(cls, parts: Sequence[str | None]) -> _Segment:
        """`parts`: literal text, or None for a "?"."""
        length = sum(1 if part is None else len(part) for part in parts)
        if None not in parts:
            return cls(length, "".join(part for part in parts if part is not None), None, ())
        source = "".join("." if part is None else re.escape(part) for part in parts)
        characters: list[tuple[int, str]] = []
        offset = 0
        for part in parts:
            if part is not None:
                characters.extend((offset + index, char) for index, char in enumerate(part))
            offset += 1 if part is None else len(part)
        return cls(length, None, _positional(source), tuple(characters))

    def match_at(self, text: str, start: int) -> bool:
        if self.literal is not None:
            return text.startswith(self.literal, start)
        assert self.positional is not None
        return self.positional.match(text, start) is not None

    def find(self, text: str, start: int, stop: int) -> int:
        """The leftmost place at or after `start` where the segment ends by `stop`; -1 if none."""
        if self.literal is not None:
            return text.find(self.literal, start, stop)
        if (stop - start) * self.length > _BIT_PARALLEL_WORK and (found := self._scan(text, start, stop)) is not None:
            return found
        assert self.positional is not None
        match = self.positional.search(text, start, stop)
        return -1 if match is None else match.start()

    def _scan(self, text: str, start: int, stop: int) -> int | None:
        """`find` with bit i of an integer standing for place start + i; None when the text is
        not Latin-1 (HTTP header values always are), which leaves it to the regular expression."""
        try:
            window = text[start:stop].encode("latin-1")
        except UnicodeEncodeError:
            return None
        places = len(window) - self.length + 1
        if places <= 0:
            return -1
        candidates = (1 << places) - 1
        rows: dict[str, int] = {}
        for offset, char in self.characters:
            if char not in rows:
                rows[char] = _occurrences(window, char)
            candidates &= rows[char] >> offset
            if not candidates:
                return -1
        return start + (candidates & -candidates).bit_length() - 1


def _occurrences(window: bytes, char: str) -> int:
    """An integer with bit i set where window[i] is `char`."""
    code = ord(char)
    if code > 0xFF:
        return 0
    return int(window.translate(_marks(code))[::-1], 2)


@lru_cache(maxsize=256)
def _marks(code: int) -> bytes:
    """A translation table turning byte `code` into "1" and every other byte into "0"."""
    return bytes(0x31 if byte == code else 0x30 for byte in range(256))


@lru_cache(maxsize=4096)
def _positional(source: str) -> re.Pattern[str]:
    return re.compile(source, re.DOTALL)


@dataclass(frozen=True, slots=True)
class _Glob:
    """``*`` any run of characters (none included), ``?`` exactly one, the rest literal."""

    first: _Segment
    middle: tuple[_Segment, ...]
    last: _Segment | None  # None: the pattern has no star, `first` is all of it
    min_length: int

    @classmethod
    def of(cls, tokens: Iterable[Token]) -> _Glob:
        runs: list[list[str | None]] = [[]]
        for token in tokens:
            if token is _Mark.ANY_RUN:
                runs.append([])
            elif token is _Mark.ANY_ONE:
                runs[-1].append(None)
            elif isinstance(token, str):
                runs[-1].append(token)
            else:
                raise ValueError(f"{token!r} cannot appear inside an ARN component")
        first, *rest = (_Segment.of(run) for run in runs)
        if not rest:
            return cls(first, (), None, first.length)
        *between, last = rest
        middle = tuple(segment for segment in between if segment.length)  # "**" is "*"
        return cls(first, middle, last, first.length + last.length + sum(s.length for s in middle))

    def matches(self, text: str) -> bool:
        if self.last is None:
            return len(text) == self.min_length and self.first.match_at(text, 0)
        end = len(text) - self.last.length
        if len(text) < self.min_length or not self.first.match_at(text, 0) or not self.last.match_at(text, end):
            return False
        position = self.first.length
        for segment in self.middle:
            found = segment.find(text, position, end)
            if found < 0:
                return False
            position = found + segment.length
        return True


@dataclass(frozen=True, slots=True)
class _Arn:
    """ArnLike: the value is cut at colons into the pattern's components, each matched alone.

    Wildcards in the head (up to the fifth colon) cannot produce a colon, so a matching value
    has exactly as many colons there as the pattern has literal ones: the cut is forced."""

    head: tuple[_Glob, ...]
    tail: _Glob | None  # None: the pattern never reaches its fifth colon

    @classmethod
    def of(cls, tokens: Sequence[Token]) -> _Arn:
        head: list[_Glob] = []
        component: list[Token] = []
        for index, token in enumerate(tokens):
            if token is _Mark.HEAD_END:
                head.append(_Glob.of(component))
                return cls(tuple(head), _Glob.of(tokens[index + 1 :]))
            if isinstance(token, str):
                first, *others = token.split(":")  # a literal colon (a variable's value) cuts too
                component.append(first)
                for text in others:
                    head.append(_Glob.of(component))
                    component = [text]
            else:
                component.append(token)
        head.append(_Glob.of(component))
        return cls(tuple(head), None)

    def matches(self, text: str) -> bool:
        count = len(self.head)
        parts = text.split(":", count)
        if len(parts) != (count if self.tail is None else count + 1):
            return False
        if self.tail is not None and not self.tail.matches(parts[count]):
            return False
        return all(component.matches(part) for component, part in zip(self.head, parts, strict=False))


Matcher = _Glob | _Arn


def _build(tokens: tuple[Token, ...], arn: bool, ignore_case: bool) -> Matcher:
    if ignore_case:
        tokens = tuple(fold_case(token) if isinstance(token, str) else token for token in tokens)
    return _Arn.of(tokens) if arn else _Glob.of(tokens)


_matcher = lru_cache(maxsize=4096)(_build)


def _merged(fragments: Iterable[Fragment]) -> tuple[Fragment, ...]:
    # Adjacent literal characters become one string: shorter tuples to hash and to walk.
    out: list[Fragment] = []
    for fragment in fragments:
        if isinstance(fragment, str) and out and isinstance(out[-1], str):
            out[-1] += fragment
        elif fragment != "":
            out.append(fragment)
    return tuple(out)


class _Tokenizer:
    """Turns a pattern's static text into tokens, tracking ARN components."""

    __slots__ = ("mode", "colons")

    def __init__(self, mode: MatchMode, arn_aware: bool) -> None:
        self.mode = mode
        # colons seen so far; -1 disables component tracking (plain glob behaviour)
        self.colons = 0 if arn_aware else -1

    def static(self, text: str) -> Iterable[Token]:
        if self.mode == "literal":
            yield text
            return
        for char in text:
            if char == "*":
                yield _Mark.ANY_RUN
            elif char == "?":
                yield _Mark.ANY_ONE
            elif char == ":" and 0 <= self.colons < _ARN_FIXED_COMPONENTS:
                self.colons += 1
                yield _Mark.HEAD_END if self.colons == _ARN_FIXED_COMPONENTS else char
            else:
                yield char


@dataclass(frozen=True, slots=True)
class _Template:
    """A parsed pattern: tokens, with policy variables left to fill in per request."""

    fragments: tuple[Fragment, ...]
    arn: bool

    @classmethod
    def of(cls, pattern: str, mode: MatchMode, variables: bool) -> _Template:
        arn = mode == "arn" and pattern.count(":") >= _ARN_FIXED_COMPONENTS
        tokenizer = _Tokenizer(mode, arn)
        fragments: list[Fragment] = []
        position = 0
        for found in _VARIABLE.finditer(pattern) if variables else ():
            fragments.extend(tokenizer.static(pattern[position : found.start()]))
            body = found.group(1).strip()
            if body in _SPECIAL_CHARACTERS:
                fragments.append(body)
            elif parsed := _VARIABLE_BODY.fullmatch(found.group(1)):
                fragments.append(Variable(parsed.group(1).lower(), parsed.group(2)))
            else:
                fragments.extend(tokenizer.static(found.group(0)))
            position = found.end()
        fragments.extend(tokenizer.static(pattern[position:]))
        return cls(_merged(fragments), arn)

    def tokens(self, lookup: ContextLookup | None) -> tuple[Token, ...] | None:
        """The pattern with its variables' values; None when one cannot be resolved."""
        tokens: list[Token] = []
        for fragment in self.fragments:
            if isinstance(fragment, Variable):
                value = resolve_variable(fragment, lookup) if lookup is not None else None
                if value is None:
                    return None  # an unresolvable variable makes the pattern match nothing
                tokens.append(value)
            else:
                tokens.append(fragment)
        return tuple(tokens)


def resolve_variable(variable: Variable, lookup: ContextLookup) -> str | None:
    """The variable's value, its default, or None when it cannot be resolved."""
    found = lookup.values(variable.key)
    # Policy variables only work with single-valued keys.
    if found is not None and len(found) == 1:
        return found[0]
    return variable.default


def wildcard_match(pattern: str, text: str, *, question_mark: bool = True, ignore_case: bool = False) -> bool:
    """AWS-style wildcard match in linear time: ``*`` stands for any run of characters (none
    included), ``?`` for exactly one (an ordinary character when `question_mark` is False, as
    in ECR's repository and tag filters). For every wildcard match outside the policy engine."""
    matcher = _wildcard(pattern, question_mark, ignore_case)
    return matcher.matches(fold_case(text) if ignore_case else text)


@lru_cache(maxsize=4096)
def _wildcard(pattern: str, question_mark: bool, ignore_case: bool) -> Matcher:
    tokens = tuple(
        _Mark.ANY_RUN if char == "*" else _Mark.ANY_ONE if char == "?" and question_mark else char for char in pattern
    )
    return _build(tokens, False, ignore_case)


class PatternSet:
    """A list of policy values matched as "any of them" against one request value.

    mode "glob": ``*`` and ``?`` wildcards (Action, Resource, StringLike).
    mode "literal": exact comparison (StringEquals); wildcard characters are ordinary.
    mode "arn": ArnLike/ArnEquals, wildcards confined to their ARN component.
    """

    __slots__ = ("patterns", "mode", "ignore_case", "variables", "match_all", "_exact", "_static", "_dynamic")

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
        static: list[Matcher] = []
        dynamic: list[_Template] = []
        for pattern in dict.fromkeys(self.patterns):
            if variables and contains_variable(pattern):
                dynamic.append(_Template.of(pattern, mode, variables))
            elif mode == "literal" or not has_wildcard(pattern):
                exact.add(pattern.casefold() if ignore_case else pattern)
            else:
                template = _Template.of(pattern, mode, False)
                tokens = template.tokens(None)
                assert tokens is not None  # no variables to resolve
                static.append(_matcher(tokens, template.arn, ignore_case))
        self._exact = frozenset(exact)
        self._static = tuple(static)
        self._dynamic = tuple(dynamic)

    def matches(self, value: str, lookup: ContextLookup | None = None) -> bool:
        if self.match_all:
            return True
        if (value.casefold() if self.ignore_case else value) in self._exact:
            return True
        dynamic = self._dynamic if lookup is not None else ()
        if not self._static and not dynamic:
            return False
        text = fold_case(value) if self.ignore_case else value
        if any(matcher.matches(text) for matcher in self._static):
            return True
        for template in dynamic:
            tokens = template.tokens(lookup)
            if tokens is not None and _matcher(tokens, template.arn, self.ignore_case).matches(text):
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
