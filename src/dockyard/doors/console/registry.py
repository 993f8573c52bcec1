"""The private registry's pages: scanning configuration, registry policy, repository creation
templates, pull through cache rules, replication and account settings. Every form goes through
the ECR API's own checks and operations (forms.call_api), as the AWS console's do."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response

from dockyard.core.errors import DockyardError, RegistryPolicyNotFoundException
from dockyard.core.operations.account_settings import REGISTRY_POLICY_SCOPE, SETTINGS
from dockyard.doors.console.forms import (
    NOT_SAVED,
    Refusal,
    call_api,
    lines,
    parse_tags,
    refusal_of,
    tags_text,
    wildcard_filters,
)
from dockyard.doors.console.web import ErrorView, Page, Visit, console_url
from dockyard.policy.language import PolicyError, parse_resource_policy

SECTION = "registry"
FREQUENCIES = ("SCAN_ON_PUSH", "CONTINUOUS_SCAN", "MANUAL")
APPLIED_FOR = ("CREATE_ON_PUSH", "PULL_THROUGH_CACHE", "REPLICATION")
UPSTREAMS = (
    "ecr", "ecr-public", "quay", "k8s", "docker-hub", "github-container-registry", "azure-container-registry",
    "gitlab-container-registry", "chainguard",
)  # fmt: skip
DESTINATION_EXAMPLE = "e.g. eu-west-1 123456789012"


def registry_url(page: str = "", **query: str | None) -> str:
    return console_url(f"registry/{page}" if page else "registry", **query)


async def _form_page(visit: Visit, template: str, context: dict[str, Any], refusal: Refusal | None = None) -> Response:
    if refusal is None:
        return visit.render(template, **context)
    status = 403 if refusal.error.code in ("AccessDeniedException", "AccessDenied") else 400
    return visit.render(template, status, error=refusal.error, field_errors=refusal.field_errors, **context)


async def _attempt(work: Callable[[], Awaitable[Any]], fields: dict[str, str]) -> Refusal | None:
    try:
        await work()
    except DockyardError as exc:
        return refusal_of(exc, fields)
    return None


# --- overview -----------------------------------------------------------------------------------


async def overview(visit: Visit) -> Response:
    try:
        described = await call_api(visit, "DescribeRegistry", {})
    except DockyardError as exc:
        return visit.refused(exc)
    return visit.render("registry_overview.html", registry_page="", described=described)


# --- scanning -----------------------------------------------------------------------------------


def _filters_of(rule: dict[str, Any] | None) -> list[dict[str, str]]:
    return list((rule or {}).get("repositoryFilters") or [])


def _scanning_values(configuration: dict[str, Any]) -> dict[str, Any]:
    rules = {rule["scanFrequency"]: rule for rule in configuration.get("rules") or []}
    return {
        "scan_type": configuration.get("scanType") or "BASIC",
        "enabled": {f: f in rules for f in FREQUENCIES},
        "filters": {f: "\n".join(x["filter"] for x in _filters_of(rules.get(f))) for f in FREQUENCIES},
    }


def _scanning_context(values: dict[str, Any]) -> dict[str, Any]:
    return {"registry_page": "scanning", "frequencies": FREQUENCIES, **values}


async def scanning(visit: Visit) -> Response:
    try:
        found = await call_api(visit, "GetRegistryScanningConfiguration", {})
    except DockyardError as exc:
        return visit.refused(exc)
    return visit.render("registry_scanning.html", **_scanning_context(_scanning_values(found["scanningConfiguration"])))


async def save_scanning(visit: Visit) -> Response:
    values = {
        "scan_type": visit.field("scan_type", "BASIC"),
        "enabled": {f: visit.checked(f"rule_{f}") for f in FREQUENCIES},
        "filters": {f: visit.field(f"filters_{f}") for f in FREQUENCIES},
    }
    chosen = [f for f in FREQUENCIES if values["enabled"][f]]
    rules = [{"scanFrequency": f, "repositoryFilters": wildcard_filters(values["filters"][f])} for f in chosen]
    fields = {"scanType": "scan_type", "rules": "rules"}
    fields.update({f"rules.{n}.member": f"filters_{f}" for n, f in enumerate(chosen, 1)})
    params = {"scanType": values["scan_type"], "rules": rules}
    refusal = await _attempt(lambda: call_api(visit, "PutRegistryScanningConfiguration", params), fields)
    if refusal is None:
        return visit.redirect(registry_url("scanning"), "Saved the scanning configuration.")
    return await _form_page(visit, "registry_scanning.html", _scanning_context(values), refusal)


# --- registry policy ----------------------------------------------------------------------------


async def _policy_text(visit: Visit) -> str:
    try:
        return str((await call_api(visit, "GetRegistryPolicy", {}))["policyText"])
    except RegistryPolicyNotFoundException:
        return ""


async def policy(visit: Visit) -> Response:
    try:
        text = await _policy_text(visit)
    except DockyardError as exc:
        return visit.refused(exc)
    return visit.render("registry_policy.html", registry_page="policy", text=text, has_policy=bool(text))


async def _policy_problem(visit: Visit, text: str) -> Refusal | None:
    """What exactly is wrong with the policy, by the core's parser under the registry's scope
    (the API answers with one generic message)."""
    try:
        scope = (await call_api(visit, "GetAccountSetting", {"name": REGISTRY_POLICY_SCOPE}))["value"]
        parse_resource_policy(text, kind="registry", registry_scope="V1" if scope == "V1" else "V2")
    except PolicyError as exc:
        return Refusal(ErrorView("InvalidParameterException", exc.message), {"policy_text": exc.detail})
    except DockyardError:
        return None  # PutRegistryPolicy reports the refusal itself
    return None


async def save_policy(visit: Visit) -> Response:
    raw = visit.form.get("policy_text") if visit.form is not None else None
    text = raw if isinstance(raw, str) else ""
    refusal = await _policy_problem(visit, text)
    if refusal is None:
        fields = {"policyText": "policy_text"}
        refusal = await _attempt(lambda: call_api(visit, "PutRegistryPolicy", {"policyText": text}), fields)
    if refusal is None:
        return visit.redirect(registry_url("policy"), "Saved the registry policy.")
    context = {"registry_page": "policy", "text": text, "has_policy": bool(await _safe_policy_text(visit))}
    return await _form_page(visit, "registry_policy.html", context, refusal)


async def _safe_policy_text(visit: Visit) -> str:
    try:
        return await _policy_text(visit)
    except DockyardError:
        return ""


async def delete_policy(visit: Visit) -> Response:
    if not visit.confirmed():
        return visit.confirm(
            "Delete the registry policy?",
            "Every permission it grants or denies ends at once.",
            "Delete registry policy",
            registry_url("policy"),
        )
    try:
        await call_api(visit, "DeleteRegistryPolicy", {})
    except RegistryPolicyNotFoundException:
        pass
    except DockyardError as exc:
        return visit.refused(exc, "registry_policy.html", registry_page="policy", text="", has_policy=False)
    return visit.redirect(registry_url("policy"), "Deleted the registry policy.")


# --- repository creation templates --------------------------------------------------------------

TEMPLATE_FIELDS = {
    "prefix": "prefix",
    "description": "description",
    "appliedFor": "applied_for",
    "imageTagMutability": "exclusions",
    "imageTagMutabilityExclusionFilters": "exclusions",
    "encryptionConfiguration.kmsKey": "kms_key",
    "encryptionConfiguration": "encryption",
    "resourceTags": "tags",
    "repositoryPolicy": "repository_policy",
    "lifecyclePolicy": "lifecycle_policy",
    "customRoleArn": "custom_role_arn",
}


async def templates(visit: Visit) -> Response:
    try:
        found = await call_api(visit, "DescribeRepositoryCreationTemplates", {"maxResults": 100})
    except DockyardError as exc:
        return visit.refused(exc)
    return visit.render(
        "registry_templates.html", registry_page="templates", templates=found["repositoryCreationTemplates"]
    )


def _template_values(template: dict[str, Any] | None) -> dict[str, Any]:
    template = template or {}
    encryption = template.get("encryptionConfiguration") or {}
    filters = template.get("imageTagMutabilityExclusionFilters") or []
    return {
        "prefix": template.get("prefix", ""),
        "description": template.get("description") or "",
        "applied_for": list(template.get("appliedFor") or ["CREATE_ON_PUSH"]),
        "immutable": str(template.get("imageTagMutability", "MUTABLE")).startswith("IMMUTABLE"),
        "exclusions": "\n".join(f["filter"] for f in filters),
        "encryption": encryption.get("encryptionType", "AES256"),
        "kms_key": encryption.get("kmsKey") or "",
        "tags": tags_text(template.get("resourceTags")),
        "repository_policy": template.get("repositoryPolicy") or "",
        "lifecycle_policy": template.get("lifecyclePolicy") or "",
        "custom_role_arn": template.get("customRoleArn") or "",
    }


def _template_context(values: dict[str, Any], editing: bool) -> dict[str, Any]:
    return {"registry_page": "templates", "editing": editing, "applied_fors": APPLIED_FOR, "v": values}


async def template_form(visit: Visit) -> Response:
    prefix = visit.param("prefix")
    template = None
    if prefix:
        try:
            found = await call_api(visit, "DescribeRepositoryCreationTemplates", {"prefixes": [prefix]})
        except DockyardError as exc:
            return visit.refused(exc)
        if not found["repositoryCreationTemplates"]:
            return visit.render("error.html", 404, status_code=404)
        template = found["repositoryCreationTemplates"][0]
    return visit.render("registry_template_form.html", **_template_context(_template_values(template), bool(prefix)))


def _template_params(v: dict[str, Any], tags: list[dict[str, str]]) -> dict[str, Any]:
    filters = wildcard_filters(v["exclusions"])
    mutability = "IMMUTABLE" if v["immutable"] else "MUTABLE"
    encryption: dict[str, Any] = {"encryptionType": v["encryption"] or "AES256"}
    if v["kms_key"]:
        encryption["kmsKey"] = v["kms_key"]
    params: dict[str, Any] = {
        "prefix": v["prefix"],
        "description": v["description"],
        "appliedFor": v["applied_for"],
        "imageTagMutability": f"{mutability}_WITH_EXCLUSION" if filters else mutability,
        "encryptionConfiguration": encryption,
        "resourceTags": tags,
        "repositoryPolicy": v["repository_policy"],
        "lifecyclePolicy": v["lifecycle_policy"],
    }
    if filters:
        params["imageTagMutabilityExclusionFilters"] = filters
    if v["custom_role_arn"]:
        params["customRoleArn"] = v["custom_role_arn"]
    return params


async def save_template(visit: Visit) -> Response:
    editing = visit.field("editing") == "yes"
    v = {
        "prefix": visit.field("prefix"),
        "description": visit.field("description"),
        "applied_for": [a for a in visit.fields("applied_for") if a],
        "immutable": visit.checked("tag_immutability"),
        "exclusions": visit.field("exclusions"),
        "encryption": visit.field("encryption", "AES256"),
        "kms_key": visit.field("kms_key"),
        "tags": visit.field("tags"),
        "repository_policy": visit.field("repository_policy"),
        "lifecycle_policy": visit.field("lifecycle_policy"),
        "custom_role_arn": visit.field("custom_role_arn"),
    }
    tags, problem = parse_tags(v["tags"])
    refusal: Refusal | None = Refusal(ErrorView("", NOT_SAVED), {"tags": problem}) if problem else None
    if refusal is None and not v["applied_for"]:
        refusal = Refusal(ErrorView("", NOT_SAVED), {"applied_for": "Choose at least one use of the template."})
    operation = "UpdateRepositoryCreationTemplate" if editing else "CreateRepositoryCreationTemplate"
    if refusal is None:
        params = _template_params(v, tags)
        refusal = await _attempt(lambda: call_api(visit, operation, params), TEMPLATE_FIELDS)
        if refusal is not None and refusal.error.code == "TemplateAlreadyExistsException":
            refusal.field_errors["prefix"] = f"A template for the prefix {v['prefix']} already exists."
    if refusal is None:
        verb = "Saved" if editing else "Created"
        return visit.redirect(registry_url("templates"), f"{verb} the creation template for {v['prefix']}.")
    return await _form_page(visit, "registry_template_form.html", _template_context(v, editing), refusal)


async def delete_template(visit: Visit) -> Response:
    prefix = visit.field("prefix")
    if not visit.confirmed():
        return visit.confirm(
            f"Delete the creation template for {prefix}?",
            "Repositories it created keep their settings; new ones no longer get them.",
            "Delete template",
            registry_url("templates"),
        )
    try:
        await call_api(visit, "DeleteRepositoryCreationTemplate", {"prefix": prefix})
    except DockyardError as exc:
        return visit.refused(exc)
    return visit.redirect(registry_url("templates"), f"Deleted the creation template for {prefix}.")


# --- pull through cache rules -------------------------------------------------------------------

RULE_FIELDS = {
    "ecrRepositoryPrefix": "ecr_prefix",
    "upstreamRegistryUrl": "upstream_url",
    "upstreamRegistry": "upstream_registry",
    "credentialArn": "credential_arn",
    "customRoleArn": "custom_role_arn",
    "upstreamRepositoryPrefix": "upstream_prefix",
}


async def pull_through(visit: Visit) -> Response:
    try:
        found = await call_api(visit, "DescribePullThroughCacheRules", {"maxResults": 1000})
    except DockyardError as exc:
        return visit.refused(exc)
    rules = found["pullThroughCacheRules"]
    return visit.render("registry_pull_through.html", registry_page="pull-through", rules=rules)


def _rule_context(v: dict[str, str]) -> dict[str, Any]:
    return {"registry_page": "pull-through", "upstreams": UPSTREAMS, "v": v}


async def pull_through_form(visit: Visit) -> Response:
    return visit.render("registry_pull_through_form.html", **_rule_context({f: "" for f in RULE_FIELDS.values()}))


async def create_pull_through(visit: Visit) -> Response:
    v = {f: visit.field(f) for f in RULE_FIELDS.values()}
    params = {member: v[f] for member, f in RULE_FIELDS.items() if v[f]}
    params.setdefault("ecrRepositoryPrefix", "")
    params.setdefault("upstreamRegistryUrl", "")
    refusal = await _attempt(lambda: call_api(visit, "CreatePullThroughCacheRule", params), RULE_FIELDS)
    if refusal is not None and refusal.error.code == "UnsupportedUpstreamRegistryException":
        refusal.field_errors["upstream_url"] = refusal.error.message
    if refusal is not None and refusal.error.code == "PullThroughCacheRuleAlreadyExistsException":
        refusal.field_errors["ecr_prefix"] = refusal.error.message
    if refusal is None:
        return visit.redirect(registry_url("pull-through"), f"Created the pull through cache rule {v['ecr_prefix']}.")
    return await _form_page(visit, "registry_pull_through_form.html", _rule_context(v), refusal)


async def validate_pull_through(visit: Visit) -> Response:
    prefix = visit.field("prefix")
    try:
        answer = await call_api(visit, "ValidatePullThroughCacheRule", {"ecrRepositoryPrefix": prefix})
    except DockyardError as exc:
        return visit.refused(exc)
    if answer.get("isValid"):
        outcome = f"The rule {prefix} is valid: the upstream registry accepted its credentials."
    else:
        outcome = f"The rule {prefix} is not valid: {answer.get('failure') or 'the upstream registry refused it'}"
    return visit.redirect(registry_url("pull-through"), outcome)


async def delete_pull_through(visit: Visit) -> Response:
    prefix = visit.field("prefix")
    if not visit.confirmed():
        return visit.confirm(
            f"Delete the pull through cache rule {prefix}?",
            "Pulls through it stop; repositories it created and their cached images stay.",
            "Delete rule",
            registry_url("pull-through"),
        )
    try:
        await call_api(visit, "DeletePullThroughCacheRule", {"ecrRepositoryPrefix": prefix})
    except DockyardError as exc:
        return visit.refused(exc)
    return visit.redirect(registry_url("pull-through"), f"Deleted the pull through cache rule {prefix}.")


# --- replication --------------------------------------------------------------------------------


def _rule_rows(rules: list[dict[str, Any]]) -> list[dict[str, str]]:
    rows = [
        {
            "destinations": "\n".join(f"{d['region']} {d['registryId']}" for d in rule["destinations"]),
            "filters": "\n".join(f["filter"] for f in rule.get("repositoryFilters") or []),
        }
        for rule in rules
    ]
    return [*rows, {"destinations": "", "filters": ""}]  # one empty rule to add


def _replication_context(rows: list[dict[str, str]], region: str) -> dict[str, Any]:
    return {"registry_page": "replication", "rows": rows, "example_region": region}


async def replication(visit: Visit) -> Response:
    try:
        described = await call_api(visit, "DescribeRegistry", {})
    except DockyardError as exc:
        return visit.refused(exc)
    rules = (described.get("replicationConfiguration") or {}).get("rules") or []
    return visit.render("registry_replication.html", **_replication_context(_rule_rows(rules), visit.caller.region))


def _destinations(text: str) -> tuple[list[dict[str, str]], str | None]:
    found = []
    for number, line in enumerate(lines(text), 1):
        parts = line.replace(",", " ").split()
        if len(parts) != 2:
            return [], f"Line {number}: write each destination as a region and an account ID, {DESTINATION_EXAMPLE}."
        found.append({"region": parts[0], "registryId": parts[1]})
    return found, None


async def save_replication(visit: Visit) -> Response:
    count = int(visit.field("rule_count", "0") or 0) if visit.field("rule_count", "0").isdigit() else 0
    rows = [
        {"destinations": visit.field(f"destinations_{n}"), "filters": visit.field(f"filters_{n}")}
        for n in range(min(count, 100))
    ]
    rules: list[dict[str, Any]] = []
    fields: dict[str, str] = {"replicationConfiguration": "rules"}
    problems: dict[str, str] = {}
    for n, row in enumerate(rows):
        if visit.checked(f"remove_{n}") or not (row["destinations"] or row["filters"]):
            continue
        destinations, problem = _destinations(row["destinations"])
        if problem:
            problems[f"destinations_{n}"] = problem
        rule: dict[str, Any] = {"destinations": destinations}
        filters = [{"filter": f, "filterType": "PREFIX_MATCH"} for f in lines(row["filters"])]
        if filters:
            rule["repositoryFilters"] = filters
        rules.append(rule)
        at = f"replicationConfiguration.rules.{len(rules)}.member"
        fields[f"{at}.destinations"] = f"destinations_{n}"
        fields[f"{at}.repositoryFilters"] = f"filters_{n}"
    refusal = Refusal(ErrorView("", NOT_SAVED), problems) if problems else None
    if refusal is None:
        params = {"replicationConfiguration": {"rules": rules}}
        refusal = await _attempt(lambda: call_api(visit, "PutReplicationConfiguration", params), fields)
    if refusal is None:
        return visit.redirect(registry_url("replication"), "Saved the replication configuration.")
    context = _replication_context(rows or [{"destinations": "", "filters": ""}], visit.caller.region)
    return await _form_page(visit, "registry_replication.html", context, refusal)


# --- account settings ---------------------------------------------------------------------------


async def account_settings(visit: Visit) -> Response:
    try:
        values = {name: (await call_api(visit, "GetAccountSetting", {"name": name}))["value"] for name in SETTINGS}
    except DockyardError as exc:
        return visit.refused(exc)
    return visit.render("registry_settings.html", **_settings_context(values))


def _settings_context(values: dict[str, str]) -> dict[str, Any]:
    choices = {name: setting.values for name, setting in SETTINGS.items()}
    return {"registry_page": "settings", "values": values, "choices": choices}


async def save_account_settings(visit: Visit) -> Response:
    values = {name: visit.field(name) for name in SETTINGS}
    for name, value in values.items():
        refusal = await _attempt(
            lambda name=name, value=value: call_api(visit, "PutAccountSetting", {"name": name, "value": value}),
            {"value": name, "name": name},
        )
        if refusal is not None:
            return await _form_page(visit, "registry_settings.html", _settings_context(values), refusal)
    return visit.redirect(registry_url("settings"), "Saved the account settings.")


PAGES = [
    Page("/registry", overview, section=SECTION),
    Page("/registry/scanning", scanning, section=SECTION),
    Page("/registry/scanning", save_scanning, ("POST",), section=SECTION),
    Page("/registry/policy", policy, section=SECTION),
    Page("/registry/policy", save_policy, ("POST",), section=SECTION),
    Page("/registry/policy/delete", delete_policy, ("POST",), section=SECTION),
    Page("/registry/templates", templates, section=SECTION),
    Page("/registry/templates/edit", template_form, section=SECTION),
    Page("/registry/templates/edit", save_template, ("POST",), section=SECTION),
    Page("/registry/templates/delete", delete_template, ("POST",), section=SECTION),
    Page("/registry/pull-through", pull_through, section=SECTION),
    Page("/registry/pull-through/create", pull_through_form, section=SECTION),
    Page("/registry/pull-through/create", create_pull_through, ("POST",), section=SECTION),
    Page("/registry/pull-through/validate", validate_pull_through, ("POST",), section=SECTION),
    Page("/registry/pull-through/delete", delete_pull_through, ("POST",), section=SECTION),
    Page("/registry/replication", replication, section=SECTION),
    Page("/registry/replication", save_replication, ("POST",), section=SECTION),
    Page("/registry/settings", account_settings, section=SECTION),
    Page("/registry/settings", save_account_settings, ("POST",), section=SECTION),
]
