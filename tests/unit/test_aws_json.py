"""The AWS JSON 1.1 layer against botocore's own model, serializer and parser."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import botocore.session
import pytest
from botocore.model import OperationModel, Shape
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from botocore.validate import validate_parameters

from dockyard.doors.aws_json import ServiceModel, ValidationError, error_body

# A valid value for every patterned string shape in ECR's inputs.
PATTERN_SAMPLES = {
    "Base64": "c2FtcGxl",
    "CredentialArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/dockerhub-Ab12Cd",
    "ImageTagMutabilityExclusionFilterValue": "release-*",
    "KmsKeyForRepositoryCreationTemplate": "arn:aws:kms:us-east-1:123456789012:key/0a1b2c3d-0a1b",
    "LayerDigest": "sha256:" + "a" * 64,
    "Prefix": "team-a",
    "PrincipalArn": "arn:aws:iam::123456789012:role/builder",
    "PullThroughCacheRuleRepositoryPrefix": "ecr-public",
    "Region": "us-east-1",
    "RegistryId": "123456789012",
    "RepositoryFilterValue": "team-a/",
    "RepositoryName": "team-a/web-app",
    "ScanningRepositoryFilterValue": "prod-*",
    "SigningProfileArn": "arn:aws:signer:us-east-1:123456789012:/signing-profiles/MyProfile",
    "SigningRepositoryFilterValue": "team-*",
    "UploadId": "0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f",
}
WHEN = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)


@pytest.fixture(scope="module")
def model() -> ServiceModel:
    return ServiceModel()


@pytest.fixture(scope="module")
def botocore_model() -> Any:
    return botocore.session.get_session().get_service_model("ecr")


def example(shape: Shape, depth: int = 0) -> Any:
    """A value satisfying every constraint the model puts on ``shape``."""
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure":
        return {} if depth > 8 else {name: example(m, depth + 1) for name, m in shape.members.items()}
    if kind == "list":
        count = max(int(meta.get("min", 1)), 1)
        return [example(shape.member, depth + 1) for _ in range(count)]
    if kind == "map":
        return {"key": example(shape.value, depth + 1)}
    if kind == "string":
        if "enum" in meta:
            return meta["enum"][0]
        if "pattern" in meta:
            return PATTERN_SAMPLES[shape.name]
        return "x" * max(int(meta.get("min", 1)), 1)
    if kind in ("integer", "long"):
        return int(meta.get("min", 1))
    if kind in ("double", "float"):
        return 1.5
    if kind == "boolean":
        return True
    if kind == "blob":
        return b"layer bytes"
    if kind == "timestamp":
        return WHEN
    raise AssertionError(kind)


def on_the_wire(operation: OperationModel, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as botocore would send them (blobs base64, timestamps epoch)."""
    return json.loads(create_serializer("json").serialize_to_request(params, operation)["body"])


def operations(botocore_model: Any) -> list[OperationModel]:
    return [botocore_model.operation_model(name) for name in botocore_model.operation_names]


def refusal(model: ServiceModel, operation: str, params: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        model.validate_input(operation, params)
    return caught.value


ECR_NAMES = botocore.session.get_session().get_service_model("ecr").operation_names


# --- the model ----------------------------------------------------------------------------------


def test_operation_names_are_the_models(model: ServiceModel, botocore_model: Any) -> None:
    assert model.operation_names() == set(botocore_model.operation_names)
    assert {"CreateRepository", "PutImage", "BatchGetImage", "GetAuthorizationToken"} <= model.operation_names()


def test_operation_for_target(model: ServiceModel) -> None:
    assert model.operation_for_target("AmazonEC2ContainerRegistry_V20150921.PutImage") == "PutImage"
    for target in (None, "", "PutImage", "AmazonEC2ContainerRegistry_V20150921.Nope", "Other.PutImage"):
        with pytest.raises(ValidationError) as caught:
            model.operation_for_target(target)
        assert caught.value.code == "UnknownOperationException"


def test_errors_of(model: ServiceModel) -> None:
    assert model.errors_of("CreateRepository") == [
        "ServerException",
        "InvalidParameterException",
        "InvalidTagParameterException",
        "TooManyTagsException",
        "RepositoryAlreadyExistsException",
        "LimitExceededException",
        "KmsException",
    ]
    with pytest.raises(ValueError):
        model.errors_of("NoSuchOperation")


def test_error_status(model: ServiceModel) -> None:
    assert model.error_status("ServerException") == 500
    assert model.error_status("RepositoryNotFoundException") == 400
    assert model.error_status("InvalidParameterException") == 400


# --- input: every operation against its model ------------------------------------------------------


def test_every_patterned_input_shape_has_a_valid_sample(botocore_model: Any) -> None:
    seen: set[str] = set()

    def walk(shape: Shape) -> None:
        if shape.name in seen:
            return
        seen.add(shape.name)
        if shape.type_name == "structure":
            for member in shape.members.values():
                walk(member)
        elif shape.type_name == "list":
            walk(shape.member)
        elif shape.type_name == "string" and "pattern" in shape.metadata:
            sample = PATTERN_SAMPLES[shape.name]
            assert re.fullmatch(shape.metadata["pattern"], sample), shape.name
            assert shape.metadata.get("min", 0) <= len(sample) <= shape.metadata.get("max", 10**9)

    for operation in operations(botocore_model):
        if operation.input_shape is not None:
            walk(operation.input_shape)


@pytest.mark.parametrize("operation", ECR_NAMES)
def test_every_operation_accepts_a_full_model_example(model: ServiceModel, botocore_model: Any, operation: str) -> None:
    op = botocore_model.operation_model(operation)
    params = example(op.input_shape)
    validate_parameters(params, op.input_shape)  # botocore agrees the example is valid
    body = create_serializer("json").serialize_to_request(params, op)["body"]
    assert model.parse_input(operation, body) == params


@pytest.mark.parametrize("operation", ECR_NAMES)
def test_every_required_member_is_enforced(model: ServiceModel, botocore_model: Any, operation: str) -> None:
    op = botocore_model.operation_model(operation)
    params = on_the_wire(op, example(op.input_shape))
    for name in op.input_shape.required_members:
        error = refusal(model, operation, {k: v for k, v in params.items() if k != name})
        assert error.code == "InvalidParameterException"
        assert error.message == f"Invalid parameter at '{name}' failed to satisfy constraint: 'Member must not be null'"
        assert refusal(model, operation, {**params, name: None}).message == error.message


@pytest.mark.parametrize("operation", ECR_NAMES)
def test_every_top_level_enum_is_enforced(model: ServiceModel, botocore_model: Any, operation: str) -> None:
    op = botocore_model.operation_model(operation)
    params = on_the_wire(op, example(op.input_shape))
    for name, member in op.input_shape.members.items():
        values = member.metadata.get("enum")
        if not values:
            continue
        error = refusal(model, operation, {**params, name: "NOT_A_VALUE"})
        prefix = f"Invalid parameter at '{name}' failed to satisfy constraint: 'Member must satisfy enum value set: ["
        assert error.message.startswith(prefix)
        assert sorted(error.message[len(prefix) : -2].split(", ")) == sorted(values)


@pytest.mark.parametrize("operation", ECR_NAMES)
def test_every_top_level_length_limit_is_enforced(model: ServiceModel, botocore_model: Any, operation: str) -> None:
    op = botocore_model.operation_model(operation)
    params = on_the_wire(op, example(op.input_shape))
    for name, member in op.input_shape.members.items():
        if member.name == "RepositoryName":
            continue  # ECR's own check, tested separately
        if member.type_name == "list" and "max" in member.metadata:
            too_many = [params[name][0]] * (member.metadata["max"] + 1)
            error = refusal(model, operation, {**params, name: too_many})
            limit = member.metadata["max"]
            assert error.message == (
                f"Invalid parameter at '{name}' failed to satisfy constraint: "
                f"'Member must have length less than or equal to {limit}'"
            )
        if member.type_name in ("integer", "long") and "min" in member.metadata:
            error = refusal(model, operation, {**params, name: member.metadata["min"] - 1})
            assert error.message == (
                f"Invalid parameter at '{name}' failed to satisfy constraint: "
                f"'Member must have value greater than or equal to {member.metadata['min']}'"
            )


# --- input: messages captured from real ECR ----------------------------------------------------------

REPO = "team-a/web-app"


@pytest.mark.parametrize(
    ("operation", "params", "message"),
    [
        (
            "CreateRepository",
            {"repositoryName": "Bad_Name!"},
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular "
            "expression '[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*''",
        ),
        (
            "CreateRepository",
            {"repositoryName": "a"},
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
            "'must have length greater than or equal to 2'",
        ),
        (
            "DescribeRepositories",
            {"repositoryNames": ["ok-name", "123456789012.dkr.ecr.us-east-2.amazonaws.com/simple_model:latest"]},
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular "
            "expression '[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*''",
        ),
        (
            "BatchDeleteImage",
            {"repositoryName": REPO, "imageIds": [{"imageTag": f"t{i}"} for i in range(101)]},
            "Invalid parameter at 'imageIds' failed to satisfy constraint: "
            "'Member must have length less than or equal to 100'",
        ),
        (
            "BatchGetImage",
            {"repositoryName": REPO, "imageIds": []},
            "Invalid parameter at 'imageIds' failed to satisfy constraint: "
            "'Member must have length greater than or equal to 1'",
        ),
        (
            "ListImages",
            {"repositoryName": REPO, "maxResults": 10000},
            "Invalid parameter at 'maxResults' failed to satisfy constraint: "
            "'Member must have value less than or equal to 1000'",
        ),
        (
            "GetAuthorizationToken",
            {"registryIds": ["012345678901", "12345"]},
            "Invalid parameter at 'registryIds' failed to satisfy constraint: "
            "'Member must satisfy constraint: [Member must satisfy regular expression pattern: [0-9]{12}]'",
        ),
        (
            "PutLifecyclePolicy",
            {"repositoryName": REPO, "lifecyclePolicyText": ""},
            "Invalid parameter at 'lifecyclePolicyText' failed to satisfy constraint: "
            "'Member must have length greater than or equal to 100'",
        ),
        (
            "PutImageTagMutability",
            {"repositoryName": REPO, "imageTagMutability": "WRONG"},
            "Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member must satisfy "
            "enum value set: [IMMUTABLE, MUTABLE, MUTABLE_WITH_EXCLUSION, IMMUTABLE_WITH_EXCLUSION]'",
        ),
        (
            "TagResource",
            {"resourceArn": "arn", "tags": [{"Key": "env", "Value": "x"}, {"Value": "prod"}]},
            "Invalid parameter at 'tags.2.member.key' failed to satisfy constraint: 'Member must not be null'",
        ),
        (
            "BatchGetImage",
            {"repositoryName": REPO, "imageIds": [{"imageTag": "ok"}, {"imageTag": "x" * 301}]},
            "Invalid parameter at 'imageIds.2.member.imageTag' failed to satisfy constraint: "
            "'Member must have length less than or equal to 300'",
        ),
        (
            "CreateRepository",
            {"repositoryName": REPO, "encryptionConfiguration": {"encryptionType": "AES128"}},
            "Invalid parameter at 'encryptionConfiguration.encryptionType' failed to satisfy constraint: "
            "'Member must satisfy enum value set: [KMS, AES256, KMS_DSSE]'",
        ),
        (
            "CreateRepository",
            {"repositoryName": REPO, "encryptionConfiguration": {}},
            "Invalid parameter at 'encryptionConfiguration.encryptionType' failed to satisfy constraint: "
            "'Member must not be null'",
        ),
    ],
)
def test_constraint_messages(model: ServiceModel, operation: str, params: dict[str, Any], message: str) -> None:
    error = refusal(model, operation, params)
    assert (error.code, error.message, error.status) == ("InvalidParameterException", message, 400)


def test_generic_violations_come_before_repository_name_checks(model: ServiceModel) -> None:
    error = refusal(model, "ListImages", {"repositoryName": "Bad!", "maxResults": 0})
    assert "'maxResults'" in (error.message or "")


def test_first_violation_in_model_order_is_reported(model: ServiceModel) -> None:
    error = refusal(model, "PutImage", {"repositoryName": REPO, "imageTag": "", "registryId": "x"})
    assert error.message.startswith("Invalid parameter at 'registryId'")


def test_lengths_count_utf16_units(model: ServiceModel) -> None:
    fits = "😀" * 150  # 300 UTF-16 units
    params = {"repositoryName": REPO, "imageManifest": "{}", "imageTag": fits}
    assert model.validate_input("PutImage", params)["imageTag"] == fits
    error = refusal(model, "PutImage", {**params, "imageTag": fits + "x"})
    assert "less than or equal to 300" in (error.message or "")


# --- input: reading the body -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", None),
        (b"{", None),
        (b"not json", None),
        (b"null", None),
        (b'"x"', None),
        (b"1", None),
        (b'{"repositoryName": NaN}', None),
        (b"\xff", None),
        (b"[]", "Start of list found where not expected"),
        (b'{"repositoryName": 1}', "NUMBER_VALUE can not be converted to a String"),
        (b'{"repositoryName": 1.5}', "NUMBER_VALUE can not be converted to a String"),
        (b'{"repositoryName": true}', "TRUE_VALUE can not be converted to a String"),
        (b'{"repositoryName": false}', "FALSE_VALUE can not be converted to a String"),
        (b'{"repositoryName": ["x"]}', "Start of list found where not expected"),
        (b'{"repositoryName": {"a": 1}}', "Start of structure or map found where not expected."),
        (b'{"repositoryName": "r1", "maxResults": "1"}', "STRING_VALUE can not be converted to an Integer"),
        (b'{"repositoryName": "r1", "maxResults": true}', "TRUE_VALUE can not be converted to an Integer"),
        (b'{"repositoryName": "r1", "maxResults": [1]}', "Start of list found where not expected"),
        (b'{"repositoryName": "r1", "maxResults": {}}', "Start of structure or map found where not expected."),
        (b'{"repositoryName": "r1", "maxResults": 3000000000}', "NUMBER_VALUE can not be converted to an Integer"),
        (b'{"repositoryName": "r1", "filter": "x"}', "Expected null"),
        (b'{"repositoryName": "r1", "filter": 1}', "Expected null"),
        (b'{"repositoryName": "r1", "filter": []}', "Start of list found where not expected"),
        (b'{"repositoryName": "r1", "filter": {"tagStatus": 1}}', "NUMBER_VALUE can not be converted to a String"),
    ],
)
def test_serialization_errors(model: ServiceModel, body: bytes, message: str | None) -> None:
    with pytest.raises(ValidationError) as caught:
        model.parse_input("ListImages", body)
    assert (caught.value.code, caught.value.message) == ("SerializationException", message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"repositoryNames": "x"}', "Expected list or null"),
        (b'{"repositoryNames": 1}', "Expected list or null"),
        (b'{"repositoryNames": {}}', "Start of structure or map found where not expected."),
        (b'{"repositoryNames": [1]}', "NUMBER_VALUE can not be converted to a String"),
        (b'{"repositoryNames": [["a"]]}', "Start of list found where not expected"),
    ],
)
def test_list_serialization_errors(model: ServiceModel, body: bytes, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        model.parse_input("DescribeRepositories", body)
    assert (caught.value.code, caught.value.message) == ("SerializationException", message)


def test_boolean_and_blob_serialization_errors(model: ServiceModel) -> None:
    def fails(operation: str, params: dict[str, Any]) -> str | None:
        return refusal(model, operation, params).message

    assert fails("DeleteRepository", {"repositoryName": REPO, "force": "true"}) == (
        "STRING_VALUE can not be converted to a Boolean"
    )
    assert fails("DeleteRepository", {"repositoryName": REPO, "force": 1}) == (
        "NUMBER_VALUE can not be converted to a Boolean"
    )
    upload = {"repositoryName": REPO, "uploadId": PATTERN_SAMPLES["UploadId"], "partFirstByte": 0, "partLastByte": 1}
    assert fails("UploadLayerPart", {**upload, "layerPartBlob": 5}) == "NUMBER_VALUE can not be converted to a Blob"
    assert fails("UploadLayerPart", {**upload, "layerPartBlob": "YWJ"}) == (
        "'YWJ' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 3"
    )
    assert fails("UploadLayerPart", {**upload, "layerPartBlob": "YW*j"}) == (
        "'YW*j' can not be converted to a Blob: Invalid Base64 character: '*'"
    )


def test_reading_normalises(model: ServiceModel) -> None:
    body = {
        "repositoryName": REPO,
        "maxResults": 7.9,
        "nextToken": None,
        "unknownMember": {"anything": [1, 2]},
        "filter": {"tagStatus": "TAGGED", "extra": 1},
    }
    assert model.validate_input("ListImages", body) == {
        "repositoryName": REPO,
        "maxResults": 7,
        "filter": {"tagStatus": "TAGGED"},
    }
    names = model.validate_input("DescribeRepositories", {"repositoryNames": ["ab", None, "cd"]})
    assert names == {"repositoryNames": ["ab", "cd"]}
    upload = {
        "repositoryName": REPO,
        "uploadId": PATTERN_SAMPLES["UploadId"],
        "partFirstByte": 0,
        "partLastByte": 2,
        "layerPartBlob": "YWJj",
    }
    assert model.validate_input("UploadLayerPart", upload)["layerPartBlob"] == b"abc"


def test_unknown_operation_is_a_programming_error(model: ServiceModel) -> None:
    with pytest.raises(ValueError):
        model.validate_input("Nope", {})


def test_validation_exception_format_for_services_without_invalid_parameter() -> None:
    kms = ServiceModel("kms")  # models no InvalidParameterException, like Coral's default
    error = refusal(kms, "CreateAlias", {"TargetKeyId": "k"})
    assert error.code == "ValidationException"
    assert error.message == (
        "1 validation error detected: Value null at 'aliasName' failed to satisfy constraint: Member must not be null"
    )
    error = refusal(kms, "CreateAlias", {"AliasName": "bad alias!", "TargetKeyId": ""})
    assert error.message == (
        "2 validation errors detected: Value 'bad alias!' at 'aliasName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$; Value '' at 'targetKeyId' "
        "failed to satisfy constraint: Member must have length greater than or equal to 1"
    )


def test_models_with_non_python_patterns_are_refused() -> None:
    with pytest.raises(ValueError, match="not a Python regex"):
        ServiceModel("dynamodb")


def test_other_protocols_are_refused() -> None:
    with pytest.raises(ValueError):
        ServiceModel("iam")


# --- output ----------------------------------------------------------------------------------------


def parse_with_botocore(body: bytes, shape: Shape | None, status: int = 200) -> dict[str, Any]:
    response = {"body": body, "headers": {}, "status_code": status}
    parsed = create_parser("json").parse(response, shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


@pytest.mark.parametrize("operation", ECR_NAMES)
def test_botocore_reads_back_every_output(model: ServiceModel, botocore_model: Any, operation: str) -> None:
    shape = botocore_model.operation_model(operation).output_shape
    result = example(shape) if shape is not None else {}
    body = model.serialize_output(operation, result)
    json.loads(body)
    assert parse_with_botocore(body, shape) == result


def test_output_drops_nulls_and_unmodelled_members(model: ServiceModel) -> None:
    result = {
        "repository": {"repositoryName": REPO, "registryId": None, "secret": "x", "createdAt": WHEN},
        "extra": 1,
    }
    body = model.serialize_output("CreateRepository", result)
    assert json.loads(body) == {"repository": {"repositoryName": REPO, "createdAt": 1714979289.123}}


def test_timestamps_are_java_doubles(model: ServiceModel) -> None:
    result = {
        "authorizationData": [
            {
                "authorizationToken": "QVdTOnRva2Vu",
                "expiresAt": datetime(2025, 2, 3, 16, 1, 31, 500000, tzinfo=UTC),
                "proxyEndpoint": "https://123456789012.dkr.ecr.us-west-2.amazonaws.com",
            }
        ]
    }
    body = model.serialize_output("GetAuthorizationToken", result)
    assert body == (
        b'{"authorizationData":[{"authorizationToken":"QVdTOnRva2Vu","expiresAt":1.7385984915E9,'
        b'"proxyEndpoint":"https://123456789012.dkr.ecr.us-west-2.amazonaws.com"}]}'
    )
    shape = model.model.operation_model("GetAuthorizationToken").output_shape
    expires = parse_with_botocore(body, shape)["authorizationData"][0]["expiresAt"]
    assert expires == datetime(2025, 2, 3, 16, 1, 31, 500000, tzinfo=UTC)


def test_naive_datetimes_are_utc_and_numbers_pass_through(model: ServiceModel) -> None:
    naive = {"repository": {"createdAt": datetime(2024, 1, 1)}}
    assert json.loads(model.serialize_output("CreateRepository", naive)) == {"repository": {"createdAt": 1704067200}}
    epoch = {"repository": {"createdAt": 1704067200.5}}
    assert model.serialize_output("CreateRepository", epoch) == b'{"repository":{"createdAt":1.7040672005E9}}'


def test_unicode_is_written_as_utf8(model: ServiceModel) -> None:
    body = model.serialize_output("GetRepositoryPolicy", {"policyText": 'héllo "q"\n'})
    assert body == '{"policyText":"héllo \\"q\\"\\n"}'.encode()
    lone = model.serialize_output("GetRepositoryPolicy", {"policyText": "é\ud800"})
    assert lone == b'{"policyText":"\\u00e9\\ud800"}'
    assert json.loads(lone) == {"policyText": "é\ud800"}


# --- errors ----------------------------------------------------------------------------------------


def test_error_body_reads_back_as_boto_error() -> None:
    body = error_body("RepositoryNotFoundException", "The repository with name 'x' does not exist")
    assert json.loads(body) == {
        "__type": "RepositoryNotFoundException",
        "message": "The repository with name 'x' does not exist",
    }
    assert parse_with_botocore(body, None, 400)["Error"] == {
        "Code": "RepositoryNotFoundException",
        "Message": "The repository with name 'x' does not exist",
    }


def test_error_body_extra_members() -> None:
    body = error_body("InvalidLayerPartException", "bad part", lastValidByteReceived=41, uploadId=None)
    assert json.loads(body) == {
        "__type": "InvalidLayerPartException",
        "message": "bad part",
        "lastValidByteReceived": 41,
    }


def test_validation_error_bodies(model: ServiceModel) -> None:
    serialization = refusal(model, "ListImages", {"repositoryName": 1})
    assert json.loads(serialization.body()) == {
        "__type": "SerializationException",
        "Message": "NUMBER_VALUE can not be converted to a String",
    }
    assert parse_with_botocore(serialization.body(), None, 400)["Error"]["Message"] == (
        "NUMBER_VALUE can not be converted to a String"
    )
    silent = ValidationError("SerializationException", None)
    assert silent.body() == b'{"__type":"SerializationException"}'
    assert parse_with_botocore(silent.body(), None, 400)["Error"] == {"Code": "SerializationException", "Message": ""}
    invalid = refusal(model, "ListImages", {"repositoryName": REPO, "maxResults": 0})
    assert parse_with_botocore(invalid.body(), None, 400)["Error"] == {
        "Code": "InvalidParameterException",
        "Message": "Invalid parameter at 'maxResults' failed to satisfy constraint: "
        "'Member must have value greater than or equal to 1'",
    }
