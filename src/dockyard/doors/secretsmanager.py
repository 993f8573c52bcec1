"""The Secrets Manager door: AWS JSON 1.1 (`X-Amz-Target: secretsmanager.<Operation>`) on the
same endpoint as ECR, checked against botocore's model as the ECR door is.

Secret values never reach the audit trail or the logs: the parameters and response reported for
an event carry SecretString and SecretBinary as CloudTrail records them,
"HIDDEN_DUE_TO_SECURITY_REASONS"; CloudTrail also writes Secrets Manager's member names in
camelCase (secretId), and so does this door."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dockyard.auth.sigv4 import SignatureError
from dockyard.core.errors import DockyardError
from dockyard.core.identity.caller import Caller
from dockyard.core.secrets import secrets
from dockyard.core.services import Services
from dockyard.doors.aws_auth import authenticate
from dockyard.doors.aws_json import REQUEST_TOO_LARGE_EXCEPTION, ServiceModel, ValidationError, error_body
from dockyard.doors.bodies import ECR_BODY_LIMIT, BodyTooLarge, read_body, refused
from dockyard.doors.throttle import Throttled
from dockyard.observe.classify import SECRETS_MANAGER_SOURCE, SECRETS_MANAGER_TARGET_PREFIX
from dockyard.observe.context import report, request_id_of

CONTENT_TYPE = "application/x-amz-json-1.1"
HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"
_SECRET_MEMBERS = frozenset({"SecretString", "SecretBinary"})

Params = dict[str, Any]
Operation = Callable[[Services, Caller, Params], Awaitable[dict[str, Any]]]


def _value(p: Params) -> secrets.NewValue:
    return secrets.NewValue(p.get("SecretString"), p.get("SecretBinary"), p.get("ClientRequestToken"))


async def create_secret(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await secrets.create_secret(
        svc, caller, p["Name"], _value(p), p.get("Description"), p.get("KmsKeyId"), p.get("Tags") or []
    )


async def get_secret_value(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await secrets.get_secret_value(svc, caller, p["SecretId"], p.get("VersionId"), p.get("VersionStage"))


async def put_secret_value(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await secrets.put_secret_value(svc, caller, p["SecretId"], _value(p), p.get("VersionStages"))


async def update_secret(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await secrets.update_secret(svc, caller, p["SecretId"], _value(p), p.get("Description"), p.get("KmsKeyId"))


async def describe_secret(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await secrets.describe_secret(svc, caller, p["SecretId"])


async def list_secrets(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await secrets.list_secrets(
        svc,
        caller,
        bool(p.get("IncludePlannedDeletion", False)),
        p.get("Filters") or [],
        p.get("MaxResults"),
        p.get("NextToken"),
        p.get("SortOrder"),
    )


async def delete_secret(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await secrets.delete_secret(
        svc, caller, p["SecretId"], p.get("RecoveryWindowInDays"), bool(p.get("ForceDeleteWithoutRecovery", False))
    )


async def restore_secret(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await secrets.restore_secret(svc, caller, p["SecretId"])


async def tag_resource(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await secrets.tag_resource(svc, caller, p["SecretId"], p["Tags"])


async def untag_resource(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await secrets.untag_resource(svc, caller, p["SecretId"], p["TagKeys"])


OPERATIONS: dict[str, Operation] = {
    "CreateSecret": create_secret,
    "GetSecretValue": get_secret_value,
    "PutSecretValue": put_secret_value,
    "UpdateSecret": update_secret,
    "DescribeSecret": describe_secret,
    "ListSecrets": list_secrets,
    "DeleteSecret": delete_secret,
    "RestoreSecret": restore_secret,
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
}


def for_audit(value: Any) -> Any:
    """`value` as CloudTrail records a Secrets Manager call: camelCase members, values hidden."""
    if isinstance(value, dict):
        return {
            key[:1].lower() + key[1:]: (HIDDEN if key in _SECRET_MEMBERS else for_audit(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [for_audit(item) for item in value]
    return value


class SecretsManagerDoor:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.model = ServiceModel("secretsmanager", coral_constraint_errors=True)

    def _respond(self, status: int, body: bytes, request_id: str) -> Response:
        return Response(body, status, headers={"x-amzn-RequestId": request_id}, media_type=CONTENT_TYPE)

    def _error(self, status: int, code: str, message: str | None, request_id: str) -> Response:
        return self._respond(status, error_body(code, message, message_key="Message"), request_id)

    async def handle(self, request: Request, target: str) -> Response:
        request_id = request_id_of(request)
        report(request, source=SECRETS_MANAGER_SOURCE)
        try:
            body = await read_body(request, ECR_BODY_LIMIT)
        except BodyTooLarge as exc:
            return refused(self._error(413, REQUEST_TOO_LARGE_EXCEPTION, exc.message, request_id))
        try:
            caller = await authenticate(self.svc, request, body, ("secretsmanager",))
        except (SignatureError, Throttled) as exc:
            error = exc.render("json")
            return self._error(error.status, error.code, error.message, request_id)
        name = target.removeprefix(SECRETS_MANAGER_TARGET_PREFIX)
        operation = OPERATIONS.get(name)
        if operation is None:
            return self._respond(400, error_body("UnknownOperationException", None), request_id)
        try:
            params = self.model.parse_input(name, body)
            report(request, params=for_audit(params))
            result = await operation(self.svc, caller, params)
            report(request, response=for_audit(result))
        except ValidationError as exc:
            return self._respond(exc.status, exc.body(), request_id)
        except DockyardError as exc:
            return self._error(self.model.error_status(exc.code), exc.code, exc.message, request_id)
        return self._respond(200, self.model.serialize_output(name, result), request_id)
