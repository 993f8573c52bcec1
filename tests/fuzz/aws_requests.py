"""Requests for every operation of botocore's ECR, IAM, STS and CloudTrail models: bodies built from
each operation's input shape (valid-ish values, then broken ones), signed with SigV4 and posted raw,
so that what boto3 would refuse to send still reaches the server."""

from __future__ import annotations

import base64
import functools
import json
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import botocore.session
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import OperationModel, ServiceModel, Shape, StructureShape
from hypothesis import strategies as st

from tests.support.server import DockyardServer

SERVICES = ("ecr", "iam", "sts", "cloudtrail")
# Members nested deeper than this carry only their required members: the models are deep enough
# that drawing every optional member everywhere makes bodies no handler reads past its first check.
MAX_DEPTH = 4
HUGE = 100_000
DEEP = 50_000
JSON_TYPE = "application/x-amz-json-1.1"
FORM_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
# Names the server knows (the module creates them) mixed with the generic: valid-ish values reach
# past "no such repository" into the handlers.
SAMPLE_STRINGS = (
    "fuzz-repo",
    "fuzz/nested-repo",
    "latest",
    "v1.0",
    "sha256:" + "0" * 64,
    "123456789012",
    "arn:aws:iam::123456789012:root",
    "arn:aws:iam::123456789012:user/fuzz-user",
    "arn:aws:iam::aws:policy/AdministratorAccess",
    "arn:aws:ecr:us-east-1:123456789012:repository/fuzz-repo",
    "fuzz-user",
    "fuzz-role",
    "/",
    "*",
    "",
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}',
)
WRONG_TYPES: tuple[Any, ...] = (0, -1, 1.5, True, None, "x", [], {}, [[1]], {"a": {"b": 1}}, 2**70, 1e308)
SURROGATES = ("\ud800", "a\udfffb", "\udc00\ud800", "fuzz-\ud83d")


@functools.cache
def service_model(service: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


def operations(service: str) -> list[str]:
    return sorted(service_model(service).operation_names)


def is_query(service: str) -> bool:
    return service_model(service).metadata["protocol"] == "query"


# --- Values by shape ----------------------------------------------------------------------------


def _compiled_pattern(shape: Shape) -> re.Pattern[str] | None:
    """The model's pattern, when Python's re can read it (some use Java's \\p{L})."""
    pattern = shape.metadata.get("pattern")
    # Patterns of wide Unicode ranges match nearly anything and take Hypothesis seconds to build.
    if not pattern or "\\u" in pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _fits(shape: Shape, text: str) -> bool:
    low = shape.metadata.get("min", 0)
    high = shape.metadata.get("max", len(text))
    pattern = _compiled_pattern(shape)
    return low <= len(text) <= high and (pattern is None or pattern.fullmatch(text) is not None)


def _string(shape: Shape) -> st.SearchStrategy[str]:
    """Mostly strings the model accepts (known names first, so requests reach past "not found"),
    some it does not."""
    if shape.enum:
        return st.sampled_from(shape.enum)
    options: list[st.SearchStrategy[str]] = []
    known = [text for text in SAMPLE_STRINGS if _fits(shape, text)]
    if known:
        options.append(st.sampled_from(known))
    pattern = _compiled_pattern(shape)
    if pattern is not None:
        options.append(st.from_regex(pattern, fullmatch=True).filter(lambda text: _fits(shape, text)))
    else:
        low = shape.metadata.get("min", 0)
        options.append(st.text(min_size=low, max_size=max(low, min(shape.metadata.get("max", 20), 20))))
    options.append(st.sampled_from(SAMPLE_STRINGS))
    return st.one_of(options)


def _integer(shape: Shape) -> st.SearchStrategy[int]:
    low = shape.metadata.get("min")
    high = shape.metadata.get("max")
    return st.one_of(st.integers(min_value=low, max_value=high), st.integers(-(2**63), 2**63))


def value_of(shape: Shape, query: bool, depth: int = 0) -> st.SearchStrategy[Any]:
    """A value the shape might accept: right type, mostly within the model's constraints."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        return _structure(shape, query, depth)
    if kind == "list":
        return st.lists(value_of(shape.member, query, depth + 1), max_size=3)
    if kind == "map":
        return st.dictionaries(_string(shape.key), value_of(shape.value, query, depth + 1), max_size=3)
    if kind == "string":
        return _string(shape)
    if kind in ("integer", "long"):
        return _integer(shape)
    if kind == "boolean":
        return st.booleans()
    if kind in ("double", "float"):
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "timestamp":
        epoch = st.integers(min_value=0, max_value=2**32)
        return epoch.map(_iso_time) if query else st.one_of(epoch, st.floats(0, 2**32))
    if kind == "blob":
        return st.binary(max_size=64).map(lambda raw: base64.b64encode(raw).decode())
    raise AssertionError(f"no strategy for shape type {kind}")


def _iso_time(epoch: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _structure(shape: StructureShape, query: bool, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    required = set(shape.required_members)
    members = {name: member for name, member in shape.members.items() if not member.serialization.get("location")}
    return st.fixed_dictionaries(
        {name: value_of(members[name], query, depth + 1) for name in members if name in required},
        optional={}
        if depth >= MAX_DEPTH
        else {name: value_of(members[name], query, depth + 1) for name in members if name not in required},
    )


# --- Breaking a valid-ish body ------------------------------------------------------------------


def _paths(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every place in a body a value sits: dict members and list items, nested."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*path, index)
            yield from _paths(item, (*path, index))


def _replace(value: Any, path: tuple[str | int, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(value[head], rest, new)  # type: ignore[index]
    return copy


def _bad_value() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(WRONG_TYPES),
        st.sampled_from(SURROGATES),
        st.sampled_from(["a" * HUGE, "é" * (HUGE // 2), "\x00", "..", "../../etc/passwd", "%2F"]),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    )


@st.composite
def broken_body(draw: st.DrawFn, operation: OperationModel, query: bool) -> dict[str, Any]:
    """A valid-ish body with one thing wrong: a member of the wrong type, a surrogate or huge string,
    a required member missing, or a member the model does not have."""
    shape = operation.input_shape
    body: dict[str, Any] = draw(value_of(shape, query)) if shape is not None else {}
    paths = list(_paths(body))
    required = list(shape.required_members) if shape is not None else []
    how = draw(st.sampled_from(["replace", "drop", "unknown"] if required else ["replace", "unknown"]))
    if how == "replace" and paths:
        return _replace(body, draw(st.sampled_from(paths)), draw(_bad_value()))
    if how == "drop" and required:
        dropped = draw(st.sampled_from(required))
        return {key: value for key, value in body.items() if key != dropped}
    return {**body, draw(st.sampled_from(["fuzzUnknown", "__type", "", "\ud800"])): draw(_bad_value())}


def bodies(operation: OperationModel, query: bool) -> st.SearchStrategy[dict[str, Any]]:
    shape = operation.input_shape
    valid = value_of(shape, query) if shape is not None else st.just({})
    # Two parts valid-ish to one part broken: the valid ones are what reach the handlers.
    return st.one_of(valid, valid, broken_body(operation, query))


# --- Wire formats -------------------------------------------------------------------------------


def json_body(value: Any) -> bytes:
    # ensure_ascii writes a lone surrogate as the escape "\ud800", which is what reaches the server.
    return json.dumps(value).encode()


def _flatten(prefix: str, value: Any, shape: Shape | None) -> Iterator[tuple[str, str]]:
    """AWS Query parameters: Struct.Member, List.member.N, Map.entry.N.key/value."""
    kind = shape.type_name if shape is not None else None
    if isinstance(value, dict) and kind == "map":
        assert shape is not None
        for index, (key, item) in enumerate(value.items(), start=1):
            yield f"{prefix}.entry.{index}.key", str(key)
            yield from _flatten(f"{prefix}.entry.{index}.value", item, shape.value)
    elif isinstance(value, dict):
        members = shape.members if isinstance(shape, StructureShape) else {}
        for key, item in value.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), item, members.get(str(key)))
    elif isinstance(value, list):
        if not value:
            yield prefix, ""
        member = shape.member if kind == "list" else None  # type: ignore[union-attr]
        for index, item in enumerate(value, start=1):
            yield from _flatten(f"{prefix}.member.{index}", item, member)
    elif isinstance(value, bool):
        yield prefix, "true" if value else "false"
    elif value is None:
        yield prefix, ""
    else:
        yield prefix, str(value)


def query_body(operation: OperationModel, value: dict[str, Any]) -> bytes:
    version = operation.service_model.metadata["apiVersion"]
    pairs = [("Action", operation.name), ("Version", version), *_flatten("", value, operation.input_shape)]
    # surrogatepass: a lone surrogate goes out as the bytes ED A0 80, which are not UTF-8.
    return urllib.parse.urlencode(pairs, encoding="utf-8", errors="surrogatepass").encode()


def encode(operation: OperationModel, value: dict[str, Any]) -> bytes:
    if operation.service_model.metadata["protocol"] == "query":
        return query_body(operation, value)
    return json_body(value)


def malformed_bodies(operation: OperationModel) -> Iterator[tuple[str, bytes]]:
    """Bodies no serializer writes, named for the report: each one every operation gets."""
    if operation.service_model.metadata["protocol"] == "query":
        yield from _malformed_query(operation)
    else:
        yield from _malformed_json(operation)


def _first_string_member(operation: OperationModel) -> str:
    shape = operation.input_shape
    if isinstance(shape, StructureShape):
        for name, member in shape.members.items():
            if member.type_name == "string":
                return name
        if shape.members:
            return next(iter(shape.members))
    return "fuzzUnknown"


def _malformed_json(operation: OperationModel) -> Iterator[tuple[str, bytes]]:
    member = _first_string_member(operation)
    key = json.dumps(member).encode()
    yield "empty body", b""
    yield "not JSON", b"this is not json"
    yield "truncated JSON", b'{"' + member.encode() + b'": "x"'
    yield "top-level array", b"[]"
    yield "top-level string", b'"x"'
    yield "top-level null", b"null"
    yield "huge number", b"{" + key + b": 1e999999}"
    yield "NaN", b"{" + key + b": NaN}"
    yield "lone surrogate", b"{" + key + b': "\\ud800"}'
    yield "lone surrogate key", b'{"\\udfff": 1}'
    yield "invalid UTF-8", b"{" + key + b': "\xff\xfe\xed\xa0\x80"}'
    yield "huge string", json_body({member: "a" * HUGE})
    yield "deep array", b"[" * DEEP
    yield "deep array member", b"{" + key + b": " + b"[" * DEEP + b"]" * DEEP + b"}"
    yield "deep object", b'{"a":' * DEEP + b"1" + b"}" * DEEP
    yield "duplicate keys", b"{" + key + b': "a", ' + key + b": 1}"
    yield "byte order mark", b"\xef\xbb\xbf{}"


def _malformed_query(operation: OperationModel) -> Iterator[tuple[str, bytes]]:
    action = f"Action={operation.name}&Version={operation.service_model.metadata['apiVersion']}".encode()
    member = _first_string_member(operation).encode()
    yield "empty body", b""
    yield "no Version", f"Action={operation.name}".encode()
    yield "wrong Version", f"Action={operation.name}&Version=1999-01-01".encode()
    yield "repeated Action", action + b"&Action=" + operation.name.encode()
    yield "bad percent escape", action + b"&" + member + b"=%zz%"
    yield "lone surrogate", action + b"&" + member + b"=%ED%A0%80"
    yield "invalid UTF-8", action + b"&" + member + b"=%FF%FE"
    yield "raw invalid UTF-8", action + b"&" + member + b"=\xff\xfe"
    yield "huge value", action + b"&" + member + b"=" + b"a" * HUGE
    yield "deep member path", action + b"&" + member + b".member.1" * (DEEP // 5) + b"=x"
    yield "huge member index", action + b"&" + member + b".member.99999999999999999999=x"
    yield "member index zero", action + b"&" + member + b".member.0=x"
    yield "unknown member", action + b"&FuzzUnknown=1"
    yield "JSON body", b'{"Action": "' + operation.name.encode() + b'"}'
    yield "deep JSON body", b"[" * DEEP


# --- Sending ------------------------------------------------------------------------------------


@dataclass
class AwsSender:
    """Signs bodies as the root user and posts them as they are, on one kept-alive connection as
    the AWS SDKs do."""

    server: DockyardServer
    client: httpx.Client

    def send(self, operation: OperationModel, body: bytes, content_type: str | None = None) -> httpx.Response:
        metadata = operation.service_model.metadata
        headers = {"Content-Type": content_type or (FORM_TYPE if metadata["protocol"] == "query" else JSON_TYPE)}
        if metadata["protocol"] == "json":
            headers["X-Amz-Target"] = f"{metadata['targetPrefix']}.{operation.name}"
        request = AWSRequest("POST", self.server.url + "/", data=body, headers=headers)
        credentials = Credentials(self.server.access_key_id, self.server.secret_access_key)
        signing_name = metadata.get("signingName") or metadata["endpointPrefix"]
        SigV4Auth(credentials, signing_name, self.server.region).add_auth(request)
        return self.client.post("/", content=body, headers=dict(request.headers.items()))
