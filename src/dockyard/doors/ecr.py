"""The ECR door: AWS JSON 1.1 (`X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Operation>`).

botocore's service model is the contract: input is validated against it and output shaped by it.
Each operation below only maps the request's members onto a core call."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dockyard.auth.sigv4 import SignatureError
from dockyard.core import authorization, repositories
from dockyard.core.caller import Caller
from dockyard.core.services import Services
from dockyard.doors.aws_auth import authenticate
from dockyard.doors.aws_json import ServiceModel, ValidationError, error_body
from dockyard.errors import DockyardError

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
CONTENT_TYPE = "application/x-amz-json-1.1"

Operation = Callable[[Services, Caller, dict[str, Any]], Awaitable[dict[str, Any]]]


def _registry(caller: Caller, params: dict[str, Any]) -> str:
    return params.get("registryId") or caller.account_id


async def create_repository(svc: Services, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
    encryption = p.get("encryptionConfiguration") or {}
    repository = await repositories.create_repository(
        svc,
        caller,
        _registry(caller, p),
        p["repositoryName"],
        image_tag_mutability=p.get("imageTagMutability", "MUTABLE"),
        scan_on_push=bool((p.get("imageScanningConfiguration") or {}).get("scanOnPush", False)),
        encryption_type=encryption.get("encryptionType", "AES256"),
        kms_key=encryption.get("kmsKey"),
        tags=p.get("tags"),
    )
    return {"repository": repository}


async def describe_repositories(svc: Services, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
    return await repositories.describe_repositories(
        svc, caller, _registry(caller, p), p.get("repositoryNames"), p.get("maxResults"), p.get("nextToken")
    )


async def delete_repository(svc: Services, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
    repository = await repositories.delete_repository(
        svc, caller, _registry(caller, p), p["repositoryName"], bool(p.get("force", False))
    )
    return {"repository": repository}


async def get_authorization_token(svc: Services, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
    return await authorization.get_authorization_token(svc, caller, p.get("registryIds"))


OPERATIONS: dict[str, Operation] = {
    "CreateRepository": create_repository,
    "DescribeRepositories": describe_repositories,
    "DeleteRepository": delete_repository,
    "GetAuthorizationToken": get_authorization_token,
}


class EcrDoor:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.model = ServiceModel("ecr")

    def _respond(self, status: int, body: bytes, request_id: str) -> Response:
        headers = {"x-amzn-RequestId": request_id}
        return Response(body, status, headers=headers, media_type=CONTENT_TYPE)

    def _error(self, status: int, code: str, message: str, request_id: str) -> Response:
        return self._respond(status, error_body(code, message), request_id)

    async def handle(self, request: Request, target: str) -> Response:
        request_id = str(uuid.uuid4())
        body = await request.body()
        try:
            caller = await authenticate(self.svc, request, body, ("ecr",))
        except SignatureError as exc:
            error = exc.render("json")
            return self._error(error.status, error.code, error.message, request_id)
        name = target.removeprefix(TARGET_PREFIX)
        operation = OPERATIONS.get(name)
        if not target.startswith(TARGET_PREFIX) or operation is None:
            return self._error(400, "UnknownOperationException", "", request_id)
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            return self._error(400, "SerializationException", "", request_id)
        try:
            self.model.validate_input(name, params)
            result = await operation(self.svc, caller, params)
        except ValidationError as exc:
            return self._error(400, exc.code, exc.message, request_id)
        except DockyardError as exc:
            return self._error(exc.status, exc.code, exc.message, request_id)
        return self._respond(200, self.model.serialize_output(name, result), request_id)
