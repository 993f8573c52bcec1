"""The AWS Query protocol (IAM, STS) driven by botocore's service models.

Requests are form-encoded (``Action=CreateUser&Version=2010-05-08&UserName=bob``); lists are
``Name.member.N`` (1-based), structures ``Name.Member``, maps ``Name.entry.N.key``/``.value``.
Responses are XML: ``<OpResponse xmlns=…><OpResult>…</OpResult><ResponseMetadata>…`` with list
items as ``<member>``, timestamps in ISO 8601, booleans lower-case, and policy documents
URL-encoded (RFC 3986), as IAM sends them and botocore decodes them. Errors are
``<ErrorResponse><Error><Type>Sender</Type><Code>…</Code><Message>…</Message></Error>
<RequestId>…</RequestId></ErrorResponse>``.

Input constraints are checked as the services' front end (Coral) checks them, and reported as
``ValidationError`` with its wording: "1 validation error detected: Value 'a b' at 'userName'
failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape

from dockyard.doors.aws_json import botocore_model

if TYPE_CHECKING:
    from botocore.model import OperationModel, ServiceModel, Shape

VALIDATION_ERROR = "ValidationError"
# A body over the door's size limit, answered with HTTP 413.
REQUEST_TOO_LARGE = "RequestEntityTooLarge"
# Shapes IAM returns URL-encoded (botocore's json_decode_policies undoes it).
_URL_ENCODED_SHAPES = frozenset({"policyDocumentType"})


class QueryValidationError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = VALIDATION_ERROR
        self.message = message
        self.status = 400


def parse_form(body: bytes) -> dict[str, str]:
    """A request's form-encoded body, read once per request: its Action names the operation (for
    throttling and audit as for dispatch), the rest are the operation's parameters. A name given
    twice keeps its last value."""
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


# Java's Unicode categories, which Python's re lacks, for the one form the models use them in
# (a bracketed class, as in tag keys: [\p{L}\p{Z}\p{N}_.:/=+\-@]+).
_UNICODE_CATEGORIES = {r"\p{L}": r"[^\W\d_]", r"\p{Z}": r"\s", r"\p{N}": r"\d"}
_BRACKETED = re.compile(r"\[(.*)\]([+*]?)")


@lru_cache(maxsize=1024)
def _pattern(text: str) -> re.Pattern[str]:
    bracketed = _BRACKETED.fullmatch(text)
    if "\\p{" not in text or bracketed is None:
        return re.compile(text, re.ASCII)  # Java's \w and \d are ASCII unless told otherwise
    body, repeat = bracketed.groups()
    alternatives = []
    for category, python in _UNICODE_CATEGORIES.items():
        if category in body:
            alternatives.append(python)
            body = body.replace(category, "")
    if body:
        alternatives.append(f"[{body}]")
    return re.compile(f"(?:{'|'.join(alternatives)}){repeat}")


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


@dataclass(frozen=True)
class _Violation:
    path: str
    value: Any
    constraint: str

    def text(self) -> str:
        shown = "null" if self.value is None else f"'{_java_text(self.value)}'"
        return f"Value {shown} at '{self.path}' failed to satisfy constraint: {self.constraint}"


def _java_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_java_text(item) for item in value) + "]"
    return str(value)


class QueryModel:
    """One service's model: operation names, input parsing and checking, output and errors."""

    def __init__(self, service: str) -> None:
        self.service = service

    # The model (a few MiB with botocore, which it imports) is read with the first request that
    # needs it, not when the door is built: most workers never serve IAM or STS.
    @cached_property
    def model(self) -> ServiceModel:
        return botocore_model(self.service)

    @cached_property
    def namespace(self) -> str:
        return str(self.model.metadata.get("xmlNamespace", ""))

    @cached_property
    def api_version(self) -> str:
        return str(self.model.api_version)

    @cached_property
    def operations(self) -> frozenset[str]:
        return frozenset(self.model.operation_names)

    def operation(self, name: str) -> OperationModel:
        return self.model.operation_model(name)

    # --- input ------------------------------------------------------------------------------

    def parse_input(self, operation: str, form: Mapping[str, str]) -> dict[str, Any]:
        """The operation's parameters from the form, checked against the model's constraints."""
        shape = self.operation(operation).input_shape
        if shape is None:
            return {}
        params = _read_structure(shape, form, "")
        violations: list[_Violation] = []
        _check_structure(shape, params, "", violations)
        if violations:
            count = len(violations)
            noun = "error" if count == 1 else "errors"
            raise QueryValidationError(
                f"{count} validation {noun} detected: " + "; ".join(violation.text() for violation in violations)
            )
        return params

    # --- output -----------------------------------------------------------------------------

    def serialize_output(self, operation: str, result: Mapping[str, Any], request_id: str) -> bytes:
        model = self.operation(operation)
        parts = [f'<{operation}Response xmlns="{self.namespace}">']
        shape = model.output_shape
        if shape is not None:
            wrapper = shape.serialization.get("resultWrapper", f"{operation}Result")
            parts.append(f"<{wrapper}>")
            _write_members(shape, result, parts)
            parts.append(f"</{wrapper}>")
        parts.append(f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>")
        parts.append(f"</{operation}Response>")
        return "".join(parts).encode("utf-8")

    def error_body(self, code: str, message: str, request_id: str, *, sender: bool = True) -> bytes:
        kind = "Sender" if sender else "Receiver"
        return (
            f'<ErrorResponse xmlns="{self.namespace}"><Error><Type>{kind}</Type><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()


# --- reading the form ---------------------------------------------------------------------------


def _read(shape: Shape, form: Mapping[str, str], key: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        return _read_structure(shape, form, key + ".")
    if kind == "list":
        return _read_list(shape, form, key)
    if kind == "map":
        return _read_map(shape, form, key)
    raw = form.get(key)
    if raw is None:
        return None
    return _scalar(shape, raw, key)


def _read_structure(shape: Shape, form: Mapping[str, str], prefix: str) -> dict[str, Any] | None:
    found: dict[str, Any] = {}
    for name, member in shape.members.items():
        key = prefix + member.serialization.get("name", name)
        value = _read(member, form, key)
        if value is not None:
            found[name] = value
    if not found and prefix and not any(name.startswith(prefix) for name in form):
        return None
    return found


def _indexes(form: Mapping[str, str], prefix: str) -> list[int]:
    found = set()
    for name in form:
        if name.startswith(prefix):
            head = name[len(prefix) :].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return sorted(found)


def _read_list(shape: Shape, form: Mapping[str, str], key: str) -> list[Any] | None:
    member = shape.member
    if shape.serialization.get("flattened"):
        prefix = key + "."
    else:
        prefix = f"{key}.{member.serialization.get('name', 'member')}."
    if form.get(key) == "" and not _indexes(form, prefix):
        return []  # an explicitly empty list
    indexes = _indexes(form, prefix)
    if not indexes:
        return None
    return [_read(member, form, f"{prefix}{index}") for index in indexes]


def _read_map(shape: Shape, form: Mapping[str, str], key: str) -> dict[str, Any] | None:
    prefix = f"{key}.entry."
    indexes = _indexes(form, prefix)
    if not indexes:
        return None
    found: dict[str, Any] = {}
    for index in indexes:
        entry_key = form.get(f"{prefix}{index}.key")
        if entry_key is not None:
            found[entry_key] = _read(shape.value, form, f"{prefix}{index}.value")
    return found


def _scalar(shape: Shape, raw: str, key: str) -> Any:
    kind = shape.type_name
    if kind in ("integer", "long"):
        try:
            return int(raw)
        except ValueError:
            raise QueryValidationError(
                f"1 validation error detected: Value '{raw}' at '{_lower_first(key)}' failed to satisfy constraint: "
                "Member must be a number"
            ) from None
    if kind == "boolean":
        return raw.lower() == "true"
    return raw


# --- checking constraints -----------------------------------------------------------------------


def _check_structure(shape: Shape, value: dict[str, Any] | None, path: str, out: list[_Violation]) -> None:
    if value is None:
        return
    required = set(shape.required_members)
    for name, member in shape.members.items():
        member_path = f"{path}.{_lower_first(name)}" if path else _lower_first(name)
        item = value.get(name)
        if item is None:
            if name in required:
                out.append(_Violation(member_path, None, "Member must not be null"))
            continue
        _check(member, item, member_path, out)


def _check(shape: Shape, value: Any, path: str, out: list[_Violation]) -> None:
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        _check_structure(shape, value, path, out)
        return
    if kind == "list":
        _check_size(meta, len(value), value, path, "length", out)
        for index, item in enumerate(value, start=1):
            if item is not None:
                _check(shape.member, item, f"{path}.{index}.member", out)
        return
    if kind == "string":
        _check_size(meta, len(value), value, path, "length", out)
        pattern = meta.get("pattern")
        if pattern and not _pattern(pattern).fullmatch(value):
            out.append(_Violation(path, value, f"Member must satisfy regular expression pattern: {pattern}"))
        enum = meta.get("enum")
        if enum and value not in enum:
            out.append(_Violation(path, value, f"Member must satisfy enum value set: [{', '.join(enum)}]"))
        return
    if kind in ("integer", "long"):
        _check_size(meta, value, value, path, "value", out)


def _check_size(meta: Mapping[str, Any], size: int, value: Any, path: str, what: str, out: list[_Violation]) -> None:
    if "min" in meta and size < meta["min"]:
        out.append(_Violation(path, value, f"Member must have {what} greater than or equal to {meta['min']}"))
    if "max" in meta and size > meta["max"]:
        out.append(_Violation(path, value, f"Member must have {what} less than or equal to {meta['max']}"))


# --- writing XML --------------------------------------------------------------------------------


def iso8601(value: float | datetime) -> str:
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_members(shape: Shape, value: Mapping[str, Any], parts: list[str]) -> None:
    for name, member in shape.members.items():
        item = value.get(name)
        if item is None:
            continue
        tag = member.serialization.get("name", name)
        if member.type_name == "list" and member.serialization.get("flattened"):
            for entry in item:
                _write_element(member.member, tag, entry, parts)
        else:
            _write_element(member, tag, item, parts)


def _write_element(shape: Shape, tag: str, value: Any, parts: list[str]) -> None:
    parts.append(f"<{tag}>")
    kind = shape.type_name
    if kind == "structure":
        _write_members(shape, value, parts)
    elif kind == "list":
        item_tag = shape.member.serialization.get("name", "member")
        for item in value:
            _write_element(shape.member, item_tag, item, parts)
    elif kind == "map":
        for key, item in value.items():
            parts.append("<entry>")
            _write_element(shape.key, "key", key, parts)
            _write_element(shape.value, "value", item, parts)
            parts.append("</entry>")
    else:
        parts.append(_scalar_text(shape, value))
    parts.append(f"</{tag}>")


def _scalar_text(shape: Shape, value: Any) -> str:
    kind = shape.type_name
    if kind == "timestamp":
        return iso8601(value)
    if kind == "boolean":
        return "true" if value else "false"
    if shape.name in _URL_ENCODED_SHAPES:
        return quote(str(value), safe="")
    return escape(str(value))
