"""IAM user groups: the list (with the new-group form), a group's page (its members, attached
and inline policies), adding and removing members, and deleting a group."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from starlette.responses import Response

from dockyard.core.errors import DockyardError
from dockyard.core.identity import iam_common, iam_entities
from dockyard.core.identity.iam_errors import EntityAlreadyExists
from dockyard.doors.console.iam import LIST_ALL, entity_url, list_page, policy_pages, policy_sections, section
from dockyard.doors.console.web import ErrorView, Page, Visit, console_url, error_status

SECTION = "iam-groups"
GROUPS_PER_PAGE = 100


async def groups(visit: Visit) -> Response:
    return await _groups_page(visit)


async def _groups_page(
    visit: Visit, status: int = 200, name: str = "", field_errors: dict[str, str] | None = None
) -> Response:
    """The groups list, with the new-group form (and, after a refused create, why, beside the field)."""

    def listing(marker: str | None) -> Awaitable[dict[str, Any]]:
        return iam_entities.list_groups(visit.svc, visit.caller, None, marker, GROUPS_PER_PAGE)

    return await list_page(
        visit, "iam_groups.html", "Groups", listing, status, name=name, field_errors=field_errors or {}
    )


async def create_group(visit: Visit) -> Response:
    name = visit.field("group_name")
    problem = iam_common.group_name_problem(name)
    if problem is not None:
        return await _groups_page(visit, 400, name, {"group_name": problem})
    try:
        await iam_entities.create_group(visit.svc, visit.caller, name)
    except EntityAlreadyExists:
        return await _groups_page(visit, 409, name, {"group_name": f"A group named {name} already exists."})
    except DockyardError as exc:
        return visit.refused(exc, "iam_groups.html", groups=[], next_page=None, paged=False, name=name)
    return visit.redirect(entity_url("group", name), "Created the group. Add its users and attach its policies.")


async def group(
    visit: Visit, status: int = 200, error: ErrorView | None = None, field_errors: dict[str, str] | None = None
) -> Response:
    name = visit.request.path_params["name"]
    svc, caller = visit.svc, visit.caller
    try:
        described = await iam_entities.get_group(svc, caller, name, None, LIST_ALL)
    except DockyardError as exc:
        return visit.refused(exc)
    every_user, users_error = await section(iam_entities.list_users(svc, caller, None, None, LIST_ALL))
    member_names = {u["UserName"] for u in described["Users"]}
    return visit.render(
        "iam_group.html",
        status,
        group=described["Group"],
        members=described["Users"],
        addable=[u for u in (every_user or {}).get("Users", []) if u["UserName"] not in member_names],
        users_error=users_error,
        error=error,
        field_errors=field_errors or {},
        **await policy_sections(visit, "group", name),
    )


async def _or_group_page(visit: Visit, exc: DockyardError) -> Response:
    return await group(visit, error_status(exc), ErrorView.of(exc))


async def add_member(visit: Visit) -> Response:
    name = visit.request.path_params["name"]
    user_name = visit.field("user_name")
    if not user_name:
        return await group(visit, 400, field_errors={"user_name": "Choose the user to add."})
    try:
        await iam_entities.add_user_to_group(visit.svc, visit.caller, name, user_name)
    except DockyardError as exc:
        return await _or_group_page(visit, exc)
    return visit.redirect(entity_url("group", name), f"Added {user_name} to the group.")


async def remove_member(visit: Visit) -> Response:
    name = visit.request.path_params["name"]
    user_name = visit.field("user_name")
    if not visit.confirmed():
        return visit.confirm(
            f"Remove {user_name} from group {name}?",
            "The user loses the permissions the group's policies grant.",
            "Remove from group",
            entity_url("group", name),
        )
    try:
        await iam_entities.remove_user_from_group(visit.svc, visit.caller, name, user_name)
    except DockyardError as exc:
        return await _or_group_page(visit, exc)
    return visit.redirect(entity_url("group", name), f"Removed {user_name} from the group.")


async def delete_group(visit: Visit) -> Response:
    name = visit.request.path_params["name"]
    if not visit.confirmed():
        cancel = entity_url("group", name)
        return visit.confirm(f"Delete group {name}?", "This cannot be undone.", "Delete group", cancel)
    try:
        await iam_entities.delete_group(visit.svc, visit.caller, name)
    except DockyardError as exc:
        return await _or_group_page(visit, exc)
    return visit.redirect(console_url("iam/groups"), f"Deleted group {name}.")


async def _group_page(
    visit: Visit, status: int, error: ErrorView | None, field_errors: dict[str, str] | None
) -> Response:
    return await group(visit, status, error, field_errors)


PAGES = [
    Page("/iam/groups", groups, section=SECTION),
    Page("/iam/groups", create_group, ("POST",), section=SECTION),
    Page("/iam/groups/{name}", group, section=SECTION),
    Page("/iam/groups/{name}/delete", delete_group, ("POST",), section=SECTION),
    Page("/iam/groups/{name}/members/add", add_member, ("POST",), section=SECTION),
    Page("/iam/groups/{name}/members/remove", remove_member, ("POST",), section=SECTION),
    *policy_pages("group", _group_page, SECTION),
]
