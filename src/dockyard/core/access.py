"""The one place a request is authorised, as the action that governs it (ecr:, iam:, sts:).

The decision is the policy engine's (dockyard.policy.evaluate): the caller's identity policies,
loaded with its credentials on this very request, against the resource's own policy (a
repository policy, a registry policy, a role's trust policy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from dockyard.core.caller import Caller
from dockyard.core.principals import resource_policy
from dockyard.errors import AccessDeniedException
from dockyard.policy import Decision, Policy, PolicyError, access_denied_message, evaluate, parse_identity_policy
from dockyard.policy import Request as PolicyRequest
from dockyard.policy.evaluate import ContextValue

ResourcePolicyKind = Literal["repository", "registry", "trust"]


@dataclass(frozen=True)
class Resource:
    """What an action is performed on: an ARN, or "*" for actions without resource-level
    permissions; the account that owns it; and its resource-based policy, if it has one."""

    arn: str
    account_id: str
    policy_text: str | None = None
    policy_kind: ResourcePolicyKind = "repository"
    # The resource's tags, for the aws:ResourceTag/ and ecr:ResourceTag/ condition keys.
    tags: tuple[tuple[str, str], ...] = ()


def repository_arn(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:ecr:{region}:{account_id}:repository/{name}"


def registry_resource(caller: Caller, account_id: str) -> Resource:
    return Resource(arn="*", account_id=account_id)


def _resource_policy(resource: Resource) -> Policy | None:
    if not resource.policy_text:
        return None
    kind = "registry" if resource.policy_kind == "registry" else "repository"
    try:
        return resource_policy(resource.policy_text, kind)
    except PolicyError:
        return None  # validated when it was set; a document the parser now refuses grants nothing


def request_context(
    caller: Caller, resource: Resource, extra: Mapping[str, ContextValue] | None = None
) -> dict[str, ContextValue]:
    """The global condition keys a request carries (principal keys are the engine's own)."""
    context: dict[str, ContextValue] = {
        "aws:SecureTransport": caller.secure_transport,
        "aws:RequestedRegion": caller.region,
        "aws:ViaAWSService": False,
    }
    if caller.source_ip:
        context["aws:SourceIp"] = caller.source_ip
    if caller.user_agent:
        context["aws:UserAgent"] = caller.user_agent
    if caller.session_expires_at is not None:
        context["aws:MultiFactorAuthPresent"] = False
    for key, value in resource.tags:
        context[f"aws:ResourceTag/{key}"] = value
        context[f"ecr:ResourceTag/{key}"] = value
    if extra:
        context.update(extra)
    return context


def decide(
    caller: Caller, action: str, resource: Resource, context: Mapping[str, ContextValue] | None = None
) -> tuple[PolicyRequest, Decision]:
    """The engine's decision, without raising (the policy simulator reports it as is)."""
    request = PolicyRequest(
        caller.principal, action, resource.arn, resource.account_id, request_context(caller, resource, context)
    )
    policy = _resource_policy(resource)
    if resource.policy_kind == "trust":
        return request, _decide_trust(request, caller.policies, policy)
    return request, evaluate(request, caller.policies, policy)


_ALLOW_EVERYTHING = parse_identity_policy(
    '{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}'
)


def _decide_trust(request: PolicyRequest, identity: Sequence[Policy], trust: Policy | None) -> Decision:
    """A role's trust policy must always allow: unlike a repository policy's, its allow is
    necessary, not merely sufficient. Within the account it suffices when it names the caller
    itself (or everyone); naming the caller's account delegates to the account's identity
    policies, which must then allow too (across accounts the engine asks for both anyway)."""
    decision = evaluate(request, identity, trust)
    principal = request.principal
    if not decision.allowed or principal.account_id != request.resource_account:
        return decision
    if evaluate(request, (), trust).allowed:
        return decision
    # Asked as if from another account, the trust policy's account grants count too; the
    # identity side is then known to allow (the first decision was made on it).
    elsewhere = PolicyRequest(principal, request.action, request.resource, "", request.context)
    if evaluate(elsewhere, (_ALLOW_EVERYTHING,), trust).allowed:
        return decision
    return Decision(False, "no_resource_allow", None)


async def authorize(
    caller: Caller, action: str, resource: Resource, context: Mapping[str, ContextValue] | None = None
) -> None:
    """Raise AccessDeniedException unless `caller` may perform `action` on `resource`."""
    request, decision = decide(caller, action, resource, context)
    if not decision.allowed:
        raise AccessDeniedException(access_denied_message(request, decision))
    if caller.session_policy is not None:
        _check_session_policy(caller.session_policy, request)


def _check_session_policy(policy: Policy, request: PolicyRequest) -> None:
    """A session policy narrows the role's permissions: the request must be allowed by it too."""
    principal = request.principal
    as_own = PolicyRequest(principal, request.action, request.resource, principal.account_id, request.context)
    decision = evaluate(as_own, [policy], None)
    if decision.allowed:
        return
    because = (
        "with an explicit deny in a session policy"
        if decision.reason == "explicit_deny_identity"
        else f"because no session policy allows the {request.action} action"
    )
    raise AccessDeniedException(
        f"User: {principal.arn} is not authorized to perform: {request.action} "
        f"on resource: {request.resource} {because}"
    )
