"""The identity door: IAM and STS over the AWS Query protocol (`POST /`, `Action=…&Version=…`).

Which service a request is for is read from its SigV4 credential scope (`…/iam/aws4_request` or
`…/sts/aws4_request`), as both share the one endpoint. Each operation below only maps the
request's members onto a core call; botocore's models shape requests, responses and errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dockyard.auth.sigv4 import SignatureError
from dockyard.core.errors import AccessDeniedException, DockyardError
from dockyard.core.identity import accounts, iam_common, iam_entities, iam_policies, simulator, sts
from dockyard.core.identity.caller import Caller
from dockyard.core.identity.iam_entities import EntityKind
from dockyard.core.services import Services
from dockyard.doors.aws_auth import authenticate_signed
from dockyard.doors.aws_query import REQUEST_TOO_LARGE, QueryModel, QueryValidationError, parse_form
from dockyard.doors.bodies import QUERY_BODY_LIMIT, BodyTooLarge, read_body, refused
from dockyard.doors.throttle import Throttled
from dockyard.observe.context import report, request_id_of

CONTENT_TYPE = "text/xml"
INVALID_ACTION = "The action or operation requested is invalid. Verify that the action is typed correctly."

Params = dict[str, Any]
Operation = Callable[[Services, Caller, Params], Awaitable[dict[str, Any]]]


def _paging(p: Params) -> tuple[str | None, int | None]:
    return p.get("Marker"), p.get("MaxItems")


# --- users, keys, groups, roles -------------------------------------------------------------------


async def create_user(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    iam_common.refuse_permissions_boundary(p.get("PermissionsBoundary"))
    return await iam_entities.create_user(svc, caller, p["UserName"], p.get("Path"), p.get("Tags"))


async def get_user(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.get_user(svc, caller, p.get("UserName"))


async def list_users(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.list_users(svc, caller, p.get("PathPrefix"), *_paging(p))


async def update_user(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.update_user(svc, caller, p["UserName"], p.get("NewUserName"), p.get("NewPath"))


async def delete_user(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.delete_user(svc, caller, p["UserName"])


async def create_access_key(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await accounts.create_access_key(svc, caller, p.get("UserName"))


async def list_access_keys(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await accounts.list_access_keys(svc, caller, p.get("UserName"), *_paging(p))


async def update_access_key(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await accounts.update_access_key(svc, caller, p.get("UserName"), p["AccessKeyId"], p["Status"])


async def delete_access_key(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await accounts.delete_access_key(svc, caller, p.get("UserName"), p["AccessKeyId"])


async def create_group(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.create_group(svc, caller, p["GroupName"], p.get("Path"))


async def get_group(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.get_group(svc, caller, p["GroupName"], *_paging(p))


async def list_groups(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.list_groups(svc, caller, p.get("PathPrefix"), *_paging(p))


async def update_group(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.update_group(svc, caller, p["GroupName"], p.get("NewGroupName"), p.get("NewPath"))


async def delete_group(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.delete_group(svc, caller, p["GroupName"])


async def add_user_to_group(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.add_user_to_group(svc, caller, p["GroupName"], p["UserName"])


async def remove_user_from_group(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.remove_user_from_group(svc, caller, p["GroupName"], p["UserName"])


async def list_groups_for_user(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.list_groups_for_user(svc, caller, p["UserName"], *_paging(p))


async def create_role(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    iam_common.refuse_permissions_boundary(p.get("PermissionsBoundary"))
    role = iam_entities.NewRole(
        name=p["RoleName"],
        trust_policy=p["AssumeRolePolicyDocument"],
        path=p.get("Path"),
        description=p.get("Description"),
        max_session_duration=p.get("MaxSessionDuration"),
        tags=p.get("Tags"),
    )
    return await iam_entities.create_role(svc, caller, role)


async def get_role(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.get_role(svc, caller, p["RoleName"])


async def list_roles(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.list_roles(svc, caller, p.get("PathPrefix"), *_paging(p))


async def update_role(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.update_role(svc, caller, p["RoleName"], p.get("Description"), p.get("MaxSessionDuration"))


async def update_assume_role_policy(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.update_trust_policy(svc, caller, p["RoleName"], p["PolicyDocument"])


async def delete_role(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_entities.delete_role(svc, caller, p["RoleName"])


# --- managed policies -----------------------------------------------------------------------------


async def create_policy(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    new = iam_policies.NewPolicy(
        name=p["PolicyName"],
        document=p["PolicyDocument"],
        path=p.get("Path"),
        description=p.get("Description"),
        tags=p.get("Tags"),
    )
    return await iam_policies.create_policy(svc, caller, new)


async def get_policy(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_policies.get_policy(svc, caller, p["PolicyArn"])


async def list_policies(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    listing = iam_policies.PolicyListing(
        scope=p.get("Scope", "All"),
        only_attached=bool(p.get("OnlyAttached", False)),
        path_prefix=p.get("PathPrefix"),
        marker=p.get("Marker"),
        max_items=p.get("MaxItems"),
    )
    return await iam_policies.list_policies(svc, caller, listing)


async def delete_policy(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_policies.delete_policy(svc, caller, p["PolicyArn"])


async def create_policy_version(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_policies.create_policy_version(
        svc, caller, p["PolicyArn"], p["PolicyDocument"], bool(p.get("SetAsDefault", False))
    )


async def get_policy_version(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_policies.get_policy_version(svc, caller, p["PolicyArn"], p["VersionId"])


async def list_policy_versions(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_policies.list_policy_versions(svc, caller, p["PolicyArn"], *_paging(p))


async def set_default_policy_version(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_policies.set_default_policy_version(svc, caller, p["PolicyArn"], p["VersionId"])


async def delete_policy_version(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_policies.delete_policy_version(svc, caller, p["PolicyArn"], p["VersionId"])


# --- attached and inline policies of users, groups and roles: one shape for the three kinds ------

_NAME_MEMBERS: dict[EntityKind, str] = {"user": "UserName", "group": "GroupName", "role": "RoleName"}


async def attach(kind: EntityKind, svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_policies.attach_policy(svc, caller, kind, p[_NAME_MEMBERS[kind]], p["PolicyArn"])


async def detach(kind: EntityKind, svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_policies.detach_policy(svc, caller, kind, p[_NAME_MEMBERS[kind]], p["PolicyArn"])


async def list_attached(kind: EntityKind, svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_policies.list_attached_policies(
        svc, caller, kind, p[_NAME_MEMBERS[kind]], p.get("PathPrefix"), *_paging(p)
    )


async def put_inline(kind: EntityKind, svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_policies.put_inline_policy(
        svc, caller, kind, p[_NAME_MEMBERS[kind]], p["PolicyName"], p["PolicyDocument"]
    )


async def get_inline(kind: EntityKind, svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_policies.get_inline_policy(svc, caller, kind, p[_NAME_MEMBERS[kind]], p["PolicyName"])


async def delete_inline(kind: EntityKind, svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_policies.delete_inline_policy(svc, caller, kind, p[_NAME_MEMBERS[kind]], p["PolicyName"])


async def list_inline(kind: EntityKind, svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await iam_policies.list_inline_policies(svc, caller, kind, p[_NAME_MEMBERS[kind]], *_paging(p))


def _per_kind() -> dict[str, Operation]:
    operations: dict[str, Operation] = {}
    for kind, title in (("user", "User"), ("group", "Group"), ("role", "Role")):
        operations |= {
            f"Attach{title}Policy": partial(attach, kind),
            f"Detach{title}Policy": partial(detach, kind),
            f"ListAttached{title}Policies": partial(list_attached, kind),
            f"Put{title}Policy": partial(put_inline, kind),
            f"Get{title}Policy": partial(get_inline, kind),
            f"Delete{title}Policy": partial(delete_inline, kind),
            f"List{title}Policies": partial(list_inline, kind),
        }
    return operations


# --- the policy simulator -------------------------------------------------------------------------


def _simulation(p: Params) -> simulator.Simulation:
    return simulator.Simulation(
        action_names=p["ActionNames"],
        policy_inputs=p.get("PolicyInputList") or [],
        resource_arns=p.get("ResourceArns"),
        resource_policy=p.get("ResourcePolicy"),
        resource_owner=p.get("ResourceOwner"),
        caller_arn=p.get("CallerArn"),
        context_entries=p.get("ContextEntries") or [],
        marker=p.get("Marker"),
        max_items=p.get("MaxItems"),
    )


async def simulate_principal_policy(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await simulator.simulate_principal_policy(svc, caller, p["PolicySourceArn"], _simulation(p))


async def simulate_custom_policy(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return await simulator.simulate_custom_policy(svc, caller, _simulation(p))


IAM_OPERATIONS: dict[str, Operation] = {
    "CreateUser": create_user,
    "GetUser": get_user,
    "ListUsers": list_users,
    "UpdateUser": update_user,
    "DeleteUser": delete_user,
    "CreateAccessKey": create_access_key,
    "ListAccessKeys": list_access_keys,
    "UpdateAccessKey": update_access_key,
    "DeleteAccessKey": delete_access_key,
    "CreateGroup": create_group,
    "GetGroup": get_group,
    "ListGroups": list_groups,
    "UpdateGroup": update_group,
    "DeleteGroup": delete_group,
    "AddUserToGroup": add_user_to_group,
    "RemoveUserFromGroup": remove_user_from_group,
    "ListGroupsForUser": list_groups_for_user,
    "CreateRole": create_role,
    "GetRole": get_role,
    "ListRoles": list_roles,
    "UpdateRole": update_role,
    "UpdateAssumeRolePolicy": update_assume_role_policy,
    "DeleteRole": delete_role,
    "CreatePolicy": create_policy,
    "GetPolicy": get_policy,
    "ListPolicies": list_policies,
    "DeletePolicy": delete_policy,
    "CreatePolicyVersion": create_policy_version,
    "GetPolicyVersion": get_policy_version,
    "ListPolicyVersions": list_policy_versions,
    "SetDefaultPolicyVersion": set_default_policy_version,
    "DeletePolicyVersion": delete_policy_version,
    "SimulatePrincipalPolicy": simulate_principal_policy,
    "SimulateCustomPolicy": simulate_custom_policy,
    **_per_kind(),
}


# --- STS --------------------------------------------------------------------------------------------


async def get_caller_identity(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    return sts.get_caller_identity(caller)


async def get_session_token(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    sts.refuse_unsupported(p, ("SerialNumber", "TokenCode"))
    return await sts.get_session_token(svc, caller, p.get("DurationSeconds"))


async def assume_role(svc: Services, caller: Caller, p: Params) -> dict[str, Any]:
    sts.refuse_unsupported(
        p,
        ("PolicyArns", "Tags", "TransitiveTagKeys", "SerialNumber", "TokenCode", "SourceIdentity", "ProvidedContexts"),
    )
    request = sts.AssumeRoleRequest(
        role_arn=p["RoleArn"],
        session_name=p["RoleSessionName"],
        duration_seconds=p.get("DurationSeconds"),
        policy=p.get("Policy"),
        external_id=p.get("ExternalId"),
    )
    return await sts.assume_role(svc, caller, request)


STS_OPERATIONS: dict[str, Operation] = {
    "GetCallerIdentity": get_caller_identity,
    "GetSessionToken": get_session_token,
    "AssumeRole": assume_role,
}


class IdentityDoor:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.iam = QueryModel("iam")
        self.sts = QueryModel("sts")

    def _error(self, model: QueryModel, status: int, code: str, message: str, request_id: str) -> Response:
        body = model.error_body(code, message, request_id, sender=status < 500)
        return Response(body, status, headers={"x-amzn-RequestId": request_id}, media_type=CONTENT_TYPE)

    async def handle(self, request: Request) -> Response:
        request_id = request_id_of(request)
        try:
            body = await read_body(request, QUERY_BODY_LIMIT)
        except BodyTooLarge as exc:
            # IAM or STS is only known from the body; the two share one error format.
            return refused(self._error(self.iam, 413, REQUEST_TOO_LARGE, exc.message, request_id))
        form = parse_form(body)
        action = form.get("Action", "")
        try:
            caller, info = await authenticate_signed(self.svc, request, body, ("iam", "sts"), operation=action)
        except (SignatureError, Throttled) as exc:
            error = exc.render("query")
            model = self.sts if action in STS_OPERATIONS else self.iam
            return self._error(model, error.status, error.code, error.message, request_id)
        model, operations = (self.sts, STS_OPERATIONS) if info.service == "sts" else (self.iam, IAM_OPERATIONS)
        operation = operations.get(action)
        if operation is None:
            return self._error(model, 400, "InvalidAction", INVALID_ACTION, request_id)
        try:
            params = model.parse_input(action, form)
            report(request, params=params)
            result = await operation(self.svc, caller, params)
            report(request, response=result)
        except QueryValidationError as exc:
            return self._error(model, exc.status, exc.code, exc.message, request_id)
        except AccessDeniedException as exc:
            return self._error(model, 403, "AccessDenied", exc.message, request_id)
        except DockyardError as exc:
            return self._error(model, exc.status, exc.code, exc.message, request_id)
        return Response(
            model.serialize_output(action, result, request_id),
            200,
            headers={"x-amzn-RequestId": request_id},
            media_type=CONTENT_TYPE,
        )
