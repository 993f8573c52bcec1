"""IAM's policy simulator (SimulatePrincipalPolicy, SimulateCustomPolicy), answered by the same
engine and the same decision function that authorise real requests.

A simulation parses and evaluates whatever the request carries (up to a megabyte of policies,
times every action, times every resource), so it runs in a worker thread: the event loop keeps
answering everyone else's requests meanwhile."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dockyard.core.identity.access import Resource, decide
from dockyard.core.identity.caller import Caller
from dockyard.core.identity.iam_common import authorize_iam, paginate
from dockyard.core.identity.iam_entities import Entity, EntityKind, find_entity
from dockyard.core.identity.iam_errors import InvalidInput, NoSuchEntity
from dockyard.core.identity.principals import SourcedPolicy, resource_policy, sourced_policies
from dockyard.core.services import Services
from dockyard.policy.evaluate import ContextValue, Decision, evaluate
from dockyard.policy.evaluate import Request as PolicyRequest
from dockyard.policy.language import Policy, PolicyError, parse_identity_policy

_ENTITY_ARN = re.compile(r"arn:aws:iam::(\d{12}):(user|group|role)(/(?:.*/)?)([^/]+)")
_ACCOUNT_ARN = re.compile(r"arn:aws:iam::(\d{12}):root|(\d{12})")
# Keys the engine fills in itself: a policy using them is not missing anything.
_FILLED_KEYS = frozenset(
    {
        "aws:username",
        "aws:userid",
        "aws:principalarn",
        "aws:principalaccount",
        "aws:principaltype",
        "aws:currenttime",
        "aws:epochtime",
        "aws:resourceaccount",
    }
)
_LIST_TYPES = frozenset({"stringList", "numericList", "booleanList", "ipList", "binaryList", "dateList"})
_DECISIONS = {"allowed": "allowed", "explicit_deny_identity": "explicitDeny", "explicit_deny_resource": "explicitDeny"}


@dataclass(frozen=True)
class Simulation:
    action_names: list[str]
    policy_inputs: list[str] = field(default_factory=list)
    resource_arns: list[str] | None = None
    resource_policy: str | None = None
    resource_owner: str | None = None
    caller_arn: str | None = None
    context_entries: list[dict[str, Any]] = field(default_factory=list)
    marker: str | None = None
    max_items: int | None = None


def _input_policies(texts: Sequence[str]) -> list[SourcedPolicy]:
    found = []
    for index, text in enumerate(texts, start=1):
        try:
            policy = parse_identity_policy(text)
        except PolicyError as exc:
            raise InvalidInput(f"PolicyInputList.{index}: {exc.detail}") from None
        found.append(SourcedPolicy("IAM Policy", f"PolicyInputList.{index}", policy))
    return found


def _context(entries: Sequence[dict[str, Any]]) -> dict[str, ContextValue]:
    context: dict[str, ContextValue] = {}
    for entry in entries:
        values = [str(value) for value in entry.get("ContextKeyValues") or []]
        name = entry.get("ContextKeyName")
        if not name or not values:
            continue
        context[name] = values if entry.get("ContextKeyType") in _LIST_TYPES else values[0]
    return context


def _principal_caller(caller: Caller, entity: Entity) -> Caller:
    """The simulated principal: the user itself, or the role as one of its sessions; a group is
    simulated as a member of it would be."""
    if entity.kind == "role":
        return replace(
            caller,
            account_id=entity.account_id,
            arn=f"arn:aws:sts::{entity.account_id}:assumed-role/{entity.name}/simulation",
            user_id=f"{entity.unique_id}:simulation",
            type="AssumedRole",
            username=None,
            role_arn=entity.arn,
            session_policy=None,
        )
    return replace(
        caller,
        account_id=entity.account_id,
        arn=entity.arn,
        user_id=entity.unique_id,
        type="IAMUser",
        username=entity.name if entity.kind == "user" else None,
        role_arn=None,
        session_policy=None,
    )


def _stand_in(caller: Caller) -> Caller:
    return replace(
        caller,
        arn=f"arn:aws:iam::{caller.account_id}:user/simulated-caller",
        user_id="AIDASIMULATEDCALLER00",
        type="IAMUser",
        username="simulated-caller",
        role_arn=None,
        session_policy=None,
    )


def _resource_account(simulation: Simulation, resource_arn: str, default: str) -> str:
    if simulation.resource_owner:
        match = _ACCOUNT_ARN.fullmatch(simulation.resource_owner)
        if match:
            return match.group(1) or match.group(2)
    parts = resource_arn.split(":")
    if len(parts) > 4 and parts[4].isdigit():
        return parts[4]
    return default


def _source_of(request: PolicyRequest, decision: Decision, sources: Sequence[SourcedPolicy]) -> list[dict[str, str]]:
    """Which policy the deciding statement came from (the engine names the statement only)."""
    if decision.reason in ("no_identity_allow", "no_resource_allow"):
        return []
    principal = request.principal
    as_own = PolicyRequest(principal, request.action, request.resource, principal.account_id, request.context)
    for source in sources:
        alone = evaluate(as_own, [source.policy], None)
        if alone.reason == decision.reason and alone.matched_statement == decision.matched_statement:
            return [{"SourcePolicyId": source.source_id, "SourcePolicyType": source.source_type}]
    return [{"SourcePolicyId": "ResourcePolicy", "SourcePolicyType": "resource"}]


def _missing_keys(policies: Sequence[Policy], context: dict[str, ContextValue]) -> list[str]:
    given = {key.lower() for key in context}
    missing: dict[str, str] = {}
    for policy in policies:
        for statement in policy.statements:
            for condition in statement.conditions:
                lowered = condition.key.lower()
                if lowered not in given and lowered not in _FILLED_KEYS:
                    missing.setdefault(lowered, condition.key)
    return sorted(missing.values())


def _simulate(caller: Caller, sources: list[SourcedPolicy], simulation: Simulation) -> dict[str, Any]:
    context = _context(simulation.context_entries)
    subject = replace(caller, policies=tuple(source.policy for source in sources))
    policy_text = simulation.resource_policy
    if policy_text:
        try:
            resource_policy(policy_text)
        except PolicyError as exc:
            raise InvalidInput(f"ResourcePolicy: {exc.detail}") from None
    missing = _missing_keys(subject.policies, context)
    results = []
    for action in simulation.action_names:
        for arn in simulation.resource_arns or ["*"]:
            resource = Resource(
                arn=arn, account_id=_resource_account(simulation, arn, caller.account_id), policy_text=policy_text
            )
            request, decision = decide(subject, action, resource, context)
            results.append(
                {
                    "EvalActionName": action,
                    "EvalResourceName": arn,
                    "EvalDecision": _DECISIONS.get(decision.reason, "implicitDeny"),
                    "MatchedStatements": _source_of(request, decision, sources),
                    "MissingContextValues": missing,
                }
            )
    numbered = list(enumerate(results))
    page, more = paginate(numbered, lambda item: f"{item[0]:08d}", simulation.marker, simulation.max_items)
    return {"EvaluationResults": [result for _, result in page], **more}


def _simulate_with_inputs(caller: Caller, sources: list[SourcedPolicy], simulation: Simulation) -> dict[str, Any]:
    """`sources` and the simulation's own policies, parsed and evaluated off the event loop."""
    return _simulate(caller, sources + _input_policies(simulation.policy_inputs), simulation)


async def simulate_principal_policy(
    svc: Services, caller: Caller, source_arn: str, simulation: Simulation
) -> dict[str, Any]:
    await authorize_iam(caller, "SimulatePrincipalPolicy", source_arn)
    match = _ENTITY_ARN.fullmatch(source_arn)
    if match is None:
        raise InvalidInput(f"Invalid ARN {source_arn}.")
    account_id, kind, path, name = match.groups()
    entity_kind: EntityKind = "user" if kind == "user" else "group" if kind == "group" else "role"
    async with svc.db.read() as conn:
        entity = await find_entity(conn, entity_kind, account_id, name)
        if entity is None or entity.path != path or account_id != caller.account_id:
            raise NoSuchEntity(f"The {kind} with name {name} cannot be found.")
        sources = await sourced_policies(conn, entity_kind, entity.id)
    subject = _principal_caller(caller, entity)
    return await asyncio.to_thread(_simulate_with_inputs, subject, sources, simulation)


async def simulate_custom_policy(svc: Services, caller: Caller, simulation: Simulation) -> dict[str, Any]:
    await authorize_iam(caller, "SimulateCustomPolicy", "*")
    # Without CallerArn the policies are simulated for an ordinary principal of the account: the
    # root user would be allowed everything whatever the policies say.
    subject = caller if caller.type != "Root" else _stand_in(caller)
    if simulation.caller_arn:
        match = _ENTITY_ARN.fullmatch(simulation.caller_arn)
        if match is None or match.group(2) != "user":
            raise InvalidInput(f"Invalid CallerArn {simulation.caller_arn}.")
        async with svc.db.read() as conn:
            entity = await find_entity(conn, "user", match.group(1), match.group(4))
        if entity is None:
            raise NoSuchEntity(f"The user with name {match.group(4)} cannot be found.")
        subject = _principal_caller(caller, entity)
    return await asyncio.to_thread(_simulate_with_inputs, subject, [], simulation)
