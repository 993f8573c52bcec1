"""Issue 17's image and lifecycle pages in Debian's Chromium, with and without JavaScript, by
keyboard: the images list (newest first, sortable columns, tag search, a pager with the total at
the top and the bottom, short digests), an image's page (URI and digest, layers, an index's
platforms each linking to its page, the scan's severity badges and its findings sorted and
filtered on the server, signatures), and the Lifecycle tab (rules table, the rule form with the
core's errors beside their fields, preview, delete confirmed). axe-core finds no violation on any
of them, none is wider than a phone, and each is saved as a screenshot under test-artifacts/."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_console_product import (
    DESKTOP,
    PHONE,
    assert_accessible,
    console,
    no_horizontal_overflow,
    open_context,
    put_image,
    signed_in,
)
from tests.support.browser import Screenshots
from tests.support.clients import Boto3Clients
from tests.support.images import build_image, build_index
from tests.support.scan_images import OSV_FIXTURES, npm_app, python_packages
from tests.support.server import DockyardServer, ServerFactory, dockyard_command

REPOSITORY = "shop/web"
COSIGN = "application/vnd.dev.cosign.artifact.sig.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"


@pytest.fixture
def server(dockyard_server_factory: ServerFactory) -> DockyardServer:
    server = dockyard_server_factory()
    # Real advisories (tests/support/osv), so the scanned image has findings of several severities.
    done = subprocess.run(
        [*dockyard_command(), "vulndb", "import", str(OSV_FIXTURES), "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env=server.server_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return server


@pytest.fixture
def ecr(server: DockyardServer) -> Any:
    return Boto3Clients(server)("ecr")


@pytest.fixture(params=[True, False], ids=["with-js", "without-js"])
def javascript(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def page(chromium: Browser, server: DockyardServer, javascript: bool) -> Iterator[Page]:
    context = open_context(chromium, javascript=javascript)
    page = signed_in(context, server)
    # With JavaScript, destructive buttons ask in a dialog: say yes.
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()


def upload(ecr: Any, data: bytes, digest: str) -> None:
    if (
        ecr.batch_check_layer_availability(repositoryName=REPOSITORY, layerDigests=[digest])["layers"][0][
            "layerAvailability"
        ]
        == "AVAILABLE"
    ):
        return
    upload_id = ecr.initiate_layer_upload(repositoryName=REPOSITORY)["uploadId"]
    ecr.upload_layer_part(
        repositoryName=REPOSITORY, uploadId=upload_id, partFirstByte=0, partLastByte=len(data) - 1, layerPartBlob=data
    )
    ecr.complete_layer_upload(repositoryName=REPOSITORY, uploadId=upload_id, layerDigests=[digest])


def seed(ecr: Any, tmp_path: Path) -> dict[str, Any]:
    """An application image with known vulnerabilities (scanned), a two-platform index, a
    cosign signature of the application image, and a few small tagged images."""
    ecr.create_repository(repositoryName=REPOSITORY, imageScanningConfiguration={"scanOnPush": True})
    small = [
        put_image(
            ecr, REPOSITORY, build_image(tmp_path / f"s{n}", f"build-{n}", [1024 * (n + 1)], seed=n), f"build-{n}"
        )
        for n in range(3)
    ]
    layers = [
        python_packages({"PyYAML": "5.3.1", "urllib3": "1.26.4", "requests": "2.31.0"}),
        npm_app({"lodash": "4.17.20"}, {"lodash": "4.17.20", "minimist": "1.2.5"}),
        300_000,
    ]
    app = build_image(tmp_path / "app", "v1.0", layers, seed="app")
    put_image(ecr, REPOSITORY, app, "v1.0")
    index = build_index(tmp_path / "multi", "multi", [4096], seed="multi")
    for child in index.images:
        for blob in child.blobs:
            upload(ecr, blob.data, blob.digest)
        ecr.put_image(
            repositoryName=REPOSITORY,
            imageManifest=child.manifest.data.decode(),
            imageManifestMediaType=child.media_type,
        )
    ecr.put_image(
        repositoryName=REPOSITORY, imageManifest=index.index.data.decode(), imageManifestMediaType=index.media_type,
        imageTag="multi",
    )  # fmt: skip
    upload(ecr, b"{}", "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
    empty = {"mediaType": EMPTY, "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
             "size": 2}  # fmt: skip
    signature = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": COSIGN,
        "config": empty, "layers": [empty],
        "subject": {"mediaType": app.media_type, "digest": app.digest, "size": app.manifest.size},
    }  # fmt: skip
    signed = ecr.put_image(repositoryName=REPOSITORY, imageManifest=json.dumps(signature))["image"]["imageId"]
    deadline = time.monotonic() + 120
    while True:
        described = ecr.describe_images(repositoryName=REPOSITORY, imageIds=[{"imageDigest": app.digest}])
        status = described["imageDetails"][0].get("imageScanStatus", {}).get("status")
        if status not in (None, "IN_PROGRESS"):
            break
        assert time.monotonic() < deadline, "the scan did not end"
        time.sleep(0.3)
    assert status == "COMPLETE", described
    return {"app": app, "index": index, "small": small, "signature": signed["imageDigest"]}


def rows(page: Page) -> Any:
    return page.locator("table.images tbody tr")


def test_images_list_and_image_pages(
    page: Page, server: DockyardServer, ecr: Any, tmp_path: Path, javascript: bool, screenshots: Screenshots,
    chromium: Browser,
) -> None:  # fmt: skip
    seeded = seed(ecr, tmp_path)
    app, index = seeded["app"], seeded["index"]
    total = 3 + 1 + 2 + 1 + 1  # small images, the application, the index's two children and itself, the signature
    page.goto(console(server, "repositories"))
    page.get_by_role("link", name=REPOSITORY).press("Enter")
    expect(page.get_by_role("heading", name=REPOSITORY)).to_be_visible()

    # Newest first, with the total at the top and the bottom.
    expect(rows(page)).to_have_count(total)
    expect(rows(page).first).to_contain_text(seeded["signature"][:19])
    pagers = page.locator("nav.image-pager")
    expect(pagers).to_have_count(2)
    for n in range(2):
        expect(pagers.nth(n)).to_contain_text(f"1–{total} of {total} images")
    # Short digests, copied whole.
    cell = rows(page).filter(has_text="v1.0").locator("td .copyable")
    expect(cell.locator("code")).to_have_text(f"{app.digest[:19]}…")
    expect(cell.locator("button.copy")).to_have_attribute("data-copy", app.digest)
    if javascript:
        expect(cell.locator("button.copy")).to_be_visible()
    else:
        expect(cell.locator("button.copy")).to_be_hidden()
    row = rows(page).filter(has_text="v1.0")
    expect(row.locator(".sev-critical")).to_have_text("Critical 2")
    expect(row.locator(".sev-high")).to_have_text(re.compile(r"^High \d+$"))
    screenshots(page, "images-newest-first")

    # Sorted by size, biggest first, then smallest first (the header link, by keyboard).
    page.get_by_role("link", name=re.compile(r"^Size \(MiB\)")).press("Enter")
    expect(page).to_have_url(re.compile(r"sort=size"))
    expect(page.locator("th[aria-sort]")).to_have_attribute("aria-sort", "descending")
    expect(rows(page).first.get_by_role("rowheader")).to_have_text("v1.0")
    page.get_by_role("link", name=re.compile(r"^Size \(MiB\)")).press("Enter")
    expect(page.locator("th[aria-sort]")).to_have_attribute("aria-sort", "ascending")
    expect(rows(page).last.get_by_role("rowheader")).to_have_text("v1.0")
    screenshots(page, "images-by-size")

    # Tag search (any case), submitted with Enter; the sort is kept.
    search = page.get_by_label("Search tags")
    search.fill("BUILD-")
    search.press("Enter")
    expect(page).to_have_url(re.compile(r"q=BUILD-"))
    expect(page).to_have_url(re.compile(r"sort=size"))
    expect(rows(page)).to_have_count(3)
    expect(pagers.first).to_contain_text("1–3 of 3 images")
    screenshots(page, "images-tag-search")
    page.get_by_role("link", name="Clear filters").press("Enter")
    expect(rows(page)).to_have_count(total)

    # The application image's page: URI, digest, layers, scan, findings, signature.
    rows(page).filter(has_text="v1.0").get_by_role("link", name="v1.0").press("Enter")
    expect(page.get_by_role("heading", name="Image v1.0")).to_be_visible()
    summary = page.locator("dl.image-summary")
    expect(summary).to_contain_text(f"{server.registry}/{REPOSITORY}@{app.digest}")
    expect(summary).to_contain_text(app.media_type)
    expect(summary).to_contain_text("ACTIVE")
    expect(page.get_by_role("heading", name=f"Layers ({len(app.layers)})")).to_be_visible()
    expect(page.locator("table.layers tbody tr")).to_have_count(len(app.layers))
    expect(page.locator("dl.summary .sev-critical")).to_have_text("Critical 2")
    findings = page.locator("table.findings tbody tr")
    expect(findings.first.locator(".sev")).to_have_text("Critical")  # most severe first
    count = findings.count()
    assert count >= 4, count
    signatures = page.locator("table.referrers tbody tr")
    expect(signatures).to_have_count(1)
    expect(signatures).to_contain_text("Signature (cosign)")
    expect(signatures).to_contain_text(seeded["signature"][:19])
    screenshots(page, "image-page")
    if not javascript:
        assert_accessible_without_js(chromium, server, page.url)
    else:
        assert_accessible(page)

    # Findings filtered by severity and text, sorted by package: all on the server.
    page.get_by_label("Severity", exact=True).select_option("high")
    page.get_by_role("button", name="Filter findings").press("Enter")
    expect(page).to_have_url(re.compile(r"severity=high"))
    for severity in findings.locator(".sev").all_inner_texts():
        assert severity == "High"
    page.get_by_label("Severity", exact=True).select_option("")
    page.get_by_label("Name or package").fill("pyyaml")
    page.get_by_role("button", name="Filter findings").press("Enter")
    expect(findings).to_have_count(1)
    expect(findings).to_contain_text("CVE-2020-14343")
    page.get_by_role("link", name="Clear filters").press("Enter")
    expect(findings).to_have_count(count)
    page.get_by_role("link", name=re.compile(r"^Package")).press("Enter")
    expect(page.locator("table.findings th[aria-sort]")).to_contain_text("Package")
    packages = [text.lower() for text in findings.locator("td:nth-child(3)").all_inner_texts()]
    assert packages == sorted(packages), packages
    screenshots(page, "image-findings-by-package")

    # The signature's own page refers back to the image.
    signatures.get_by_role("link").press("Enter")
    expect(page.locator("dl.image-summary")).to_contain_text(app.digest)
    expect(page.locator("dl.image-summary")).to_contain_text(COSIGN)

    # The index lists its platforms, each linking to its own page.
    page.goto(console(server, f"repositories/{REPOSITORY}/-/image?digest={index.digest}"))
    expect(page.get_by_role("heading", name="Platforms (2)")).to_be_visible()
    screenshots(page, "image-index")
    page.locator("table.platforms").get_by_role("link", name=re.compile(r"^linux.arm64.v8")).press("Enter")
    arm = index.for_platform("linux/arm64/v8")
    expect(page.locator("dl.image-summary")).to_contain_text(arm.digest)
    expect(page.get_by_role("heading", name="Layers (1)")).to_be_visible()

    # A digest that is not there is a real 404.
    response = page.goto(console(server, f"repositories/{REPOSITORY}/-/image?digest=sha256:{'0' * 64}"))
    assert response is not None and response.status == 404
    expect(page.get_by_role("alert")).to_contain_text("ImageNotFoundException")

    if javascript:
        check_layouts(chromium, server, [
            f"repositories/{REPOSITORY}/-/images", f"repositories/{REPOSITORY}/-/images?sort=digest&q=build",
            f"repositories/{REPOSITORY}/-/image?digest={app.digest}",
            f"repositories/{REPOSITORY}/-/image?digest={index.digest}",
        ], screenshots)  # fmt: skip


def assert_accessible_without_js(chromium: Browser, server: DockyardServer, url: str) -> None:
    """axe needs a script: the page as a browser without JavaScript got it, checked in one with."""
    context = open_context(chromium)
    checker = signed_in(context, server)
    checker.goto(url)
    assert_accessible(checker)
    context.close()


def check_layouts(chromium: Browser, server: DockyardServer, paths: list[str], screenshots: Screenshots) -> None:
    """No axe violation on a desktop, and nothing wider than a phone."""
    for viewport in (DESKTOP, PHONE):
        context = open_context(chromium, viewport=viewport)
        checker = signed_in(context, server)
        for path in paths:
            checker.goto(console(server, path))
            no_horizontal_overflow(checker)
            if viewport is DESKTOP:
                assert_accessible(checker)
            else:
                screenshots(checker, f"phone-{re.sub(r'[^a-z]+', '-', path.rsplit('/', 1)[-1])[:30]}")
        context.close()


def test_lifecycle_editor_by_keyboard(
    page: Page, server: DockyardServer, ecr: Any, tmp_path: Path, javascript: bool, screenshots: Screenshots,
    chromium: Browser,
) -> None:  # fmt: skip
    ecr.create_repository(repositoryName=REPOSITORY)
    for n, tag in enumerate(["old-1", "old-2", "old-3", "keep"]):
        put_image(ecr, REPOSITORY, build_image(tmp_path / tag, tag, [2048], seed=n), tag)
    page.goto(console(server, f"repositories/{REPOSITORY}/-/images"))
    page.get_by_role("link", name="Lifecycle", exact=True).press("Enter")
    expect(page.get_by_role("heading", name="Lifecycle rules")).to_be_visible()
    expect(page.get_by_text("has no lifecycle policy")).to_be_visible()
    screenshots(page, "lifecycle-empty")

    page.get_by_role("link", name="Add rule").press("Enter")
    expect(page.get_by_role("heading", name="Add lifecycle rule")).to_be_visible()
    expect(page.get_by_label("Rule priority")).to_have_value("1")
    page.get_by_label("Tagged", exact=True).press("Space")
    page.get_by_label("Count type").select_option("imageCountMoreThan")
    page.get_by_label("Count number").press("Control+a")
    page.get_by_label("Count number").press_sequentially("1")
    page.get_by_label("Transition to archive").press("Space")
    page.get_by_role("button", name="Save rule").press("Enter")
    # The core's refusal, in plain words beside the field; nothing stored.
    error = page.locator("#tag_values-error")
    expect(error).to_have_text("Give at least one tag prefix or pattern.")
    expect(page.get_by_label("Prefixes or patterns")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("alert")).not_to_contain_text("Invalid parameter")
    with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
        ecr.get_lifecycle_policy(repositoryName=REPOSITORY)
    screenshots(page, "lifecycle-rule-error")
    assert_accessible_somewhere(page, javascript)

    page.get_by_label("Prefixes or patterns").press_sequentially("old-")
    page.get_by_role("button", name="Preview").press("Enter")
    expect(page.get_by_role("heading", name="Preview results")).to_be_visible()
    expect(page.locator("section.preview")).to_contain_text("2 would move to the archive")
    expect(page.locator("table.preview-results tbody tr")).to_have_count(2)
    with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
        ecr.get_lifecycle_policy(repositoryName=REPOSITORY)  # a preview saves nothing
    screenshots(page, "lifecycle-rule-preview")
    page.get_by_role("button", name="Save rule").press("Enter")
    expect(page.get_by_role("status")).to_have_text("Added lifecycle rule 1.")
    stored = json.loads(ecr.get_lifecycle_policy(repositoryName=REPOSITORY)["lifecyclePolicyText"])
    assert stored["rules"] == [{
        "rulePriority": 1,
        "selection": {"tagStatus": "tagged", "tagPrefixList": ["old-"], "countType": "imageCountMoreThan",
                      "countNumber": 1},
        "action": {"type": "transition", "targetStorageClass": "archive"},
    }]  # fmt: skip
    table = page.locator("table.lifecycle-rules tbody tr")
    expect(table).to_have_count(1)
    expect(table).to_contain_text("More than 1 images")
    expect(table).to_contain_text("Transition to archive")

    # Edit: the count goes to 2.
    page.get_by_role("link", name="Edit rule 1").press("Enter")
    page.get_by_label("Count number").press("Control+a")
    page.get_by_label("Count number").press_sequentially("2")
    page.get_by_role("button", name="Save rule").press("Enter")
    expect(page.get_by_role("status")).to_have_text("Saved lifecycle rule 1.")
    expect(table).to_contain_text("More than 2 images")

    # The preview of the stored policy (StartLifecyclePolicyPreview, GetLifecyclePolicyPreview).
    page.get_by_role("button", name="Run preview").press("Enter")
    expect(page.locator("section.preview")).to_contain_text("1 would move to the archive")
    preview = ecr.get_lifecycle_policy_preview(repositoryName=REPOSITORY)
    assert preview["status"] == "COMPLETE" and len(preview["previewResults"]) == 1
    screenshots(page, "lifecycle-rules")
    assert_accessible_somewhere(page, javascript)

    # Delete, confirmed: a dialog with JavaScript, a confirmation page without.
    page.get_by_role("button", name="Delete rule 1").press("Enter")
    if not javascript:
        expect(page.get_by_role("heading", name="Delete lifecycle rule 1?")).to_be_visible()
        screenshots(page, "lifecycle-delete-confirm")
        page.get_by_role("button", name="Delete rule").press("Enter")
    expect(page.get_by_role("status")).to_have_text("Deleted lifecycle rule 1.")
    expect(page.get_by_text("has no lifecycle policy")).to_be_visible()
    with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
        ecr.get_lifecycle_policy(repositoryName=REPOSITORY)
    if javascript:
        base = f"repositories/{REPOSITORY}/-/lifecycle"
        ecr.put_lifecycle_policy(repositoryName=REPOSITORY, lifecyclePolicyText=json.dumps(stored))
        check_layouts(chromium, server, [base, base + "/rule", base + "/rule?priority=1"], screenshots)


def assert_accessible_somewhere(page: Page, javascript: bool) -> None:
    """axe on the page as it is; a POST's answer has no address to reopen without JavaScript, and
    the JavaScript run checks the same page."""
    if javascript:
        assert_accessible(page)
