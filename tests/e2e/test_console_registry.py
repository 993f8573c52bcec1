"""Issue 17's repository and registry pages, in Debian's Chromium with and without JavaScript:
Create repository as the AWS console has it (encryption, exclusion filters, scan on push, tags),
the repositories list (search, count, copy URI, encryption column, pages), the private registry's
pages (scanning, registry policy, creation templates, pull through cache, replication, account
settings) and the account's CloudTrail event history. Every form goes through the API's own rules,
its errors beside the field; destructive actions are confirmed; axe-core finds nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
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
    signed_in,
    unique,
)
from tests.support.browser import Screenshots
from tests.support.clients import Boto3Clients
from tests.support.server import DockyardServer

KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/0b6a1c9e-2f44-4c1e-9d55-1e0f9a1b2c3d"


@pytest.fixture
def clients(dockyard_server: DockyardServer) -> Boto3Clients:
    return Boto3Clients(dockyard_server)


@pytest.fixture(params=[True, False], ids=["with-js", "without-js"])
def javascript(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def page(chromium: Browser, dockyard_server: DockyardServer, javascript: bool) -> Iterator[Page]:
    context = open_context(chromium, javascript=javascript)
    signed = signed_in(context, dockyard_server)
    if javascript:
        signed.on("dialog", lambda dialog: dialog.accept())
    yield signed
    context.close()


def confirm(page: Page, javascript: bool, button: str, confirm_button: str) -> None:
    """A destructive action: the script's dialog (accepted by the fixture), or without JavaScript
    the confirmation page, which changes nothing until confirmed."""
    page.get_by_role("button", name=button).click()
    if not javascript:
        expect(page.get_by_role("heading", name=re.compile(r"\?$"))).to_be_visible()
        page.get_by_role("button", name=confirm_button).click()


def field_error(page: Page, field: str) -> Any:
    return page.locator(f"#{field}-error")


# --- Create repository and the list ---------------------------------------------------------------


def test_create_repository_like_the_aws_console(
    page: Page, dockyard_server: DockyardServer, clients: Boto3Clients, javascript: bool
) -> None:
    ecr = clients("ecr")
    name = unique("create-") + "/kms"
    page.goto(console(dockyard_server, "repositories/create"))
    page.get_by_label("Repository name").fill(name)
    page.get_by_label("Exclusion filters").fill("<img src=x>")
    page.get_by_label("Resource tags").fill("no equals sign")
    page.get_by_role("button", name="Create repository").click()
    expect(field_error(page, "exclusions")).to_contain_text("can contain only letters, digits")
    expect(field_error(page, "tags")).to_contain_text("write each tag as key=value")
    expect(page.get_by_label("Repository name")).to_have_value(name)  # what was typed stays
    # The API's own rules, beside the field in plain words.
    page.get_by_label("Exclusion filters").fill("latest\nrelease-*")
    page.get_by_label("Resource tags").fill("team=payments\ncost-centre=" + "v" * 300)
    page.get_by_role("button", name="Create repository").click()
    expect(field_error(page, "tags")).to_contain_text("at most 256 characters")
    page.get_by_label("Resource tags").fill("team=payments")
    page.get_by_label("AES-256").check()
    page.get_by_label("KMS key ARN").fill(KMS_KEY)
    page.get_by_role("button", name="Create repository").click()
    expect(field_error(page, "encryption")).to_contain_text("only be specified when encryptionType is KMS")
    assert not [r for r in ecr.describe_repositories()["repositories"] if r["repositoryName"] == name]

    page.get_by_label("AWS KMS").check()
    page.get_by_label("Enabled").check()
    page.get_by_label("Scan on push").check()
    page.get_by_role("button", name="Create repository").click()
    expect(page.get_by_role("status")).to_contain_text("Created the repository.")
    described = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    assert described["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": KMS_KEY}
    assert described["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    filters = [f["filter"] for f in described["imageTagMutabilityExclusionFilters"]]
    assert filters == ["latest", "release-*"]
    assert described["imageScanningConfiguration"]["scanOnPush"] is True
    tags = ecr.list_tags_for_resource(resourceArn=described["repositoryArn"])["tags"]
    assert tags == [{"Key": "team", "Value": "payments"}]

    # A name already taken: said beside the name.
    page.goto(console(dockyard_server, "repositories/create"))
    page.get_by_label("Repository name").fill(name)
    page.get_by_role("button", name="Create repository").click()
    expect(field_error(page, "repository_name")).to_contain_text(f"A repository named {name} already exists.")


def test_repositories_list_search_count_pages(
    page: Page, dockyard_server: DockyardServer, clients: Boto3Clients, javascript: bool
) -> None:
    ecr = clients("ecr")
    prefix = unique("list-")
    for number in range(52):
        ecr.create_repository(repositoryName=f"{prefix}/r{number:02d}")
    page.goto(console(dockyard_server, "repositories"))
    page.get_by_label("Search repositories").fill(prefix)
    page.get_by_label("Search repositories").press("Enter")
    expect(page.locator("#found")).to_contain_text("52 of ")
    expect(page.locator("#repository-count")).to_have_text("52 repositories")
    rows = page.locator("table.repositories tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_contain_text("AES-256")  # the encryption column
    expect(page.get_by_text("Page 1 of 2").first).to_be_visible()
    copy = page.get_by_role("button", name=f"Copy URI of {prefix}/r00")
    if javascript:
        expect(copy).to_be_visible()
    else:
        expect(copy).to_be_hidden()  # copying needs the script
    page.get_by_role("navigation", name="Pages below the list").get_by_role("link", name="Next page").click()
    expect(rows).to_have_count(2)
    expect(rows.last).to_contain_text(f"{prefix}/r51")
    page.get_by_role("navigation", name="Pages above the list").get_by_role("link", name="Previous page").click()
    expect(rows).to_have_count(50)
    page.goto(console(dockyard_server, "repositories?q=no-such-repository-anywhere"))
    expect(page.locator("table.repositories")).to_contain_text("No repository name contains")


# --- The private registry's pages ----------------------------------------------------------------


def test_registry_scanning_policy_and_settings(
    page: Page, dockyard_server: DockyardServer, clients: Boto3Clients, javascript: bool
) -> None:
    ecr = clients("ecr")
    before = ecr.get_registry_scanning_configuration()["scanningConfiguration"]
    nothing = unique("console-scan-none-")
    try:
        page.goto(console(dockyard_server, "registry/scanning"))
        page.get_by_label("(ENHANCED)").check()
        page.get_by_label("(CONTINUOUS_SCAN)").check()
        page.get_by_label("Repository filters for CONTINUOUS_SCAN").fill("Not A Filter")
        page.get_by_role("button", name="Save scanning configuration").click()
        expect(field_error(page, "filters_CONTINUOUS_SCAN")).to_contain_text("not allowed")
        page.get_by_label("(SCAN_ON_PUSH)").check()
        page.get_by_label("(MANUAL)").check()
        page.get_by_label("Repository filters for CONTINUOUS_SCAN").fill(f"{nothing}*")
        page.get_by_role("button", name="Save scanning configuration").click()
        expect(field_error(page, "rules")).to_contain_text("at most 2 entries")
        page.get_by_label("(MANUAL)").uncheck()
        page.get_by_role("button", name="Save scanning configuration").click()
        expect(page.get_by_role("status")).to_contain_text("Saved the scanning configuration.")
        saved = ecr.get_registry_scanning_configuration()["scanningConfiguration"]
        assert saved["scanType"] == "ENHANCED"
        frequencies = {r["scanFrequency"]: [f["filter"] for f in r["repositoryFilters"]] for r in saved["rules"]}
        assert frequencies == {"SCAN_ON_PUSH": [], "CONTINUOUS_SCAN": [f"{nothing}*"]}
        expect(page.get_by_label("Repository filters for CONTINUOUS_SCAN")).to_have_value(f"{nothing}*")
    finally:
        ecr.put_registry_scanning_configuration(scanType=before["scanType"], rules=before["rules"])

    # The registry policy: what is wrong, in plain words, beside the JSON.
    page.goto(console(dockyard_server, "registry/policy"))
    page.get_by_label("Registry policy JSON").fill(
        json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:ReplicateImage"}]})
    )
    page.get_by_role("button", name="Save registry policy").click()
    expect(field_error(page, "policy_text")).to_contain_text("Principal")
    with pytest.raises(ecr.exceptions.RegistryPolicyNotFoundException):
        ecr.get_registry_policy()
    statement = {
        "Sid": "ReplicateFromPartner",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        "Action": ["ecr:ReplicateImage"],
        "Resource": "*",
    }
    page.get_by_label("Registry policy JSON").fill(json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    page.get_by_role("button", name="Save registry policy").click()
    expect(page.get_by_role("status")).to_contain_text("Saved the registry policy.")
    assert "ReplicateFromPartner" in ecr.get_registry_policy()["policyText"]
    confirm(page, javascript, "Delete registry policy", "Delete registry policy")
    expect(page.get_by_role("status")).to_contain_text("Deleted the registry policy.")
    with pytest.raises(ecr.exceptions.RegistryPolicyNotFoundException):
        ecr.get_registry_policy()

    # Account settings.
    page.goto(console(dockyard_server, "registry/settings"))
    try:
        page.get_by_role("group", name="BLOB_MOUNTING").get_by_label("DISABLED").check()
        page.get_by_role("button", name="Save account settings").click()
        expect(page.get_by_role("status")).to_contain_text("Saved the account settings.")
        assert ecr.get_account_setting(name="BLOB_MOUNTING")["value"] == "DISABLED"
    finally:
        ecr.put_account_setting(name="BLOB_MOUNTING", value="ENABLED")


def test_creation_templates_pull_through_and_replication(
    page: Page, dockyard_server: DockyardServer, clients: Boto3Clients, javascript: bool
) -> None:
    ecr = clients("ecr")
    prefix = unique("tpl")
    page.goto(console(dockyard_server, "registry/templates"))
    page.get_by_role("link", name="Create template").click()
    page.get_by_label("Prefix").fill("Not A Prefix")
    page.get_by_role("button", name="Create template").click()
    expect(field_error(page, "prefix")).to_contain_text("Use lower-case letters and digits")
    page.get_by_label("Prefix").fill(prefix)
    page.get_by_label("Description").fill("d" * 300)
    page.get_by_role("button", name="Create template").click()
    expect(field_error(page, "description")).to_contain_text("at most 256 characters")
    page.get_by_label("Description").fill("Production images")
    page.get_by_label("Immutable tags").check()
    page.get_by_label("Exclusion filters").fill("latest")
    page.get_by_label("Resource tags").fill("env=prod")
    page.get_by_role("button", name="Create template").click()
    expect(page.get_by_role("status")).to_contain_text(f"Created the creation template for {prefix}.")
    template = ecr.describe_repository_creation_templates(prefixes=[prefix])["repositoryCreationTemplates"][0]
    assert template["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert template["appliedFor"] == ["CREATE_ON_PUSH"]
    assert template["resourceTags"] == [{"Key": "env", "Value": "prod"}]
    page.get_by_role("link", name=f"Edit template {prefix}").click()
    expect(page.get_by_label("Exclusion filters")).to_have_value("latest")
    page.get_by_label("Description").fill("Changed")
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_role("status")).to_contain_text(f"Saved the creation template for {prefix}.")
    assert (
        ecr.describe_repository_creation_templates(prefixes=[prefix])["repositoryCreationTemplates"][0]["description"]
        == "Changed"
    )
    confirm(page, javascript, f"Delete template {prefix}", "Delete template")
    expect(page.get_by_role("status")).to_contain_text(f"Deleted the creation template for {prefix}.")
    assert not ecr.describe_repository_creation_templates(prefixes=[prefix])["repositoryCreationTemplates"]

    # Pull through cache rules.
    rule = unique("ptc")[-24:]
    page.goto(console(dockyard_server, "registry/pull-through"))
    page.get_by_role("link", name="Add rule").click()
    page.get_by_label("Repository prefix", exact=True).fill("x")
    page.get_by_label("Upstream registry URL").fill("public.ecr.aws")
    page.get_by_role("button", name="Add rule").click()
    expect(field_error(page, "ecr_prefix")).to_contain_text("at least 2 characters")
    page.get_by_label("Repository prefix", exact=True).fill(rule)
    page.get_by_label("Upstream registry URL").fill("https://registry.internal.example")
    page.get_by_role("button", name="Add rule").click()
    expect(field_error(page, "upstream_url")).to_contain_text("not supported")
    page.get_by_label("Upstream registry URL").fill("public.ecr.aws")
    page.get_by_role("button", name="Add rule").click()
    expect(page.get_by_role("status")).to_contain_text(f"Created the pull through cache rule {rule}.")
    rules = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[rule])["pullThroughCacheRules"]
    assert rules[0]["upstreamRegistryUrl"] == "public.ecr.aws"
    page.get_by_role("button", name=f"Validate rule {rule}").click()
    expect(page.get_by_role("status")).to_contain_text(f"The rule {rule} is")
    confirm(page, javascript, f"Delete rule {rule}", "Delete rule")
    expect(page.get_by_role("status")).to_contain_text(f"Deleted the pull through cache rule {rule}.")
    with pytest.raises(ecr.exceptions.PullThroughCacheRuleNotFoundException):
        ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[rule])

    # Replication: rules and destinations, the API's refusals beside the field.
    filter_prefix = unique("console-repl-none-")
    page.goto(console(dockyard_server, "registry/replication"))
    try:
        page.get_by_label("Destinations").last.fill("eu-west-1")
        page.get_by_role("button", name="Save replication configuration").click()
        expect(page.locator(".field-error").first).to_contain_text("a region and an account ID")
        page.get_by_label("Destinations").last.fill(f"{dockyard_server.region} {dockyard_server.account_id}")
        page.get_by_role("button", name="Save replication configuration").click()
        expect(page.locator("#rules-error")).to_contain_text("cannot be the same as the source registry")
        page.get_by_label("Destinations").last.fill(f"eu-west-1 {dockyard_server.account_id}")
        page.get_by_label("Repository filters").last.fill(filter_prefix)
        page.get_by_role("button", name="Save replication configuration").click()
        expect(page.get_by_role("status")).to_contain_text("Saved the replication configuration.")
        rules = ecr.describe_registry()["replicationConfiguration"]["rules"]
        assert rules[-1]["destinations"] == [{"region": "eu-west-1", "registryId": dockyard_server.account_id}]
        assert rules[-1]["repositoryFilters"] == [{"filter": filter_prefix, "filterType": "PREFIX_MATCH"}]
    finally:
        ecr.put_replication_configuration(replicationConfiguration={"rules": []})


# --- Event history -------------------------------------------------------------------------------


def test_event_history(
    page: Page, chromium: Browser, dockyard_server: DockyardServer, clients: Boto3Clients, javascript: bool
) -> None:
    ecr, iam = clients("ecr"), clients("iam")
    repository = unique("trail-")
    ecr.create_repository(repositoryName=repository)
    ecr.delete_repository(repositoryName=repository)
    page.goto(console(dockyard_server, "trail"))
    page.get_by_label("Lookup attribute").select_option("ResourceName")
    page.get_by_label("Attribute value").fill(repository)
    page.get_by_role("button", name="Look up events").click()
    events = page.locator("table.events tbody.event")
    expect(events).to_have_count(2)
    expect(events.first).to_contain_text("DeleteRepository")  # newest first
    expect(events.last).to_contain_text("CreateRepository")
    record = events.last.locator("pre.json")
    expect(record).to_be_hidden()
    events.last.locator("summary").click()
    expect(record).to_be_visible()
    document = json.loads(record.inner_text())
    assert document["eventName"] == "CreateRepository"
    assert document["requestParameters"]["repositoryName"] == repository

    page.get_by_label("Lookup attribute").select_option("EventName")
    page.get_by_label("Attribute value").fill("DeleteRepository")
    page.get_by_role("button", name="Look up events").click()
    expect(events.first).to_contain_text("DeleteRepository")
    expect(page.locator("table.events tbody.event th", has_text="CreateRepository")).to_have_count(0)

    # A time range the wrong way round: said beside the field.
    page.get_by_label("From", exact=True).fill("2026-02-01T00:00")
    page.get_by_label("To", exact=True).fill("2026-01-01T00:00")
    page.get_by_role("button", name="Look up events").click()
    expect(field_error(page, "start")).to_contain_text("The start must be before the end.")

    # Paged, 50 events a page, newest first across pages.
    for number in range(26):
        ecr.create_repository(repositoryName=f"{repository}-{number}")
        ecr.delete_repository(repositoryName=f"{repository}-{number}")
    page.goto(console(dockyard_server, "trail"))
    expect(events).to_have_count(50)
    first_times = events.locator("td:first-child").all_inner_texts()
    page.get_by_role("navigation", name="Pages below the events").get_by_role("link", name="Next page").click()
    expect(page).to_have_url(re.compile(r"page="))
    expect(events.first).to_be_visible()
    assert events.locator("td:first-child").first.inner_text() <= first_times[-1]

    # Only a principal allowed cloudtrail:LookupEvents sees the history.
    user = unique("trail-reader")
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    context = open_context(chromium, javascript=javascript)
    denied = signed_in(context, dockyard_server, key["AccessKeyId"], key["SecretAccessKey"])
    response = denied.goto(console(dockyard_server, "trail"))
    assert response is not None and response.status == 403
    expect(denied.get_by_role("alert")).to_contain_text("cloudtrail:LookupEvents")
    context.close()


# --- Accessibility, layout and screenshots --------------------------------------------------------


def test_registry_pages_are_accessible_and_fit_a_phone(
    chromium: Browser, dockyard_server: DockyardServer, clients: Boto3Clients, screenshots: Screenshots
) -> None:
    ecr = clients("ecr")
    ecr.create_repository(
        repositoryName=unique("shots-") + "/kms",
        encryptionConfiguration={"encryptionType": "KMS", "kmsKey": KMS_KEY},
    )
    prefix = unique("shots")
    ecr.create_repository_creation_template(prefix=prefix, appliedFor=["CREATE_ON_PUSH"], description="Shots")
    pages = [
        "repositories", "repositories/create", "registry", "registry/scanning", "registry/policy",
        "registry/templates", f"registry/templates/edit?prefix={prefix}", "registry/templates/edit",
        "registry/pull-through", "registry/pull-through/create", "registry/replication", "registry/settings",
        "trail",
    ]  # fmt: skip
    try:
        for viewport in (DESKTOP, PHONE):
            context = open_context(chromium, viewport=viewport)
            page = signed_in(context, dockyard_server)
            for path in pages:
                response = page.goto(console(dockyard_server, path))
                assert response is not None and response.status == 200, path
                no_horizontal_overflow(page)
                name = re.sub(r"[^a-z0-9]+", "-", path.split("?")[0]).strip("-")
                if viewport is DESKTOP:
                    for summary in page.locator("summary").all()[:1]:
                        summary.click()
                    assert_accessible(page)
                screenshots(page, f"{viewport['width']}-{name}")
            # An error beside its field is accessible too.
            page.goto(console(dockyard_server, "repositories/create"))
            page.get_by_label("Repository name").fill("Not Valid")
            page.get_by_role("button", name="Create repository").click()
            expect(field_error(page, "repository_name")).to_be_visible()
            if viewport is DESKTOP:
                assert_accessible(page)
            screenshots(page, f"{viewport['width']}-create-repository-errors")
            context.close()
    finally:
        ecr.delete_repository_creation_template(prefix=prefix)


def test_keyboard_only_registry_walkthrough(chromium: Browser, dockyard_server: DockyardServer) -> None:
    context = open_context(chromium, javascript=False)
    page = signed_in(context, dockyard_server)
    page.goto(console(dockyard_server, "repositories"))
    page.get_by_role("link", name="Private registry").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Private registry")).to_be_visible()
    page.get_by_role("link", name="Account settings").first.focus()
    page.keyboard.press("Enter")
    page.get_by_role("group", name="BLOB_MOUNTING").get_by_label("ENABLED").focus()
    page.keyboard.press("Space")
    page.get_by_role("button", name="Save account settings").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Saved the account settings.")
    page.get_by_role("link", name="Event history").first.focus()
    page.keyboard.press("Enter")
    page.get_by_label("Attribute value").focus()
    page.keyboard.type("PutAccountSetting")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"value=PutAccountSetting"))
    context.close()
