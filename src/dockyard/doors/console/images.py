"""A repository's Images tab: the images (filtered by tag status, a page at a time), deleting
them, and an image's scan findings."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from dockyard.core.errors import DockyardError
from dockyard.core.registry import image_details
from dockyard.core.scanning import scans
from dockyard.core.scanning.scan_hooks import is_stale
from dockyard.doors.console.repository import SECTION, refused, repository_of, tab, tab_path
from dockyard.doors.console.web import ErrorView, Page, Visit, error_status, repository_url

IMAGES_PER_PAGE = 100
TAG_STATUSES = {"all": None, "tagged": "TAGGED", "untagged": "UNTAGGED"}


# --- Images -------------------------------------------------------------------------------------

NONE_SELECTED = "Select the images to delete first."


async def images(visit: Visit) -> Response:
    repo = repository_of(visit)
    status = visit.param("status", "all")
    status = status if status in TAG_STATUSES else "all"
    token = visit.param("page") or None
    context: dict[str, Any] = {"tag_status": status, "paged": bool(token)}
    try:
        result = await image_details.describe_images(
            visit.svc,
            visit.caller,
            visit.account_id,
            repo.name,
            tag_status=TAG_STATUSES[status],
            max_results=IMAGES_PER_PAGE,
            next_token=token,
        )
    except DockyardError as exc:
        return refused(visit, exc, "repository_images.html", "images", images=[], next_page=None, **context)
    return tab(
        visit,
        "repository_images.html",
        "images",
        images=result["imageDetails"],
        next_page=result.get("nextToken"),
        **context,
    )


async def images_delete_confirm(visit: Visit) -> Response:
    digests = list(dict.fromkeys(visit.params("digest")))
    if not digests:
        return visit.redirect(repository_url(repository_of(visit).name, "images"), NONE_SELECTED)
    return tab(visit, "images_delete.html", "images", digests=digests, failures=[])


async def images_delete(visit: Visit) -> Response:
    repo = repository_of(visit)
    digests = list(dict.fromkeys(visit.fields("digest")))
    if not digests:
        return visit.redirect(repository_url(repo.name, "images"), NONE_SELECTED)
    try:
        result = await image_details.batch_delete_image(
            visit.svc, visit.caller, visit.account_id, repo.name, [{"imageDigest": d} for d in digests]
        )
    except DockyardError as exc:
        return refused(visit, exc, "images_delete.html", "images", digests=digests, failures=[])
    failures = result.get("failures") or []
    if failures:
        return tab(visit, "images_delete.html", "images", 400, digests=digests, failures=failures)
    return visit.redirect(repository_url(repo.name, "images"), "Deleted the selected images.")


# --- Scan findings ------------------------------------------------------------------------------

FINDINGS_PER_PAGE = 100


async def findings(visit: Visit) -> Response:
    return await _findings_page(visit, visit.param("digest"), visit.param("page") or None)


async def _findings_page(
    visit: Visit, digest: str, token: str | None, status: int = 200, error: ErrorView | None = None
) -> Response:
    """The image's scan status and findings; with `error`, why an action on it was refused."""
    repo = repository_of(visit)
    context: dict[str, Any] = {
        "digest": digest, "paged": bool(token), "next_page": None, "stale_days": None, "error": error,
    }  # fmt: skip
    try:
        result = await scans.describe_image_scan_findings(
            visit.svc,
            visit.caller,
            visit.account_id,
            repo.name,
            {"imageDigest": digest},
            max_results=FINDINGS_PER_PAGE,
            next_token=token,
        )
    except scans.ScanNotFoundException:
        return tab(visit, "image_findings.html", "images", status, scan=None, findings=None, **context)
    except DockyardError as exc:
        if error is not None:
            return tab(visit, "image_findings.html", "images", status, scan=None, findings=None, **context)
        return refused(visit, exc, "image_findings.html", "images", scan=None, findings=None, **context)
    context["next_page"] = result.get("nextToken")
    found = result.get("imageScanFindings") or {}
    max_age = visit.svc.settings.vulndb_max_age_days
    context["stale_days"] = max_age if is_stale(found.get("vulnerabilitySourceUpdatedAt"), max_age) else None
    return tab(
        visit,
        "image_findings.html",
        "images",
        status,
        scan=result["imageScanStatus"],
        findings=result.get("imageScanFindings"),
        **context,
    )


async def start_scan(visit: Visit) -> Response:
    repo = repository_of(visit)
    digest = visit.field("digest")
    try:
        await scans.start_image_scan(visit.svc, visit.caller, visit.account_id, repo.name, {"imageDigest": digest})
    except DockyardError as exc:
        # The same image's page, with why the scan was refused.
        return await _findings_page(visit, digest, None, error_status(exc), ErrorView.of(exc))
    return visit.redirect(repository_url(repo.name, "findings", digest=digest), "Started the scan.")


PAGES = [
    Page(tab_path("images"), images, section=SECTION),
    Page(tab_path("images/delete"), images_delete_confirm, section=SECTION),
    Page(tab_path("images/delete"), images_delete, ("POST",), section=SECTION),
    Page(tab_path("findings"), findings, section=SECTION),
    Page(tab_path("findings"), start_scan, ("POST",), section=SECTION),
]
