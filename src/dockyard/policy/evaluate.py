"""The authorisation decision, following AWS's documented policy evaluation logic.

1. An explicit Deny in any applicable policy wins (identity policies first, then the
   resource policy; a Deny in a repository policy binds even the account's root user).
2. The root user of the resource's account is otherwise allowed without any policy.
3. Same account: an Allow in an identity policy or in the resource policy suffices; a
   resource-policy Allow that names only the account delegates to identity policies and
   grants nothing by itself (IAM's "Principal" documentation).
4. Cross account: both an identity Allow (in the caller's account) and a resource-policy
   Allow are needed; a foreign root user carries its own account's identity allow, and an
   anonymous caller has no identity policies at all, so only the resource policy counts.
5. Everything else is denied by default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from dockyard.policy.language import Policy, PrincipalSet, Statement

PrincipalType = Literal["Root", "IAMUser", "AssumedRole", "FederatedUser", "Anonymous"]
DecisionReason = Literal[
    "explicit_deny_identity", "explicit_deny_resource", "no_identity_allow", "no_resource_allow", "allowed"
]
ContextValue = str | bool | int | float | Sequence[str]

ANONYMOUS_ARN = "anonymous"

# aws:PrincipalType spells the principal types its own way.
_PRINCIPAL_TYPE_KEY_VALUES: Mapping[PrincipalType, str] = {
    "Root": "Account",
    "IAMUser": "User",
    "AssumedRole": "AssumedRole",
    "FederatedUser": "FederatedUser",
    "Anonymous": "Anonymous",
}
_CURRENT_TIME = "aws:currenttime"
_EPOCH_TIME = "aws:epochtime"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking. For assumed-role sessions ``role_arn`` is the role's own ARN."""

    arn: str
    account_id: str
    type: PrincipalType
    user_id: str
    username: str | None = None
    role_arn: str | None = None

    @classmethod
    def root(cls, account_id: str) -> Principal:
        return cls(f"arn:aws:iam::{account_id}:root", account_id, "Root", account_id)

    @classmethod
    def iam_user(cls, account_id: str, name: str, user_id: str, path: str = "/") -> Principal:
        return cls(f"arn:aws:iam::{account_id}:user{path}{name}", account_id, "IAMUser", user_id, username=name)

    @classmethod
    def assumed_role(
        cls, account_id: str, role_name: str, session_name: str, role_id: str, path: str = "/"
    ) -> Principal:
        return cls(
            arn=f"arn:aws:sts::{account_id}:assumed-role/{role_name}/{session_name}",
            account_id=account_id,
            type="AssumedRole",
            user_id=f"{role_id}:{session_name}",
            role_arn=f"arn:aws:iam::{account_id}:role{path}{role_name}",
        )

    @classmethod
    def federated_user(cls, account_id: str, name: str) -> Principal:
        return cls(
            f"arn:aws:sts::{account_id}:federated-user/{name}", account_id, "FederatedUser", f"{account_id}:{name}"
        )

    @classmethod
    def anonymous(cls) -> Principal:
        return cls(ANONYMOUS_ARN, "", "Anonymous", ANONYMOUS_ARN)


@dataclass(frozen=True, slots=True)
class _Identity:
    """The principal's identities as resource-policy Principal elements can name them."""

    anonymous: bool
    account: str
    arns: tuple[str, ...]  # user / session / federated-user ARN, then the role ARN
    unique_id: str | None  # AIDA... or AROA..., the form a deleted principal is shown in

    @classmethod
    def of(cls, principal: Principal) -> _Identity:
        if principal.type == "Anonymous":
            return cls(True, "", (), None)
        arns: tuple[str, ...] = ()
        if principal.type in ("IAMUser", "FederatedUser"):
            arns = (principal.arn,)
        elif principal.type == "AssumedRole":
            arns = (principal.arn, principal.role_arn) if principal.role_arn else (principal.arn,)
        unique_id = principal.user_id.partition(":")[0] if principal.type in ("IAMUser", "AssumedRole") else None
        return cls(False, principal.account_id, arns, unique_id or None)


def _context_values(value: ContextValue) -> tuple[str, ...]:
    if isinstance(value, bool):
        return ("true" if value else "false",)
    if isinstance(value, str | int | float):
        return (str(value),)
    return tuple(value)


class RequestContext:
    """Condition keys of one request, looked up case-insensitively.

    Principal-derived keys are filled from the principal and override anything the caller
    passed, so a caller cannot impersonate another principal through the context.
    ``aws:CurrentTime``/``aws:EpochTime`` default to the moment they are first read.
    """

    __slots__ = ("_values",)

    def __init__(self, request: Request) -> None:
        values = {key.lower(): _context_values(value) for key, value in request.context.items()}
        principal = request.principal
        values["aws:principaltype"] = (_PRINCIPAL_TYPE_KEY_VALUES[principal.type],)
        values["aws:userid"] = (principal.user_id,)
        if principal.type != "Anonymous":
            principal_arn = (
                principal.role_arn if principal.type == "AssumedRole" and principal.role_arn else principal.arn
            )
            values["aws:principalarn"] = (principal_arn,)
            values["aws:principalaccount"] = (principal.account_id,)
        if principal.type == "IAMUser" and principal.username is not None:
            values["aws:username"] = (principal.username,)
        else:
            values.pop("aws:username", None)
        if request.resource_account:
            values["aws:resourceaccount"] = (request.resource_account,)
        self._values = values

    def values(self, key: str) -> tuple[str, ...] | None:
        found = self._values.get(key)
        if found is None and key in (_CURRENT_TIME, _EPOCH_TIME):
            found = self._fill_time(key)
        return found

    def _fill_time(self, key: str) -> tuple[str, ...]:
        now = datetime.now(UTC).replace(microsecond=0)
        self._values.setdefault(_CURRENT_TIME, (now.isoformat().replace("+00:00", "Z"),))
        self._values.setdefault(_EPOCH_TIME, (str(int(now.timestamp())),))
        return self._values[key]


@dataclass(frozen=True)
class Request:
    """One authorisation question: may ``principal`` perform ``action`` on ``resource``?

    ``resource`` is the ARN the action is checked against, or "*" for actions without
    resource-level permissions; ``resource_account`` owns it.
    """

    principal: Principal
    action: str
    resource: str
    resource_account: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    _context: RequestContext = field(init=False, repr=False, compare=False)
    _identity: _Identity = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_context", RequestContext(self))
        object.__setattr__(self, "_identity", _Identity.of(self.principal))


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: DecisionReason
    matched_statement: str | None  # Sid (or "Statement[i]") that decided; None for default deny/root


def _listed(principals: PrincipalSet, identity: _Identity, by_account: bool = True) -> bool:
    """Principal element: does it name the caller through any of its identities? `by_account`
    says whether naming the caller's account counts."""
    if principals.any:
        return True
    if identity.anonymous:
        return False
    if by_account and identity.account in principals.accounts:
        return True
    if any(arn in principals.arns for arn in identity.arns):
        return True
    return identity.unique_id is not None and identity.unique_id in principals.unique_ids


def _fully_listed(principals: PrincipalSet, identity: _Identity) -> bool:
    """NotPrincipal element: the caller escapes it only when its account and every ARN in its
    chain (user, or session and role) are listed, as AWS documents for NotPrincipal."""
    if principals.any:
        return True
    if identity.anonymous or identity.account not in principals.accounts:
        return False
    for position, arn in enumerate(identity.arns):
        by_unique_id = position == len(identity.arns) - 1 and identity.unique_id in principals.unique_ids
        if arn not in principals.arns and not by_unique_id:
            return False
    return True


def _applies(statement: Statement, request: Request, by_account: bool = True) -> bool:
    if statement.actions.matches(request.action) == statement.not_action:
        return False
    context = request._context
    resources = statement.resources
    if resources is not None and resources.matches(request.resource, context) == statement.not_resource:
        return False
    principals = statement.principals
    if principals is not None:
        if statement.not_principal:
            if _fully_listed(principals, request._identity):
                return False
        elif not _listed(principals, request._identity, by_account):
            return False
    return all(condition.evaluate(context) for condition in statement.conditions)


def _first_match(statements: Sequence[Statement], request: Request, by_account: bool = True) -> Statement | None:
    for statement in statements:
        if _applies(statement, request, by_account):
            return statement
    return None


def _identity_allow(policies: Sequence[Policy], request: Request) -> Statement | None:
    for policy in policies:
        if found := _first_match(policy.allows, request):
            return found
    return None


_ROOT_ALLOWED = Decision(True, "allowed", None)
_NO_IDENTITY_ALLOW = Decision(False, "no_identity_allow", None)
_NO_RESOURCE_ALLOW = Decision(False, "no_resource_allow", None)


def evaluate(request: Request, identity_policies: Sequence[Policy], resource_policy: Policy | None) -> Decision:
    """Decide ``request`` against the caller's identity policies and the resource's policy."""
    for policy in identity_policies:
        if denied := _first_match(policy.denies, request):
            return Decision(False, "explicit_deny_identity", denied.label)
    if resource_policy is not None and (denied := _first_match(resource_policy.denies, request)):
        return Decision(False, "explicit_deny_resource", denied.label)

    principal = request.principal
    same_account = principal.type != "Anonymous" and principal.account_id == request.resource_account
    if same_account and principal.type == "Root":
        return _ROOT_ALLOWED

    identity_allow = _identity_allow(identity_policies, request)
    if same_account and identity_allow is not None:
        return Decision(True, "allowed", identity_allow.label)
    if not same_account and identity_allow is None and principal.type not in ("Root", "Anonymous"):
        return _NO_IDENTITY_ALLOW
    # Naming an account in a resource policy delegates to that account's own policies: on its
    # own it grants nothing to the account's users and roles, only to principals it names.
    by_account = not same_account
    resource_allow = _first_match(resource_policy.allows, request, by_account) if resource_policy is not None else None
    if resource_allow is not None:
        return Decision(True, "allowed", resource_allow.label)
    return _NO_IDENTITY_ALLOW if same_account else _NO_RESOURCE_ALLOW


_DENIAL_CONTEXT: Mapping[DecisionReason, str] = {
    "explicit_deny_identity": "with an explicit deny in an identity-based policy",
    "explicit_deny_resource": "with an explicit deny in a resource-based policy",
    "no_identity_allow": "because no identity-based policy allows the {action} action",
    "no_resource_allow": "because no resource-based policy allows the {action} action",
}


def access_denied_message(request: Request, decision: Decision) -> str:
    """AWS's AccessDenied wording for a denied decision."""
    if decision.allowed:
        raise ValueError("the request was allowed; there is no access-denied message")
    because = _DENIAL_CONTEXT[decision.reason].format(action=request.action)
    return (
        f"User: {request.principal.arn} is not authorized to perform: {request.action} "
        f"on resource: {request.resource} {because}"
    )
