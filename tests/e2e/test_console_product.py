"""The console's faults of issue 17 ("Wrong today"), in Debian's Chromium, with and without JavaScript:
it never stores what the API refuses (one rule in the core, its error beside the field), long names
stay inside their columns, states do not mislead (real 404 and 403 pages, notices that no link can
forge), destructive actions are confirmed, the CSS holds (axe-core: no violations), and the findings
page keeps its image after a refused scan."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect

from tests.support.axe import axe_violations
from tests.support.browser import Screenshots
from tests.support.clients import Boto3Clients
from tests.support.images import BuiltImage, build_image
from tests.support.server import DockyardServer

LONG_REPOSITORY = "a" * 120 + "/" + "b" * 135  # 256 characters: the longest legal name
LONG_TAG = "t" * 128
LONG_SID = "S" * 300
PHONE = {"width": 390, "height": 844}
LIFECYCLE = {
    "rules": [
        {
            "rulePriority": 1,
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 14,
            },
            "action": {"type": "expire"},
        }
    ]
}
DESKTOP = {"width": 1280, "height": 900}


def console(server: DockyardServer, path: str = "") -> str:
    return f"{server.url}/console/{path}"


@pytest.fixture
def ecr(dockyard_server: DockyardServer) -> Any:
    return Boto3Clients(dockyard_server)("ecr")


@pytest.fixture
def iam(dockyard_server: DockyardServer) -> Any:
    return Boto3Clients(dockyard_server)("iam")


def open_context(browser: Browser, *, javascript: bool = True, viewport: dict[str, int] = DESKTOP) -> BrowserContext:
    # bypass_csp lets the tests inject axe-core; the console's own pages never need it.
    return browser.new_context(viewport=viewport, java_script_enabled=javascript, bypass_csp=True)


def signed_in(context: BrowserContext, server: DockyardServer, key_id: str = "", secret: str = "") -> Page:
    page = context.new_page()
    page.goto(console(server, "sign-in"))
    page.get_by_label("Access key ID").fill(key_id or server.access_key_id)
    page.get_by_label("Secret access key").fill(secret or server.secret_access_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile(r"/sign-in"))
    return page


@pytest.fixture(params=[True, False], ids=["with-js", "without-js"])
def javascript(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def page(chromium: Browser, dockyard_server: DockyardServer, javascript: bool) -> Iterator[Page]:
    context = open_context(chromium, javascript=javascript)
    yield signed_in(context, dockyard_server)
    context.close()


def unique(prefix: str) -> str:
    return f"{prefix}{time.monotonic_ns()}"


def put_image(ecr: Any, repository: str, image: BuiltImage, tag: str) -> str:
    """Push `image` through the ECR API (layer upload, PutImage) and return its digest."""
    for blob in image.blobs:
        if (
            ecr.batch_check_layer_availability(repositoryName=repository, layerDigests=[blob.digest])["layers"][0][
                "layerAvailability"
            ]
            == "AVAILABLE"
        ):
            continue
        upload = ecr.initiate_layer_upload(repositoryName=repository)["uploadId"]
        ecr.upload_layer_part(
            repositoryName=repository,
            uploadId=upload,
            partFirstByte=0,
            partLastByte=blob.size - 1,
            layerPartBlob=blob.data,
        )
        ecr.complete_layer_upload(repositoryName=repository, uploadId=upload, layerDigests=[blob.digest])
    ecr.put_image(
        repositoryName=repository,
        imageManifest=image.manifest.data.decode(),
        imageManifestMediaType=image.media_type,
        imageTag=tag,
    )
    return image.digest


def no_horizontal_overflow(page: Page) -> None:
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    if width[0] > width[1]:
        wide = page.evaluate(
            """() => [...document.querySelectorAll("body *")]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                .slice(0, 5).map(e => `${e.tagName}.${e.className}`)"""
        )
        pytest.fail(f"{page.url} is {width[0]} px wide in a {width[1]} px window: {wide}")


def assert_accessible(page: Page) -> None:
    violations = axe_violations(page)
    assert violations == [], f"{page.url}: {json.dumps(violations, indent=1)}"


# --- The console writes only what the API accepts ------------------------------------------------


def test_console_refuses_what_the_api_refuses(
    page: Page, dockyard_server: DockyardServer, ecr: Any, iam: Any, javascript: bool
) -> None:
    repository = unique("rules-")
    ecr.create_repository(repositoryName=repository)
    page.goto(console(dockyard_server, f"repositories/{repository}/-/settings"))
    for filters, plain in [
        ("<img src=x onerror=alert(1)>", "can contain only letters, digits"),
        ("f" * 300, "is 300 characters long; a filter can be at most 128"),
        ("\n".join(f"tag{n}-*" for n in range(12)), "At most 5 exclusion filters are allowed; there are 12."),
    ]:
        page.get_by_label(re.compile(r"\(MUTABLE_WITH_EXCLUSION\)")).check()
        page.get_by_role("textbox", name="Exclusion filters").fill(filters)
        page.get_by_role("button", name="Save tag mutability").click()
        error = page.locator("#exclusions-error")
        expect(error).to_contain_text(plain)
        expect(page.get_by_role("textbox", name="Exclusion filters")).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_role("textbox", name="Exclusion filters")).to_have_value(filters)  # what was typed stays
        expect(page.get_by_role("status")).to_have_count(0)  # nothing says "Saved"
        described = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]
        assert described["imageTagMutability"] == "MUTABLE", described
    page.get_by_role("textbox", name="Exclusion filters").fill("release-*")
    page.get_by_role("button", name="Save tag mutability").click()
    expect(page.get_by_role("status")).to_contain_text("Saved the tag mutability setting.")

    page.goto(console(dockyard_server, "iam/users"))
    for name, plain in [
        ("has space", "can contain only letters, digits"),
        ("u" * 300, "at most 64 characters long; this one has 300"),
    ]:
        field = page.get_by_label("New user name")
        # The browser would stop typing at 64: post what any client can post.
        field.evaluate("e => e.removeAttribute('maxlength')")
        field.fill(name)
        page.get_by_role("button", name="Create user").click()
        expect(page.locator("#user_name-error")).to_contain_text(plain)
        expect(page.get_by_label("New user name")).to_have_attribute("aria-invalid", "true")
        names = [user["UserName"] for user in iam.list_users()["Users"]]
        assert name not in names

    # A Sid: the one rule (letters and digits, any length) for the form and the API alike.
    page.goto(console(dockyard_server, f"repositories/{repository}/-/permissions/add"))
    page.get_by_label("Sid").fill("Not Alphanumeric")
    page.get_by_label("Everybody").check()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#sid-error")).to_contain_text("only letters and digits")
    page.get_by_label("Sid").fill(LONG_SID)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Added the statement")
    policy = json.loads(ecr.get_repository_policy(repositoryName=repository)["policyText"])
    assert policy["Statement"][0]["Sid"] == LONG_SID
    page.goto(console(dockyard_server, f"repositories/{repository}/-/permissions/add"))
    assert page.locator("#sid").get_attribute("maxlength") is None  # the form claims no other limit


# --- Long names ----------------------------------------------------------------------------------


def test_long_names_stay_in_their_columns(
    chromium: Browser, dockyard_server: DockyardServer, ecr: Any, tmp_path: Path, screenshots: Screenshots
) -> None:
    if not _exists(ecr, LONG_REPOSITORY):
        ecr.create_repository(repositoryName=LONG_REPOSITORY)
    image = build_image(tmp_path / "layout", "long", [2048], seed="long-names")
    put_image(ecr, LONG_REPOSITORY, image, LONG_TAG)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Sid": LONG_SID, "Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"}],
    }
    ecr.set_repository_policy(repositoryName=LONG_REPOSITORY, policyText=json.dumps(policy))
    pages = [
        "repositories",
        f"repositories/{LONG_REPOSITORY}/-/images",
        f"repositories/{LONG_REPOSITORY}/-/permissions",
    ]
    for viewport in (DESKTOP, PHONE):
        context = open_context(chromium, viewport=viewport)
        page = signed_in(context, dockyard_server)
        for path in pages:
            page.goto(console(dockyard_server, path))
            for summary in page.locator("summary").all():
                summary.click()
            no_horizontal_overflow(page)
            screenshots(page, f"{viewport['width']}-{path.rsplit('/', 1)[-1]}")
        # Cut to the column, the whole text on hover (title) and in the text a copy takes.
        page.goto(console(dockyard_server, "repositories"))
        link = page.get_by_role("link", name=LONG_REPOSITORY)
        expect(link).to_have_attribute("title", LONG_REPOSITORY)
        assert link.evaluate("e => e.scrollWidth > e.clientWidth"), "the name is not cut"
        page.goto(console(dockyard_server, f"repositories/{LONG_REPOSITORY}/-/images"))
        tag = page.locator("table.images tbody th .clip")
        expect(tag).to_have_attribute("title", LONG_TAG)
        assert tag.inner_text() == LONG_TAG
        page.goto(console(dockyard_server, f"repositories/{LONG_REPOSITORY}/-/permissions"))
        expect(page.locator("summary .sid")).to_have_attribute("title", LONG_SID)
        context.close()


def _exists(ecr: Any, name: str) -> bool:
    return any(r["repositoryName"] == name for r in ecr.describe_repositories()["repositories"])


# --- States that do not mislead ------------------------------------------------------------------


def test_no_misleading_states(
    page: Page, dockyard_server: DockyardServer, ecr: Any, iam: Any, chromium: Browser, javascript: bool
) -> None:
    # A notice is never built from the address.
    page.goto(console(dockyard_server, "repositories?notice=deleted&name=anything"))
    expect(page.get_by_role("status")).to_have_count(0)
    assert "anything" not in page.content()
    page.goto(console(dockyard_server, "repositories/team/app/-/images?notice=created"))
    expect(page.get_by_role("status")).to_have_count(0)

    # A repository that does not exist is a 404 page, not an empty one.
    response = page.goto(console(dockyard_server, "repositories/no/such-repo/-/images"))
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("RepositoryNotFoundException")
    expect(page.get_by_text("No images")).to_have_count(0)
    response = page.goto(console(dockyard_server, "no-such-page"))
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()

    # A duplicate user: the error beside the field, and the users are still listed.
    name = unique("dup")
    iam.create_user(UserName=name)
    page.goto(console(dockyard_server, "iam/users"))
    page.get_by_label("New user name").fill(name)
    page.get_by_role("button", name="Create user").click()
    expect(page.locator("#user_name-error")).to_contain_text(f"A user named {name} already exists.")
    expect(page.get_by_role("link", name=name)).to_be_visible()
    expect(page.get_by_text("No users.")).to_have_count(0)

    # A principal without permission sees "you may not see this", not an empty list.
    key = iam.create_access_key(UserName=name)["AccessKey"]
    context = open_context(chromium, javascript=javascript)
    denied = signed_in(context, dockyard_server, key["AccessKeyId"], key["SecretAccessKey"])
    repository = unique("denied-")
    ecr.create_repository(repositoryName=repository)
    for path, empty in [(f"repositories/{repository}/-/images", "No images"), ("iam/users", "No users.")]:
        response = denied.goto(console(dockyard_server, path))
        assert response is not None and response.status == 403
        expect(denied.get_by_role("heading", name="You may not see this")).to_be_visible()
        expect(denied.get_by_role("alert")).to_contain_text("AccessDenied")
        expect(denied.get_by_text(empty)).to_have_count(0)
    context.close()

    # A real notice is shown once, then gone.
    repository = unique("notice-")
    ecr.create_repository(repositoryName=repository)
    page.goto(console(dockyard_server, f"repositories/delete?name={repository}"))
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_contain_text(f"Deleted {repository}")
    assert "notice" not in page.url
    page.reload()
    expect(page.get_by_role("status")).to_have_count(0)


# --- Destructive actions are confirmed -----------------------------------------------------------


def test_destructive_actions_are_confirmed(
    page: Page, dockyard_server: DockyardServer, ecr: Any, iam: Any, javascript: bool
) -> None:
    answers: list[str] = []
    if javascript:
        # Every dialog is answered no first (nothing may happen), then yes.
        def answer(dialog: Dialog) -> None:
            answers.append(dialog.message)
            if len(answers) % 2:
                dialog.dismiss()
            else:
                dialog.accept()

        page.on("dialog", answer)

    def act(
        button: str, confirm: str, unchanged: Callable[[], bool], reopen: Callable[[], None] = lambda: None
    ) -> None:
        """Click a destructive button: with JavaScript a dialog asks; without, a confirmation
        page. Declined (dialog) or cancelled (page) first: nothing may change."""
        before = page.url
        page.get_by_role("button", name=button).click()
        if javascript:
            expect(page).to_have_url(before)
            assert unchanged()
            page.get_by_role("button", name=button).click()
            return
        expect(page.get_by_role("heading", name=re.compile(r"\?$"))).to_be_visible()
        assert unchanged()
        page.get_by_role("link", name="Cancel").click()
        expect(page.get_by_role("heading", name=re.compile(r"\?$"))).to_have_count(0)
        assert unchanged()
        page.goto(before)
        reopen()
        page.get_by_role("button", name=button).click()
        page.get_by_role("button", name=confirm).click()

    repository = unique("confirm-")
    ecr.create_repository(repositoryName=repository)
    statement = {"Sid": "Keep", "Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"}
    policy = json.dumps({"Version": "2012-10-17", "Statement": [statement, {**statement, "Sid": "Drop"}]})
    ecr.set_repository_policy(repositoryName=repository, policyText=policy)
    ecr.put_lifecycle_policy(repositoryName=repository, lifecyclePolicyText=json.dumps(LIFECYCLE))
    user = unique("victim")
    iam.create_user(UserName=user)
    key_id = iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
    readonly = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
    iam.attach_user_policy(UserName=user, PolicyArn=readonly)

    def sids() -> list[str]:
        text = ecr.get_repository_policy(repositoryName=repository)["policyText"]
        return [s["Sid"] for s in json.loads(text)["Statement"]]

    def open_drop() -> None:
        page.locator("summary", has_text="Drop").click()

    page.goto(console(dockyard_server, f"repositories/{repository}/-/permissions"))
    open_drop()
    act("Remove statement Drop", "Remove statement", lambda: sids() == ["Keep", "Drop"], open_drop)
    expect(page.get_by_role("status")).to_contain_text("Removed the statement.")
    assert sids() == ["Keep"]

    page.goto(console(dockyard_server, f"repositories/{repository}/-/permissions/json"))
    act("Delete policy", "Delete policy", lambda: sids() == ["Keep"])
    expect(page.get_by_role("status")).to_contain_text("Deleted the repository policy.")
    with pytest.raises(ecr.exceptions.RepositoryPolicyNotFoundException):
        ecr.get_repository_policy(repositoryName=repository)

    page.goto(console(dockyard_server, f"repositories/{repository}/-/settings"))
    act(
        "Delete lifecycle policy",
        "Delete lifecycle policy",
        lambda: bool(ecr.get_lifecycle_policy(repositoryName=repository)),
    )
    expect(page.get_by_role("status")).to_contain_text("Deleted the lifecycle policy.")
    with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
        ecr.get_lifecycle_policy(repositoryName=repository)

    # The attach list chooses nothing for the visitor (never AdministratorAccess).
    page.goto(console(dockyard_server, f"iam/users/{user}"))
    expect(page.get_by_label("Policy to attach")).to_have_value("")
    page.get_by_role("button", name="Attach policy").click()
    expect(page.locator("#policy_arn-error")).to_contain_text("Choose the policy to attach.")

    def attached() -> list[str]:
        return [p["PolicyArn"] for p in iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]]

    assert attached() == [readonly]
    page.goto(console(dockyard_server, f"iam/users/{user}"))
    act(f"Detach {readonly.rpartition('/')[2]}", "Detach policy", lambda: attached() == [readonly])
    expect(page.get_by_role("status")).to_contain_text("Detached the policy.")
    assert attached() == []

    def keys() -> int:
        return len(iam.list_access_keys(UserName=user)["AccessKeyMetadata"])

    act(f"Delete {key_id}", "Delete access key", lambda: keys() == 1)
    expect(page.get_by_role("status")).to_contain_text("Deleted the access key.")
    assert keys() == 0
    act("Delete user", "Delete user", lambda: bool(iam.get_user(UserName=user)))
    expect(page.get_by_role("status")).to_contain_text(f"Deleted user {user}.")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_user(UserName=user)
    assert len(answers) == (12 if javascript else 0), answers


# --- CSS, favicon, the site root, compression ----------------------------------------------------


def test_pages_are_accessible_and_fit_a_phone(
    chromium: Browser, dockyard_server: DockyardServer, ecr: Any, iam: Any, tmp_path: Path
) -> None:
    repository = unique("a11y-")
    ecr.create_repository(repositoryName=repository)
    digest = put_image(ecr, repository, build_image(tmp_path / "layout", "v1", [2048], seed=repository), "v1")
    statement = {"Sid": "AllowPull", "Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"}
    ecr.set_repository_policy(
        repositoryName=repository, policyText=json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    )
    user = unique("a11y")
    iam.create_user(UserName=user)
    iam.create_access_key(UserName=user)
    base = f"repositories/{repository}/-/"
    pages = [
        "repositories", "repositories/create", f"repositories/delete?name={repository}", base + "images",
        base + f"images/delete?digest={digest}", base + f"findings?digest={digest}", base + "permissions",
        base + "permissions/add", base + "permissions/json", base + "settings", base + "push-commands",
        "iam/users", f"iam/users/{user}", "no-such-page",
    ]  # fmt: skip
    for viewport in (DESKTOP, PHONE):
        context = open_context(chromium, viewport=viewport)
        page = signed_in(context, dockyard_server)
        for path in pages:
            page.goto(console(dockyard_server, path))
            no_horizontal_overflow(page)
            if viewport is DESKTOP:
                assert_accessible(page)
        context.close()
    anonymous = open_context(chromium)
    sign_in_page = anonymous.new_page()
    sign_in_page.goto(console(dockyard_server, "sign-in"))
    assert_accessible(sign_in_page)
    anonymous.close()


def test_hidden_means_hidden_and_tables_keep_their_borders(
    chromium: Browser, dockyard_server: DockyardServer, ecr: Any, iam: Any
) -> None:
    repository = unique("hidden-")
    ecr.create_repository(repositoryName=repository)
    user = unique("borders")
    iam.create_user(UserName=user)
    iam.create_access_key(UserName=user)
    with_js = signed_in(open_context(chromium), dockyard_server)
    with_js.goto(console(dockyard_server, f"repositories/{repository}/-/images"))
    expect(with_js.get_by_role("button", name="Apply")).to_be_hidden()  # the select submits itself
    with_js.goto(console(dockyard_server, f"iam/users/{user}"))
    cell = with_js.locator("table.keys tbody tr td").last
    assert cell.evaluate("e => getComputedStyle(e).display") == "table-cell"
    widths = with_js.locator("table.keys tbody tr").first.evaluate(
        "row => [row.getBoundingClientRect().right, row.closest('table').getBoundingClientRect().right]"
    )
    assert abs(widths[0] - widths[1]) < 2, widths
    without_js = signed_in(open_context(chromium, javascript=False), dockyard_server)
    without_js.goto(console(dockyard_server, f"repositories/{repository}/-/push-commands"))
    expect(without_js.locator("button.copy").first).to_be_hidden()  # copying needs the script
    expect(without_js.get_by_role("button", name="Apply")).to_have_count(0)
    without_js.goto(console(dockyard_server, f"repositories/{repository}/-/images"))
    expect(without_js.get_by_role("button", name="Apply")).to_be_visible()


def test_site_root_favicon_and_compression(
    chromium: Browser, dockyard_server: DockyardServer, ecr: Any, tmp_path: Path
) -> None:
    with httpx.Client(base_url=dockyard_server.url, timeout=30) as client:
        root = client.get("/", follow_redirects=False)
        assert root.status_code == 302 and root.headers["location"] == "/console/"
        icon = client.get("/favicon.ico")
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
        assert icon.content[:4] == b"\x00\x00\x01\x00"
        # POST / is still the AWS API: an unsigned call gets AWS's error, not the console.
        api = client.post(
            "/", headers={"X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
                          "Content-Type": "application/x-amz-json-1.1"}, content=b"{}",
        )  # fmt: skip
        assert api.status_code in (400, 403) and "__type" in api.text
        page = client.get("/console/sign-in", headers={"Accept-Encoding": "gzip"})
        assert page.headers.get("content-encoding") == "gzip" and "Sign in" in page.text
        plain = client.get("/console/sign-in", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers

        # A registry blob is never re-encoded, whatever the client accepts.
        repository = unique("blob-")
        ecr.create_repository(repositoryName=repository)
        image = build_image(tmp_path / "layout", "v1", [64 * 1024], seed=repository)
        put_image(ecr, repository, image, "v1")
        token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        layer = image.layers[0]
        blob = client.get(
            f"/v2/{repository}/blobs/{layer.digest}",
            headers={"Authorization": f"Basic {token}", "Accept-Encoding": "gzip"},
            follow_redirects=True,
        )
        assert blob.status_code == 200, blob.text
        assert "content-encoding" not in blob.headers
        assert blob.content == layer.data
    context = open_context(chromium)
    page = context.new_page()
    page.goto(dockyard_server.url + "/")
    expect(page).to_have_url(re.compile(r"/console/sign-in"))
    context.close()


# --- Findings after a refused scan ---------------------------------------------------------------


def test_findings_page_keeps_its_image_after_a_refused_scan(
    page: Page, dockyard_server: DockyardServer, ecr: Any, tmp_path: Path
) -> None:
    repository = unique("scan-")
    ecr.create_repository(repositoryName=repository)
    digest = put_image(ecr, repository, build_image(tmp_path / "layout", "v1", [2048], seed=repository), "v1")
    page.goto(console(dockyard_server, f"repositories/{repository}/-/findings?digest={digest}"))
    page.get_by_role("button", name="Scan now").click()
    expect(page.get_by_role("status").first).to_contain_text("Started the scan.")
    deadline = time.monotonic() + 120
    while ecr.describe_images(repositoryName=repository)["imageDetails"][0].get("imageScanStatus", {}).get(
        "status"
    ) in (None, "IN_PROGRESS"):
        assert time.monotonic() < deadline, "the scan did not end"
        time.sleep(0.3)
    page.reload()
    expect(page.get_by_text("Reload this page")).to_have_count(0)  # the scan has ended
    expect(page.get_by_text("Started the scan.")).to_have_count(0)  # shown once
    scan_status = page.locator("dl.summary dd").first.inner_text()
    # Only one scan a day: the refusal is shown on the same image's page, its scan kept.
    page.get_by_role("button", name="Scan now").click()
    expect(page.get_by_role("alert")).to_contain_text("LimitExceededException")
    expect(page.locator("main")).to_contain_text(digest)
    expect(page.locator("dl.summary dd").first).to_have_text(scan_status)
    expect(page.get_by_text("This image has not been scanned.")).to_have_count(0)
