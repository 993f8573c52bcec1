"""IAM for the signed-in account: users, their access keys, groups and policies; and what users,
groups and roles share: attached managed policies and inline policies (the pages of groups, roles
and managed policies are iam_groups.py, iam_roles.py and iam_policies.py).

A new access key's secret is shown once, in the answer to the POST that created it (never
stored in the session, never cached), as IAM's CreateAccessKey hands it out once."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.responses import Response

from dockyard.core.errors import DockyardError
from dockyard.core.identity import accounts, iam_common, iam_entities, iam_policies
from dockyard.core.identity.iam_entities import EntityKind
from dockyard.core.identity.iam_errors import EntityAlreadyExists, MalformedPolicyDocument
from dockyard.core.identity.iam_errors import ValidationError as IamValidationError
from dockyard.core.identity.iam_policies import PolicyListing
from dockyard.doors.console.web import ErrorView, Handler, Page, Visit, console_url, error_status, user_url
from dockyard.policy.language import PolicyError, parse_identity_policy

SECTION = "iam"
USERS_PER_PAGE = 100
# Enough for a console page: IAM lists at most 1,000 items per call.
LIST_ALL = 1000
KEY_STATUSES = ("Active", "Inactive")
NEW_POLICY_DOCUMENT = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["ecr:DescribeRepositories"], "Resource": "*"}],
    },
    indent=2,
)

# A user, group or role page, shown again (with its status, an error above it, errors beside
# fields) when an action on it was refused.
EntityPage = Callable[[Visit, int, ErrorView | None, dict[str, str] | None], Awaitable[Response]]


def entity_url(kind: EntityKind, name: str, action: str = "", **query: str | list[str] | None) -> str:
    suffix = f"/{action}" if action else ""
    return console_url(f"iam/{kind}s/{quote(name, safe='')}{suffix}", **query)


def entity_path(kind: EntityKind, action: str = "") -> str:
    suffix = f"/{action}" if action else ""
    return f"/iam/{kind}s/{{name}}{suffix}"


async def section(call: Awaitable[Any]) -> tuple[Any, ErrorView | None]:
    """One part of a page: its data, or why the caller may not see it."""
    try:
        return await call, None
    except DockyardError as exc:
        return None, ErrorView.of(exc)


# --- how IAM's policy errors read in plain words --------------------------------------------------

_PLAIN_POLICY_ERRORS = {
    "Has prohibited field Resource": (
        "A trust policy has no Resource element: the role itself is what it protects. Remove Resource."
    ),
    "Missing required field Principal": "Each statement needs a Principal: who may assume the role.",
    "AssumeRole policy may only specify STS AssumeRole actions.": (
        "A trust policy may only allow the STS role actions, such as sts:AssumeRole and sts:TagSession."
    ),
    "Policy document should not specify a principal.": (
        "A permissions policy names no Principal: it applies to whoever it is attached to. Remove Principal."
    ),
}


def pretty_json(text: str) -> str:
    """A stored policy document laid out for reading and editing (IAM keeps it as sent, often
    on one line); as it is when it is not JSON."""
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text


_INVALID_PRINCIPAL = re.compile(r'Invalid principal in policy: "AWS":"(.*)"')


def _json_problem(text: str) -> str | None:
    try:
        json.loads(text)
    except ValueError as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return f"This is not valid JSON{where}: {reason}."
    return None


def plain_policy_problem(exc: DockyardError, text: str, *, managed: bool | None = None) -> str:
    """What is wrong with a policy document the core refused, in plain words (IAM's own message
    is often only "Syntax errors in policy."), followed by IAM's message when that differs.
    `managed` says which identity-policy rule refused it (None: a trust policy)."""
    plain = _json_problem(text) if text.strip() else "Enter the policy document (JSON)."
    if plain is None and exc.message in _PLAIN_POLICY_ERRORS:
        plain = _PLAIN_POLICY_ERRORS[exc.message]
    principal = _INVALID_PRINCIPAL.fullmatch(exc.message)
    if plain is None and principal is not None:
        plain = f"No IAM user or role {principal.group(1)} exists: create it first, or trust its whole account."
    if plain is None and managed is not None:
        try:
            parse_identity_policy(text, managed=managed)
        except PolicyError as detailed:
            plain = detailed.detail
    plain = plain or exc.message
    plain = plain[:1].upper() + plain[1:]
    if exc.message.lower() not in plain.lower() and isinstance(exc, MalformedPolicyDocument | IamValidationError):
        plain += f" (IAM: {exc.message})"
    return plain


async def users(visit: Visit) -> Response:
    return await _users_page(visit)


async def list_page(
    visit: Visit,
    template: str,
    key: str,
    listing: Callable[[str | None], Awaitable[dict[str, Any]]],
    status: int = 200,
    **context: Any,
) -> Response:
    """An IAM list page (users, groups, roles): the page of `listing` the URL's marker starts, its
    `key` ("Users") shown as `key.lower()` in `template`; a refused listing shows an empty list."""
    marker = visit.param("page") or None
    context["paged"] = bool(marker)
    items = key.lower()
    try:
        result = await listing(marker)
    except DockyardError as exc:
        return visit.refused(exc, template, next_page=None, **{items: []}, **context)
    return visit.render(template, status, next_page=result.get("Marker"), **{items: result[key]}, **context)


async def _users_page(
    visit: Visit, status: int = 200, name: str = "", field_errors: dict[str, str] | None = None
) -> Response:
    """The users list, with the new-user form (and, after a refused create, why, beside the field)."""

    def listing(marker: str | None) -> Awaitable[dict[str, Any]]:
        return iam_entities.list_users(visit.svc, visit.caller, None, marker, USERS_PER_PAGE)

    return await list_page(
        visit, "iam_users.html", "Users", listing, status, name=name, field_errors=field_errors or {}
    )


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


async def policy_sections(visit: Visit, kind: EntityKind, name: str) -> dict[str, Any]:
    """What a user, group or role page shows of its policies: the attached managed policies, the
    inline policies, and the managed policies it could still attach (each part, or why not)."""
    svc, caller = visit.svc, visit.caller
    attached, attached_error = await section(
        iam_policies.list_attached_policies(svc, caller, kind, name, None, None, LIST_ALL)
    )
    inline, inline_error = await section(iam_policies.list_inline_policies(svc, caller, kind, name, None, LIST_ALL))
    available, _ = await section(iam_policies.list_policies(svc, caller, PolicyListing(max_items=LIST_ALL)))
    attached_list = (attached or {}).get("AttachedPolicies", [])
    attached_arns = {p["PolicyArn"] for p in attached_list}
    return {
        "kind": kind,
        "entity_name": name,
        "entity_url": entity_url,
        "attached": attached_list,
        "attached_error": attached_error,
        "inline": (inline or {}).get("PolicyNames", []),
        "inline_error": inline_error,
        "available": [p for p in (available or {}).get("Policies", []) if p["Arn"] not in attached_arns],
    }


async def user(
    visit: Visit, status: int = 200, error: ErrorView | None = None, field_errors: dict[str, str] | None = None
) -> Response:
    name = visit.request.path_params["name"]
    svc, caller = visit.svc, visit.caller
    try:
        described = await iam_entities.get_user(svc, caller, name)
    except DockyardError as exc:
        return visit.refused(exc)
    keys, keys_error = await section(accounts.list_access_keys(svc, caller, name, None, None))
    joined, groups_error = await section(iam_entities.list_groups_for_user(svc, caller, name, None, LIST_ALL))
    every_group, _ = await section(iam_entities.list_groups(svc, caller, None, None, LIST_ALL))
    joined_groups = (joined or {}).get("Groups", [])
    joined_names = {g["GroupName"] for g in joined_groups}
    return visit.render(
        "iam_user.html",
        status,
        user=described["User"],
        keys=(keys or {}).get("AccessKeyMetadata", []),
        keys_error=keys_error,
        groups=joined_groups,
        groups_error=groups_error,
        joinable=[g for g in (every_group or {}).get("Groups", []) if g["GroupName"] not in joined_names],
        error=error,
        field_errors=field_errors or {},
        **await policy_sections(visit, "user", name),
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


async def join_group(visit: Visit) -> Response:
    name = visit.request.path_params["name"]
    group = visit.field("group_name")
    if not group:
        return await user(visit, 400, field_errors={"group_name": "Choose the group to add the user to."})
    try:
        await iam_entities.add_user_to_group(visit.svc, visit.caller, group, name)
    except DockyardError as exc:
        return await _or_user_page(visit, exc)
    return visit.redirect(user_url(name), f"Added {name} to group {group}.")


async def leave_group(visit: Visit) -> Response:
    name = visit.request.path_params["name"]
    group = visit.field("group_name")
    if not visit.confirmed():
        return visit.confirm(
            f"Remove {name} from group {group}?",
            "The user loses the permissions the group's policies grant.",
            "Remove from group",
            user_url(name),
        )
    try:
        await iam_entities.remove_user_from_group(visit.svc, visit.caller, group, name)
    except DockyardError as exc:
        return await _or_user_page(visit, exc)
    return visit.redirect(user_url(name), f"Removed {name} from group {group}.")


# --- attached and inline policies of a user, group or role ---------------------------------------


def attach_handler(kind: EntityKind, entity_page: EntityPage) -> Handler:
    async def attach(visit: Visit) -> Response:
        name = visit.request.path_params["name"]
        arn = visit.field("policy_arn")
        if not arn:
            return await entity_page(visit, 400, None, {"policy_arn": "Choose the policy to attach."})
        try:
            await iam_policies.attach_policy(visit.svc, visit.caller, kind, name, arn)
        except DockyardError as exc:
            return await entity_page(visit, error_status(exc), ErrorView.of(exc), None)
        return visit.redirect(entity_url(kind, name), "Attached the policy.")

    return attach


_LOSES = {"user": "The user loses", "group": "The group's users lose", "role": "Whoever assumes the role loses"}


def detach_handler(kind: EntityKind, entity_page: EntityPage) -> Handler:
    async def detach(visit: Visit) -> Response:
        name = visit.request.path_params["name"]
        arn = visit.field("policy_arn")
        if not visit.confirmed():
            return visit.confirm(
                f"Detach policy {arn.rpartition('/')[2]} from {name}?",
                f"{_LOSES[kind]} the permissions the policy grants.",
                "Detach policy",
                entity_url(kind, name),
            )
        try:
            await iam_policies.detach_policy(visit.svc, visit.caller, kind, name, arn)
        except DockyardError as exc:
            return await entity_page(visit, error_status(exc), ErrorView.of(exc), None)
        return visit.redirect(entity_url(kind, name), "Detached the policy.")

    return detach


def _inline_page(
    visit: Visit,
    kind: EntityKind,
    policy_name: str,
    document: str,
    *,
    existing: bool,
    status: int = 200,
    error: ErrorView | None = None,
    field_errors: dict[str, str] | None = None,
) -> Response:
    return visit.render(
        "iam_inline.html",
        status,
        kind=kind,
        entity_name=visit.request.path_params["name"],
        entity_url=entity_url,
        policy_name=policy_name,
        document=document,
        existing=existing,
        error=error,
        field_errors=field_errors or {},
    )


def inline_form_handler(kind: EntityKind) -> Handler:
    """The inline policy editor: a new policy, or (?policy=NAME) the one of that name."""

    async def inline_form(visit: Visit) -> Response:
        name = visit.request.path_params["name"]
        policy_name = visit.param("policy")
        if not policy_name:
            await iam_entities_exists(visit, kind, name)
            return _inline_page(visit, kind, "", NEW_POLICY_DOCUMENT, existing=False)
        try:
            found = await iam_policies.get_inline_policy(visit.svc, visit.caller, kind, name, policy_name)
        except DockyardError as exc:
            return visit.refused(exc)
        return _inline_page(visit, kind, policy_name, pretty_json(found["PolicyDocument"]), existing=True)

    return inline_form


async def iam_entities_exists(visit: Visit, kind: EntityKind, name: str) -> None:
    """Raises (so the visitor sees a 404 or 403 page) unless the caller may see entity `name`."""
    getters = {
        "user": lambda: iam_entities.get_user(visit.svc, visit.caller, name),
        "group": lambda: iam_entities.get_group(visit.svc, visit.caller, name, None, 1),
        "role": lambda: iam_entities.get_role(visit.svc, visit.caller, name),
    }
    await getters[kind]()


def inline_save_handler(kind: EntityKind) -> Handler:
    async def inline_save(visit: Visit) -> Response:
        name = visit.request.path_params["name"]
        policy_name = visit.field("policy_name")
        existing = visit.checked("existing")
        raw = visit.form.get("document") if visit.form is not None else None
        document = raw if isinstance(raw, str) else ""
        problem = iam_common.policy_name_problem(policy_name)
        if problem is not None:
            return _inline_page(
                visit, kind, policy_name, document, existing=existing, status=400, field_errors={"policy_name": problem}
            )
        try:
            await iam_policies.put_inline_policy(visit.svc, visit.caller, kind, name, policy_name, document)
        except (MalformedPolicyDocument, IamValidationError) as exc:
            plain = plain_policy_problem(exc, document, managed=False)
            summary = ErrorView("", "The policy was not saved: correct the field marked below.")
            return _inline_page(
                visit, kind, policy_name, document, existing=existing, status=400, error=summary,
                field_errors={"document": plain},
            )  # fmt: skip
        except DockyardError as exc:
            return _inline_page(
                visit, kind, policy_name, document, existing=existing, status=error_status(exc),
                error=ErrorView.of(exc),
            )  # fmt: skip
        return visit.redirect(entity_url(kind, name), f"Saved the inline policy {policy_name}.")

    return inline_save


def inline_delete_handler(kind: EntityKind, entity_page: EntityPage) -> Handler:
    async def inline_delete(visit: Visit) -> Response:
        name = visit.request.path_params["name"]
        policy_name = visit.field("policy_name")
        if not visit.confirmed():
            return visit.confirm(
                f"Delete inline policy {policy_name} of {name}?",
                f"{_LOSES[kind]} the permissions it grants. This cannot be undone.",
                "Delete inline policy",
                entity_url(kind, name),
            )
        try:
            await iam_policies.delete_inline_policy(visit.svc, visit.caller, kind, name, policy_name)
        except DockyardError as exc:
            return await entity_page(visit, error_status(exc), ErrorView.of(exc), None)
        return visit.redirect(entity_url(kind, name), f"Deleted the inline policy {policy_name}.")

    return inline_delete


def policy_pages(kind: EntityKind, entity_page: EntityPage, section_name: str) -> list[Page]:
    """The pages every user, group and role has for its policies."""
    return [
        Page(entity_path(kind, "policies/attach"), attach_handler(kind, entity_page), ("POST",), section_name),
        Page(entity_path(kind, "policies/detach"), detach_handler(kind, entity_page), ("POST",), section_name),
        Page(entity_path(kind, "inline"), inline_form_handler(kind), section=section_name),
        Page(entity_path(kind, "inline"), inline_save_handler(kind), ("POST",), section_name),
        Page(entity_path(kind, "inline/delete"), inline_delete_handler(kind, entity_page), ("POST",), section_name),
    ]


async def _user_page(
    visit: Visit, status: int, error: ErrorView | None, field_errors: dict[str, str] | None
) -> Response:
    return await user(visit, status, error, field_errors)


PAGES = [
    Page("/iam/users", users, section=SECTION),
    Page("/iam/users", create_user, ("POST",), section=SECTION),
    Page("/iam/users/{name}", user, section=SECTION),
    Page("/iam/users/{name}/delete", delete_user, ("POST",), section=SECTION),
    Page("/iam/users/{name}/keys", create_key, ("POST",), section=SECTION),
    Page("/iam/users/{name}/keys/status", update_key, ("POST",), section=SECTION),
    Page("/iam/users/{name}/keys/delete", delete_key, ("POST",), section=SECTION),
    Page("/iam/users/{name}/groups/add", join_group, ("POST",), section=SECTION),
    Page("/iam/users/{name}/groups/remove", leave_group, ("POST",), section=SECTION),
    *policy_pages("user", _user_page, SECTION),
]
