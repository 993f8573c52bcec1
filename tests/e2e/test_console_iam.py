"""The console's IAM pages of issue 17 ("Missing" → IAM) in Debian's Chromium, with and without
JavaScript: user groups (members, attached and inline policies), roles with trust policies checked
by the core (faults in plain words beside the field), customer managed policies with versions and
the AWS managed ones read-only; every destructive action confirmed; axe-core finds nothing.
And two checks of the whole console: a keyboard-only walkthrough, and a screenshot of every page."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlencode

import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, expect
from starlette.routing import Mount, Route, Router

from dockyard.core.services import Services
from dockyard.doors.console.routes import ConsoleDoor
from tests.e2e.test_console_product import (
    DESKTOP,
    PHONE,
    assert_accessible,
    console,
    no_horizontal_overflow,
    open_context,
    put_image,
    signed_in,
    unique,
)
from tests.support.browser import Screenshots
from tests.support.clients import Boto3Clients
from tests.support.images import build_image
from tests.support.server import DockyardServer

READ_ONLY = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
ALLOW_PULL = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ecr:BatchGetImage", "Resource": "*"}],
    }
)
ALLOW_ALL_ECR = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}
)


def trust(principal: dict[str, Any], action: str = "sts:AssumeRole", **extra: Any) -> str:
    statement = {"Effect": "Allow", "Principal": principal, "Action": action, **extra}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.fixture
def ecr(dockyard_server: DockyardServer) -> Any:
    return Boto3Clients(dockyard_server)("ecr")


@pytest.fixture
def iam(dockyard_server: DockyardServer) -> Any:
    return Boto3Clients(dockyard_server)("iam")


@pytest.fixture(params=[True, False], ids=["with-js", "without-js"])
def javascript(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def page(chromium: Browser, dockyard_server: DockyardServer, javascript: bool) -> Iterator[Page]:
    context = open_context(chromium, javascript=javascript)
    yield signed_in(context, dockyard_server)
    context.close()


Act = Callable[..., None]


@pytest.fixture
def act(page: Page, javascript: bool) -> Iterator[Act]:
    """Click a destructive button: with JavaScript a dialog asks (answered no first, nothing may
    change; then yes); without, a confirmation page (cancelled first, then confirmed)."""
    answers: list[str] = []
    if javascript:

        def answer(dialog: Dialog) -> None:
            answers.append(dialog.message)
            if len(answers) % 2:
                dialog.dismiss()
            else:
                dialog.accept()

        page.on("dialog", answer)

    def run(button: str, confirm: str, unchanged: Callable[[], bool]) -> None:
        before = page.url
        asked = len(answers)
        page.get_by_role("button", name=button, exact=True).click()
        if javascript:
            expect(page).to_have_url(before)
            assert unchanged()
            page.get_by_role("button", name=button, exact=True).click()
            assert len(answers) == asked + 2, answers
            return
        expect(page.get_by_role("heading", name=re.compile(r"\?$"))).to_be_visible()
        assert unchanged()
        page.get_by_role("link", name="Cancel").click()
        expect(page.get_by_role("heading", name=re.compile(r"\?$"))).to_have_count(0)
        assert unchanged()
        page.goto(before)
        page.get_by_role("button", name=button, exact=True).click()
        page.get_by_role("button", name=confirm).click()

    yield run


def notice(page: Page, text: str) -> None:
    expect(page.get_by_role("status")).to_contain_text(text)


def field_error(page: Page, field: str, text: str) -> None:
    expect(page.locator(f"#{field}-error")).to_contain_text(text)
    expect(page.locator(f"#{field}")).to_have_attribute("aria-invalid", "true")


# --- groups ---------------------------------------------------------------------------------------


def test_groups(page: Page, act: Act, dockyard_server: DockyardServer, iam: Any) -> None:
    group, member = unique("devs"), unique("member")
    iam.create_user(UserName=member)

    page.goto(console(dockyard_server, "iam/users"))
    page.get_by_role("navigation", name="Main").get_by_role("link", name="User groups").click()
    expect(page.get_by_role("heading", name="User groups")).to_be_visible()
    # The core's rule for a group name, beside the field; nothing is created.
    for name, plain in [("has space", "can contain only letters, digits"), ("g" * 129, "at most 128 characters")]:
        page.get_by_label("New group name").evaluate("e => e.removeAttribute('maxlength')")
        page.get_by_label("New group name").fill(name)
        page.get_by_role("button", name="Create group").click()
        field_error(page, "group_name", plain)
        expect(page.get_by_label("New group name")).to_have_value(name)
        assert name not in [g["GroupName"] for g in iam.list_groups()["Groups"]]
    page.get_by_label("New group name").fill(group)
    page.get_by_role("button", name="Create group").click()
    notice(page, "Created the group.")
    expect(page.get_by_role("heading", name=group, level=1)).to_be_visible()
    assert iam.get_group(GroupName=group)["Group"]["GroupName"] == group

    # Members: nothing preselected, then one added; the user's page links back to the group.
    page.get_by_role("button", name="Add user").click()
    field_error(page, "user_name", "Choose the user to add.")
    page.get_by_label("User to add").select_option(member)
    page.get_by_role("button", name="Add user").click()
    notice(page, f"Added {member} to the group.")
    assert [u["UserName"] for u in iam.get_group(GroupName=group)["Users"]] == [member]
    page.get_by_role("link", name=member).click()
    expect(page.get_by_role("heading", name=member, level=1)).to_be_visible()
    page.get_by_role("table").filter(has_text="Group name").get_by_role("link", name=group).click()
    expect(page.get_by_role("heading", name=group, level=1)).to_be_visible()

    # Managed and inline policies of the group.
    expect(page.get_by_label("Policy to attach")).to_have_value("")
    page.get_by_label("Policy to attach").select_option(READ_ONLY)
    page.get_by_role("button", name="Attach policy").click()
    notice(page, "Attached the policy.")
    assert [p["PolicyArn"] for p in iam.list_attached_group_policies(GroupName=group)["AttachedPolicies"]] == [
        READ_ONLY
    ]
    page.get_by_role("link", name="Add inline policy").click()
    page.get_by_label("Policy name").fill("pull")
    page.get_by_label("Policy document").fill('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow"')
    page.get_by_role("button", name="Save inline policy").click()
    field_error(page, "document", "This is not valid JSON (line 1")
    page.get_by_label("Policy document").fill(
        json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:BatchGetImage"}]})
    )
    page.get_by_role("button", name="Save inline policy").click()
    field_error(page, "document", "has no Resource")
    assert iam.list_group_policies(GroupName=group)["PolicyNames"] == []
    page.get_by_label("Policy document").fill(ALLOW_PULL)
    page.get_by_role("button", name="Save inline policy").click()
    notice(page, "Saved the inline policy pull.")
    assert iam.list_group_policies(GroupName=group)["PolicyNames"] == ["pull"]
    page.get_by_role("link", name="pull", exact=True).click()
    # Laid out for reading, the same document.
    expect(page.get_by_label("Policy document")).to_have_value(json.dumps(json.loads(ALLOW_PULL), indent=2))
    page.get_by_role("link", name="Cancel").click()

    # A group with members and policies cannot go: IAM's reason, on the group's page.
    act("Delete group", "Delete group", lambda: bool(iam.get_group(GroupName=group)))
    expect(page.get_by_role("alert")).to_contain_text("must remove users from group first")
    page.goto(console(dockyard_server, f"iam/groups/{group}"))
    act(f"Remove {member}", "Remove from group", lambda: len(iam.get_group(GroupName=group)["Users"]) == 1)
    notice(page, f"Removed {member} from the group.")
    assert iam.get_group(GroupName=group)["Users"] == []
    act("Detach AmazonEC2ContainerRegistryReadOnly", "Detach policy", lambda: True)
    notice(page, "Detached the policy.")
    assert iam.list_attached_group_policies(GroupName=group)["AttachedPolicies"] == []
    act("Delete inline policy pull", "Delete inline policy", lambda: bool(iam.list_group_policies(GroupName=group)))
    notice(page, "Deleted the inline policy pull.")
    act("Delete group", "Delete group", lambda: bool(iam.get_group(GroupName=group)))
    notice(page, f"Deleted group {group}.")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_group(GroupName=group)


def test_user_page_joins_and_leaves_groups(page: Page, act: Act, dockyard_server: DockyardServer, iam: Any) -> None:
    user, group = unique("joiner"), unique("team")
    iam.create_user(UserName=user)
    iam.create_group(GroupName=group)
    page.goto(console(dockyard_server, f"iam/users/{user}"))
    expect(page.get_by_label("Add to group")).to_have_value("")
    page.get_by_role("button", name="Add to group").click()
    field_error(page, "group_name", "Choose the group")
    page.get_by_label("Add to group").select_option(group)
    page.get_by_role("button", name="Add to group").click()
    notice(page, f"Added {user} to group {group}.")
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName=user)["Groups"]] == [group]
    expect(page.get_by_role("link", name=group)).to_have_attribute("href", f"/console/iam/groups/{group}")
    act(
        f"Remove from group {group}",
        "Remove from group",
        lambda: bool(iam.list_groups_for_user(UserName=user)["Groups"]),
    )
    notice(page, f"Removed {user} from group {group}.")
    assert iam.list_groups_for_user(UserName=user)["Groups"] == []


# --- roles ----------------------------------------------------------------------------------------


def test_roles(page: Page, act: Act, dockyard_server: DockyardServer, iam: Any) -> None:
    role = unique("deployer")
    account = dockyard_server.account_id
    page.goto(console(dockyard_server, "iam/roles"))
    page.get_by_role("link", name="Create role").click()
    # The default trust policy trusts the account itself.
    assert json.loads(page.get_by_label("Trust policy").input_value())["Statement"][0]["Principal"] == {
        "AWS": f"arn:aws:iam::{account}:root"
    }
    page.get_by_label("Role name").fill("has space")
    page.get_by_role("button", name="Create role").click()
    field_error(page, "role_name", "can contain only letters, digits")
    page.get_by_label("Role name").fill(role)
    # Each fault of a trust policy, as the core finds it, in plain words beside the field.
    missing_user = f"arn:aws:iam::{account}:user/{unique('nobody')}"
    for text, plain in [
        ('{"Version": "2012-10-17", "Statement": [', "This is not valid JSON (line 1"),
        (trust({"AWS": account}, "s3:GetObject"), "may only allow the STS role actions"),
        (trust({"AWS": account}, Resource="*"), "has no Resource element"),
        (trust({"AWS": missing_user}), f"No IAM user or role {missing_user} exists"),
    ]:
        page.get_by_label("Trust policy").fill(text)
        page.get_by_role("button", name="Create role").click()
        field_error(page, "trust_policy", plain)
        expect(page.get_by_label("Trust policy")).to_have_value(text)  # what was typed stays
        expect(page.get_by_label("Role name")).to_have_value(role)
        with pytest.raises(iam.exceptions.NoSuchEntityException):
            iam.get_role(RoleName=role)
    page.get_by_label("Trust policy").fill(trust({"Service": "ec2.amazonaws.com"}))
    page.get_by_role("button", name="Create role").click()
    notice(page, "Created the role.")
    expect(page.get_by_role("heading", name=role, level=1)).to_be_visible()
    expect(page.locator(".trusted-list")).to_have_text("AWS service ec2.amazonaws.com")
    page.get_by_role("link", name="Roles", exact=True).first.click()
    expect(page.get_by_role("row", name=re.compile(role))).to_contain_text("AWS service ec2.amazonaws.com")
    page.get_by_role("link", name=role).click()

    # Edit the trust policy: refused in plain words, then saved.
    page.get_by_role("link", name="Edit trust policy").click()
    page.get_by_label("Trust policy").fill("[]")
    page.get_by_role("button", name="Save trust policy").click()
    field_error(page, "trust_policy", "must be a JSON object")
    page.get_by_label("Trust policy").fill(trust({"AWS": account}))
    page.get_by_role("button", name="Save trust policy").click()
    notice(page, "Saved the trust policy.")
    expect(page.locator(".trusted-list")).to_have_text(f"AWS account {account}")
    stored = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert stored["Statement"][0]["Principal"] == {"AWS": account}

    # Policies, then delete (refused while a policy is attached).
    page.get_by_label("Policy to attach").select_option(READ_ONLY)
    page.get_by_role("button", name="Attach policy").click()
    notice(page, "Attached the policy.")
    page.get_by_role("link", name="Add inline policy").click()
    page.get_by_label("Policy name").fill("bad name")
    page.get_by_label("Policy document").fill(ALLOW_PULL)
    page.get_by_role("button", name="Save inline policy").click()
    field_error(page, "policy_name", "A policy name can contain only letters, digits")
    page.get_by_label("Policy name").fill("pull")
    page.get_by_role("button", name="Save inline policy").click()
    notice(page, "Saved the inline policy pull.")
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["pull"]
    act("Delete role", "Delete role", lambda: bool(iam.get_role(RoleName=role)))
    expect(page.get_by_role("alert")).to_contain_text("Cannot delete entity, must delete policies first.")
    page.goto(console(dockyard_server, f"iam/roles/{role}"))
    act("Detach AmazonEC2ContainerRegistryReadOnly", "Detach policy", lambda: True)
    notice(page, "Detached the policy.")
    act("Delete inline policy pull", "Delete inline policy", lambda: bool(iam.list_role_policies(RoleName=role)))
    notice(page, "Deleted the inline policy pull.")
    act("Delete role", "Delete role", lambda: bool(iam.get_role(RoleName=role)))
    notice(page, f"Deleted role {role}.")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName=role)


# --- managed policies -----------------------------------------------------------------------------


def test_managed_policies(page: Page, act: Act, dockyard_server: DockyardServer, iam: Any) -> None:
    name = unique("pullers")
    arn = f"arn:aws:iam::{dockyard_server.account_id}:policy/{name}"
    page.goto(console(dockyard_server, "iam/users"))
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Policies").click()
    page.get_by_role("link", name="Create policy").click()
    page.get_by_label("Policy name").evaluate("e => e.removeAttribute('maxlength')")
    page.get_by_label("Policy name").fill("p" * 129)
    page.get_by_role("button", name="Create policy").click()
    field_error(page, "policy_name", "at most 128 characters long; this one has 129")
    page.get_by_label("Policy name").fill(name)
    page.get_by_label("Policy document").fill(
        json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr", "Resource": "*"}]})
    )
    page.get_by_role("button", name="Create policy").click()
    field_error(page, "document", "must be prefaced by a vendor")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_policy(PolicyArn=arn)
    page.get_by_label("Policy document").fill(ALLOW_PULL)
    page.get_by_role("button", name="Create policy").click()
    notice(page, f"Created the policy {name}.")
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()

    # A new version, made the default; then an older one back as the default.
    expect(page.get_by_label("Policy document")).to_have_value(json.dumps(json.loads(ALLOW_PULL), indent=2))
    page.get_by_label("Policy document").fill("{}")
    page.get_by_role("button", name="Create version").click()
    expect(page.locator("#document-error")).to_contain_text("(IAM: ")
    assert len(iam.list_policy_versions(PolicyArn=arn)["Versions"]) == 1
    page.get_by_label("Policy document").fill(ALLOW_ALL_ECR)
    page.get_by_role("button", name="Create version").click()
    notice(page, "Created version v2 and made it the default.")
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v2"
    expect(page.locator("pre.policy-document")).to_contain_text('"ecr:*"')
    page.get_by_role("button", name="Set as default v1").click()
    notice(page, "Version v1 is now the default.")
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v1"
    page.get_by_role("link", name="v2 document").click()
    expect(page.locator("pre.policy-document")).to_contain_text('"ecr:*"')
    expect(page.get_by_role("button", name="Delete version v1")).to_have_count(0)  # the default stays

    # The policy cannot go while it has two versions: IAM's reason; then the version, then the policy.
    act("Delete policy", "Delete policy", lambda: bool(iam.get_policy(PolicyArn=arn)))
    expect(page.get_by_role("alert")).to_contain_text("must delete the policy's versions")
    page.goto(console(dockyard_server, "iam/policies/view?" + urlencode({"arn": arn})))
    act("Delete version v2", "Delete version", lambda: len(iam.list_policy_versions(PolicyArn=arn)["Versions"]) == 2)
    notice(page, "Deleted version v2.")
    assert [v["VersionId"] for v in iam.list_policy_versions(PolicyArn=arn)["Versions"]] == ["v1"]
    act("Delete policy", "Delete policy", lambda: bool(iam.get_policy(PolicyArn=arn)))
    notice(page, f"Deleted policy {name}.")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_policy(PolicyArn=arn)

    # AWS managed policies: listed apart, their versions readable, nothing to change.
    page.goto(console(dockyard_server, "iam/policies"))
    aws_table = page.locator("table.aws-policies")
    aws_table.get_by_role("link", name="AmazonEC2ContainerRegistryReadOnly", exact=True).click()
    expect(page.locator("dl.summary")).to_contain_text("AWS managed (read-only)")
    versions = iam.list_policy_versions(PolicyArn=READ_ONLY)["Versions"]
    expect(page.locator("table.versions tbody tr")).to_have_count(len(versions))
    expect(page.get_by_role("button")).to_have_count(1)  # Sign out only
    expect(page.get_by_label("Policy document")).to_have_count(0)


# --- accessibility, fit, not found ----------------------------------------------------------------


def iam_fixture(iam: Any, account: str) -> dict[str, str]:
    """A user in a group, a role, a customer managed policy with two versions, each with an
    inline policy and an attached one: every IAM page has something to show."""
    names = {"user": unique("a11y-user"), "group": unique("a11y-group"), "role": unique("a11y-role")}
    names["policy"] = unique("a11y-policy")
    iam.create_user(UserName=names["user"])
    iam.create_group(GroupName=names["group"])
    iam.add_user_to_group(GroupName=names["group"], UserName=names["user"])
    iam.create_role(RoleName=names["role"], AssumeRolePolicyDocument=trust({"AWS": account}))
    created = iam.create_policy(PolicyName=names["policy"], PolicyDocument=ALLOW_PULL)["Policy"]["Arn"]
    iam.create_policy_version(PolicyArn=created, PolicyDocument=ALLOW_ALL_ECR, SetAsDefault=True)
    names["arn"] = created
    for kind, key in (("user", "UserName"), ("group", "GroupName"), ("role", "RoleName")):
        getattr(iam, f"put_{kind}_policy")(**{key: names[kind]}, PolicyName="inline", PolicyDocument=ALLOW_PULL)
        getattr(iam, f"attach_{kind}_policy")(**{key: names[kind]}, PolicyArn=created)
    return names


def test_iam_pages_are_accessible_and_fit_a_phone(
    chromium: Browser, dockyard_server: DockyardServer, iam: Any, screenshots: Screenshots
) -> None:
    n = iam_fixture(iam, dockyard_server.account_id)
    pages = [
        "iam/groups", f"iam/groups/{n['group']}", f"iam/groups/{n['group']}/inline",
        f"iam/groups/{n['group']}/inline?policy=inline", "iam/roles", "iam/create-role", f"iam/roles/{n['role']}",
        f"iam/roles/{n['role']}/trust", f"iam/roles/{n['role']}/inline?policy=inline", "iam/policies",
        "iam/create-policy", "iam/policies/view?" + urlencode({"arn": n["arn"]}),
        "iam/policies/view?" + urlencode({"arn": n["arn"], "version": "v1"}),
        "iam/policies/view?" + urlencode({"arn": READ_ONLY}), f"iam/users/{n['user']}",
        f"iam/users/{n['user']}/inline?policy=inline",
    ]  # fmt: skip
    for viewport in (DESKTOP, PHONE):
        context = open_context(chromium, viewport=viewport)
        page = signed_in(context, dockyard_server)
        for path in pages:
            response = page.goto(console(dockyard_server, path))
            assert response is not None and response.status == 200, path
            no_horizontal_overflow(page)
            if viewport is DESKTOP:
                assert_accessible(page)
        # Pages with errors beside their fields, too.
        page.goto(console(dockyard_server, "iam/create-role"))
        page.get_by_label("Role name").fill("bad name")
        page.get_by_label("Trust policy").fill("{")
        page.get_by_role("button", name="Create role").click()
        expect(page.locator("#role_name-error")).to_be_visible()
        no_horizontal_overflow(page)
        if viewport is DESKTOP:
            assert_accessible(page)
        screenshots(page, f"{viewport['width']}-create-role-refused")
        context.close()

    # What does not exist is a 404 page, not an empty one.
    context = open_context(chromium)
    page = signed_in(context, dockyard_server)
    missing = unique("missing")
    for path in [
        f"iam/groups/{missing}",
        f"iam/roles/{missing}",
        f"iam/roles/{missing}/trust",
        f"iam/groups/{missing}/inline",
        f"iam/roles/{n['role']}/inline?policy={missing}",
        "iam/policies/view?" + urlencode({"arn": f"arn:aws:iam::{dockyard_server.account_id}:policy/{missing}"}),
    ]:
        response = page.goto(console(dockyard_server, path))
        assert response is not None and response.status == 404, path
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("NoSuchEntity")
    context.close()


def test_iam_pages_refuse_a_principal_without_permission(
    chromium: Browser, dockyard_server: DockyardServer, iam: Any
) -> None:
    name = unique("nobody")
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    context = open_context(chromium)
    page = signed_in(context, dockyard_server, key["AccessKeyId"], key["SecretAccessKey"])
    for path, empty in [("iam/groups", "No groups."), ("iam/roles", "No roles."), ("iam/policies", "No customer")]:
        response = page.goto(console(dockyard_server, path))
        assert response is not None and response.status == 403, path
        expect(page.get_by_role("heading", name="You may not see this")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("AccessDenied")
        expect(page.get_by_text(empty)).to_have_count(0)
    context.close()


# --- the whole console: keyboard only, and a screenshot of every page ------------------------------


def tab_to(page: Page, target: Locator, *, limit: int = 150) -> None:
    """Press Tab (only) until `target` has the focus."""
    target.first.wait_for()
    for _ in range(limit):
        if target.first.evaluate("e => e === document.activeElement"):
            return
        page.keyboard.press("Tab")
    pytest.fail(f"Tab never reached {target} on {page.url}")


def test_keyboard_only_walkthrough(
    chromium: Browser, dockyard_server: DockyardServer, ecr: Any, iam: Any, javascript: bool
) -> None:
    """Sign-in → repositories → a repository → IAM users → a user → its group, and back out of the
    group, with Tab, Enter and Space only."""
    repository, user, group = unique("keys-"), unique("keyboard"), unique("keyboard-group")
    ecr.create_repository(repositoryName=repository)
    iam.create_user(UserName=user)
    iam.create_group(GroupName=group)
    iam.add_user_to_group(GroupName=group, UserName=user)
    context = open_context(chromium, javascript=javascript)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # a native dialog's default button (Enter)
    page.goto(console(dockyard_server, "sign-in"))
    tab_to(page, page.get_by_label("Access key ID"))
    page.keyboard.type(dockyard_server.access_key_id)
    tab_to(page, page.get_by_label("Secret access key"))
    page.keyboard.type(dockyard_server.secret_access_key)
    tab_to(page, page.get_by_role("button", name="Sign in"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Repositories", level=1)).to_be_visible()

    # The skip link comes first and lands on the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    tab_to(page, page.get_by_role("link", name=repository, exact=True))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/repositories/{repository}/-/images"))
    tab_to(page, page.get_by_role("navigation", name="Main").get_by_role("link", name="IAM users"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="IAM users")).to_be_visible()
    tab_to(page, page.get_by_role("link", name=user, exact=True))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=user, level=1)).to_be_visible()
    tab_to(page, page.get_by_role("link", name=group, exact=True))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=group, level=1)).to_be_visible()

    # Space presses a button: the user leaves the group (confirmed by keyboard too).
    tab_to(page, page.get_by_role("button", name=f"Remove {user}"))
    page.keyboard.press("Space")
    if not javascript:
        tab_to(page, page.get_by_role("button", name="Remove from group"))
        page.keyboard.press("Space")
    notice(page, f"Removed {user} from the group.")
    assert iam.get_group(GroupName=group)["Users"] == []
    tab_to(page, page.get_by_role("navigation", name="Main").get_by_role("link", name="User groups"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="User groups")).to_be_visible()
    context.close()


def console_get_paths() -> list[str]:
    """The path of every console page a browser can GET, as the console's router declares them."""
    door = ConsoleDoor(cast(Services, None))
    gzip_app = door.mount().app
    router = cast(Router, gzip_app.app)  # type: ignore[attr-defined]
    return [
        route.path
        for route in router.routes
        if isinstance(route, Route) and not isinstance(route, Mount) and "GET" in (route.methods or set())
    ]


def test_screenshot_of_every_console_page(
    chromium: Browser, dockyard_server: DockyardServer, ecr: Any, iam: Any, tmp_path: Path, screenshots: Screenshots
) -> None:
    """Every page the console's router serves by GET, filled in with things that exist, saved as
    test-artifacts/test_screenshot_of_every_console_page/NN-<page>.png; none fails."""
    repository = unique("shots-")
    ecr.create_repository(repositoryName=repository)
    digest = put_image(ecr, repository, build_image(tmp_path / "layout", "v1", [2048], seed=repository), "v1")
    statement = {"Sid": "AllowPull", "Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"}
    ecr.set_repository_policy(
        repositoryName=repository, policyText=json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    )
    n = iam_fixture(iam, dockyard_server.account_id)
    values = {"user": n["user"], "group": n["group"], "role": n["role"], "rest": "no-such-page"}
    # Query members pages take; a page ignores those it does not read.
    query = urlencode({"digest": digest, "name": repository, "arn": n["arn"], "policy": "inline"})

    def fill(path: str) -> tuple[str, bool]:
        """The URL of `path` with its parameters filled in, and whether they are all known."""
        known = True

        def value(match: re.Match[str]) -> str:
            nonlocal known
            param = match.group(1)
            if path.startswith("/repositories/") and param == "name":
                return quote(repository)
            for kind in ("user", "group", "role"):
                if path.startswith(f"/iam/{kind}s/") and param == "name":
                    return quote(values[kind], safe="")
            if param in values:
                return values[param]
            known = False
            return "unknown"

        filled = re.sub(r"\{(\w+)(?::\w+)?\}", value, path)
        return f"{filled}?{query}", known

    paths = console_get_paths()
    assert "/iam/groups/{name}" in paths and "/iam/policies/view" in paths
    context = open_context(chromium)
    page = signed_in(context, dockyard_server)
    for path in paths:
        url, known = fill(path)
        response = page.goto(console(dockyard_server, url.lstrip("/")))
        assert response is not None, url
        if path == "/{rest:path}":
            assert response.status == 404, url
        elif known:
            assert response.status == 200, f"{url}: {response.status}"
        else:
            assert response.status < 500, f"{url}: {response.status}"
        screenshots(page, re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "home")
    context.close()
    anonymous = open_context(chromium)
    sign_in = anonymous.new_page()
    sign_in.goto(console(dockyard_server, "sign-in"))
    screenshots(sign_in, "sign-in")
    anonymous.close()
    assert len(screenshots.taken) == len(paths) + 1
    assert all(shot.stat().st_size > 0 for shot in screenshots.taken)
