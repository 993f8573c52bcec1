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
from dockyard.doors.console.web import Page, Visit, repository_url, see_other

IMAGES_PER_PAGE = 100
TAG_STATUSES = {"all": None, "tagged": "TAGGED", "untagged": "UNTAGGED"}


# --- Images -------------------------------------------------------------------------------------


def _notice(visit: Visit) -> str | None:
    notices = {
        "created": "Created the repository. Push an image to it: see View push commands.",
        "deleted": "Deleted the selected images.",
        "none-selected": "Select the images to delete first.",
    }
    return notices.get(visit.param("notice"))


async def images(visit: Visit) -> Response:
    repo = repository_of(visit)
    status = visit.param("status", "all")
    status = status if status in TAG_STATUSES else "all"
    token = visit.param("page") or None
    context: dict[str, Any] = {"tag_status": status, "paged": bool(token), "notice": _notice(visit)}
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
        return see_other(repository_url(repository_of(visit).name, "images", notice="none-selected"))
    return tab(visit, "images_delete.html", "images", digests=digests, failures=[])


async def images_delete(visit: Visit) -> Response:
    repo = repository_of(visit)
    digests = list(dict.fromkeys(visit.fields("digest")))
    if not digests:
        return see_other(repository_url(repo.name, "images", notice="none-selected"))
    try:
        result = await image_details.batch_delete_image(
            visit.svc, visit.caller, visit.account_id, repo.name, [{"imageDigest": d} for d in digests]
        )
    except DockyardError as exc:
        return refused(visit, exc, "images_delete.html", "images", digests=digests, failures=[])
    failures = result.get("failures") or []
    if failures:
        return tab(visit, "images_delete.html", "images", 400, digests=digests, failures=failures)
    return see_other(repository_url(repo.name, "images", notice="deleted"))


# --- Scan findings ------------------------------------------------------------------------------

FINDINGS_PER_PAGE = 100


async def findings(visit: Visit) -> Response:
    repo = repository_of(visit)
    digest = visit.param("digest")
    token = visit.param("page") or None
    context: dict[str, Any] = {
        "digest": digest, "paged": bool(token), "notice": None, "next_page": None, "stale_days": None,
    }  # fmt: skip
    if visit.param("notice") == "started":
        context["notice"] = "Started the scan. Reload this page to see its findings once it completes."
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
        return tab(visit, "image_findings.html", "images", scan=None, findings=None, **context)
    except DockyardError as exc:
        return refused(visit, exc, "image_findings.html", "images", scan=None, findings=None, **context)
    context["next_page"] = result.get("nextToken")
    found = result.get("imageScanFindings") or {}
    max_age = visit.svc.settings.vulndb_max_age_days
    context["stale_days"] = max_age if is_stale(found.get("vulnerabilitySourceUpdatedAt"), max_age) else None
    return tab(
        visit,
        "image_findings.html",
        "images",
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
        context = {"digest": digest, "paged": False, "next_page": None}
        return refused(visit, exc, "image_findings.html", "images", scan=None, findings=None, **context)
    return see_other(repository_url(repo.name, "findings", digest=digest, notice="started"))


PAGES = [
    Page(tab_path("images"), images, section=SECTION),
    Page(tab_path("images/delete"), images_delete_confirm, section=SECTION),
    Page(tab_path("images/delete"), images_delete, ("POST",), section=SECTION),
    Page(tab_path("findings"), findings, section=SECTION),
    Page(tab_path("findings"), start_scan, ("POST",), section=SECTION),
]
