"""IAM for the signed-in account: users, their access keys and their attached policies.

A new access key's secret is shown once, in the answer to the POST that created it (never
stored in the session, never cached), as IAM's CreateAccessKey hands it out once."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from dockyard.core.errors import DockyardError
from dockyard.core.identity import accounts, iam_common, iam_entities, iam_policies
from dockyard.core.identity.iam_errors import EntityAlreadyExists
from dockyard.core.identity.iam_errors import ValidationError as IamValidationError
from dockyard.core.identity.iam_policies import PolicyListing
from dockyard.doors.console.web import ErrorView, Page, Visit, console_url, error_status, user_url

SECTION = "iam"
USERS_PER_PAGE = 100
KEY_STATUSES = ("Active", "Inactive")


async def users(visit: Visit) -> Response:
    return await _users_page(visit)


async def _users_page(
    visit: Visit, status: int = 200, name: str = "", field_errors: dict[str, str] | None = None
) -> Response:
    """The users list, with the new-user form (and, after a refused create, why, beside the field)."""
    marker = visit.param("page") or None
    context: dict[str, Any] = {"paged": bool(marker), "name": name, "field_errors": field_errors or {}}
    try:
        result = await iam_entities.list_users(visit.svc, visit.caller, None, marker, USERS_PER_PAGE)
    except DockyardError as exc:
        return visit.refused(exc, "iam_users.html", users=[], next_page=None, **context)
    return visit.render("iam_users.html", status, users=result["Users"], next_page=result.get("Marker"), **context)


async def create_user(visit: Visit) -> Response:
    name = visit.field("user_name")
    problem = iam_common.user_name_problem(name)
    if problem is not None:
        return await _users_page(visit, 400, name, {"user_name": problem})
    try:
        await iam_entities.create_user(visit.svc, visit.caller, name)
    except EntityAlreadyExists:
        return await _users_page(visit, 409, name, {"user_name": f"A user named {name} already exists."})
    except DockyardError as exc:
        return visit.refused(exc, "iam_users.html", users=[], next_page=None, paged=False, name=name)
    return visit.redirect(
        user_url(name), "Created the user. Create an access key for it, and attach the policies it needs."
    )


async def _section(call: Any) -> tuple[Any, ErrorView | None]:
    """One part of the user page: its data, or why the caller may not see it."""
    try:
        return await call, None
    except DockyardError as exc:
        return None, ErrorView.of(exc)


async def user(
    visit: Visit, status: int = 200, error: ErrorView | None = None, field_errors: dict[str, str] | None = None
) -> Response:
    name = visit.request.path_params["name"]
    svc, caller = visit.svc, visit.caller
    try:
        described = await iam_entities.get_user(svc, caller, name)
    except DockyardError as exc:
        return visit.refused(exc)
    keys, keys_error = await _section(accounts.list_access_keys(svc, caller, name, None, None))
    attached, attached_error = await _section(
        iam_policies.list_attached_policies(svc, caller, "user", name, None, None, None)
    )
    inline, inline_error = await _section(iam_policies.list_inline_policies(svc, caller, "user", name, None, None))
    available, _ = await _section(iam_policies.list_policies(svc, caller, PolicyListing(max_items=1000)))
    attached_arns = {p["PolicyArn"] for p in (attached or {}).get("AttachedPolicies", [])}
    return visit.render(
        "iam_user.html",
        status,
        user=described["User"],
        keys=(keys or {}).get("AccessKeyMetadata", []),
        keys_error=keys_error,
        attached=(attached or {}).get("AttachedPolicies", []),
        attached_error=attached_error,
        inline=(inline or {}).get("PolicyNames", []),
        inline_error=inline_error,
        available=[p for p in (available or {}).get("Policies", []) if p["Arn"] not in attached_arns],
        error=error,
        field_errors=field_errors or {},
    )


async def _or_user_page(visit: Visit, exc: DockyardError) -> Response:
    return await user(visit, error_status(exc), ErrorView.of(exc))


async def delete_user(visit: Visit) -> Response:
    name = visit.request.path_params["name"]
    if not visit.confirmed():
        return visit.confirm(f"Delete user {name}?", "This cannot be undone.", "Delete user", user_url(name))
    try:
        await iam_entities.delete_user(visit.svc, visit.caller, name)
    except DockyardError as exc:
        return await _or_user_page(visit, exc)
    return visit.redirect(console_url("iam/users"), f"Deleted user {name}.")


async def create_key(visit: Visit) -> Response:
    name = visit.request.path_params["name"]
    try:
        created = await accounts.create_access_key(visit.svc, visit.caller, name)
    except DockyardError as exc:
        return await _or_user_page(visit, exc)
    # Rendered in this answer only: a reload or a later visit can never show the secret again.
    return visit.render("iam_key_created.html", key=created["AccessKey"], user_name=name)


async def update_key(visit: Visit) -> Response:
    name = visit.request.path_params["name"]
    status = visit.field("status")
    try:
        if status not in KEY_STATUSES:
            raise IamValidationError(
                f"1 validation error detected: Value '{status}' at 'status' failed to satisfy constraint: "
                "Member must satisfy enum value set: [Active, Inactive]"
            )
        await accounts.update_access_key(visit.svc, visit.caller, name, visit.field("access_key_id"), status)
    except DockyardError as exc:
        return await _or_user_page(visit, exc)
    return visit.redirect(user_url(name), "Updated the access key.")


async def delete_key(visit: Visit) -> Response:
    name = visit.request.path_params["name"]
    key_id = visit.field("access_key_id")
    if not visit.confirmed():
        return visit.confirm(
            f"Delete access key {key_id}?",
            "Anything that signs requests with it stops working. This cannot be undone.",
            "Delete access key",
            user_url(name),
        )
    try:
        await accounts.delete_access_key(visit.svc, visit.caller, name, key_id)
    except DockyardError as exc:
        return await _or_user_page(visit, exc)
    return visit.redirect(user_url(name), "Deleted the access key.")


async def attach_policy(visit: Visit) -> Response:
    name = visit.request.path_params["name"]
    arn = visit.field("policy_arn")
    if not arn:
        return await user(visit, 400, field_errors={"policy_arn": "Choose the policy to attach."})
    try:
        await iam_policies.attach_policy(visit.svc, visit.caller, "user", name, arn)
    except DockyardError as exc:
        return await _or_user_page(visit, exc)
    return visit.redirect(user_url(name), "Attached the policy.")


async def detach_policy(visit: Visit) -> Response:
    name = visit.request.path_params["name"]
    arn = visit.field("policy_arn")
    if not visit.confirmed():
        return visit.confirm(
            f"Detach policy {arn.rpartition('/')[2]} from {name}?",
            "The user loses the permissions the policy grants.",
            "Detach policy",
            user_url(name),
        )
    try:
        await iam_policies.detach_policy(visit.svc, visit.caller, "user", name, arn)
    except DockyardError as exc:
        return await _or_user_page(visit, exc)
    return visit.redirect(user_url(name), "Detached the policy.")


PAGES = [
    Page("/iam/users", users, section=SECTION),
    Page("/iam/users", create_user, ("POST",), section=SECTION),
    Page("/iam/users/{name}", user, section=SECTION),
    Page("/iam/users/{name}/delete", delete_user, ("POST",), section=SECTION),
    Page("/iam/users/{name}/keys", create_key, ("POST",), section=SECTION),
    Page("/iam/users/{name}/keys/status", update_key, ("POST",), section=SECTION),
    Page("/iam/users/{name}/keys/delete", delete_key, ("POST",), section=SECTION),
    Page("/iam/users/{name}/policies/attach", attach_policy, ("POST",), section=SECTION),
    Page("/iam/users/{name}/policies/detach", detach_policy, ("POST",), section=SECTION),
]
