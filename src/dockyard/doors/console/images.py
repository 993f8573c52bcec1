"""A repository's Images tab: the images (newest first, sorted by any column, searched by tag,
filtered by tag status, numbered pages with the total), deleting them, and an image's scan findings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from dockyard.core.errors import DockyardError
from dockyard.core.registry import image_browse, image_details
from dockyard.core.scanning import scans
from dockyard.core.scanning.scan_hooks import is_stale
from dockyard.doors.console.repository import SECTION, refused, repository_of, tab, tab_path
from dockyard.doors.console.web import ErrorView, Page, Visit, error_status, repository_url

IMAGES_PER_PAGE = 50
TAG_STATUSES = {"all": None, "tagged": "TAGGED", "untagged": "UNTAGGED"}
# Sortable columns (image_browse.SORTS) and the order each starts in when first chosen.
SORT_FIRST_ORDER = {"pushed": "desc", "size": "desc", "pulled": "desc", "digest": "asc", "status": "asc"}


# --- Images -------------------------------------------------------------------------------------

NONE_SELECTED = "Select the images to delete first."


@dataclass(frozen=True)
class Listing:
    """What the images list shows: its filters, order and page, read from the address."""

    status: str
    search: str
    sort: str
    order: str
    page: int

    @classmethod
    def of(cls, visit: Visit) -> Listing:
        status = visit.param("status", "all")
        sort = visit.param("sort", "pushed")
        sort = sort if sort in SORT_FIRST_ORDER else "pushed"
        order = visit.param("order", SORT_FIRST_ORDER[sort])
        page = visit.param("page", "1")
        return cls(
            status=status if status in TAG_STATUSES else "all",
            search=visit.param("q").strip()[:300],
            sort=sort,
            order=order if order in ("asc", "desc") else SORT_FIRST_ORDER[sort],
            page=max(1, int(page)) if page.isdigit() and len(page) < 9 else 1,
        )

    def query(self, **changes: Any) -> dict[str, str]:
        """The address's query for this listing with `changes`; defaults are left out."""
        values = {"status": self.status, "q": self.search, "sort": self.sort, "order": self.order, "page": self.page}
        values |= changes
        defaults = {"status": "all", "q": "", "sort": "pushed", "order": SORT_FIRST_ORDER[values["sort"]], "page": 1}
        return {key: str(value) for key, value in values.items() if value != defaults[key]}

    def sorted_by(self, column: str) -> dict[str, str]:
        """The query that sorts by `column`: its first order, or the other one when already sorted by it."""
        if column == self.sort:
            return self.query(order="asc" if self.order == "desc" else "desc", page=1)
        return self.query(sort=column, order=SORT_FIRST_ORDER[column], page=1)


@dataclass(frozen=True)
class Pager:
    page: int
    pages: int
    total: int
    first_shown: int
    last_shown: int

    @classmethod
    def of(cls, page: int, total: int, shown: int) -> Pager:
        first = (page - 1) * IMAGES_PER_PAGE + 1
        return cls(page, max(1, -(-total // IMAGES_PER_PAGE)), total, first if shown else 0, first + shown - 1)


async def images(visit: Visit) -> Response:
    repo = repository_of(visit)
    listing = Listing.of(visit)
    context: dict[str, Any] = {"listing": listing}
    try:
        found = await image_browse.browse_images(
            visit.svc,
            visit.caller,
            visit.account_id,
            repo.name,
            sort=listing.sort,
            descending=listing.order == "desc",
            tag_search=listing.search,
            tag_status=TAG_STATUSES[listing.status],
            offset=(listing.page - 1) * IMAGES_PER_PAGE,
            limit=IMAGES_PER_PAGE,
        )
    except DockyardError as exc:
        return refused(visit, exc, "image_list.html", "images", images=[], pager=Pager.of(1, 0, 0), **context)
    pager = Pager.of(listing.page, found.total, len(found.details))
    return tab(visit, "image_list.html", "images", images=found.details, pager=pager, **context)


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
    # From the image's page, back to it; from the findings page, to the findings.
    back = "image" if visit.field("back") == "image" else "findings"
    return visit.redirect(repository_url(repo.name, back, digest=digest), "Started the scan.")


PAGES = [
    Page(tab_path("images"), images, section=SECTION),
    Page(tab_path("images/delete"), images_delete_confirm, section=SECTION),
    Page(tab_path("images/delete"), images_delete, ("POST",), section=SECTION),
    Page(tab_path("findings"), findings, section=SECTION),
    Page(tab_path("findings"), start_scan, ("POST",), section=SECTION),
]
