"""IAM managed policies: the customer managed policies of the account (create, view their
versions, add a version and make it the default, delete a version or the policy) and the AWS
managed policies, read-only with their version history.

A policy is named by its ARN in the query string (?arn=…): an ARN has slashes and colons."""

from __future__ import annotations

from starlette.responses import Response

from dockyard.core.errors import DockyardError
from dockyard.core.identity import iam_common
from dockyard.core.identity import iam_policies as core
from dockyard.core.identity.iam_errors import (
    EntityAlreadyExists,
    LimitExceeded,
    MalformedPolicyDocument,
)
from dockyard.core.identity.iam_errors import ValidationError as IamValidationError
from dockyard.core.identity.iam_policies import NewPolicy, PolicyListing
from dockyard.core.identity.principals import AWS_POLICY_PREFIX
from dockyard.doors.console.iam import LIST_ALL, NEW_POLICY_DOCUMENT, plain_policy_problem, pretty_json
from dockyard.doors.console.web import ErrorView, Page, Visit, console_url, error_status

SECTION = "iam-policies"
NOT_CREATED = "The policy was not created: correct the fields marked below."


def policy_url(arn: str, version: str = "") -> str:
    return console_url("iam/policies/view", arn=arn, version=version or None)


def _aws_managed(arn: str) -> bool:
    return arn.startswith(AWS_POLICY_PREFIX)


def _document_problem(exc: DockyardError, text: str) -> str | None:
    """The plain words for a refused document, or None when the refusal is not about it."""
    if isinstance(exc, MalformedPolicyDocument | IamValidationError):
        return plain_policy_problem(exc, text, managed=True)
    if isinstance(exc, LimitExceeded):
        return exc.message
    return None


def _form_text(visit: Visit, name: str) -> str:
    value = visit.form.get(name) if visit.form is not None else None
    return value if isinstance(value, str) else ""


async def policies(visit: Visit) -> Response:
    try:
        listed = await core.list_policies(visit.svc, visit.caller, PolicyListing(max_items=LIST_ALL))
    except DockyardError as exc:
        return visit.refused(exc, "iam_policies.html", customer=[], aws=[])
    found = listed["Policies"]
    customer = sorted((p for p in found if not _aws_managed(p["Arn"])), key=lambda p: p["PolicyName"].lower())
    aws = sorted((p for p in found if _aws_managed(p["Arn"])), key=lambda p: p["PolicyName"].lower())
    return visit.render("iam_policies.html", customer=customer, aws=aws, policy_url=policy_url)


def _create_page(
    visit: Visit,
    name: str,
    document: str,
    status: int = 200,
    error: ErrorView | None = None,
    field_errors: dict[str, str] | None = None,
) -> Response:
    return visit.render(
        "iam_policy_create.html", status, name=name, document=document, error=error, field_errors=field_errors or {}
    )


async def create_form(visit: Visit) -> Response:
    return _create_page(visit, "", NEW_POLICY_DOCUMENT)


async def create_policy(visit: Visit) -> Response:
    name = visit.field("policy_name")
    document = _form_text(visit, "document")
    problem = iam_common.policy_name_problem(name)
    if problem is not None:
        return _create_page(visit, name, document, 400, ErrorView("", NOT_CREATED), {"policy_name": problem})
    try:
        created = await core.create_policy(visit.svc, visit.caller, NewPolicy(name=name, document=document))
    except EntityAlreadyExists:
        errors = {"policy_name": f"A policy named {name} already exists."}
        return _create_page(visit, name, document, 409, ErrorView("", NOT_CREATED), errors)
    except DockyardError as exc:
        plain = _document_problem(exc, document)
        if plain is None:
            return _create_page(visit, name, document, error_status(exc), ErrorView.of(exc))
        return _create_page(visit, name, document, 400, ErrorView("", NOT_CREATED), {"document": plain})
    return visit.redirect(policy_url(created["Policy"]["Arn"]), f"Created the policy {name}.")


async def policy(
    visit: Visit,
    status: int = 200,
    error: ErrorView | None = None,
    field_errors: dict[str, str] | None = None,
    draft: str | None = None,
) -> Response:
    """A managed policy: its summary, its versions (newest first), one version's document
    (?version=, else the default) and, for a customer managed policy, the new-version form."""
    arn = visit.param("arn") or visit.field("arn")
    svc, caller = visit.svc, visit.caller
    try:
        described = (await core.get_policy(svc, caller, arn))["Policy"]
        versions = (await core.list_policy_versions(svc, caller, arn, None, LIST_ALL))["Versions"]
        shown_id = visit.param("version") or described["DefaultVersionId"]
        shown = (await core.get_policy_version(svc, caller, arn, shown_id))["PolicyVersion"]
    except DockyardError as exc:
        return visit.refused(exc)
    return visit.render(
        "iam_policy.html",
        status,
        policy=described,
        versions=versions,
        shown=shown,
        shown_document=pretty_json(shown["Document"]),
        aws_managed=_aws_managed(arn),
        draft=pretty_json(shown["Document"]) if draft is None else draft,
        policy_url=policy_url,
        error=error,
        field_errors=field_errors or {},
    )


async def create_version(visit: Visit) -> Response:
    arn = visit.field("arn")
    document = _form_text(visit, "document")
    make_default = visit.checked("set_default")
    try:
        created = await core.create_policy_version(visit.svc, visit.caller, arn, document, make_default)
    except DockyardError as exc:
        plain = _document_problem(exc, document)
        if plain is None:
            return await policy(visit, error_status(exc), ErrorView.of(exc), draft=document)
        summary = ErrorView("", "The version was not created: correct the field marked below.")
        return await policy(visit, 400, summary, {"document": plain}, draft=document)
    version = created["PolicyVersion"]["VersionId"]
    notice = f"Created version {version}" + (" and made it the default." if make_default else ".")
    return visit.redirect(policy_url(arn, version), notice)


async def set_default(visit: Visit) -> Response:
    arn = visit.field("arn")
    version = visit.field("version")
    try:
        await core.set_default_policy_version(visit.svc, visit.caller, arn, version)
    except DockyardError as exc:
        return await policy(visit, error_status(exc), ErrorView.of(exc))
    return visit.redirect(policy_url(arn, version), f"Version {version} is now the default.")


async def delete_version(visit: Visit) -> Response:
    arn = visit.field("arn")
    version = visit.field("version")
    if not visit.confirmed():
        return visit.confirm(
            f"Delete version {version} of {arn.rpartition('/')[2]}?",
            "The version's document is gone for good. This cannot be undone.",
            "Delete version",
            policy_url(arn),
        )
    try:
        await core.delete_policy_version(visit.svc, visit.caller, arn, version)
    except DockyardError as exc:
        return await policy(visit, error_status(exc), ErrorView.of(exc))
    return visit.redirect(policy_url(arn), f"Deleted version {version}.")


async def delete_policy(visit: Visit) -> Response:
    arn = visit.field("arn")
    name = arn.rpartition("/")[2]
    if not visit.confirmed():
        return visit.confirm(
            f"Delete policy {name}?",
            "IAM deletes a policy only once it is detached everywhere and only its default version is left. "
            "This cannot be undone.",
            "Delete policy",
            policy_url(arn),
        )
    try:
        await core.delete_policy(visit.svc, visit.caller, arn)
    except DockyardError as exc:
        return await policy(visit, error_status(exc), ErrorView.of(exc))
    return visit.redirect(console_url("iam/policies"), f"Deleted policy {name}.")


PAGES = [
    Page("/iam/policies", policies, section=SECTION),
    Page("/iam/create-policy", create_form, section=SECTION),
    Page("/iam/create-policy", create_policy, ("POST",), section=SECTION),
    Page("/iam/policies/view", policy, section=SECTION),
    Page("/iam/policies/versions", create_version, ("POST",), section=SECTION),
    Page("/iam/policies/default", set_default, ("POST",), section=SECTION),
    Page("/iam/policies/versions/delete", delete_version, ("POST",), section=SECTION),
    Page("/iam/policies/delete", delete_policy, ("POST",), section=SECTION),
]
