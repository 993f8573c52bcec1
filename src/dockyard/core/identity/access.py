"""The one place a request is authorised, as the action that governs it (ecr:, iam:, sts:).

The decision is the policy engine's (dockyard.policy.evaluate): the caller's identity policies,
loaded with its credentials on this very request, against the resource's own policy (a
repository policy, a registry policy, a role's trust policy)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from dockyard.core.errors import AccessDeniedException
from dockyard.core.identity import auth_generation  # noqa: F401 - registers the generation bump on every engine
from dockyard.core.identity.caller import Caller
from dockyard.core.identity.principals import resource_policy
from dockyard.policy.evaluate import ContextValue, Decision, access_denied_message, evaluate
from dockyard.policy.evaluate import Request as PolicyRequest
from dockyard.policy.language import Policy, PolicyError, RegistryPolicyScope, parse_identity_policy

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
    # The registry policy of the registry holding the resource, when the registry's policy scope
    # (REGISTRY_POLICY_SCOPE V2) makes it govern every ECR action; None under V1.
    registry_policy_text: str | None = None


def repository_arn(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:ecr:{region}:{account_id}:repository/{name}"


def registry_resource(caller: Caller, account_id: str, registry_policy_text: str | None = None) -> Resource:
    """The resource of a registry-wide action (only "*"), with the registry policy in force."""
    return Resource(arn="*", account_id=account_id, registry_policy_text=registry_policy_text)


def _parsed(text: str, kind: Literal["repository", "registry"], scope: RegistryPolicyScope = "V1") -> Policy | None:
    try:
        return resource_policy(text, kind, scope)
    except PolicyError:
        return None  # validated when it was set; a document the parser now refuses grants nothing


@lru_cache(maxsize=4096)
def _combined(
    own_text: str | None, own_kind: Literal["repository", "registry"], registry_text: str | None
) -> Policy | None:
    """A resource's own policy and its registry's, as one: the engine then denies on a deny in
    either and, where a resource-based allow counts, allows on an allow in either."""
    own = _parsed(own_text, own_kind) if own_text else None
    registry = _parsed(registry_text, "registry", "V2") if registry_text else None
    if own is None or registry is None:
        return own or registry
    return Policy(
        kind="repository",
        text=own.text,
        version=own.version,
        id=own.id,
        statements=own.statements + registry.statements,
    )


def _resource_policy(resource: Resource) -> Policy | None:
    kind: Literal["repository", "registry"] = "registry" if resource.policy_kind == "registry" else "repository"
    return _combined(resource.policy_text or None, kind, resource.registry_policy_text)


def request_tag_context(tags: Mapping[str, str] | Sequence[str]) -> dict[str, ContextValue]:
    """The keys a request that sets (a mapping) or removes (keys only) tags carries:
    aws:RequestTag/<key> for each tag set, and aws:TagKeys naming every key."""
    context: dict[str, ContextValue] = {}
    if isinstance(tags, Mapping):
        context.update({f"aws:RequestTag/{key}": value for key, value in tags.items()})
    context["aws:TagKeys"] = tuple(tags)
    return context


@lru_cache(maxsize=8192)
def _reads_resource_tags(text: str) -> bool:
    return "resourcetag/" in text.lower()


def reads_resource_tags(caller: Caller, resource_policy_text: str | None) -> bool:
    """Whether a policy deciding for `caller` reads the resource's tags (aws:ResourceTag/…,
    ecr:ResourceTag/…): only then are they worth loading for a request."""
    texts = [policy.text for policy in caller.policies]
    if caller.session_policy is not None:
        texts.append(caller.session_policy.text)
    if resource_policy_text:
        texts.append(resource_policy_text)
    return any(_reads_resource_tags(text) for text in texts)


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
    key = _outcome_key(caller, action, resource, context)
    if key is None:
        refusal = _refusal(caller, action, resource, context)
    elif key in _outcomes:
        refusal = _outcomes[key]
    else:
        refusal = _refusal(caller, action, resource, context)
        _outcomes[key] = refusal
        while len(_outcomes) > MAX_OUTCOMES:
            _outcomes.popitem(last=False)
    if refusal is not None:
        raise AccessDeniedException(refusal)


# The engine's answers, by everything they depend on: the caller (its identity, where it calls
# from, its policy texts, its session policy), the action, the resource (ARN, account, policy,
# tags) and the extra context. Evaluation is a pure function of these, unless a policy reads the
# clock (aws:CurrentTime, aws:EpochTime): such answers are never kept. No generation is needed:
# a changed policy is a different key.
MAX_OUTCOMES = 4096
_outcomes: OrderedDict[Hashable, str | None] = OrderedDict()


@lru_cache(maxsize=8192)
def _reads_clock(text: str) -> bool:
    lowered = text.lower()
    return "currenttime" in lowered or "epochtime" in lowered


def _outcome_key(
    caller: Caller, action: str, resource: Resource, context: Mapping[str, ContextValue] | None
) -> Hashable | None:
    texts = tuple(policy.text for policy in caller.policies)
    session = caller.session_policy.text if caller.session_policy is not None else None
    clocked = [*texts, session or "", resource.policy_text or "", resource.registry_policy_text or ""]
    if any(_reads_clock(text) for text in clocked):
        return None
    extra = tuple(sorted(context.items())) if context else ()
    key = (caller, texts, session, action, resource, extra)
    try:
        hash(key)
    except TypeError:  # a list-valued context key: evaluate afresh
        return None
    return key


def _refusal(caller: Caller, action: str, resource: Resource, context: Mapping[str, ContextValue] | None) -> str | None:
    """Why the engine refuses, or None when it allows."""
    request, decision = decide(caller, action, resource, context)
    if not decision.allowed:
        return access_denied_message(request, decision)
    if caller.session_policy is not None:
        return _session_policy_refusal(caller.session_policy, request)
    return None


def _session_policy_refusal(policy: Policy, request: PolicyRequest) -> str | None:
    """A session policy narrows the role's permissions: the request must be allowed by it too."""
    principal = request.principal
    as_own = PolicyRequest(principal, request.action, request.resource, principal.account_id, request.context)
    decision = evaluate(as_own, [policy], None)
    if decision.allowed:
        return None
    because = (
        "with an explicit deny in a session policy"
        if decision.reason == "explicit_deny_identity"
        else f"because no session policy allows the {request.action} action"
    )
    return (
        f"User: {principal.arn} is not authorized to perform: {request.action} "
        f"on resource: {request.resource} {because}"
    )
