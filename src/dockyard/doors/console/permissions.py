"""A repository's Permissions tab: the repository policy's statements, added from a form (the
seed's Sid, Effect, Principal and Actions) or removed one by one, or the policy edited as JSON."""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.responses import Response

from dockyard.core.errors import DockyardError, RepositoryPolicyNotFoundException
from dockyard.core.identity import iam_entities
from dockyard.core.registry import repository_policies
from dockyard.doors.console import statements
from dockyard.doors.console.repository import SECTION, refused, repository_of, tab, tab_path
from dockyard.doors.console.statements import StatementError, StatementForm
from dockyard.doors.console.web import ErrorView, Page, Visit, error_status, repository_url
from dockyard.policy.language import PolicyError, parse_resource_policy

# --- Permissions --------------------------------------------------------------------------------


async def _policy_text(visit: Visit, name: str) -> str | None:
    try:
        answer = await repository_policies.get_repository_policy(visit.svc, visit.caller, visit.account_id, name)
    except RepositoryPolicyNotFoundException:
        return None
    return str(answer["policyText"])


async def permissions(visit: Visit) -> Response:
    repo = repository_of(visit)
    context: dict[str, Any] = {}
    try:
        text = await _policy_text(visit, repo.name)
    except DockyardError as exc:
        return refused(visit, exc, "repository_permissions.html", "permissions", statements=[], **context)
    views = statements.statement_views(text)
    return tab(visit, "repository_permissions.html", "permissions", statements=views, has_policy=bool(text), **context)


async def _iam_entities(visit: Visit) -> tuple[list[dict[str, str]], ErrorView | None]:
    """The account's users and roles (for the Principal choice), or why they cannot be listed."""
    found: list[dict[str, str]] = []
    try:
        users = await iam_entities.list_users(visit.svc, visit.caller, None, None, 1000)
        roles = await iam_entities.list_roles(visit.svc, visit.caller, None, None, 1000)
    except DockyardError as exc:
        return found, ErrorView.of(exc)
    found += [{"kind": "user", "name": u["UserName"], "arn": u["Arn"]} for u in users["Users"]]
    found += [{"kind": "role", "name": r["RoleName"], "arn": r["Arn"]} for r in roles["Roles"]]
    return found, None


def _statement_form(visit: Visit) -> StatementForm:
    return StatementForm(
        sid=visit.field("sid"),
        effect=visit.field("effect", "Allow"),
        everybody=visit.checked("everybody"),
        accounts=visit.field("accounts"),
        entities=tuple(visit.fields("entity")),
        preset=visit.field("preset"),
        actions=tuple(visit.fields("action")),
    )


async def _add_statement_page(
    visit: Visit,
    form: StatementForm,
    status: int = 200,
    error: ErrorView | None = None,
    field_errors: dict[str, str] | None = None,
) -> Response:
    entities, entities_error = await _iam_entities(visit)
    return tab(
        visit,
        "statement_add.html",
        "permissions",
        status,
        form=form,
        entities=entities,
        entities_error=entities_error,
        individual_actions=statements.individual_actions(),
        pull_actions=statements.PULL_ACTIONS,
        push_pull_actions=statements.PUSH_PULL_ACTIONS,
        error=error,
        field_errors=field_errors or {},
    )


async def add_statement_form(visit: Visit) -> Response:
    blank = StatementForm(sid="", effect="Allow", everybody=False, accounts="", entities=(), preset="pull", actions=())
    return await _add_statement_page(visit, blank)


async def add_statement(visit: Visit) -> Response:
    repo = repository_of(visit)
    form = _statement_form(visit)
    try:
        statement = statements.build_statement(form)
        text = statements.with_statement(await _policy_text(visit, repo.name), statement)
        await repository_policies.set_repository_policy(visit.svc, visit.caller, visit.account_id, repo.name, text)
    except StatementError as exc:
        if exc.field:
            summary = ErrorView("", "The statement was not added: correct the fields marked below.")
            return await _add_statement_page(visit, form, 400, summary, {exc.field: str(exc)})
        return await _add_statement_page(visit, form, 400, ErrorView("", str(exc)))
    except DockyardError as exc:
        return await _add_statement_page(visit, form, error_status(exc), ErrorView.of(exc))
    return visit.redirect(repository_url(repo.name, "permissions"), "Added the statement to the repository policy.")


async def remove_statement(visit: Visit) -> Response:
    repo = repository_of(visit)
    try:
        index = int(visit.field("index"))
    except ValueError:
        index = -1
    text = await _policy_text(visit, repo.name)
    views = statements.statement_views(text)
    # The page the button was on may be stale: remove only the statement the visitor saw.
    if text is None or not 0 <= index < len(views) or views[index].sid != visit.field("sid"):
        error = ErrorView("ValidationError", "That statement is no longer in the policy; reload the page.")
        return tab(visit, "repository_permissions.html", "permissions", 409, statements=views, error=error)
    if not visit.confirmed():
        label = views[index].sid or f"Statement {index + 1}"
        return visit.confirm(
            f"Remove statement {label}?",
            "The principals it names lose (or, for a Deny, regain) what it grants on this repository.",
            "Remove statement",
            repository_url(repo.name, "permissions"),
        )
    remaining = statements.without_statement(text, index)
    if remaining is None:
        await repository_policies.delete_repository_policy(visit.svc, visit.caller, visit.account_id, repo.name)
    else:
        await repository_policies.set_repository_policy(visit.svc, visit.caller, visit.account_id, repo.name, remaining)
    return visit.redirect(repository_url(repo.name, "permissions"), "Removed the statement.")


async def policy_json_form(visit: Visit) -> Response:
    repo = repository_of(visit)
    text = await _policy_text(visit, repo.name)
    return tab(visit, "policy_json.html", "permissions", text=text or "", detail=None, force=False)


async def policy_json_save(visit: Visit) -> Response:
    repo = repository_of(visit)
    text = visit.form.get("policy_text") if visit.form is not None else None
    text = text if isinstance(text, str) else ""
    force = visit.checked("force")
    try:
        parse_resource_policy(text, kind="repository")
    except PolicyError as exc:
        # AWS's message, and what exactly is wrong (AWS itself does not say).
        error = ErrorView("InvalidParameterException", exc.message)
        return tab(
            visit, "policy_json.html", "permissions", 400, text=text, detail=exc.detail, force=force, error=error
        )
    try:
        await repository_policies.set_repository_policy(
            visit.svc, visit.caller, visit.account_id, repo.name, text, force=force
        )
    except DockyardError as exc:
        return refused(visit, exc, "policy_json.html", "permissions", text=text, detail=None, force=force)
    return visit.redirect(repository_url(repo.name, "permissions"), "Saved the repository policy.")


async def policy_delete(visit: Visit) -> Response:
    repo = repository_of(visit)
    if not visit.confirmed():
        return visit.confirm(
            f"Delete the repository policy of {repo.name}?",
            "Every statement goes: only this account's principals with identity permissions can use the repository.",
            "Delete policy",
            repository_url(repo.name, "permissions"),
        )
    with contextlib.suppress(RepositoryPolicyNotFoundException):
        await repository_policies.delete_repository_policy(visit.svc, visit.caller, visit.account_id, repo.name)
    return visit.redirect(repository_url(repo.name, "permissions"), "Deleted the repository policy.")


PAGES = [
    Page(tab_path("permissions"), permissions, section=SECTION),
    Page(tab_path("permissions/add"), add_statement_form, section=SECTION),
    Page(tab_path("permissions/add"), add_statement, ("POST",), section=SECTION),
    Page(tab_path("permissions/remove"), remove_statement, ("POST",), section=SECTION),
    Page(tab_path("permissions/json"), policy_json_form, section=SECTION),
    Page(tab_path("permissions/json"), policy_json_save, ("POST",), section=SECTION),
    Page(tab_path("permissions/delete"), policy_delete, ("POST",), section=SECTION),
]
