"""A repository's Settings tab: tag mutability, scan on push and the lifecycle policy."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from dockyard.core.errors import DockyardError, InvalidParameterException, LifecyclePolicyNotFoundException
from dockyard.core.operations import lifecycle
from dockyard.core.registry import repositories as repos_core
from dockyard.core.registry import repository_settings
from dockyard.doors.console.repository import SECTION, refused, repository_of, tab, tab_path
from dockyard.doors.console.web import ErrorView, Page, Visit, repository_url

TAG_MUTABILITIES = ("MUTABLE", "IMMUTABLE", "MUTABLE_WITH_EXCLUSION", "IMMUTABLE_WITH_EXCLUSION")
BAD_MUTABILITY = (
    "Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member must satisfy enum value set: "
    "[IMMUTABLE, MUTABLE, MUTABLE_WITH_EXCLUSION, IMMUTABLE_WITH_EXCLUSION]'"
)


# --- Settings -----------------------------------------------------------------------------------


async def _describe(visit: Visit, name: str) -> dict[str, Any]:
    result = await repos_core.describe_repositories(visit.svc, visit.caller, visit.account_id, [name])
    return dict(result["repositories"][0])


def _settings_context(described: dict[str, Any]) -> dict[str, Any]:
    filters = described.get("imageTagMutabilityExclusionFilters") or []
    return {
        "described": described,
        "mutability": described["imageTagMutability"],
        "exclusions": "\n".join(f["filter"] for f in filters),
        "scan_on_push": described["imageScanningConfiguration"]["scanOnPush"],
        "mutabilities": TAG_MUTABILITIES,
    }


async def _lifecycle_context(visit: Visit, name: str) -> dict[str, Any]:
    """The lifecycle policy section: the policy's text and when it last ran, or why it is hidden."""
    try:
        found = await lifecycle.get_lifecycle_policy(visit.svc, visit.caller, visit.account_id, name)
    except LifecyclePolicyNotFoundException:
        return {"lifecycle_text": "", "lifecycle_evaluated": None, "lifecycle_error": None}
    except DockyardError as exc:
        return {"lifecycle_text": "", "lifecycle_evaluated": None, "lifecycle_error": ErrorView.of(exc)}
    return {
        "lifecycle_text": found["lifecyclePolicyText"],
        "lifecycle_evaluated": found.get("lastEvaluatedAt"),
        "lifecycle_error": None,
    }


async def settings(visit: Visit) -> Response:
    repo = repository_of(visit)
    try:
        described = await _describe(visit, repo.name)
    except DockyardError as exc:
        return refused(visit, exc, "error.html", "settings")
    return tab(
        visit,
        "repository_settings.html",
        "settings",
        **_settings_context(described),
        **await _lifecycle_context(visit, repo.name),
    )


async def _settingsrefused(visit: Visit, exc: DockyardError, **overrides: Any) -> Response:
    repo = repository_of(visit)
    try:
        context = _settings_context(await _describe(visit, repo.name))
        context.update(await _lifecycle_context(visit, repo.name))
    except DockyardError:
        return refused(visit, exc, "error.html", "settings")
    return refused(visit, exc, "repository_settings.html", "settings", **{**context, **overrides})


async def save_tag_mutability(visit: Visit) -> Response:
    repo = repository_of(visit)
    mutability = visit.field("mutability")
    exclusions = visit.field("exclusions")
    filters = [{"filterType": "WILDCARD", "filter": line.strip()} for line in exclusions.splitlines() if line.strip()]
    problem = repos_core.exclusion_filters_problem(filters)
    if problem is not None:
        context = _settings_context(await _describe(visit, repo.name))
        context.update(await _lifecycle_context(visit, repo.name), mutability=mutability, exclusions=exclusions)
        error = ErrorView("", "The tag mutability setting was not saved: correct the exclusion filters.")
        return tab(
            visit,
            "repository_settings.html",
            "settings",
            400,
            error=error,
            field_errors={"exclusions": problem},
            **context,
        )
    try:
        if mutability not in TAG_MUTABILITIES:
            raise InvalidParameterException(BAD_MUTABILITY)
        await repository_settings.put_image_tag_mutability(
            visit.svc, visit.caller, visit.account_id, repo.name, mutability, filters or None
        )
    except DockyardError as exc:
        return await _settingsrefused(visit, exc, mutability=mutability, exclusions=exclusions)
    return visit.redirect(repository_url(repo.name, "settings"), "Saved the tag mutability setting.")


async def save_scanning(visit: Visit) -> Response:
    repo = repository_of(visit)
    scan = visit.checked("scan_on_push")
    try:
        await repository_settings.put_image_scanning_configuration(
            visit.svc, visit.caller, visit.account_id, repo.name, scan
        )
    except DockyardError as exc:
        return await _settingsrefused(visit, exc, scan_on_push=scan)
    return visit.redirect(repository_url(repo.name, "settings"), "Saved the scanning setting.")


async def save_lifecycle(visit: Visit) -> Response:
    repo = repository_of(visit)
    text = visit.form.get("lifecycle_text") if visit.form is not None else None
    text = text if isinstance(text, str) else ""
    try:
        await lifecycle.put_lifecycle_policy(visit.svc, visit.caller, visit.account_id, repo.name, text)
    except DockyardError as exc:
        return await _settingsrefused(visit, exc, lifecycle_text=text)
    return visit.redirect(repository_url(repo.name, "settings"), "Saved the lifecycle policy.")


async def delete_lifecycle(visit: Visit) -> Response:
    repo = repository_of(visit)
    if not visit.confirmed():
        return visit.confirm(
            f"Delete the lifecycle policy of {repo.name}?",
            "Images are no longer expired by its rules.",
            "Delete lifecycle policy",
            repository_url(repo.name, "settings"),
        )
    try:
        await lifecycle.delete_lifecycle_policy(visit.svc, visit.caller, visit.account_id, repo.name)
    except LifecyclePolicyNotFoundException:
        pass
    except DockyardError as exc:
        return await _settingsrefused(visit, exc)
    return visit.redirect(repository_url(repo.name, "settings"), "Deleted the lifecycle policy.")


PAGES = [
    Page(tab_path("settings"), settings, section=SECTION),
    Page(tab_path("settings/tag-mutability"), save_tag_mutability, ("POST",), section=SECTION),
    Page(tab_path("settings/scanning"), save_scanning, ("POST",), section=SECTION),
    Page(tab_path("settings/lifecycle"), save_lifecycle, ("POST",), section=SECTION),
    Page(tab_path("settings/lifecycle/delete"), delete_lifecycle, ("POST",), section=SECTION),
]
