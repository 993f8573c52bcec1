"""IAM roles: the list, creating a role with its trust policy (checked by the core, its faults
shown in plain words beside the field), a role's page (who may assume it, its attached and
inline policies), editing the trust policy, and deleting a role."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

from starlette.responses import Response

from dockyard.core.errors import DockyardError
from dockyard.core.identity import iam_common, iam_entities
from dockyard.core.identity.iam_entities import NewRole
from dockyard.core.identity.iam_errors import EntityAlreadyExists, MalformedPolicyDocument
from dockyard.core.identity.iam_errors import ValidationError as IamValidationError
from dockyard.doors.console.iam import (
    entity_url,
    list_page,
    plain_policy_problem,
    policy_pages,
    policy_sections,
    pretty_json,
)
from dockyard.doors.console.web import ErrorView, Page, Visit, console_url, error_status

SECTION = "iam-roles"
ROLES_PER_PAGE = 100
NOT_SAVED = "The role was not saved: correct the fields marked below."


def default_trust_policy(account_id: str) -> str:
    """What a new role trusts unless told otherwise: its own account (whose principals still need
    permission to call sts:AssumeRole on it)."""
    statement = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"}, "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, indent=2)


def _principal_words(kind: str, value: str) -> str:
    if kind == "AWS" and value == "*":
        return "Any AWS principal"
    if kind == "AWS" and (value.isdigit() or value.endswith(":root")):
        return f"AWS account {value.removesuffix(':root').rpartition(':')[2] or value}"
    if kind == "AWS":
        return f"IAM principal {value}"
    if kind == "Service":
        return f"AWS service {value}"
    if kind == "Federated":
        return f"Identity provider {value}"
    return f"{kind} {value}"


def trusted_entities(text: str) -> list[str]:
    """Who the trust policy lets assume the role, in plain words (Allow statements only)."""
    try:
        document = json.loads(text)
    except ValueError:
        return []
    raw = document.get("Statement", []) if isinstance(document, dict) else []
    found: list[str] = []
    for statement in [raw] if isinstance(raw, dict) else raw:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        if principal == "*":
            found.append("Anyone")
            continue
        for kind, values in (principal or {}).items() if isinstance(principal, dict) else []:
            for value in [values] if isinstance(values, str) else values:
                found.append(_principal_words(kind, str(value)))
    return list(dict.fromkeys(found))


async def roles(visit: Visit) -> Response:
    def listing(marker: str | None) -> Awaitable[dict[str, Any]]:
        return iam_entities.list_roles(visit.svc, visit.caller, None, marker, ROLES_PER_PAGE)

    return await list_page(visit, "iam_roles.html", "Roles", listing, trusted_entities=trusted_entities)


def _create_page(
    visit: Visit,
    name: str,
    trust: str,
    status: int = 200,
    error: ErrorView | None = None,
    field_errors: dict[str, str] | None = None,
) -> Response:
    return visit.render(
        "iam_role_create.html", status, name=name, trust=trust, error=error, field_errors=field_errors or {}
    )


async def create_form(visit: Visit) -> Response:
    return _create_page(visit, "", default_trust_policy(visit.account_id))


def _form_text(visit: Visit, name: str) -> str:
    # Not stripped: a policy document is kept exactly as typed.
    value = visit.form.get(name) if visit.form is not None else None
    return value if isinstance(value, str) else ""


async def create_role(visit: Visit) -> Response:
    name = visit.field("role_name")
    trust = _form_text(visit, "trust_policy")
    problem = iam_common.role_name_problem(name)
    if problem is not None:
        return _create_page(visit, name, trust, 400, ErrorView("", NOT_SAVED), {"role_name": problem})
    try:
        await iam_entities.create_role(visit.svc, visit.caller, NewRole(name=name, trust_policy=trust))
    except EntityAlreadyExists:
        errors = {"role_name": f"A role named {name} already exists."}
        return _create_page(visit, name, trust, 409, ErrorView("", NOT_SAVED), errors)
    except (MalformedPolicyDocument, IamValidationError) as exc:
        errors = {"trust_policy": plain_policy_problem(exc, trust)}
        return _create_page(visit, name, trust, 400, ErrorView("", NOT_SAVED), errors)
    except DockyardError as exc:
        return _create_page(visit, name, trust, error_status(exc), ErrorView.of(exc))
    return visit.redirect(entity_url("role", name), "Created the role. Attach the policies it needs.")


async def role(
    visit: Visit, status: int = 200, error: ErrorView | None = None, field_errors: dict[str, str] | None = None
) -> Response:
    name = visit.request.path_params["name"]
    try:
        described = (await iam_entities.get_role(visit.svc, visit.caller, name))["Role"]
    except DockyardError as exc:
        return visit.refused(exc)
    return visit.render(
        "iam_role.html",
        status,
        role=described,
        trusted=trusted_entities(described["AssumeRolePolicyDocument"]),
        trust_document=pretty_json(described["AssumeRolePolicyDocument"]),
        error=error,
        field_errors=field_errors or {},
        **await policy_sections(visit, "role", name),
    )


def _trust_page(
    visit: Visit, text: str, status: int = 200, error: ErrorView | None = None, problem: str | None = None
) -> Response:
    return visit.render(
        "iam_role_trust.html",
        status,
        role_name=visit.request.path_params["name"],
        trust=text,
        kind="role",
        entity_name=visit.request.path_params["name"],
        entity_url=entity_url,
        error=error,
        field_errors={"trust_policy": problem} if problem else {},
    )


async def trust_form(visit: Visit) -> Response:
    name = visit.request.path_params["name"]
    described = (await iam_entities.get_role(visit.svc, visit.caller, name))["Role"]
    return _trust_page(visit, pretty_json(described["AssumeRolePolicyDocument"]))


async def trust_save(visit: Visit) -> Response:
    name = visit.request.path_params["name"]
    text = _form_text(visit, "trust_policy")
    try:
        await iam_entities.update_trust_policy(visit.svc, visit.caller, name, text)
    except (MalformedPolicyDocument, IamValidationError) as exc:
        summary = ErrorView("", "The trust policy was not saved: correct the field marked below.")
        return _trust_page(visit, text, 400, summary, plain_policy_problem(exc, text))
    except DockyardError as exc:
        return _trust_page(visit, text, error_status(exc), ErrorView.of(exc))
    return visit.redirect(entity_url("role", name), "Saved the trust policy.")


async def delete_role(visit: Visit) -> Response:
    name = visit.request.path_params["name"]
    if not visit.confirmed():
        return visit.confirm(
            f"Delete role {name}?",
            "Its sessions stop working at once. This cannot be undone.",
            "Delete role",
            entity_url("role", name),
        )
    try:
        await iam_entities.delete_role(visit.svc, visit.caller, name)
    except DockyardError as exc:
        return await role(visit, error_status(exc), ErrorView.of(exc))
    return visit.redirect(console_url("iam/roles"), f"Deleted role {name}.")


async def _role_page(
    visit: Visit, status: int, error: ErrorView | None, field_errors: dict[str, str] | None
) -> Response:
    return await role(visit, status, error, field_errors)


PAGES = [
    Page("/iam/roles", roles, section=SECTION),
    # Not under /iam/roles/: "create" is a legal role name.
    Page("/iam/create-role", create_form, section=SECTION),
    Page("/iam/create-role", create_role, ("POST",), section=SECTION),
    Page("/iam/roles/{name}", role, section=SECTION),
    Page("/iam/roles/{name}/trust", trust_form, section=SECTION),
    Page("/iam/roles/{name}/trust", trust_save, ("POST",), section=SECTION),
    Page("/iam/roles/{name}/delete", delete_role, ("POST",), section=SECTION),
    *policy_pages("role", _role_page, SECTION),
]
