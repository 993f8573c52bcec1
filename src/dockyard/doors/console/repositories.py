"""The Repositories pages: the list (search, count, pages), creating a repository with every
setting the AWS console offers, deleting one or several."""

from __future__ import annotations

import sys
from typing import Any

from starlette.responses import Response

from dockyard.core.errors import DockyardError
from dockyard.core.registry import repositories as core
from dockyard.core.registry.repositories import exclusion_filters_problem, registry_host
from dockyard.doors.console.forms import (
    Refusal,
    call_api,
    parse_tags,
    refusal_of,
    wildcard_filters,
)
from dockyard.doors.console.web import ErrorView, Page, Visit, console_url, repository_url

PAGE_SIZE = 50
SECTION = "repositories"
NONE_SELECTED = "Select the repositories to delete first."
ENCRYPTIONS = ("AES256", "KMS")
# CreateRepository's request members, and the form field each belongs to.
CREATE_FIELDS = {
    "repositoryName": "repository_name",
    "imageTagMutability": "exclusions",
    "imageTagMutabilityExclusionFilters": "exclusions",
    "encryptionConfiguration.kmsKey": "kms_key",
    "encryptionConfiguration": "encryption",
    "tags": "tags",
}


def _registry(visit: Visit) -> str:
    return registry_host(visit.svc, visit.account_id, visit.caller.region)


def _page_number(value: str, pages: int) -> int:
    return min(max(int(value), 1), pages) if value.isdigit() else 1


async def list_repositories(visit: Visit) -> Response:
    query = visit.param("q").strip()
    wanted = _page_number(visit.param("page"), sys.maxsize)
    try:
        found = await core.browse_repositories(
            visit.svc, visit.caller, visit.account_id, query, (wanted - 1) * PAGE_SIZE, PAGE_SIZE
        )
        pages = max(1, -(-found.matching // PAGE_SIZE))
        number = min(wanted, pages)
        if number != wanted:
            found = await core.browse_repositories(
                visit.svc, visit.caller, visit.account_id, query, (number - 1) * PAGE_SIZE, PAGE_SIZE
            )
    except DockyardError as exc:
        return visit.refused(exc)
    shown = found.repositories
    return visit.render(
        "repositories.html",
        repositories=shown,
        query=query,
        total=found.matching,
        account_total=found.total,
        page=number,
        pages=pages,
        first=(number - 1) * PAGE_SIZE + 1 if shown else 0,
        last=(number - 1) * PAGE_SIZE + len(shown),
    )


def _create_context(visit: Visit, **values: Any) -> dict[str, Any]:
    defaults = {
        "registry": _registry(visit),
        "name": "",
        "immutable": False,
        "exclusions": "",
        "scan": False,
        "encryption": "AES256",
        "kms_key": "",
        "tags": "",
        "encryptions": ENCRYPTIONS,
    }
    return {**defaults, **values}


async def create_form(visit: Visit) -> Response:
    return visit.render("repository_create.html", **_create_context(visit))


def _create_params(
    name: str, immutable: bool, exclusions: str, scan: bool, encryption: str, kms_key: str
) -> dict[str, Any]:
    filters = wildcard_filters(exclusions)
    mutability = "IMMUTABLE" if immutable else "MUTABLE"
    params: dict[str, Any] = {
        "repositoryName": name,
        "imageTagMutability": f"{mutability}_WITH_EXCLUSION" if filters else mutability,
        "imageScanningConfiguration": {"scanOnPush": scan},
        "encryptionConfiguration": {"encryptionType": encryption or "AES256"},
    }
    if kms_key:
        params["encryptionConfiguration"]["kmsKey"] = kms_key
    if filters:
        params["imageTagMutabilityExclusionFilters"] = filters
    return params


async def create(visit: Visit) -> Response:
    values = {
        "name": visit.field("repository_name"),
        "immutable": visit.checked("tag_immutability"),
        "exclusions": visit.field("exclusions"),
        "scan": visit.checked("scan_on_push"),
        "encryption": visit.field("encryption", "AES256"),
        "kms_key": visit.field("kms_key"),
        "tags": visit.field("tags"),
    }
    params = _create_params(
        values["name"], values["immutable"], values["exclusions"], values["scan"], values["encryption"],
        values["kms_key"],
    )  # fmt: skip
    tags, tags_problem = parse_tags(values["tags"])
    problem = exclusion_filters_problem(wildcard_filters(values["exclusions"]))
    refusal: Refusal | None = None
    if tags_problem or problem:
        errors = {"tags": tags_problem, "exclusions": problem}
        message = "The repository was not created: correct the fields marked below."
        refusal = Refusal(ErrorView("", message), {k: v for k, v in errors.items() if v})
    else:
        if tags:
            params["tags"] = tags
        try:
            await call_api(visit, "CreateRepository", params)
        except DockyardError as exc:
            if exc.code == "AccessDeniedException":
                return visit.refused(exc, "repository_create.html", **_create_context(visit, **values))
            refusal = refusal_of(exc, CREATE_FIELDS)
            if exc.code == "RepositoryAlreadyExistsException":
                refusal.field_errors["repository_name"] = f"A repository named {values['name']} already exists."
    if refusal is not None:
        context = _create_context(visit, **values)
        return visit.render(
            "repository_create.html", 400, error=refusal.error, field_errors=refusal.field_errors, **context
        )
    return visit.redirect(
        repository_url(values["name"], "images"), "Created the repository. Push an image to it: see View push commands."
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
