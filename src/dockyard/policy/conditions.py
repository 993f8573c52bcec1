"""Condition operators of the IAM policy language.

A condition block such as ``{"ForAnyValue:StringLikeIfExists": {"aws:TagKeys": ["team*"]}}``
is compiled into one :class:`Condition` per key. Every operator is a base comparison (does
one request value match any of the policy values?) plus three independent modifiers: the
negated form (StringNotEquals, NotIpAddress, ...), the ``IfExists`` suffix and the
``ForAllValues:``/``ForAnyValue:`` set prefixes.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

from dockyard.policy.patterns import ContextLookup, MatchMode, PatternSet

SetOperator = Literal["ForAllValues", "ForAnyValue"]
ConditionValue = str | bool | int | float

_SET_PREFIXES: tuple[SetOperator, ...] = ("ForAllValues", "ForAnyValue")
_IF_EXISTS = "IfExists"


class ValueMatcher(ABC):
    """Does one request value match any of a condition's policy values?"""

    __slots__ = ()

    @abstractmethod
    def matches(self, value: str, lookup: ContextLookup) -> bool: ...


class _PatternMatcher(ValueMatcher):
    __slots__ = ("patterns",)

    def __init__(self, values: tuple[str, ...], mode: MatchMode, ignore_case: bool, variables: bool) -> None:
        self.patterns = PatternSet(values, mode, ignore_case=ignore_case, variables=variables)

    def matches(self, value: str, lookup: ContextLookup) -> bool:
        return self.patterns.matches(value, lookup)


def parse_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return None if math.isnan(number) else number


@lru_cache(maxsize=4096)
def parse_date(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 date/time or of an epoch-seconds integer; None if neither."""
    text = text.strip()
    if text.isdigit():
        return float(int(text))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # IAM reads zone-less times as UTC
    return moment.timestamp()


class _OrderedMatcher(ValueMatcher):
    """Numeric and date comparisons: parse both sides, then compare."""

    __slots__ = ("bounds", "compare", "parse")

    def __init__(
        self,
        values: tuple[str, ...],
        parse: Callable[[str], float | None],
        compare: Callable[[float, float], bool],
    ) -> None:
        self.parse = parse
        self.compare = compare
        self.bounds = tuple(bound for bound in map(parse, values) if bound is not None)

    def matches(self, value: str, lookup: ContextLookup) -> bool:
        parsed = self.parse(value)
        return parsed is not None and any(self.compare(parsed, bound) for bound in self.bounds)


class _BoolMatcher(ValueMatcher):
    __slots__ = ("accepted",)

    def __init__(self, values: tuple[str, ...]) -> None:
        self.accepted = frozenset(v.lower() for v in values if v.lower() in ("true", "false"))

    def matches(self, value: str, lookup: ContextLookup) -> bool:
        return value.lower() in self.accepted


def _decode_base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


class _BinaryMatcher(ValueMatcher):
    __slots__ = ("accepted",)

    def __init__(self, values: tuple[str, ...]) -> None:
        self.accepted = frozenset(d for d in map(_decode_base64, values) if d is not None)

    def matches(self, value: str, lookup: ContextLookup) -> bool:
        decoded = _decode_base64(value)
        return decoded is not None and decoded in self.accepted


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_network(text: str) -> IpNetwork | None:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def _parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Cached: the same few client addresses arrive on every request of a session.
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:a.b.c.d is the IPv4 client it wraps
    return address


class _IpMatcher(ValueMatcher):
    __slots__ = ("networks",)

    def __init__(self, values: tuple[str, ...]) -> None:
        self.networks = tuple(n for n in map(_parse_network, values) if n is not None)

    def matches(self, value: str, lookup: ContextLookup) -> bool:
        address = _parse_address(value)
        return address is not None and any(address in network for network in self.networks)


MatcherFactory = Callable[[tuple[str, ...], bool], ValueMatcher]  # (values, variables allowed)


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    """A base operator: how to build its matcher and whether it is the negated form."""

    factory: MatcherFactory
    negated: bool = False


def _strings(mode: MatchMode, ignore_case: bool = False) -> MatcherFactory:
    return lambda values, variables: _PatternMatcher(values, mode, ignore_case, variables)


def _ordered(parse: Callable[[str], float | None], compare: Callable[[float, float], bool]) -> MatcherFactory:
    return lambda values, variables: _OrderedMatcher(values, parse, compare)


_NUMERIC = {
    "Equals": operator.eq,
    "LessThan": operator.lt,
    "LessThanEquals": operator.le,
    "GreaterThan": operator.gt,
    "GreaterThanEquals": operator.ge,
}

OPERATORS: Mapping[str, OperatorSpec] = {
    "StringEquals": OperatorSpec(_strings("literal")),
    "StringNotEquals": OperatorSpec(_strings("literal"), negated=True),
    "StringEqualsIgnoreCase": OperatorSpec(_strings("literal", ignore_case=True)),
    "StringNotEqualsIgnoreCase": OperatorSpec(_strings("literal", ignore_case=True), negated=True),
    "StringLike": OperatorSpec(_strings("glob")),
    "StringNotLike": OperatorSpec(_strings("glob"), negated=True),
    **{f"Numeric{name}": OperatorSpec(_ordered(parse_number, compare)) for name, compare in _NUMERIC.items()},
    "NumericNotEquals": OperatorSpec(_ordered(parse_number, operator.eq), negated=True),
    **{f"Date{name}": OperatorSpec(_ordered(parse_date, compare)) for name, compare in _NUMERIC.items()},
    "DateNotEquals": OperatorSpec(_ordered(parse_date, operator.eq), negated=True),
    "Bool": OperatorSpec(lambda values, variables: _BoolMatcher(values)),
    "BinaryEquals": OperatorSpec(lambda values, variables: _BinaryMatcher(values)),
    "IpAddress": OperatorSpec(lambda values, variables: _IpMatcher(values)),
    "NotIpAddress": OperatorSpec(lambda values, variables: _IpMatcher(values), negated=True),
    # IAM documents ArnEquals and ArnLike as the same component-wise wildcard match.
    "ArnEquals": OperatorSpec(_strings("arn")),
    "ArnLike": OperatorSpec(_strings("arn")),
    "ArnNotEquals": OperatorSpec(_strings("arn"), negated=True),
    "ArnNotLike": OperatorSpec(_strings("arn"), negated=True),
}
NULL_OPERATOR = "Null"


@dataclass(frozen=True, slots=True)
class OperatorName:
    """An operator name split into its parts, e.g. ForAnyValue:StringLikeIfExists."""

    base: str
    set_operator: SetOperator | None
    if_exists: bool


def split_operator(name: str) -> OperatorName | None:
    """Parts of a condition operator name, or None when IAM would not recognise it."""
    set_operator: SetOperator | None = None
    for prefix in _SET_PREFIXES:
        if name.startswith(prefix + ":"):
            set_operator = prefix
            name = name[len(prefix) + 1 :]
            break
    if_exists = name.endswith(_IF_EXISTS) and name != _IF_EXISTS
    if if_exists:
        name = name[: -len(_IF_EXISTS)]
    if name == NULL_OPERATOR:
        return None if if_exists else OperatorName(name, set_operator, False)
    if name not in OPERATORS:
        return None
    return OperatorName(name, set_operator, if_exists)


def is_date_operator(name: OperatorName) -> bool:
    return name.base.startswith("Date")


def condition_value_text(value: ConditionValue) -> str:
    """JSON scalars as IAM reads them: booleans lower-case, numbers in their JSON spelling."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True, slots=True)
class Condition:
    """One key of one operator block, compiled for evaluation."""

    operator: str
    key: str
    values: tuple[str, ...]
    name: OperatorName
    negated: bool
    matcher: ValueMatcher | None  # None for Null
    lookup_key: str  # condition keys are case-insensitive

    def evaluate(self, lookup: ContextLookup) -> bool:
        found = lookup.values(self.lookup_key)
        if self.matcher is None:
            return self._evaluate_null(found)
        if not found:
            # A missing key fails a positive comparison and satisfies a negated one; the
            # IfExists suffix and the set operators override that.
            if self.name.if_exists or self.name.set_operator == "ForAllValues":
                return True
            if self.name.set_operator == "ForAnyValue":
                return False
            return self.negated
        matcher = self.matcher
        if self.name.set_operator is None:
            hit = any(matcher.matches(value, lookup) for value in found)
            return hit != self.negated
        results = (matcher.matches(value, lookup) != self.negated for value in found)
        return all(results) if self.name.set_operator == "ForAllValues" else any(results)

    def _evaluate_null(self, found: tuple[str, ...] | None) -> bool:
        absent = not found
        return any((value.lower() == "true") == absent for value in self.values if value.lower() in ("true", "false"))


def compile_condition(operator_name: str, key: str, values: tuple[str, ...], variables: bool) -> Condition:
    """Compile one operator/key pair; the operator must have passed :func:`split_operator`."""
    name = split_operator(operator_name)
    if name is None:
        raise ValueError(f"unknown condition operator {operator_name!r}")
    if name.base == NULL_OPERATOR:
        return Condition(operator_name, key, values, name, False, None, key.lower())
    spec = OPERATORS[name.base]
    return Condition(operator_name, key, values, name, spec.negated, spec.factory(values, variables), key.lower())
