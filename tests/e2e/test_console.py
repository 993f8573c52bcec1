"""The web console in a real headless Chromium: the seed's walkthrough of the Repositories pages.

Sign in with the root key, create a repository (scan on push), push an image with podman and find
it (size, digest, scan status and severity counts) on the Images tab and its findings; create an
IAM user with an access key (console) and a policy that only allows logging in (IAM API), grant
it pull through a Pull only statement on the Permissions tab, check with podman that it can pull
and not push, then delete the image and the repository. Every page is saved as a screenshot
under test-artifacts/."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import Screenshots
from tests.support.clients import AwsCli, Boto3Clients, Podman
from tests.support.images import BuiltImage, build_image
from tests.support.scan_images import OSV_FIXTURES, python_packages
from tests.support.server import DockyardServer, ServerFactory, dockyard_command

REPOSITORY = "console-e2e/web-app"
TAG = "v1"
PULLER = "console-puller"
LOGIN_ONLY = {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}
LOGIN_ONLY_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [LOGIN_ONLY]})
LIFECYCLE_POLICY = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "Expire untagged images after 14 days",
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


@pytest.fixture
def server(dockyard_server_factory: ServerFactory) -> DockyardServer:
    return dockyard_server_factory()


def console(server: DockyardServer, path: str = "") -> str:
    return f"{server.url}/console/{path}"


def new_page(browser: Browser) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    # The console asks before destructive steps when JavaScript runs: say yes.
    page.on("dialog", lambda dialog: dialog.accept())
    return page


def sign_in(
    page: Page,
    server: DockyardServer,
    key_id: str,
    secret: str,
    screenshots: Screenshots | None = None,
    heading: str = "Repositories",
) -> None:
    page.goto(console(server))
    expect(page).to_have_url(re.compile(r"/console/sign-in"))
    if screenshots is not None:
        screenshots(page, "sign-in")
    page.get_by_label("Access key ID").fill(key_id)
    page.get_by_label("Secret access key").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()


def import_advisories(server: DockyardServer) -> None:
    """The Python advisories of the test OSV fixtures, so the pushed image has findings to show."""
    done = subprocess.run(
        [*dockyard_command(), "vulndb", "import", str(OSV_FIXTURES / "PyPI"), "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env=server.server_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr


def wait_for_scan(ecr: Any, digest: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        described = ecr.describe_images(repositoryName=REPOSITORY, imageIds=[{"imageDigest": digest}])
        details: dict[str, Any] = described["imageDetails"][0]
        if details.get("imageScanStatus", {}).get("status") not in (None, "IN_PROGRESS"):
            return details
        assert time.monotonic() < deadline, details
        time.sleep(0.3)


def push_image(podman: Podman, aws: AwsCli, server: DockyardServer, image: BuiltImage) -> tuple[str, str]:
    """(local image id, pushed manifest digest)."""
    password = aws("ecr", "get-login-password")
    podman.login(server.registry, password)
    remote = f"{server.registry}/{REPOSITORY}:{TAG}"
    image_id = podman.load(image, remote)
    digest = podman.push(remote)
    assert isinstance(digest, str)
    return image_id, digest


def test_console_walkthrough(
    server: DockyardServer,
    chromium: Browser,
    screenshots: Screenshots,
    podman: Podman,
    tmp_path: Path,
) -> None:
    aws, boto3_client = AwsCli(server), Boto3Clients(server)
    import_advisories(server)
    page = new_page(chromium)
    sign_in(page, server, server.access_key_id, server.secret_access_key, screenshots)
    screenshots(page, "repositories-empty")

    # Create repository, with scan on push.
    page.get_by_role("link", name="Create repository").click()
    page.get_by_label("Repository name").fill(REPOSITORY)
    page.get_by_label("Scan on push").check()
    screenshots(page, "create-repository")
    page.get_by_role("button", name="Create repository").click()
    expect(page.get_by_role("heading", name=REPOSITORY)).to_be_visible()
    expect(page.locator("#repository-uri")).to_have_text(f"{server.registry}/{REPOSITORY}")
    screenshots(page, "images-empty")

    # The push commands name this registry and repository.
    page.get_by_role("link", name="View push commands").click()
    commands = page.locator(".commands code").all_inner_texts()
    assert commands == [
        f"aws ecr get-login-password --region {server.region} --endpoint-url {server.url} | "
        f"docker login --username AWS --password-stdin {server.registry}",
        f"docker build -t {REPOSITORY} .",
        f"docker tag {REPOSITORY}:latest {server.registry}/{REPOSITORY}:latest",
        f"docker push {server.registry}/{REPOSITORY}:latest",
    ]
    screenshots(page, "push-commands")

    # Push with podman, then find the image with its digest and size.
    # PyYAML 5.3.1 has one known CRITICAL advisory (CVE-2020-14343): scan on push finds it.
    image = build_image(tmp_path / "layout", TAG, [python_packages({"PyYAML": "5.3.1"}), 300_000, 4096], seed="console")
    image_id, digest = push_image(podman, aws, server, image)
    described = wait_for_scan(boto3_client("ecr"), digest)
    assert described["imageScanStatus"]["status"] == "COMPLETE", described
    page.get_by_role("link", name="Images", exact=True).click()
    row = page.locator("table.images tbody tr").filter(has_text=digest)
    expect(row).to_have_count(1)
    expect(row.get_by_role("rowheader")).to_have_text(TAG)
    expect(row.locator("td.number")).to_have_text(f"{described['imageSizeInBytes'] / 1048576:.2f}")
    expect(row.locator(".sev-list")).to_contain_text("Critical 1")
    expect(page.get_by_text("Image sizes may appear compressed.")).to_be_visible()
    page.get_by_label("Tag status").select_option("untagged")
    expect(page.locator("table.images")).to_contain_text("No untagged images")
    page.get_by_label("Tag status").select_option("tagged")
    expect(page.locator("table.images tbody tr").filter(has_text=digest)).to_have_count(1)
    screenshots(page, "images")
    page.locator("table.images tbody tr").filter(has_text=digest).get_by_role("link", name=TAG).click()
    expect(page.get_by_role("heading", name="Vulnerabilities")).to_be_visible()
    expect(page.locator("main")).to_contain_text(digest)
    finding = page.locator("tbody tr").filter(has_text="CVE-2020-14343")
    expect(finding).to_contain_text("Critical")
    expect(finding).to_contain_text("PyYAML")
    screenshots(page, "scan-findings")
    page.get_by_role("link", name="Settings", exact=True).click()
    expect(page.get_by_label("Scan on push")).to_be_checked()
    # A lifecycle policy: ECR's own validation message for a bad one, then a good one saved.
    page.get_by_label("Lifecycle policy JSON").fill('{"rules": [{"rulePriority": 0}]}')
    page.get_by_role("button", name="Save lifecycle policy").click()
    expect(page.get_by_role("alert")).to_contain_text("InvalidParameterException")
    page.get_by_label("Lifecycle policy JSON").fill(json.dumps(LIFECYCLE_POLICY))
    page.get_by_role("button", name="Save lifecycle policy").click()
    expect(page.get_by_role("status")).to_contain_text("Saved the lifecycle policy.")
    stored = boto3_client("ecr").get_lifecycle_policy(repositoryName=REPOSITORY)["lifecyclePolicyText"]
    assert json.loads(stored) == LIFECYCLE_POLICY
    # Tag immutability.
    page.get_by_label(re.compile(r"\(IMMUTABLE\)")).check()
    page.get_by_role("button", name="Save tag mutability").click()
    expect(page.get_by_label(re.compile(r"\(IMMUTABLE\)"))).to_be_checked()
    repository = boto3_client("ecr").describe_repositories(repositoryNames=[REPOSITORY])["repositories"][0]
    assert repository["imageTagMutability"] == "IMMUTABLE"
    screenshots(page, "settings")

    # An IAM user with a console-created key, and (IAM API) a policy that only allows logging in.
    page.get_by_role("link", name="IAM users").click()
    screenshots(page, "iam-users")
    page.get_by_label("New user name").fill(PULLER)
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("heading", name=PULLER)).to_be_visible()
    page.get_by_role("button", name="Create access key").click()
    puller_key = page.locator("#new-access-key-id").inner_text()
    puller_secret = page.locator("#new-secret-access-key").inner_text()
    assert len(puller_secret) == 40
    screenshots(page, "access-key-created")
    page.get_by_role("link", name="Done").click()
    # Shown once: the user's page lists the key, never its secret.
    expect(page.get_by_role("rowheader", name=puller_key)).to_be_visible()
    assert puller_secret not in page.content()
    policy_arn = boto3_client("iam").create_policy(PolicyName="EcrLoginOnly", PolicyDocument=LOGIN_ONLY_POLICY)[
        "Policy"
    ]["Arn"]
    page.reload()
    page.get_by_label("Policy to attach").select_option(policy_arn)
    page.get_by_role("button", name="Attach policy").click()
    expect(page.get_by_role("rowheader", name="EcrLoginOnly")).to_be_visible()
    screenshots(page, "iam-user")

    # Permissions: a Pull only statement for that user.
    page.goto(console(server, f"repositories/{REPOSITORY}/-/permissions"))
    screenshots(page, "permissions-empty")
    page.get_by_role("link", name="Add statement").click()
    page.get_by_label("Sid").fill("AllowPull")
    page.get_by_label(PULLER).check()
    page.get_by_label("Pull only actions").check()
    screenshots(page, "add-statement")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Added the statement")).to_be_visible()
    page.get_by_text("AllowPull", exact=True).click()
    statement = page.locator(".statement").filter(has_text="AllowPull")
    for action in ("ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability"):
        expect(statement).to_contain_text(action)
    expect(statement).to_contain_text(f"arn:aws:iam::{server.account_id}:user/{PULLER}")
    screenshots(page, "permissions")
    page.get_by_role("link", name="Edit policy JSON").click()
    text = page.get_by_label("Repository policy").input_value()
    policy = json.loads(text)
    # The JSON is validated before it is saved: a statement without a Principal is refused.
    page.get_by_label("Repository policy").fill(
        json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*"}]})
    )
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".error")).to_contain_text("InvalidParameterException")
    screenshots(page, "policy-json-invalid")
    page.get_by_label("Repository policy").fill(text)
    assert policy["Statement"][0]["Action"] == [
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchGetImage",
        "ecr:BatchCheckLayerAvailability",
    ]
    screenshots(page, "policy-json")

    # The user can pull and cannot push.
    as_puller = {"AWS_ACCESS_KEY_ID": puller_key, "AWS_SECRET_ACCESS_KEY": puller_secret}
    password = aws("ecr", "get-login-password", env=as_puller)
    podman.login(server.registry, password)
    remote = f"{server.registry}/{REPOSITORY}:{TAG}"
    podman("rmi", "--force", image_id)
    assert not podman.exists(remote)
    podman("pull", remote)
    assert podman.inspect(remote)["Digest"] == digest
    other = build_image(tmp_path / "other", "v2", [2048], seed="denied")
    podman.load(other, f"{server.registry}/{REPOSITORY}:v2")
    refused = podman.push(f"{server.registry}/{REPOSITORY}:v2", check=False)
    assert not isinstance(refused, str), "the pull-only user could push"
    assert "denied" in refused.stderr.lower() or "unauthorized" in refused.stderr.lower(), refused.stderr

    # In the console the same user sees AWS's AccessDenied message for what it may not do.
    puller_page = new_page(chromium)
    # It may not list the repositories: a page that says so, not an empty list.
    sign_in(puller_page, server, puller_key, puller_secret, heading="You may not see this")
    denied = puller_page.get_by_role("alert")
    expect(denied).to_contain_text("AccessDeniedException")
    expect(denied).to_contain_text(
        f"User: arn:aws:iam::{server.account_id}:user/{PULLER} is not authorized to perform: "
        "ecr:DescribeRepositories on resource:"
    )
    screenshots(puller_page, "access-denied")
    puller_page.context.close()

    # Delete the image, then the repository (its confirmation says the images go too).
    page.goto(console(server, f"repositories/{REPOSITORY}/-/images"))
    page.get_by_label(re.compile(f"Select image {TAG}")).check()
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete image")).to_be_visible()
    screenshots(page, "delete-image")
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("Deleted the selected images.")).to_be_visible()
    expect(page.locator("table.images")).to_contain_text("No images")
    page.get_by_role("link", name="Repositories", exact=True).first.click()
    page.get_by_label(f"Select {REPOSITORY}").check()
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("Any images in the selected repositories are also deleted.")).to_be_visible()
    screenshots(page, "delete-repository")
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_contain_text(f"Deleted {REPOSITORY}")
    expect(page.get_by_role("link", name=REPOSITORY)).to_have_count(0)
    screenshots(page, "repositories-after-delete")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    page.goto(console(server, "repositories"))
    expect(page).to_have_url(re.compile(r"/console/sign-in"))
    screenshots(page, "signed-out")


def test_console_without_javascript_by_keyboard(
    server: DockyardServer, chromium: Browser, screenshots: Screenshots
) -> None:
    """Every page is plain HTML forms: with JavaScript off and only the keyboard, one can still sign
    in, create a repository, filter its images and delete it."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    page = context.new_page()
    page.goto(console(server))
    page.keyboard.press("Tab")  # the skip link comes first
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.get_by_label("Access key ID").focus()
    page.keyboard.type(server.access_key_id)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Secret access key")).to_be_focused()
    page.keyboard.type(server.secret_access_key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Repositories", exact=True)).to_be_visible()

    page.get_by_role("link", name="Create repository").focus()
    page.keyboard.press("Enter")
    page.get_by_label("Repository name").focus()
    page.keyboard.type("no-js/repo")
    page.keyboard.press("Tab")
    page.keyboard.press("Space")  # Tag immutability
    expect(page.get_by_label("Enabled")).to_be_checked()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="no-js/repo")).to_be_visible()

    page.get_by_label("Tag status").select_option("untagged")
    page.get_by_role("button", name="Apply").press("Enter")  # no script submits the filter for us
    expect(page).to_have_url(re.compile(r"status=untagged"))
    expect(page.locator("table.images")).to_contain_text("No untagged images")
    screenshots(page, "images-without-javascript")

    page.get_by_role("link", name="Repositories", exact=True).first.click()
    expect(page.locator("tbody tr").filter(has_text="no-js/repo")).to_contain_text("IMMUTABLE")
    page.get_by_label("Select no-js/repo").press("Space")
    page.get_by_role("button", name="Delete").press("Enter")
    expect(page.get_by_text("Any images in the selected repositories are also deleted.")).to_be_visible()
    page.get_by_role("button", name="Delete").press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Deleted no-js/repo")
    screenshots(page, "deleted-without-javascript")
    context.close()
