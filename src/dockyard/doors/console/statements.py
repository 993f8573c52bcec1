"""The Permissions tab's statement editor: the seed's action presets, a statement built from the
form, and the repository policy with a statement added or removed.

Validation stays the policy engine's (parse_resource_policy) and the core's
(set_repository_policy): this module only arranges JSON."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from dockyard.policy.actions import ACTIONS
from dockyard.policy.language import sid_problem

# The seed's task-based presets (the ECR user guide's "Push/Pull actions" and "Pull only
# actions": what the Docker CLI needs to push or pull an image in a repository).
PULL_ACTIONS = ("ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability")
PUSH_PULL_ACTIONS = (
    *PULL_ACTIONS,
    "ecr:PutImage",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
)
ALL_ACTIONS = ("ecr:*",)
ActionPreset = Literal["all", "push-pull", "pull", "custom"]
PRESETS: dict[str, tuple[str, ...]] = {"all": ALL_ACTIONS, "push-pull": PUSH_PULL_ACTIONS, "pull": PULL_ACTIONS}
# The console writes new policies in the version the seed's examples use.
NEW_POLICY_VERSION = "2008-10-17"
_ACCOUNT = re.compile(r"\d{12}")


class StatementError(ValueError):
    """A statement form that cannot become a statement: why, in plain words, and which field."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def individual_actions() -> list[str]:
    """Every action a repository policy can usefully grant: the repository-scoped API actions."""
    return sorted(a.name for a in ACTIONS.values() if a.resource == "repository" and not a.permission_only)


@dataclass(frozen=True)
class StatementForm:
    sid: str
    effect: str
    everybody: bool
    accounts: str  # account numbers separated by commas, spaces or new lines
    entities: tuple[str, ...]  # IAM user and role ARNs of the account
    preset: str
    actions: tuple[str, ...]


def _account_principals(text: str) -> list[str]:
    accounts = [part for part in re.split(r"[\s,]+", text.strip()) if part]
    for account in accounts:
        if not _ACCOUNT.fullmatch(account):
            raise StatementError(f"'{account}' is not an AWS account number (12 digits).", "accounts")
    return [f"arn:aws:iam::{account}:root" for account in dict.fromkeys(accounts)]


def _statement_actions(form: StatementForm) -> list[str]:
    if form.preset in PRESETS:
        return list(PRESETS[form.preset])
    if form.preset != "custom":
        raise StatementError("Choose the actions the statement applies to.")
    known = set(individual_actions())
    chosen = [action for action in dict.fromkeys(form.actions) if action in known]
    if not chosen:
        raise StatementError("Choose at least one action.")
    return chosen


def build_statement(form: StatementForm) -> dict[str, Any]:
    """The statement a filled-in Add statement form describes."""
    if not form.sid:
        raise StatementError("Sid is required: a name for what the statement does, in letters and digits.", "sid")
    if problem := sid_problem(form.sid):
        raise StatementError(problem, "sid")
    if form.effect not in ("Allow", "Deny"):
        raise StatementError("Effect must be Allow or Deny.")
    principal: Any
    if form.everybody:
        principal = "*"
    else:
        arns = [*_account_principals(form.accounts), *dict.fromkeys(form.entities)]
        if not arns:
            raise StatementError("Choose a principal: Everybody, AWS account numbers or IAM entities.")
        principal = {"AWS": arns[0] if len(arns) == 1 else arns}
    actions = _statement_actions(form)
    return {
        "Sid": form.sid,
        "Effect": form.effect,
        "Principal": principal,
        "Action": actions[0] if len(actions) == 1 else actions,
    }


def _document(policy_text: str | None) -> dict[str, Any]:
    if not policy_text:
        return {"Version": NEW_POLICY_VERSION, "Statement": []}
    document = json.loads(policy_text)
    statements = document.get("Statement", [])
    document["Statement"] = [statements] if isinstance(statements, dict) else list(statements)
    return dict(document)


def with_statement(policy_text: str | None, statement: dict[str, Any]) -> str:
    """The policy with `statement` appended; a Sid already in use is refused here, with a
    clearer message than the policy's own validation gives."""
    document = _document(policy_text)
    if any(existing.get("Sid") == statement.get("Sid") for existing in document["Statement"]):
        raise StatementError(f"A statement with Sid '{statement['Sid']}' already exists in this policy.", "sid")
    document["Statement"].append(statement)
    return json.dumps(document, indent=2)


def without_statement(policy_text: str, index: int) -> str | None:
    """The policy without its `index`th statement, or None when no statement would be left
    (a policy must have one: the repository policy is then deleted)."""
    document = _document(policy_text)
    if not 0 <= index < len(document["Statement"]):
        raise StatementError("That statement is no longer in the policy; reload the page.")
    del document["Statement"][index]
    if not document["Statement"]:
        return None
    return json.dumps(document, indent=2)


@dataclass(frozen=True)
class StatementView:
    """One statement as the Permissions tab lists it."""

    index: int
    sid: str
    effect: str
    principals: list[str]
    actions: list[str]
    not_principal: bool
    not_action: bool
    conditions: str | None
    text: str


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [
            f"{kind}: {name}" if kind != "AWS" else name for kind, names in value.items() for name in _strings(names)
        ]
    return [str(item) for item in value]


def _principal_labels(value: Any) -> list[str]:
    return ["Everybody (*)"] if value == "*" else _strings(value)


def statement_views(policy_text: str | None) -> list[StatementView]:
    if not policy_text:
        return []
    views = []
    for index, statement in enumerate(_document(policy_text)["Statement"]):
        principal = statement.get("Principal", statement.get("NotPrincipal"))
        actions = statement.get("Action", statement.get("NotAction"))
        condition = statement.get("Condition")
        views.append(
            StatementView(
                index=index,
                sid=str(statement.get("Sid") or ""),
                effect=str(statement.get("Effect", "")),
                principals=_principal_labels(principal),
                actions=_strings(actions),
                not_principal="NotPrincipal" in statement,
                not_action="NotAction" in statement,
                conditions=json.dumps(condition, indent=2) if condition else None,
                text=json.dumps(statement, indent=2),
            )
        )
    return views
