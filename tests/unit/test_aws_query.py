"""The AWS Query protocol module against botocore itself: what botocore serialises we read back,
what we write botocore parses, and constraint errors read as IAM's front end words them."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import botocore.session
import pytest
from botocore.parsers import QueryParser
from botocore.serialize import QuerySerializer

from dockyard.doors.aws_query import QueryModel, QueryValidationError, iso8601

IAM = QueryModel("iam")
STS = QueryModel("sts")


def _form(service: str, operation: str, params: dict[str, Any]) -> dict[str, str]:
    model = botocore.session.get_session().get_service_model(service)
    request = QuerySerializer().serialize_to_request(params, model.operation_model(operation))
    return {name: str(value) for name, value in request["body"].items()}


def _parse(service: str, operation: str, body: bytes, status: int = 200) -> dict[str, Any]:
    model = botocore.session.get_session().get_service_model(service)
    shape = model.operation_model(operation).output_shape
    return QueryParser().parse({"body": body, "headers": {}, "status_code": status}, shape)


def test_reads_back_what_botocore_serialises() -> None:
    params = {
        "PolicySourceArn": "arn:aws:iam::123456789012:user/bob",
        "ActionNames": ["ecr:BatchGetImage", "ecr:PutImage"],
        "ResourceArns": ["arn:aws:ecr:us-east-1:123456789012:repository/x"],
        "ContextEntries": [
            {"ContextKeyName": "aws:SourceIp", "ContextKeyValues": ["10.0.0.1"], "ContextKeyType": "ip"}
        ],
        "MaxItems": 5,
    }
    assert IAM.parse_input("SimulatePrincipalPolicy", _form("iam", "SimulatePrincipalPolicy", params)) == params


def test_reads_tags_and_booleans() -> None:
    params = {"UserName": "bob", "Path": "/dev/", "Tags": [{"Key": "team", "Value": "a"}]}
    assert IAM.parse_input("CreateUser", _form("iam", "CreateUser", params)) == params
    listing = {"Scope": "AWS", "OnlyAttached": True}
    assert IAM.parse_input("ListPolicies", _form("iam", "ListPolicies", listing)) == listing


def test_constraint_errors_are_worded_as_iam_words_them() -> None:
    with pytest.raises(QueryValidationError) as caught:
        IAM.parse_input("CreateUser", {"Action": "CreateUser", "UserName": "has space"})
    assert caught.value.code == "ValidationError"
    assert caught.value.message == (
        "1 validation error detected: Value 'has space' at 'userName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [\\w+=,.@-]+"
    )
    with pytest.raises(QueryValidationError) as caught:
        IAM.parse_input("UpdateAccessKey", {"AccessKeyId": "AKIAEXAMPLEEXAMPLE01", "Status": "Paused"})
    assert "Member must satisfy enum value set: [Active, Inactive, Expired]" in caught.value.message
    with pytest.raises(QueryValidationError) as caught:
        IAM.parse_input("CreateUser", {"UserName": "x" * 65})
    assert caught.value.message.endswith("Member must have length less than or equal to 64")


def test_missing_and_several_violations() -> None:
    with pytest.raises(QueryValidationError) as caught:
        IAM.parse_input("AddUserToGroup", {"UserName": "a b"})
    assert caught.value.message.startswith("2 validation errors detected: ")
    assert "Value null at 'groupName' failed to satisfy constraint: Member must not be null" in caught.value.message


def test_botocore_parses_what_we_write() -> None:
    result = {
        "User": {
            "Path": "/dev/",
            "UserName": "bob",
            "UserId": "AIDAEXAMPLEEXAMPLE123",
            "Arn": "arn:aws:iam::123456789012:user/dev/bob",
            "CreateDate": 1700000000.0,
            "Tags": [{"Key": "team", "Value": "<a&b>"}],
        }
    }
    parsed = _parse("iam", "CreateUser", IAM.serialize_output("CreateUser", result, "req-1"))
    assert parsed["User"]["UserName"] == "bob"
    assert parsed["User"]["Tags"] == [{"Key": "team", "Value": "<a&b>"}]
    assert parsed["User"]["CreateDate"].timestamp() == 1700000000.0
    assert parsed["ResponseMetadata"]["RequestId"] == "req-1"


def test_policy_documents_are_url_encoded() -> None:
    document = '{"Version": "2012-10-17", "Statement": []}'
    body = IAM.serialize_output(
        "GetUserPolicy", {"UserName": "bob", "PolicyName": "p", "PolicyDocument": document}, "r"
    )
    assert b"%7B%22Version%22%3A%20%222012-10-17%22" in body
    # botocore's parser hands the text on; its after-call handler unquotes it and loads the JSON.
    assert unquote(_parse("iam", "GetUserPolicy", body)["PolicyDocument"]) == document


def test_lists_and_booleans_parse() -> None:
    result = {
        "AccessKeyMetadata": [{"UserName": "bob", "AccessKeyId": "AKIA1", "Status": "Active", "CreateDate": 0.0}],
        "IsTruncated": False,
    }
    parsed = _parse("iam", "ListAccessKeys", IAM.serialize_output("ListAccessKeys", result, "r"))
    assert parsed["AccessKeyMetadata"][0]["AccessKeyId"] == "AKIA1"
    assert parsed["IsTruncated"] is False


def test_operations_without_output_have_only_metadata() -> None:
    body = IAM.serialize_output("DeleteUser", {}, "req-2")
    assert body == (
        b'<DeleteUserResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
        b"<ResponseMetadata><RequestId>req-2</RequestId></ResponseMetadata></DeleteUserResponse>"
    )


def test_error_document() -> None:
    body = STS.error_body("AccessDenied", "no & no", "req-3")
    parsed = QueryParser().parse({"body": body, "headers": {}, "status_code": 403}, None)
    assert parsed["Error"] == {"Type": "Sender", "Code": "AccessDenied", "Message": "no & no"}
    assert parsed["ResponseMetadata"]["RequestId"] == "req-3"
    assert b'xmlns="https://sts.amazonaws.com/doc/2011-06-15/"' in body


def test_timestamps_are_iso8601_seconds() -> None:
    assert iso8601(1700000000.9) == "2023-11-14T22:13:20Z"
