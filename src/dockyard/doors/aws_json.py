"""AWS JSON 1.1 driven by botocore's service model: request checking, response and error bodies.

How the real ECR server treats a request body, and so how this module does, as far as public
evidence shows (captured ECR, Athena and Lambda responses in GitHub issues and emulator suites
that were checked against AWS; moto and LocalStack tests):

Reading the body (``SerializationException``, message under the key ``Message``):

* A body that is not JSON, or whose top level is a scalar, gets no message. A top-level array
  gets "Start of list found where not expected".
* Members the model does not know are ignored. ``null`` counts as absent, also inside lists.
* Type mismatches name the JSON token and the Java type: "STRING_VALUE can not be converted to
  an Integer", "NUMBER_VALUE can not be converted to a String", "TRUE_VALUE ...", "FALSE_VALUE
  ..."; an array where a scalar or structure belongs gives "Start of list found where not
  expected", an object where a scalar or list belongs "Start of structure or map found where
  not expected.", a scalar where a list belongs "Expected list or null", where a structure
  belongs "Expected null", where a map belongs "Expected map or null". A fractional number for
  an integer member is truncated, not refused. Bad base64 for a blob gives "'<value>' can not
  be converted to a Blob: ...".

Constraints (required, length, range, pattern, enum): ECR reports one violation as
``InvalidParameterException`` "Invalid parameter at '<path>' failed to satisfy constraint:
'<constraint>'" with Coral's constraint wording, e.g. 'Member must have length less than or
equal to 100' (BatchDeleteImage imageIds), 'Member must have value less than or equal to 1000'
(maxResults), 'Member must have length greater than or equal to 100' (lifecyclePolicyText, an
operation that also models ValidationException), 'Member must satisfy enum value set:
[IMMUTABLE, MUTABLE]' (imageTagMutability), 'Member must not be null'. Paths use the model's
member names with the first letter lower-cased (Coral's habit: 'tags.1.member.key'), list
items as '<list>.<n>.member' (1-based). A list of scalars whose items break their shape's
constraints is reported at the list with 'Member must satisfy constraint: [<all of the item
shape's constraints>]', e.g. "Invalid parameter at 'registryIds' failed to satisfy
constraint: 'Member must satisfy constraint: [Member must satisfy regular expression pattern:
[0-9]{12}]'"; maps likewise with 'Map keys must satisfy constraint: [...]' and 'Map value must
satisfy constraint: [...]'. Enum sets are printed in Java ``HashSet`` iteration order, which
reproduces every captured ECR message (e.g. [IMMUTABLE, MUTABLE, MUTABLE_WITH_EXCLUSION,
IMMUTABLE_WITH_EXCLUSION]) while the model order does not.

Repository names are checked by ECR's own code after the generic checks, with its own wording,
reported at 'repositoryName' even for items of ``repositoryNames``: "Invalid parameter at
'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '<pattern>''"
and 'must have length greater than or equal to 2'.

An operation that does not model InvalidParameterException reports Coral's own
``ValidationException``: "1 validation error detected: Value '<v>' at '<path>' failed to satisfy
constraint: Member must ..." ("N validation errors detected: ...; ..." for several).

Errors are ``{"__type": "<Code>", "message": "..."}`` with HTTP 400, or 500 for faults
(``ServerException``). botocore reads ``__type`` after any '#' and either message key.
Timestamps are epoch seconds written as Java doubles (``1.7385984915E9``), as ECR does.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from json.encoder import encode_basestring as _encode_string  # C-accelerated, keeps UTF-8 as is
from json.encoder import encode_basestring_ascii as _encode_string_ascii
from typing import TYPE_CHECKING, Any

from dockyard.core import client_json as wire_json
from dockyard.core.registry.manifests import RepositoryNameError, validate_repository_name

if TYPE_CHECKING:
    from botocore.model import OperationModel, Shape
    from botocore.model import ServiceModel as BotocoreServiceModel

SERIALIZATION_EXCEPTION = "SerializationException"
VALIDATION_EXCEPTION = "ValidationException"
INVALID_PARAMETER_EXCEPTION = "InvalidParameterException"
UNKNOWN_OPERATION_EXCEPTION = "UnknownOperationException"
# A body over the API's size limit, answered with HTTP 413 (the name Lambda's model gives it).
REQUEST_TOO_LARGE_EXCEPTION = "RequestEntityTooLargeException"

_LIST_HERE = "Start of list found where not expected"
_MAP_HERE = "Start of structure or map found where not expected."
_JAVA_TYPES = {
    "string": "a String",
    "integer": "an Integer",
    "long": "a Long",
    "boolean": "a Boolean",
    "double": "a Double",
    "float": "a Float",
    "blob": "a Blob",
    "timestamp": "a Timestamp",
}
_INT_BOUNDS = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_SCALARS = frozenset(_JAVA_TYPES)
_REPOSITORY_NAME_SHAPE = "RepositoryName"


class ValidationError(Exception):
    """A request refused before it reaches the core; ``body()`` is the wire error."""

    def __init__(self, code: str, message: str | None, status: int = 400) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> bytes:
        key = "Message" if self.code == SERIALIZATION_EXCEPTION else "message"
        return error_body(self.code, self.message, message_key=key)


def error_body(code: str, message: str | None, *, message_key: str = "message", **extra: Any) -> bytes:
    """An AWS JSON 1.1 error document; ``extra`` adds modelled error members."""
    document: dict[str, Any] = {"__type": code}
    if message is not None:
        document[message_key] = message
    document.update({k: v for k, v in extra.items() if v is not None})
    return _dumps(document)


# --- compiled shapes ------------------------------------------------------------------------


@dataclass(eq=False)
class _Node:
    """One model shape with its constraints, compiled once."""

    kind: str
    name: str
    min: float | None = None
    max: float | None = None
    pattern: re.Pattern[str] | None = None
    pattern_text: str = ""
    enum: frozenset[str] = frozenset()
    enum_text: str = ""
    members: dict[str, _Node] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    member: _Node | None = None
    key: _Node | None = None
    value: _Node | None = None
    listing: str = ""  # Coral's "[Member must ..., ...]" summary of this shape's constraints

    @property
    def is_repository_name(self) -> bool:
        return self.kind == "string" and self.name == _REPOSITORY_NAME_SHAPE


def _compile(shape: Shape, cache: dict[str, _Node]) -> _Node:
    cached = cache.get(shape.name)
    if cached is not None:
        return cached
    meta = shape.metadata
    node = _Node(kind=shape.type_name, name=shape.name, min=meta.get("min"), max=meta.get("max"))
    cache[shape.name] = node  # before recursing: shapes may refer to themselves
    if "pattern" in meta:
        node.pattern_text = meta["pattern"]
        node.pattern = _compile_pattern(shape.name, node.pattern_text)
    enum = meta.get("enum")
    if enum:
        node.enum = frozenset(enum)
        node.enum_text = "[" + ", ".join(_java_hash_set_order(enum)) + "]"
    if shape.type_name == "structure":
        node.members = {name: _compile(member, cache) for name, member in shape.members.items()}
        node.required = frozenset(shape.required_members)
    elif shape.type_name == "list":
        node.member = _compile(shape.member, cache)
    elif shape.type_name == "map":
        node.key = _compile(shape.key, cache)
        node.value = _compile(shape.value, cache)
    node.listing = "[" + ", ".join(_constraint_texts(node)) + "]"
    return node


def _compile_pattern(shape_name: str, pattern: str) -> re.Pattern[str]:
    # The models carry Java regexes; the ones ECR uses are also valid Python (ASCII classes).
    try:
        return re.compile(pattern, re.ASCII)
    except re.error as exc:
        raise ValueError(f"pattern of {shape_name} is not a Python regex: {pattern!r} ({exc})") from None


def _constraint_texts(node: _Node) -> list[str]:
    texts = []
    if node.kind in ("string", "blob", "list", "map"):
        if node.max is not None:
            texts.append(f"Member must have length less than or equal to {_number(node.max)}")
        if node.min is not None:
            texts.append(f"Member must have length greater than or equal to {_number(node.min)}")
    if node.pattern is not None:
        texts.append(f"Member must satisfy regular expression pattern: {node.pattern_text}")
    if node.enum:
        texts.append(f"Member must satisfy enum value set: {node.enum_text}")
    if node.kind in ("integer", "long", "double", "float"):
        if node.max is not None:
            texts.append(f"Member must have value less than or equal to {_number(node.max)}")
        if node.min is not None:
            texts.append(f"Member must have value greater than or equal to {_number(node.min)}")
    return texts


def _java_hash_set_order(values: list[str]) -> list[str]:
    """Iteration order of ``new HashSet<>(values)`` in Java: by bucket, then insertion."""
    capacity = 16
    while len(values) > capacity * 0.75:
        capacity *= 2
    buckets: dict[int, list[str]] = {}
    for value in values:
        buckets.setdefault(_java_bucket(value, capacity), []).append(value)
    return [value for index in sorted(buckets) for value in buckets[index]]


def _java_bucket(value: str, capacity: int) -> int:
    h = 0
    for unit in _utf16_units(value):
        h = (31 * h + unit) & 0xFFFFFFFF
    return (h ^ (h >> 16)) & (capacity - 1)


def _utf16_units(value: str) -> list[int]:
    data = value.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def _java_length(value: str) -> int:
    """String length as Java counts it (UTF-16 code units)."""
    return len(value) if value.isascii() else len(value.encode("utf-16-le")) // 2


# --- reading a request body -----------------------------------------------------------------


def _serialization_error(message: str | None) -> ValidationError:
    return ValidationError(SERIALIZATION_EXCEPTION, message)


def _token(value: Any) -> str:
    if value is True:
        return "TRUE_VALUE"
    if value is False:
        return "FALSE_VALUE"
    if isinstance(value, str):
        return "STRING_VALUE"
    return "NUMBER_VALUE"


def _read(node: _Node, value: Any) -> Any:
    """Deserialise one value as Coral does, dropping nulls and unknown members."""
    if node.kind == "structure":
        if isinstance(value, dict):
            members = node.members
            return {k: _read(members[k], v) for k, v in value.items() if v is not None and k in members}
        raise _serialization_error(_LIST_HERE if isinstance(value, list) else "Expected null")
    if node.kind == "list":
        if isinstance(value, list):
            assert node.member is not None
            return [_read(node.member, item) for item in value if item is not None]
        raise _serialization_error(_MAP_HERE if isinstance(value, dict) else "Expected list or null")
    if node.kind == "map":
        if isinstance(value, dict):
            assert node.value is not None
            return {k: _read(node.value, v) for k, v in value.items() if v is not None}
        raise _serialization_error(_LIST_HERE if isinstance(value, list) else "Expected map or null")
    if isinstance(value, list):
        raise _serialization_error(_LIST_HERE)
    if isinstance(value, dict):
        raise _serialization_error(_MAP_HERE)
    return _SCALAR_READERS[node.kind](value)


def _cannot_convert(value: Any, kind: str) -> ValidationError:
    return _serialization_error(f"{_token(value)} can not be converted to {_JAVA_TYPES[kind]}")


def _read_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _cannot_convert(value, "string")


def _reader_of_int(kind: str) -> Callable[[Any], int]:
    low, high = _INT_BOUNDS[kind]

    def read(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _cannot_convert(value, kind)
        number = int(value)  # Coral truncates a fractional number
        if not low <= number <= high:
            raise _cannot_convert(value, kind)
        return number

    return read


def _reader_of_float(kind: str) -> Callable[[Any], float]:
    def read(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _cannot_convert(value, kind)
        return float(value)

    return read


def _read_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _cannot_convert(value, "boolean")


def _read_blob(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _cannot_convert(value, "blob")
    if len(value) % 4:
        raise _serialization_error(
            f"'{value}' can not be converted to a Blob: "
            f"Base64 encoded length is expected a multiple of 4 bytes but found: {len(value)}"
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        bad = next((c for c in value if not (c.isascii() and (c.isalnum() or c in "+/="))), "=")
        raise _serialization_error(
            f"'{value}' can not be converted to a Blob: Invalid Base64 character: '{bad}'"
        ) from None


def _read_timestamp(value: Any) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _cannot_convert(value, "timestamp")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise _cannot_convert(value, "timestamp") from None


_SCALAR_READERS: dict[str, Callable[[Any], Any]] = {
    "string": _read_string,
    "integer": _reader_of_int("integer"),
    "long": _reader_of_int("long"),
    "boolean": _read_boolean,
    "double": _reader_of_float("double"),
    "float": _reader_of_float("float"),
    "blob": _read_blob,
    "timestamp": _read_timestamp,
}


# --- constraints ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Violation:
    path: str
    constraint: str
    value: Any


class _Checker:
    """Collects constraint violations in model order; repository names are kept for later."""

    def __init__(self) -> None:
        self.violations: list[_Violation] = []
        self.repository_names: list[str] = []

    def check(self, node: _Node, value: Any, path: str) -> None:
        if node.kind == "structure":
            self._check_structure(node, value, path)
        elif node.kind == "list":
            self._check_list(node, value, path)
        elif node.kind == "map":
            self._check_map(node, value, path)
        elif node.is_repository_name:
            self.repository_names.append(value)
        else:
            for constraint in _scalar_violations(node, value):
                self.violations.append(_Violation(path, constraint, value))

    def _check_structure(self, node: _Node, value: dict[str, Any], path: str) -> None:
        for name, member in node.members.items():
            # Coral names members in lowerCamelCase ('tags.1.member.key' for Tag's "Key").
            label = name[:1].lower() + name[1:]
            member_path = f"{path}.{label}" if path else label
            child = value.get(name)
            if child is None:
                if name in node.required:
                    self.violations.append(_Violation(member_path, "Member must not be null", None))
            else:
                self.check(member, child, member_path)

    def _check_list(self, node: _Node, value: list[Any], path: str) -> None:
        self._check_size(node, len(value), value, path)
        member = node.member
        assert member is not None
        if member.kind not in _SCALARS:
            for index, item in enumerate(value, 1):
                self.check(member, item, f"{path}.{index}.member")
        elif member.is_repository_name:
            self.repository_names.extend(value)
        elif any(_scalar_violations(member, item) for item in value):
            self.violations.append(_Violation(path, f"Member must satisfy constraint: {member.listing}", value))

    def _check_map(self, node: _Node, value: dict[str, Any], path: str) -> None:
        self._check_size(node, len(value), value, path)
        key, item_node = node.key, node.value
        assert key is not None and item_node is not None
        if any(_scalar_violations(key, k) for k in value):
            self.violations.append(_Violation(path, f"Map keys must satisfy constraint: {key.listing}", value))
        if item_node.kind not in _SCALARS:
            for k, item in value.items():
                self.check(item_node, item, f"{path}.{k}")
        elif any(_scalar_violations(item_node, item) for item in value.values()):
            constraint = f"Map value must satisfy constraint: {item_node.listing}"
            self.violations.append(_Violation(path, constraint, value))

    def _check_size(self, node: _Node, size: int, value: Any, path: str) -> None:
        if node.max is not None and size > node.max:
            constraint = f"Member must have length less than or equal to {_number(node.max)}"
            self.violations.append(_Violation(path, constraint, value))
        if node.min is not None and size < node.min:
            constraint = f"Member must have length greater than or equal to {_number(node.min)}"
            self.violations.append(_Violation(path, constraint, value))


def _scalar_violations(node: _Node, value: Any) -> list[str]:
    found = []
    if node.enum and value not in node.enum:
        found.append(f"Member must satisfy enum value set: {node.enum_text}")
    if node.pattern is not None and not node.pattern.fullmatch(value):
        found.append(f"Member must satisfy regular expression pattern: {node.pattern_text}")
    if node.kind in ("string", "blob"):
        size = _java_length(value) if node.kind == "string" else len(value)
        if node.max is not None and size > node.max:
            found.append(f"Member must have length less than or equal to {_number(node.max)}")
        if node.min is not None and size < node.min:
            found.append(f"Member must have length greater than or equal to {_number(node.min)}")
    elif node.kind in ("integer", "long", "double", "float"):
        if node.max is not None and value > node.max:
            found.append(f"Member must have value less than or equal to {_number(node.max)}")
        if node.min is not None and value < node.min:
            found.append(f"Member must have value greater than or equal to {_number(node.min)}")
    return found


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _java_value(value: Any) -> str:
    """How Coral prints a value inside a validation message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_java_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_java_value(v)}" for k, v in value.items()) + "}"
    return str(value)


# --- responses ------------------------------------------------------------------------------


# A writer appends the JSON text of one value of its shape to `out`, strings through `encode`.
# Writers are compiled once per shape so a long list pays for no model walking per member.
_Writer = Callable[[Any, list[str], Callable[[str], str]], None]


def _writer(shape: Shape, cache: dict[str, _Writer]) -> _Writer:
    held = cache.get(shape.name)
    if held is not None:
        return held
    kind = shape.type_name
    if kind == "structure":
        return _structure_writer(shape, cache)
    if kind == "list":
        return _list_writer(_writer(shape.member, cache))
    if kind == "map":
        return _map_writer(_writer(shape.value, cache))
    return _SCALAR_WRITERS.get(kind, _write_string)


def _structure_writer(shape: Shape, cache: dict[str, _Writer]) -> _Writer:
    # (member name, its key text after the first member, the same first, its writer)
    members: list[tuple[str, str, str, _Writer]] = []

    def write(value: Any, out: list[str], encode: Callable[[str], str]) -> None:
        opening = "{"
        for name, key, first_key, write_member in members:
            item = value.get(name)
            if item is None:
                continue
            out.append(first_key if opening else key)
            opening = ""
            write_member(item, out, encode)
        out.append("{}" if opening else "}")

    cache[shape.name] = write  # before the members, so a recursive shape finds itself
    for name, member in shape.members.items():
        key = _encode_string(name) + ":"
        members.append((name, "," + key, "{" + key, _writer(member, cache)))
    return write


def _list_writer(write_item: _Writer) -> _Writer:
    def write(value: Any, out: list[str], encode: Callable[[str], str]) -> None:
        separator = "["
        for item in value:
            if item is None:
                continue
            out.append(separator)
            separator = ","
            write_item(item, out, encode)
        out.append("[]" if separator == "[" else "]")

    return write


def _map_writer(write_value: _Writer) -> _Writer:
    def write(value: Any, out: list[str], encode: Callable[[str], str]) -> None:
        separator = "{"
        for key, item in value.items():
            if item is None:
                continue
            out.append(separator)
            separator = ","
            out.append(encode(str(key)))
            out.append(":")
            write_value(item, out, encode)
        out.append("{}" if separator == "{" else "}")

    return write


def _write_string(value: Any, out: list[str], encode: Callable[[str], str]) -> None:
    out.append(encode(str(value)))


def _write_timestamp(value: Any, out: list[str], encode: Callable[[str], str]) -> None:
    out.append(_java_double(_epoch_seconds(value)))


def _write_double(value: Any, out: list[str], encode: Callable[[str], str]) -> None:
    out.append(_java_double(float(value)))


def _write_blob(value: Any, out: list[str], encode: Callable[[str], str]) -> None:
    raw = value.encode() if isinstance(value, str) else bytes(value)
    out.append(encode(base64.b64encode(raw).decode("ascii")))


def _write_integer(value: Any, out: list[str], encode: Callable[[str], str]) -> None:
    out.append(int.__repr__(int(value)))


def _write_boolean(value: Any, out: list[str], encode: Callable[[str], str]) -> None:
    out.append("true" if value else "false")


_SCALAR_WRITERS: dict[str, _Writer] = {
    "timestamp": _write_timestamp,
    "double": _write_double,
    "float": _write_double,
    "blob": _write_blob,
    "integer": _write_integer,
    "long": _write_integer,
    "boolean": _write_boolean,
}


def _serialize(write: _Writer, value: Any) -> bytes:
    out: list[str] = []
    write(value, out, _encode_string)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate only survives as a JSON escape
        out.clear()
        write(value, out, _encode_string_ascii)
        return "".join(out).encode("ascii")


def _epoch_seconds(value: datetime | float) -> float:
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return round(aware.timestamp(), 3)  # ECR keeps millisecond precision
    return float(value)


def _java_double(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"{value} cannot be written as JSON")
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    digits, point = _shortest_digits(abs(value))
    if 1e-3 <= abs(value) < 1e7:
        if point <= 0:
            text = "0." + "0" * -point + digits
        elif point >= len(digits):
            text = digits + "0" * (point - len(digits)) + ".0"
        else:
            text = f"{digits[:point]}.{digits[point:]}"
    else:
        text = f"{digits[0]}.{digits[1:] or '0'}E{point - 1}"
    return sign + text


def _shortest_digits(value: float) -> tuple[str, int]:
    """The shortest significant digits that read back as `value` (> 0), without leading or trailing
    zeros, and where the decimal point goes among them (Python's repr already picks the digits;
    reading its text costs a fraction of going through Decimal)."""
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    significant = digits.lstrip("0")
    point = len(whole) + int(exponent or 0) - (len(digits) - len(significant))
    return significant.rstrip("0"), point


def _dumps(value: Any) -> bytes:
    return _serialize(_dump_into, value)


def _dump_into(value: Any, parts: list[str], encode: Callable[[str], str]) -> None:
    if isinstance(value, str):
        parts.append(encode(value))
    elif isinstance(value, dict):
        parts.append("{")
        for index, (key, item) in enumerate(value.items()):
            parts.append("," if index else "")
            parts.append(encode(key))
            parts.append(":")
            _dump_into(item, parts, encode)
        parts.append("}")
    elif isinstance(value, list):
        parts.append("[")
        for index, item in enumerate(value):
            parts.append("," if index else "")
            _dump_into(item, parts, encode)
        parts.append("]")
    else:
        parts.append(json.dumps(value))


# --- the service model ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Operation:
    model: OperationModel
    input: _Node | None
    reports_invalid_parameter: bool
    errors: tuple[str, ...]
    output: _Writer | None


@cache
def _service_description(service_name: str, api_version: str | None) -> dict[str, Any]:
    from botocore.loaders import Loader

    return Loader().load_service_model(service_name, "service-2", api_version)


@cache
def botocore_model(service_name: str, api_version: str | None = None) -> BotocoreServiceModel:
    """botocore's model of a service (its newest API version unless told), read once a process
    for every door and metric label that needs it. botocore itself is imported then, not with
    this module: a worker that serves no AWS API request never loads it."""
    from botocore.model import ServiceModel as BotocoreServiceModel

    return BotocoreServiceModel(_service_description(service_name, api_version), service_name=service_name)


class ServiceModel:
    """A botocore service model compiled for serving its AWS JSON 1.1 API."""

    def __init__(
        self, service_name: str = "ecr", api_version: str | None = None, *, coral_constraint_errors: bool = False
    ) -> None:
        # ECR reports a broken constraint as InvalidParameterException where the operation models
        # it; other services (Secrets Manager) leave those checks to Coral's ValidationException.
        self.coral_constraint_errors = coral_constraint_errors
        self.model = botocore_model(service_name, api_version)
        data = _service_description(service_name, api_version)
        if self.model.protocol not in ("json", "awsJson1_1"):
            raise ValueError(f"{service_name} does not speak AWS JSON")
        self.target_prefix: str = self.model.metadata["targetPrefix"]
        cache: dict[str, _Node] = {}
        writers: dict[str, _Writer] = {}
        self._operations = {name: self._compile_operation(name, cache, writers) for name in self.model.operation_names}
        # botocore keeps no "fault" flag on its shapes, so read it from the raw model.
        self._fault_codes = frozenset(
            name for name, shape in data["shapes"].items() if shape.get("exception") and shape.get("fault")
        )

    def _compile_operation(self, name: str, cache: dict[str, _Node], writers: dict[str, _Writer]) -> _Operation:
        model = self.model.operation_model(name)
        errors = tuple(shape.name for shape in model.error_shapes)
        node = _compile(model.input_shape, cache) if model.input_shape is not None else None
        output = _writer(model.output_shape, writers) if model.output_shape is not None else None
        reports_invalid_parameter = INVALID_PARAMETER_EXCEPTION in errors and not self.coral_constraint_errors
        return _Operation(model, node, reports_invalid_parameter, errors, output)

    def operation_names(self) -> set[str]:
        return set(self._operations)

    def operation_for_target(self, target: str | None) -> str:
        """The operation an ``X-Amz-Target`` header names; unknown ones are refused."""
        prefix, _, name = (target or "").partition(".")
        if prefix != self.target_prefix or name not in self._operations:
            raise ValidationError(UNKNOWN_OPERATION_EXCEPTION, None)
        return name

    def errors_of(self, operation: str) -> list[str]:
        return list(self._operation(operation).errors)

    def error_status(self, code: str) -> int:
        return 500 if code in self._fault_codes else 400

    def parse_input(self, operation: str, body: bytes) -> dict[str, Any]:
        """Read a request body and validate it; returns the normalised parameters."""
        try:
            params = wire_json.loads(body)
        except wire_json.MalformedJson:
            raise _serialization_error(None) from None
        return self.validate_input(operation, params)

    def validate_input(self, operation: str, params: Any) -> dict[str, Any]:
        """Check decoded JSON ``params`` as ECR would; returns them normalised.

        Normalised means: unknown members and nulls dropped, numbers truncated to integers
        where the model wants integers, blobs decoded to bytes, timestamps as datetimes.
        """
        op = self._operation(operation)
        if not isinstance(params, dict):
            raise _serialization_error(_LIST_HERE if isinstance(params, list) else None)
        if op.input is None:
            return {}
        normalised = _read(op.input, params)
        checker = _Checker()
        checker.check(op.input, normalised, "")
        if checker.violations:
            raise self._constraint_error(op, checker.violations)
        for name in checker.repository_names:
            try:
                validate_repository_name(name)
            except RepositoryNameError as exc:
                raise ValidationError(INVALID_PARAMETER_EXCEPTION, exc.message) from None
        return normalised

    @staticmethod
    def _constraint_error(op: _Operation, violations: list[_Violation]) -> ValidationError:
        if op.reports_invalid_parameter:
            first = violations[0]
            message = f"Invalid parameter at '{first.path}' failed to satisfy constraint: '{first.constraint}'"
            return ValidationError(INVALID_PARAMETER_EXCEPTION, message)
        details = "; ".join(
            f"Value {_quoted(v.value)} at '{v.path}' failed to satisfy constraint: {v.constraint}" for v in violations
        )
        count = len(violations)
        plural = "error" if count == 1 else "errors"
        return ValidationError(VALIDATION_EXCEPTION, f"{count} validation {plural} detected: {details}")

    def serialize_output(self, operation: str, result: dict[str, Any]) -> bytes:
        """The JSON body for ``result``: only modelled members, no nulls, epoch timestamps."""
        write = self._operation(operation).output
        if write is None:
            return b"{}"
        return _serialize(write, result)

    def _operation(self, operation: str) -> _Operation:
        try:
            return self._operations[operation]
        except KeyError:
            raise ValueError(f"{self.model.service_name} has no operation {operation!r}") from None


def _quoted(value: Any) -> str:
    return "null" if value is None else f"'{_java_value(value)}'"
