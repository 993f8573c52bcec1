"""Parsing and validation of IAM JSON policy documents.

Two validators, because AWS validates the two kinds differently:

* identity policies (IAM CreatePolicy, PutUserPolicy, ...) answer with IAM's
  MalformedPolicyDocument messages, checked in the order IAM checks them;
* resource policies (ECR SetRepositoryPolicy / PutRegistryPolicy) answer with ECR's single
  InvalidParameterException message, so :attr:`PolicyError.detail` says what is wrong.

A parsed :class:`Policy` holds precompiled matchers and is meant to be evaluated many times.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dockyard.core import client_json as wire_json
from dockyard.policy.conditions import (
    Condition,
    ConditionValue,
    compile_condition,
    condition_value_text,
    is_date_operator,
    parse_date,
    split_operator,
)
from dockyard.policy.patterns import PatternSet

PolicyKind = Literal["identity", "repository", "registry"]
Effect = Literal["Allow", "Deny"]

CURRENT_VERSION = "2012-10-17"
LEGACY_VERSION = "2008-10-17"
VERSIONS = (CURRENT_VERSION, LEGACY_VERSION)

# IAM MalformedPolicyDocument messages, as IAM words them.
SYNTAX_ERROR = "Syntax errors in policy."
VERSION_TOO_OLD = "Policy document must be version 2012-10-17 or greater."
PRINCIPAL_NOT_ALLOWED = "Policy document should not specify a principal."
LEGACY_PARSING_FAILED = "The policy failed legacy parsing"
SID_NOT_ALPHANUMERIC = (
    "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*"
)
SID_NOT_UNIQUE = "Statement IDs (SID) in a single policy must be unique."
MISSING_ACTIONS = "Policy statement must contain actions."
MISSING_RESOURCES = "Policy statement must contain resources."
MISSING_VENDOR = "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."
TOO_MANY_COLONS = "Actions/Condition can contain only one colon."

# ECR InvalidParameterException messages.
INVALID_REPOSITORY_POLICY = (
    "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'"
)
INVALID_REGISTRY_POLICY = (
    "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid registry policy provided'"
)
PRINCIPAL_NOT_FOUND = "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Principal not found'"

# Under the V1 registry policy scope, registry policies only govern these actions (replication
# and pull-through cache); under V2 they may name any action.
REGISTRY_POLICY_ACTIONS = ("ecr:ReplicateImage", "ecr:BatchImportUpstreamImage", "ecr:CreateRepository")
RegistryPolicyScope = Literal["V1", "V2"]


class PolicyError(Exception):
    """A policy document AWS would reject.

    ``message`` is the text the AWS API returns; ``detail`` names the offending element (for
    IAM the two are often the same, ECR always answers with one generic message).
    """

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail if detail is not None else message


@dataclass(frozen=True, slots=True)
class PrincipalSet:
    """The Principal / NotPrincipal element of a resource-policy statement."""

    any: bool = False
    accounts: frozenset[str] = frozenset()
    arns: frozenset[str] = frozenset()
    unique_ids: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    federated: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Statement:
    index: int
    sid: str | None
    effect: Effect
    actions: PatternSet
    not_action: bool
    resources: PatternSet | None  # None: no Resource element (a resource policy's own resource)
    not_resource: bool
    principals: PrincipalSet | None  # None in identity policies
    not_principal: bool
    conditions: tuple[Condition, ...]

    @property
    def label(self) -> str:
        """The Sid, or the statement's position when it has none."""
        return self.sid or f"Statement[{self.index}]"


@dataclass(frozen=True, slots=True)
class Policy:
    kind: PolicyKind
    text: str
    version: str | None
    id: str | None
    statements: tuple[Statement, ...]
    allows: tuple[Statement, ...] = field(init=False, repr=False, compare=False)
    denies: tuple[Statement, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allows", tuple(s for s in self.statements if s.effect == "Allow"))
        object.__setattr__(self, "denies", tuple(s for s in self.statements if s.effect == "Deny"))

    def iam_principal_arns(self) -> tuple[str, ...]:
        """IAM user and role ARNs named as principals: ECR rejects a policy naming one that
        does not exist ("Principal not found"), which only the caller can check."""
        found = {
            arn
            for statement in self.statements
            if statement.principals is not None
            for arn in statement.principals.arns
            if arn.startswith("arn:aws:iam::")
        }
        return tuple(sorted(found))


class _Invalid(Exception):
    """A validation failure; carries the detail, the caller chooses the API message."""


# ---------------------------------------------------------------------------------------------
# Syntax shared by both kinds


_TOP_LEVEL_ELEMENTS = frozenset({"Version", "Id", "Statement"})
_STATEMENT_ELEMENTS = frozenset(
    {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource", "Condition"}
)
_EXCLUSIVE_ELEMENTS = (("Action", "NotAction"), ("Resource", "NotResource"), ("Principal", "NotPrincipal"))
_PRINCIPAL_TYPES = frozenset({"AWS", "Service", "Federated", "CanonicalUser"})
_SCALARS = (str, bool, int, float)


def _load_json(text: str) -> Any:
    try:
        return wire_json.loads(text)
    except wire_json.MalformedJson as error:
        raise _Invalid(f"the policy is not valid JSON: {error.reason}") from None


def _statement_list(document: Any) -> list[Any]:
    if not isinstance(document, dict):
        raise _Invalid("the policy document must be a JSON object")
    for element in document:
        if element not in _TOP_LEVEL_ELEMENTS:
            raise _Invalid(f"unknown top-level element {element!r} (expected Version, Id and Statement)")
    if "Version" in document and document["Version"] not in VERSIONS:
        raise _Invalid(f'Version must be "{CURRENT_VERSION}" or "{LEGACY_VERSION}", not {document["Version"]!r}')
    if "Id" in document and not isinstance(document["Id"], str):
        raise _Invalid("Id must be a string")
    if "Statement" not in document:
        raise _Invalid("the policy has no Statement")
    raw = document["Statement"]
    statements = [raw] if isinstance(raw, dict) else raw
    if not isinstance(statements, list):
        raise _Invalid("Statement must be an object or a list of objects")
    if not statements:
        raise _Invalid("Statement must not be empty")
    return statements


def _check_string_list(value: Any, where: str) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Invalid(f"{where} must be a string or a list of strings")


def _check_principal_syntax(value: Any, where: str) -> None:
    if value == "*":
        return
    if not isinstance(value, dict) or not value:
        raise _Invalid(f'{where} must be "*" or an object such as {{"AWS": "123456789012"}}')
    for principal_type, names in value.items():
        if principal_type not in _PRINCIPAL_TYPES:
            raise _Invalid(
                f"{where} has unknown principal type {principal_type!r} (expected AWS, Service or Federated)"
            )
        _check_string_list(names, f"{where}.{principal_type}")
        if names == []:
            raise _Invalid(f"{where}.{principal_type} must not be empty")


def _check_condition_syntax(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise _Invalid(f"{where} must be an object of condition operators")
    for operator_name, block in value.items():
        if not isinstance(block, dict):
            raise _Invalid(f"{where}.{operator_name} must be an object of condition keys")
        for key, values in block.items():
            items = values if isinstance(values, list) else [values]
            if not all(isinstance(item, _SCALARS) for item in items):
                raise _Invalid(f"{where}.{operator_name}.{key} must be a string or a list of strings")
        # IAM tolerates an unknown operator only when its block is empty.
        if block and split_operator(operator_name) is None:
            raise _Invalid(f"{where} uses unknown condition operator {operator_name!r}")


def _check_statement_syntax(statement: Any, where: str) -> None:
    if not isinstance(statement, dict):
        raise _Invalid(f"{where} must be a JSON object")
    for element in statement:
        if element not in _STATEMENT_ELEMENTS:
            raise _Invalid(f"{where} has unknown element {element!r}")
    for first, second in _EXCLUSIVE_ELEMENTS:
        if first in statement and second in statement:
            raise _Invalid(f"{where} may not contain both {first} and {second}")
    effect = statement.get("Effect")
    if not isinstance(effect, str) or effect.lower() not in ("allow", "deny"):
        raise _Invalid(f'{where}.Effect must be "Allow" or "Deny"')
    for element in ("Action", "NotAction", "Resource", "NotResource"):
        if element in statement:
            _check_string_list(statement[element], f"{where}.{element}")
    if "Sid" in statement and not isinstance(statement["Sid"], str):
        raise _Invalid(f"{where}.Sid must be a string")
    for element in ("Principal", "NotPrincipal"):
        if element in statement:
            _check_principal_syntax(statement[element], f"{where}.{element}")
    if "Condition" in statement:
        _check_condition_syntax(statement["Condition"], f"{where}.Condition")


def _syntax_checked_statements(text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    document = _load_json(text)
    statements = _statement_list(document)
    for index, statement in enumerate(statements):
        _check_statement_syntax(statement, f"Statement[{index}]")
    return document, statements


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _condition_entries(statement: Mapping[str, Any]) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(operator, key, values) for every key of every recognised operator."""
    for operator_name, block in statement.get("Condition", {}).items():
        if split_operator(operator_name) is None:
            continue  # an empty block of an unknown operator: IAM ignores it
        for key, raw in block.items():
            items: list[ConditionValue] = raw if isinstance(raw, list) else [raw]
            yield operator_name, key, tuple(condition_value_text(item) for item in items)


def _bad_date_value(statement: Mapping[str, Any]) -> str | None:
    for operator_name, key, values in _condition_entries(statement):
        name = split_operator(operator_name)
        if name is not None and is_date_operator(name):
            for value in values:
                if parse_date(value) is None:
                    return f"{operator_name} {key}: {value!r} is neither an ISO 8601 date nor epoch seconds"
    return None


def _action_format_error(action: str) -> str | None:
    parts = action.split(":")
    if len(parts) == 1 and parts[0] != "*":
        return MISSING_VENDOR
    if len(parts) > 2:
        return TOO_MANY_COLONS
    vendor = parts[0]
    if vendor != "*" and re.search(r"[^a-zA-Z0-9\-.]", vendor):
        return f"Vendor {vendor} is not valid"
    return None


# ---------------------------------------------------------------------------------------------
# Compilation


_ACCOUNT_ID = re.compile(r"\d{12}")
_ROOT_ARN = re.compile(r"arn:aws:iam::(\d{12}):root")
_NAME = r"[\w+=,.@-]+"
_ENTITY_ARN = re.compile(rf"arn:aws:iam::\d{{12}}:(?:user|role)/(?:{_NAME}/)*{_NAME}")
_SESSION_ARN = re.compile(rf"arn:aws:sts::\d{{12}}:(?:assumed-role/{_NAME}/{_NAME}|federated-user/{_NAME})")
_UNIQUE_ID = re.compile(r"A(?:IDA|ROA)[A-Z0-9]{13,}")
_SERVICE = re.compile(r"[a-z0-9][a-z0-9-]*(?:\.[a-z0-9][a-z0-9-]*)+")  # a DNS name: ecs.amazonaws.com


def _compile_principals(value: str | dict[str, str | list[str]], where: str) -> PrincipalSet:
    if value == "*":
        return PrincipalSet(any=True)
    if not isinstance(value, dict):
        raise _Invalid(f'{where} must be "*" or an object such as {{"AWS": "123456789012"}}')
    accounts: set[str] = set()
    arns: set[str] = set()
    unique_ids: set[str] = set()
    services: set[str] = set()
    federated: set[str] = set()
    match_any = False
    for principal_type, names in value.items():
        for name in _as_list(names):
            if principal_type == "AWS":
                if name == "*":
                    match_any = True
                elif _ACCOUNT_ID.fullmatch(name):
                    accounts.add(name)
                elif root := _ROOT_ARN.fullmatch(name):
                    accounts.add(root.group(1))
                elif _ENTITY_ARN.fullmatch(name) or _SESSION_ARN.fullmatch(name):
                    arns.add(name)
                elif _UNIQUE_ID.fullmatch(name):
                    unique_ids.add(name)
                else:
                    raise _Invalid(
                        f'{where}.AWS {name!r} is not a valid principal (expected "*", an account ID, '
                        "or an account root, IAM user, role or session ARN; wildcards are not allowed)"
                    )
            elif principal_type == "Service":
                if not _SERVICE.fullmatch(name):
                    raise _Invalid(f"{where}.Service {name!r} is not a service principal such as ecs.amazonaws.com")
                services.add(name)
            elif principal_type == "Federated":
                if not name:
                    raise _Invalid(f"{where}.Federated must not be empty")
                federated.add(name)
            else:
                raise _Invalid(f"{where}: {principal_type} principals are not supported by Amazon ECR")
    return PrincipalSet(
        any=match_any,
        accounts=frozenset(accounts),
        arns=frozenset(arns),
        unique_ids=frozenset(unique_ids),
        services=frozenset(services),
        federated=frozenset(federated),
    )


def _compile_statement(index: int, statement: Mapping[str, Any], variables: bool, with_principal: bool) -> Statement:
    where = f"Statement[{index}]"
    not_action = "NotAction" in statement
    not_resource = "NotResource" in statement
    resource_key = "NotResource" if not_resource else "Resource"
    resources = (
        PatternSet(_as_list(statement[resource_key]), "glob", variables=variables)
        if resource_key in statement
        else None
    )
    not_principal = "NotPrincipal" in statement
    principal_key = "NotPrincipal" if not_principal else "Principal"
    principals = (
        _compile_principals(statement[principal_key], f"{where}.{principal_key}")
        if with_principal and principal_key in statement
        else None
    )
    conditions = tuple(
        compile_condition(operator_name, key, values, variables)
        for operator_name, key, values in _condition_entries(statement)
    )
    return Statement(
        index=index,
        sid=statement.get("Sid") or None,
        effect=statement["Effect"],
        actions=PatternSet(_as_list(statement["NotAction" if not_action else "Action"]), "glob", ignore_case=True),
        not_action=not_action,
        resources=resources,
        not_resource=not_resource,
        principals=principals,
        not_principal=not_principal,
        conditions=conditions,
    )


def _build_policy(kind: PolicyKind, text: str, document: Mapping[str, Any], statements: list[dict[str, Any]]) -> Policy:
    version = document.get("Version")
    # Policy variables exist only in the 2012-10-17 language; older documents match ${...} literally.
    variables = version == CURRENT_VERSION
    with_principal = kind != "identity"
    return Policy(
        kind=kind,
        text=text,
        version=version,
        id=document.get("Id"),
        statements=tuple(
            _compile_statement(index, statement, variables, with_principal)
            for index, statement in enumerate(statements)
        ),
    )


# ---------------------------------------------------------------------------------------------
# Identity policies (IAM)


_IAM_REGION_FREE_SERVICES = {
    "iam": "IAM resource {resource} cannot contain region information.",
    "s3": "Resource {resource} can not contain region information.",
}
_IAM_RESOURCE_PREFIXES = (
    "user/",
    "federated-user/",
    "role/",
    "group/",
    "instance-profile/",
    "mfa/",
    "server-certificate/",
    "policy/",
    "sms-mfa/",
    "saml-provider/",
    "oidc-provider/",
    "report/",
    "access-report/",
)


def _iam_resource_format_error(resource: str) -> str | None:
    """IAM's complaint about one Resource value, or None (IAM reports these late)."""
    if resource == "*":
        return None
    if ":" not in resource:
        return f'Resource {resource} must be in ARN format or "*".'
    partition, separator, rest = resource.partition(":")[2].partition(":")
    if partition not in ("aws", "*"):
        parts = rest.split(":")
        fields = [
            parts[0] if parts[0] != "" or len(parts) > 1 else "*",
            parts[1] if len(parts) > 1 else "*",
            parts[2] if len(parts) > 2 else "*",
            ":".join(parts[3:]) if len(parts) > 3 else "*",
        ]
        return f'Partition "{partition}" is not valid for resource "arn:{partition}:{":".join(fields)}".'
    if separator != ":":
        return "Resource vendor must be fully qualified and cannot contain regexes."
    service, _, after_service = rest.partition(":")
    if service in _IAM_REGION_FREE_SERVICES and not after_service.startswith(":"):
        return _IAM_REGION_FREE_SERVICES[service].format(resource=resource)
    if service == "iam":
        path = after_service.partition(":")[2].partition(":")[2]
        if not path.startswith(_IAM_RESOURCE_PREFIXES):
            return 'IAM resource path must either be "*" or start with ' + ", ".join(_IAM_RESOURCE_PREFIXES) + "."
    return None


def _passes_legacy_resource_parsing(resource: str) -> bool:
    if resource == "*":
        return True
    parts = resource.split(":")
    return (resource.count(":") >= 5 or "::" not in resource) and len(parts) > 2 and parts[2] != ""


def _iam_legacy_checks(statements: list[dict[str, Any]]) -> str | None:
    """Runs IAM's legacy parsing; returns the first late-reported resource error, if any."""
    for index, statement in enumerate(statements):
        if statement["Effect"] not in ("Allow", "Deny"):  # case-sensitive here, unlike the syntax pass
            raise _Invalid(f'Statement[{index}].Effect must be spelled exactly "Allow" or "Deny"')
        if problem := _bad_date_value(statement):
            raise _Invalid(f"Statement[{index}].Condition {problem}")
    resource_error: str | None = None
    for index, statement in enumerate(statements):
        for element in ("Resource", "NotResource"):
            if element not in statement:
                continue
            values = _as_list(statement[element])
            # IAM reports the error of the reverse-sorted first offender.
            for value in sorted(values, reverse=True):
                resource_error = resource_error or _iam_resource_format_error(value)
            if resource_error is None and not all(map(_passes_legacy_resource_parsing, values)):
                raise _Invalid(f"Statement[{index}].{element} contains a resource IAM cannot parse")
    return resource_error


def _actions_of(statement: Mapping[str, Any]) -> Iterable[str]:
    for element in ("Action", "NotAction"):
        if element in statement:
            yield from _as_list(statement[element])


def sid_problem(sid: str) -> str | None:
    """What is wrong with `sid` as a statement ID, in plain words; None when nothing is. IAM
    admits only ASCII letters and digits, of any length (no service documents a limit)."""
    if not re.fullmatch(r"[0-9A-Za-z]*", sid):
        return "A Sid can contain only letters and digits (A-Z, a-z, 0-9), with no spaces."
    return None


def parse_identity_policy(text: str, *, managed: bool = False) -> Policy:
    """Parse an identity-based policy, raising :class:`PolicyError` with IAM's message.

    ``managed`` selects the stricter rule of CreatePolicy/CreatePolicyVersion, which only
    accept the 2012-10-17 language; inline policies may use 2008-10-17 or omit Version.
    """
    try:
        document, statements = _syntax_checked_statements(text)
    except _Invalid as problem:
        raise PolicyError(SYNTAX_ERROR, str(problem)) from None
    if managed and document.get("Version") != CURRENT_VERSION:
        raise PolicyError(VERSION_TOO_OLD)
    for index, statement in enumerate(statements):
        if "Principal" in statement or "NotPrincipal" in statement:
            raise PolicyError(PRINCIPAL_NOT_ALLOWED, f"Statement[{index}] names a principal")
    try:
        resource_error = _iam_legacy_checks(statements)
    except _Invalid as problem:
        raise PolicyError(LEGACY_PARSING_FAILED, str(problem)) from None
    sids = [statement["Sid"] for statement in statements if statement.get("Sid")]
    for sid in sids:
        if sid_problem(sid) is not None:
            raise PolicyError(SID_NOT_ALPHANUMERIC, f"Sid {sid!r} is not alphanumeric")
    if len(set(sids)) != len(sids):
        raise PolicyError(SID_NOT_UNIQUE)
    for index, statement in enumerate(statements):
        if not statement.get("Action", statement.get("NotAction")):
            raise PolicyError(MISSING_ACTIONS, f"Statement[{index}] has no Action")
    for index, statement in enumerate(statements):
        if not statement.get("Resource", statement.get("NotResource")):
            raise PolicyError(MISSING_RESOURCES, f"Statement[{index}] has no Resource")
    if resource_error is not None:
        raise PolicyError(resource_error)
    for statement in statements:
        for action in _actions_of(statement):
            if problem := _action_format_error(action):
                raise PolicyError(problem, f"action {action!r}: {problem}")
    return _build_policy("identity", text, document, statements)


# ---------------------------------------------------------------------------------------------
# Resource policies (ECR repository and registry policies)


def _is_registry_action(pattern: str) -> bool:
    compiled = PatternSet([pattern], "glob", ignore_case=True)
    return any(compiled.matches(action) for action in REGISTRY_POLICY_ACTIONS)


def _check_resource_statement(
    index: int, statement: Mapping[str, Any], kind: PolicyKind, scope: RegistryPolicyScope
) -> None:
    where = f"Statement[{index}]"
    if statement["Effect"] not in ("Allow", "Deny"):
        raise _Invalid(f'{where}.Effect must be spelled exactly "Allow" or "Deny"')
    if "Principal" not in statement and "NotPrincipal" not in statement:
        raise _Invalid(f"{where} has no Principal")
    if kind == "repository":
        for element in ("Resource", "NotResource"):
            if element in statement:
                raise _Invalid(f"{where} has a {element} element; a repository policy always applies to its repository")
    actions = list(_actions_of(statement))
    if not actions:
        raise _Invalid(f"{where} has no Action")
    for action in actions:
        if problem := _action_format_error(action):
            raise _Invalid(f"{where} action {action!r}: {problem}")
        if kind == "registry" and scope == "V1" and not _is_registry_action(action):
            allowed = ", ".join(REGISTRY_POLICY_ACTIONS)
            raise _Invalid(f"{where} action {action!r} cannot be granted by a registry policy (only {allowed})")
    if problem := _bad_date_value(statement):
        raise _Invalid(f"{where}.Condition {problem}")


def parse_resource_policy(
    text: str, *, kind: Literal["repository", "registry"] = "repository", registry_scope: RegistryPolicyScope = "V1"
) -> Policy:
    """Parse an ECR repository (or registry) policy; a registry policy under the registry's
    policy scope (`registry_scope`: V1 admits only REGISTRY_POLICY_ACTIONS).

    Raises :class:`PolicyError` whose ``message`` is ECR's InvalidParameterException text and
    whose ``detail`` names the problem.
    """
    message = INVALID_REPOSITORY_POLICY if kind == "repository" else INVALID_REGISTRY_POLICY
    try:
        document, statements = _syntax_checked_statements(text)
        for index, statement in enumerate(statements):
            _check_resource_statement(index, statement, kind, registry_scope)
        return _build_policy(kind, text, document, statements)
    except _Invalid as problem:
        raise PolicyError(message, str(problem)) from None
