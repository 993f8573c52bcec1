"""Client JSON: one loader, and every parse of client JSON refusing deep nesting and lone
surrogates with its own API's error instead of a RecursionError or UnicodeEncodeError."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.audit import trail
from dockyard.core import client_json as wire_json
from dockyard.core import paging
from dockyard.core.errors import InvalidParameterException
from dockyard.core.identity import iam_common
from dockyard.core.identity.iam_errors import InvalidInput
from dockyard.core.operations import lifecycle
from dockyard.core.operations.creation_templates import _check_policies
from dockyard.core.registry.manifests import ManifestError, parse_manifest
from dockyard.doors.aws_json import ServiceModel, ValidationError
from dockyard.policy.language import PolicyError, parse_identity_policy, parse_resource_policy

DEEP = "[" * 100_000
DEEP_OBJECT = '{"a":' * 50_000 + "1" + "}" * 50_000
LONE_SURROGATES = ['"\\ud800"', '{"k":"fuzz\\udfff"}', '["ok","\\uDBFF x"]', '{"\\ud800":1}']


# --- the loader ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [DEEP, DEEP_OBJECT, "[" * 101 + "]" * 101, '{"a":' * 101 + "1" + "}" * 101],
    ids=["array-100000", "object-50000", "array-101", "object-101"],
)
def test_nesting_past_the_limit_is_refused(text: str) -> None:
    with pytest.raises(wire_json.MalformedJson, match="nested deeper"):
        wire_json.loads(text)


def test_nesting_up_to_the_limit_is_read() -> None:
    depth = wire_json.MAX_DEPTH
    assert wire_json.loads("[" * depth + "]" * depth) is not None
    assert wire_json.nesting_depth("[" * depth + "]" * depth) == depth


def test_brackets_inside_strings_are_not_nesting() -> None:
    text = json.dumps({"a": "[" * 500, "b": ["]{" * 300, '\\"[[']})
    assert wire_json.nesting_depth(text) == 2
    assert wire_json.loads(text)["a"] == "[" * 500


@pytest.mark.parametrize("text", LONE_SURROGATES)
def test_lone_surrogates_are_refused(text: str) -> None:
    with pytest.raises(wire_json.MalformedJson, match="surrogate"):
        wire_json.loads(text)
    with pytest.raises(wire_json.MalformedJson):
        wire_json.loads(text.encode())


def test_surrogate_pairs_and_escaped_backslashes_are_text() -> None:
    assert wire_json.loads('"\\ud83d\\ude00"') == "\U0001f600"
    assert wire_json.loads('"\\\\ud800"') == "\\ud800"


@pytest.mark.parametrize("data", [b"\xff{}", b"NaN", b"[Infinity]", b'{"a":-Infinity}', b'{"a":', b""])
def test_what_is_not_json_is_refused(data: bytes) -> None:
    with pytest.raises(wire_json.MalformedJson):
        wire_json.loads(data)


def test_a_raw_surrogate_in_a_str_is_refused() -> None:
    with pytest.raises(wire_json.MalformedJson):
        wire_json.loads('"\ud800"')


def test_refusal_is_a_value_error() -> None:
    # Callers that already treat ValueError as "not JSON" keep working unchanged.
    assert issubclass(wire_json.MalformedJson, ValueError)


def test_a_body_of_millions_of_brackets_is_measured_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(wire_json.MalformedJson):
        wire_json.loads("[" * 14_000_000)
    wide = "[" + "[]," * 1_000_000 + "[]]"
    assert len(wire_json.loads(wide)) == 1_000_001
    assert time.monotonic() - started < 30  # generous: seconds of CPU on a loaded machine


@settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=200)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_what_json_dumps_writes_reads_back(value: Any) -> None:
    text = json.dumps(value)
    depth = wire_json.nesting_depth(text)
    if depth <= wire_json.MAX_DEPTH:
        assert wire_json.loads(text) == value


# --- every parse of client JSON ------------------------------------------------------------------


def _token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


BAD_DOCUMENTS = {
    "deep-array": DEEP,
    "deep-object": DEEP_OBJECT,
    "deep-statement": '{"Version":"2012-10-17","Statement":' + DEEP,
}


@pytest.mark.parametrize("text", BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS.keys())
@pytest.mark.parametrize(
    ("parse", "error"),
    [
        (lambda t: paging.decode_token(_token(t)), InvalidParameterException),
        (lambda t: trail.decode_token(_token(t)), trail.InvalidToken),
        (lambda t: iam_common.decode_marker(_token(t)), InvalidInput),
        (lambda t: lifecycle.parse_policy(t), InvalidParameterException),
        (lambda t: _check_policies(None, t), InvalidParameterException),
        (lambda t: _check_policies(t, None), InvalidParameterException),
        (lambda t: parse_identity_policy(t), PolicyError),
        (lambda t: parse_resource_policy(t), PolicyError),
        (lambda t: parse_manifest(t.encode(), "application/vnd.oci.image.manifest.v1+json"), ManifestError),
    ],
    ids=["ecr-token", "cloudtrail-token", "iam-marker", "lifecycle", "template-lifecycle", "template-policy",
         "identity-policy", "resource-policy", "manifest"],
)  # fmt: skip
def test_each_parse_answers_with_its_own_error(text: str, parse: Callable[[str], Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        parse(text)


def test_a_lone_surrogate_in_an_otherwise_valid_manifest_or_policy_is_refused() -> None:
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 1, "digest": "sha256:" + "a" * 64}
    config = {**layer, "mediaType": "application/vnd.oci.image.config.v1+json"}
    manifest = {"schemaVersion": 2, "config": config, "layers": [layer], "annotations": {"a": "x\ud800"}}
    with pytest.raises(ManifestError):
        parse_manifest(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    statement = {"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:*:*:repository/x\udfff"}
    with pytest.raises(PolicyError):
        parse_identity_policy(json.dumps({"Version": "2012-10-17", "Statement": [statement]}))


def test_a_manifest_too_deep_is_manifest_invalid() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(DEEP.encode(), None)
    assert caught.value.code == "MANIFEST_INVALID"


@pytest.fixture(scope="module")
def ecr() -> ServiceModel:
    return ServiceModel("ecr")


@pytest.mark.parametrize(
    "body",
    [DEEP, DEEP_OBJECT, '{"repositoryName":"fuzz\\ud800"}', '{"x":' + DEEP],
    ids=["deep-array", "deep-object", "surrogate", "deep-member"],
)
def test_an_ecr_body_too_deep_or_with_a_surrogate_is_a_serialization_error(ecr: ServiceModel, body: str) -> None:
    for operation in sorted(ecr.operation_names()):
        with pytest.raises(ValidationError) as caught:
            ecr.parse_input(operation, body.encode())
        assert (caught.value.code, caught.value.status, caught.value.message) == ("SerializationException", 400, None)
