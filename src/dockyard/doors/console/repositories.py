"""The Repositories pages: the list, creating a repository, deleting one or several."""

from __future__ import annotations

from starlette.responses import Response

from dockyard.core.errors import DockyardError
from dockyard.core.registry import repositories as core
from dockyard.core.registry.repositories import RepositorySettings, registry_host
from dockyard.doors.console.web import ErrorView, Page, Visit, console_url, repository_url

PAGE_SIZE = 50
SECTION = "repositories"
NONE_SELECTED = "Select the repositories to delete first."


def _registry(visit: Visit) -> str:
    return registry_host(visit.svc, visit.account_id, visit.caller.region)


async def list_repositories(visit: Visit) -> Response:
    token = visit.param("page") or None
    try:
        result = await core.describe_repositories(visit.svc, visit.caller, visit.account_id, None, PAGE_SIZE, token)
    except DockyardError as exc:
        return visit.refused(exc, "repositories.html", repositories=[], next_page=None, paged=bool(token))
    return visit.render(
        "repositories.html",
        repositories=result["repositories"],
        next_page=result.get("nextToken"),
        paged=bool(token),
    )


async def create_form(visit: Visit) -> Response:
    return visit.render("repository_create.html", registry=_registry(visit), name="", immutable=False, scan=False)


async def create(visit: Visit) -> Response:
    name = visit.field("repository_name")
    immutable = visit.checked("tag_immutability")
    scan = visit.checked("scan_on_push")
    settings = RepositorySettings(image_tag_mutability="IMMUTABLE" if immutable else "MUTABLE", scan_on_push=scan)
    try:
        await core.create_repository(visit.svc, visit.caller, visit.account_id, name, settings)
    except DockyardError as exc:
        return visit.refused(
            exc, "repository_create.html", registry=_registry(visit), name=name, immutable=immutable, scan=scan
        )
    return visit.redirect(
        repository_url(name, "images"), "Created the repository. Push an image to it: see View push commands."
    )


async def delete_confirm(visit: Visit) -> Response:
    names = list(dict.fromkeys(visit.params("name")))
    if not names:
        return visit.redirect(console_url("repositories"), NONE_SELECTED)
    return visit.render("repositories_delete.html", names=names, failures=[])


async def delete(visit: Visit) -> Response:
    names = list(dict.fromkeys(visit.fields("name")))
    if not names:
        return visit.redirect(console_url("repositories"), NONE_SELECTED)
    deleted: list[str] = []
    failures: list[tuple[str, ErrorView]] = []
    status = 200
    for name in names:
        try:
            # The console deletes a repository with its images, as the seed describes.
            await core.delete_repository(visit.svc, visit.caller, visit.account_id, name, force=True)
            deleted.append(name)
        except DockyardError as exc:
            failures.append((name, ErrorView.of(exc)))
            status = 403 if exc.code == "AccessDeniedException" else exc.status
    if not failures:
        return visit.redirect(console_url("repositories"), f"Deleted {', '.join(deleted)}, with all of their images.")
    remaining = [name for name, _ in failures]
    return visit.render("repositories_delete.html", status, names=remaining, failures=failures, deleted=deleted)


PAGES = [
    Page("/repositories", list_repositories, section=SECTION),
    Page("/repositories/create", create_form, section=SECTION),
    Page("/repositories/create", create, ("POST",), section=SECTION),
    Page("/repositories/delete", delete_confirm, section=SECTION),
    Page("/repositories/delete", delete, ("POST",), section=SECTION),
]
