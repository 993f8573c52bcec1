"""A repository's Lifecycle tab: the policy's rules as a table, a form to add or edit a rule,
deleting one (confirmed), and a preview of what the policy would expire or archive now.

The form builds the rule's JSON and the core decides whether the policy is valid
(lifecycle.parse_policy, the same check PutLifecyclePolicy makes): its reason, in ECR's words,
is turned into plain words beside the field it is about. The preview is the API's dry run
(StartLifecyclePolicyPreview, then GetLifecyclePolicyPreview)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from dockyard.core.errors import (
    DockyardError,
    InvalidParameterException,
    LifecyclePolicyNotFoundException,
    LifecyclePolicyPreviewNotFoundException,
)
from dockyard.core.operations import lifecycle
from dockyard.doors.console.repository import SECTION, refused, repository_of, tab, tab_path
from dockyard.doors.console.web import ErrorView, Page, Visit, repository_url

TAG_STATUSES = {"tagged": "Tagged", "untagged": "Untagged", "any": "Any"}
COUNT_TYPES = {
    "imageCountMoreThan": "Image count more than",
    "sinceImagePushed": "Days since pushed",
    "sinceImagePulled": "Days since last pulled",
    "sinceImageTransitioned": "Days since archived",
}
ACTIONS = {"expire": "Expire (delete)", "transition": "Transition to archive"}
PREVIEW_SHOWN = 500
NOT_A_NUMBER = "Enter a whole number, 1 or more."
_DETAIL = re.compile(r"Lifecycle policy validation failure: (.*)'$", re.DOTALL)
_MINIMUM = re.compile(r"lower than the required minimum \(minimum: (\d+), found: (-?\d+)\)")


# --- the rules --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleForm:
    """A rule as the form holds it (strings, as typed)."""

    priority: str = ""
    description: str = ""
    tag_status: str = "untagged"
    tag_match: str = "prefix"
    tag_values: str = ""
    count_type: str = "sinceImagePushed"
    count_number: str = ""
    storage_class: str = "standard"
    action: str = "expire"

    @classmethod
    def of_rule(cls, rule: dict[str, Any]) -> RuleForm:
        selection, action = rule.get("selection") or {}, rule.get("action") or {}
        patterns = selection.get("tagPatternList")
        return cls(
            priority=str(rule.get("rulePriority", "")),
            description=str(rule.get("description", "")),
            tag_status=str(selection.get("tagStatus", "")),
            tag_match="pattern" if patterns else "prefix",
            tag_values=", ".join(patterns or selection.get("tagPrefixList") or []),
            count_type=str(selection.get("countType", "")),
            count_number=str(selection.get("countNumber", "")),
            storage_class=str(selection.get("storageClass", "standard")),
            action=str(action.get("type", "expire")),
        )

    @classmethod
    def of_visit(cls, visit: Visit) -> RuleForm:
        return cls(
            priority=visit.field("priority"),
            description=visit.field("description"),
            tag_status=visit.field("tag_status"),
            tag_match=visit.field("tag_match", "prefix"),
            tag_values=visit.field("tag_values"),
            count_type=visit.field("count_type"),
            count_number=visit.field("count_number"),
            storage_class=visit.field("storage_class", "standard"),
            action=visit.field("action", "expire"),
        )

    def tags(self) -> list[str]:
        return [value for value in re.split(r"[\s,]+", self.tag_values) if value]

    def number_problems(self) -> dict[str, str]:
        return {
            name: NOT_A_NUMBER
            for name, value in (("priority", self.priority), ("count_number", self.count_number))
            if not re.fullmatch(r"\d{1,9}", value)
        }

    def document(self) -> dict[str, Any]:
        """The rule's JSON, as ECR's lifecycle policy language has it (numbers already checked)."""
        selection: dict[str, Any] = {"tagStatus": self.tag_status}
        if self.tag_status == "tagged" or self.tags():
            selection["tagPatternList" if self.tag_match == "pattern" else "tagPrefixList"] = self.tags()
        if self.storage_class == "archive" or self.count_type == "sinceImageTransitioned":
            selection["storageClass"] = self.storage_class
        selection["countType"] = self.count_type
        if self.count_type != "imageCountMoreThan":
            selection["countUnit"] = "days"
        selection["countNumber"] = int(self.count_number)
        action: dict[str, Any] = {"type": self.action}
        if self.action == "transition":
            action["targetStorageClass"] = "archive"
        rule: dict[str, Any] = {"rulePriority": int(self.priority)}
        if self.description:
            rule["description"] = self.description
        return rule | {"selection": selection, "action": action}


def rule_summary(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule as a row of the table: its parts in words."""
    form = RuleForm.of_rule(rule)
    count = form.count_number
    since = {"sinceImagePushed": "pushed", "sinceImagePulled": "last pulled", "sinceImageTransitioned": "archived"}
    in_days = form.count_type in since
    what = f"{count} days since {since.get(form.count_type)}" if in_days else f"More than {count} images"
    action = "Transition to archive" if form.action == "transition" else "Expire"
    kind = "patterns" if form.tag_match == "pattern" else "prefixes"
    return {
        "priority": rule.get("rulePriority"),
        "description": form.description,
        "tag_status": TAG_STATUSES.get(form.tag_status, form.tag_status),
        "tags": form.tags(),
        "tag_kind": kind,
        "storage_class": form.storage_class,
        "count": what,
        "action": action,
    }


def plain_problem(detail: str, form: RuleForm) -> tuple[str, str]:
    """(the form field a validation failure is about, or "" for the page; the failure in plain words)."""
    minimum = _MINIMUM.search(detail)
    if minimum:
        field = "priority" if form.priority == minimum.group(2) else "count_number"
        return field, f"Must be {minimum.group(1)} or more."
    known = [
        ("Rule priorities must be unique", "priority", f"Another rule already has priority {form.priority}."),
        ("Must specify tagPrefixList or tagPatternList", "tag_values", "Give at least one tag prefix or pattern."),
        (
            "can only be used when tagStatus=TAGGED",
            "tag_values",
            "Tag prefixes and patterns apply to tagged images only: clear them, or choose Tagged.",
        ),
        ("at most", "tag_values", f"A pattern can have at most {lifecycle.MAX_WILDCARDS} wildcards (*)."),
        ("duplicate elements", "tag_values", "List each prefix or pattern once."),
        ("unique set of tag prefixes", "tag_values", "Another rule already selects these same tags."),
        ("Only one rule can select Untagged", "tag_status", "Another rule already selects untagged images."),
        (
            "tagStatus=ANY must have the lowest priority",
            "tag_status",
            "A rule for any tag status must run last: give it the largest priority number.",
        ),
        ("minimum storage duration", "count_number", "Archived images are kept at least 90 days: use 90 or more."),
        (
            "sinceImageTransitioned can only be used",
            "storage_class",
            "Days since archived applies to archived images only: choose Archive.",
        ),
        ("storageClass is required", "storage_class", "Choose Archive for days since archived."),
        ("can only be used with storageClass=standard", "storage_class", "This count applies to standard images."),
        ("can be transitioned", "action", "Only standard images can move to the archive."),
        ("array is too short", "tag_values", "Give at least one tag prefix or pattern."),
    ]
    for needle, field, words in known:
        if needle in detail:
            return field, words
    return "", detail


def problem_of(exc: InvalidParameterException) -> str:
    found = _DETAIL.search(exc.message)
    return found.group(1) if found else exc.message


# --- reading ------------------------------------------------------------------------------------


async def _policy(visit: Visit, name: str) -> dict[str, Any] | None:
    """The stored policy's document and when it last ran, or None when there is none."""
    try:
        found = await lifecycle.get_lifecycle_policy(visit.svc, visit.caller, visit.account_id, name)
    except LifecyclePolicyNotFoundException:
        return None
    return {"rules": json.loads(found["lifecyclePolicyText"])["rules"], "evaluated": found.get("lastEvaluatedAt")}


async def _preview(visit: Visit, name: str) -> dict[str, Any] | None:
    try:
        found = await lifecycle.get_lifecycle_policy_preview(
            visit.svc, visit.caller, visit.account_id, name, max_results=PREVIEW_SHOWN
        )
    except LifecyclePolicyPreviewNotFoundException:
        return None
    summary = found.get("summary") or {}
    moving = sum(c["imageTotalCount"] for c in summary.get("transitioningImageTotalCounts") or [])
    results = sorted(found.get("previewResults") or [], key=lambda r: (r["appliedRulePriority"], r["imagePushedAt"]))
    return {
        "results": results,
        "expiring": summary.get("expiringImageTotalCount", 0),
        "transitioning": moving,
        "more": bool(found.get("nextToken")),
        "policy_rules": [rule_summary(r) for r in json.loads(found["lifecyclePolicyText"])["rules"]],
    }


async def rules_page(visit: Visit) -> Response:
    repo = repository_of(visit)
    try:
        policy = await _policy(visit, repo.name)
        preview = await _preview(visit, repo.name) if policy is not None else None
    except DockyardError as exc:
        return refused(visit, exc, "error.html", "lifecycle")
    return _rules(visit, policy, preview)


def _rules(
    visit: Visit, policy: dict[str, Any] | None, preview: dict[str, Any] | None, status: int = 200, **context: Any
) -> Response:
    rules = sorted((policy or {}).get("rules") or [], key=lambda r: r.get("rulePriority", 0))
    return tab(
        visit,
        "lifecycle_rules.html",
        "lifecycle",
        status,
        rules=[rule_summary(r) for r in rules],
        evaluated=(policy or {}).get("evaluated"),
        has_policy=policy is not None,
        preview=preview,
        policy_text=json.dumps({"rules": rules}, indent=2) if policy else "",
        **context,
    )


def _form_page(visit: Visit, form: RuleForm, original: str, status: int = 200, **context: Any) -> Response:
    context.setdefault("field_errors", {})
    context.setdefault("preview", None)
    return tab(
        visit,
        "lifecycle_rule.html",
        "lifecycle",
        status,
        form=form,
        original=original,
        tag_statuses=TAG_STATUSES,
        count_types=COUNT_TYPES,
        actions=ACTIONS,
        **context,
    )


async def rule_form(visit: Visit) -> Response:
    repo = repository_of(visit)
    original = visit.param("priority")
    try:
        policy = await _policy(visit, repo.name)
    except DockyardError as exc:
        return refused(visit, exc, "error.html", "lifecycle")
    rules = (policy or {}).get("rules") or []
    if original:
        rule = next((r for r in rules if str(r.get("rulePriority")) == original), None)
        if rule is None:
            return visit.render("error.html", 404, status_code=404)
        return _form_page(visit, RuleForm.of_rule(rule), original)
    next_priority = max((int(r.get("rulePriority", 0)) for r in rules), default=0) + 1
    return _form_page(visit, RuleForm(priority=str(next_priority)), "")


# --- writing ------------------------------------------------------------------------------------


def _policy_text(rules: list[dict[str, Any]]) -> str:
    return json.dumps({"rules": sorted(rules, key=lambda r: r["rulePriority"])})


async def save_rule(visit: Visit) -> Response:
    """Save the rule (or, with the Preview button, show what the policy with it would do)."""
    repo = repository_of(visit)
    form, original = RuleForm.of_visit(visit), visit.field("original")
    previewing = visit.field("intent") == "preview"
    problems = form.number_problems()
    if problems:
        return _form_page(visit, form, original, 400, field_errors=problems, error=_not_saved(previewing))
    try:
        policy = await _policy(visit, repo.name)
        rules = (policy or {}).get("rules") or []
        others = [r for r in rules if not original or str(r.get("rulePriority")) != original]
        text = _policy_text([*others, form.document()])
        lifecycle.parse_policy(text)
        if previewing:
            await lifecycle.start_lifecycle_policy_preview(visit.svc, visit.caller, visit.account_id, repo.name, text)
            preview = await _preview(visit, repo.name)
            return _form_page(visit, form, original, preview=preview)
        await lifecycle.put_lifecycle_policy(visit.svc, visit.caller, visit.account_id, repo.name, text)
    except InvalidParameterException as exc:
        field, words = plain_problem(problem_of(exc), form)
        if not field:
            page_error = ErrorView("", f"{_not_saved(previewing).message} {words}")
            return _form_page(visit, form, original, 400, error=page_error)
        return _form_page(visit, form, original, 400, field_errors={field: words}, error=_not_saved(previewing))
    except DockyardError as exc:
        return refused(visit, exc, "lifecycle_rule.html", "lifecycle", **_form_context(form, original))
    verb = "Saved" if original else "Added"
    return visit.redirect(repository_url(repo.name, "lifecycle"), f"{verb} lifecycle rule {form.priority}.")


def _not_saved(previewing: bool) -> ErrorView:
    what = "The preview did not run" if previewing else "The rule was not saved"
    return ErrorView("", f"{what}: correct the fields marked below.")


def _form_context(form: RuleForm, original: str) -> dict[str, Any]:
    return {
        "form": form, "original": original, "tag_statuses": TAG_STATUSES, "count_types": COUNT_TYPES,
        "actions": ACTIONS, "preview": None,
    }  # fmt: skip


async def delete_rule(visit: Visit) -> Response:
    repo = repository_of(visit)
    priority = visit.field("priority")
    back = repository_url(repo.name, "lifecycle")
    try:
        policy = await _policy(visit, repo.name)
        rules = (policy or {}).get("rules") or []
        kept = [r for r in rules if str(r.get("rulePriority")) != priority]
        if len(kept) == len(rules):
            return visit.redirect(back, f"There is no rule with priority {priority}.")
        last = not kept
        if not visit.confirmed():
            return visit.confirm(
                f"Delete lifecycle rule {priority}?",
                "It was the policy's only rule: the lifecycle policy is deleted with it."
                if last
                else "Images it selects are no longer expired or archived by it.",
                "Delete rule",
                back,
            )
        if last:
            await lifecycle.delete_lifecycle_policy(visit.svc, visit.caller, visit.account_id, repo.name)
        else:
            text = _policy_text(kept)
            await lifecycle.put_lifecycle_policy(visit.svc, visit.caller, visit.account_id, repo.name, text)
    except DockyardError as exc:
        return refused(visit, exc, "error.html", "lifecycle")
    return visit.redirect(back, f"Deleted lifecycle rule {priority}.")


async def run_preview(visit: Visit) -> Response:
    repo = repository_of(visit)
    try:
        await lifecycle.start_lifecycle_policy_preview(visit.svc, visit.caller, visit.account_id, repo.name, None)
    except DockyardError as exc:
        policy = None
        try:
            policy = await _policy(visit, repo.name)
        except DockyardError:
            return refused(visit, exc, "error.html", "lifecycle")
        return _rules(visit, policy, None, 400 if exc.status < 400 else exc.status, error=ErrorView.of(exc))
    return visit.redirect(repository_url(repo.name, "lifecycle") + "#preview-heading", "The preview ran.")


async def delete_policy(visit: Visit) -> Response:
    repo = repository_of(visit)
    back = repository_url(repo.name, "lifecycle")
    if not visit.confirmed():
        return visit.confirm(
            f"Delete the lifecycle policy of {repo.name}?",
            "All its rules are deleted; images are no longer expired or archived by them.",
            "Delete lifecycle policy",
            back,
        )
    try:
        await lifecycle.delete_lifecycle_policy(visit.svc, visit.caller, visit.account_id, repo.name)
    except LifecyclePolicyNotFoundException:
        pass
    except DockyardError as exc:
        return refused(visit, exc, "error.html", "lifecycle")
    return visit.redirect(back, "Deleted the lifecycle policy.")


PAGES = [
    Page(tab_path("lifecycle"), rules_page, section=SECTION),
    Page(tab_path("lifecycle/rule"), rule_form, section=SECTION),
    Page(tab_path("lifecycle/rule"), save_rule, ("POST",), section=SECTION),
    Page(tab_path("lifecycle/rule/delete"), delete_rule, ("POST",), section=SECTION),
    Page(tab_path("lifecycle/preview"), run_preview, ("POST",), section=SECTION),
    Page(tab_path("lifecycle/delete"), delete_policy, ("POST",), section=SECTION),
]
