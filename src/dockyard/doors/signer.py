"""The AWS Signer door: Signer's REST-JSON protocol (botocore's `signer` 2017-08-25 model) on the
same port, told apart from the other AWS APIs by its paths (/signing-profiles, /revocations).

Operations: PutSigningProfile, GetSigningProfile, ListSigningProfiles, CancelSigningProfile,
GetRevocationStatus. Errors are REST-JSON's: the HTTP status of the error's shape, its name in
x-amzn-ErrorType and {"message": ...} as the body.

The door also serves a registry's root certificate, unauthenticated, at
GET /signer/roots/<account>/<region>.pem: the trust anchor for Notation's trust store (for AWS
Signer that is the root AWS publishes). Certificates are public material."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.auth.sigv4 import SignatureError
from dockyard.core import client_json as wire_json
from dockyard.core.errors import DockyardError
from dockyard.core.identity.caller import Caller
from dockyard.core.services import Services
from dockyard.core.signing import profiles
from dockyard.doors.aws_auth import authenticate
from dockyard.doors.bodies import QUERY_BODY_LIMIT, BodyTooLarge, read_body, refused
from dockyard.doors.throttle import Throttled
from dockyard.observe.context import report, request_id_of

CONTENT_TYPE = "application/json"
SOURCE = "signer.amazonaws.com"
_PROFILE_NAME = re.compile(r"[a-zA-Z0-9_]{2,64}", re.ASCII)
_ACCOUNT = re.compile(r"[0-9]{12}", re.ASCII)
_REGION = re.compile(r"[a-z0-9-]{1,32}", re.ASCII)
# Signer's error shapes and their HTTP statuses.
_STATUS = {
    "ValidationException": 400,
    "BadRequestException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "NotFoundException": 404,
    "TooManyRequestsException": 429,
    "InternalServiceErrorException": 500,
}

Handler = Callable[[Services, Caller, Request, dict[str, Any]], Awaitable[dict[str, Any]]]


class SignerValidation(DockyardError):
    code = "ValidationException"


def _validation(value: Any, member: str, constraint: str) -> SignerValidation:
    return SignerValidation(
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    )


def _profile_name(request: Request) -> str:
    name = request.path_params["name"]
    if not _PROFILE_NAME.fullmatch(name):
        raise _validation(name, "profileName", "Member must satisfy regular expression pattern: ^[a-zA-Z0-9_]{2,}")
    return str(name)


def _object(body: dict[str, Any], member: str) -> dict[str, Any] | None:
    value = body.get(member)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SignerValidation(f"{member} must be an object")
    return value


def _string_map(body: dict[str, Any], member: str) -> dict[str, str] | None:
    value = _object(body, member)
    if value is not None and not all(isinstance(v, str) for v in value.values()):
        raise SignerValidation(f"the values of {member} must be strings")
    return value


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        document = wire_json.loads(body or b"{}")
    except wire_json.MalformedJson:
        raise SignerValidation("The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise SignerValidation("The request body must be a JSON object.")
    return document


async def put_signing_profile(svc: Services, caller: Caller, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    name = _profile_name(request)
    platform_id = body.get("platformId")
    if not isinstance(platform_id, str):
        raise _validation("null", "platformId", "Member must not be null")
    return await profiles.put_signing_profile(
        svc,
        caller,
        name,
        platform_id,
        signature_validity_period=_object(body, "signatureValidityPeriod"),
        signing_parameters=_string_map(body, "signingParameters"),
        tags=_string_map(body, "tags"),
        signing_material=_object(body, "signingMaterial"),
    )


async def get_signing_profile(svc: Services, caller: Caller, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    owner = request.query_params.get("profileOwner")
    if owner is not None and not _ACCOUNT.fullmatch(owner):
        raise _validation(owner, "profileOwner", "Member must satisfy regular expression pattern: ^[0-9]{12}$")
    return await profiles.get_signing_profile(svc, caller, _profile_name(request), owner)


async def cancel_signing_profile(
    svc: Services, caller: Caller, request: Request, body: dict[str, Any]
) -> dict[str, Any]:
    return await profiles.cancel_signing_profile(svc, caller, _profile_name(request))


async def list_signing_profiles(
    svc: Services, caller: Caller, request: Request, body: dict[str, Any]
) -> dict[str, Any]:
    query = request.query_params
    statuses = query.getlist("statuses")
    for status in statuses:
        if status not in profiles.STATUSES:
            raise _validation(status, "statuses", "Member must satisfy enum value set: [Active, Canceled, Revoked]")
    max_results = query.get("maxResults")
    if max_results is not None and not max_results.isdigit():
        raise SignerValidation(f"maxResults must be a number, not {max_results}")
    return await profiles.list_signing_profiles(
        svc,
        caller,
        include_canceled=query.get("includeCanceled", "false").lower() == "true",
        platform_id=query.get("platformId"),
        statuses=statuses or None,
        max_results=int(max_results) if max_results is not None else None,
        next_token=query.get("nextToken"),
    )


async def get_revocation_status(
    svc: Services, caller: Caller, request: Request, body: dict[str, Any]
) -> dict[str, Any]:
    query = request.query_params
    for member in ("signatureTimestamp", "platformId", "profileVersionArn", "jobArn", "certificateHashes"):
        if member not in query:
            raise _validation("null", member, "Member must not be null")
    return await profiles.get_revocation_status(svc, caller, query["profileVersionArn"])


class SignerDoor:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def routes(self) -> list[Route]:
        profile = {"PUT": ("PutSigningProfile", put_signing_profile)}
        profile |= {"GET": ("GetSigningProfile", get_signing_profile)}
        profile |= {"DELETE": ("CancelSigningProfile", cancel_signing_profile)}
        return [
            Route(
                "/signing-profiles",
                self._door({"GET": ("ListSigningProfiles", list_signing_profiles)}),
                methods=["GET"],
            ),
            Route("/signing-profiles/{name}", self._door(profile), methods=list(profile)),
            Route("/revocations", self._door({"GET": ("GetRevocationStatus", get_revocation_status)}), methods=["GET"]),
            Route("/signer/roots/{account}/{region}.pem", self.root_certificate, methods=["GET", "HEAD"]),
        ]

    def _door(self, operations: dict[str, tuple[str, Handler]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            name, handler = operations[request.method]
            return await self.handle(request, name, handler)

        return endpoint

    async def handle(self, request: Request, name: str, handler: Handler) -> Response:
        request_id = request_id_of(request)
        report(request, operation=name, source=SOURCE)
        try:
            body = await read_body(request, QUERY_BODY_LIMIT)
        except BodyTooLarge as exc:
            return refused(_error(413, "RequestEntityTooLargeException", exc.message, request_id))
        try:
            caller = await authenticate(self.svc, request, body, ("signer",))
        except (SignatureError, Throttled) as exc:
            error = exc.render("json")
            return _error(error.status, error.code, error.message, request_id)
        try:
            params = _json_body(body) if request.method in ("PUT", "POST") else {}
            report(request, params=params)
            result = await handler(self.svc, caller, request, params)
        except DockyardError as exc:
            return _error(_STATUS.get(exc.code, 400), exc.code, exc.message, request_id)
        return Response(
            json.dumps(result, separators=(",", ":")),
            200,
            headers={"x-amzn-RequestId": request_id},
            media_type=CONTENT_TYPE,
        )

    async def root_certificate(self, request: Request) -> Response:
        account, region = request.path_params["account"], request.path_params["region"]
        pem = None
        if _ACCOUNT.fullmatch(account) and _REGION.fullmatch(region):
            pem = await profiles.root_certificate(self.svc, account, region)
        if pem is None:
            return Response("No signing root exists for this registry.\n", 404, media_type="text/plain")
        return Response(pem, 200, media_type="application/x-pem-file")


def _error(status: int, code: str, message: str | None, request_id: str) -> Response:
    body = json.dumps({"message": message} if message is not None else {}, separators=(",", ":"))
    headers = {"x-amzn-RequestId": request_id, "x-amzn-ErrorType": code}
    return Response(body, status, headers=headers, media_type=CONTENT_TYPE)
