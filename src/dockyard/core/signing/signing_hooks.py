"""Where managed signing meets a push: queueing the signatures an image's registry asks for.

Runs inside the push's write transaction (core/registry/images.put_manifest), so the jobs commit
with the image or not at all; the signing itself happens later, in the background worker
(workers/signing.py).

A push to a registry without a signing configuration reads nothing: the pusher's caller carries
the registries that have one (core/identity/registry_callers.py, resolved under the authorization
generation, which every write of signing_configurations bumps, so every process sees a change on
its next request). A push to one that has a configuration reads its rules with one primary-key
read, in the push's transaction. ECR signs "using the identity of the entity pushing the image":
a profile the pusher may not sign with (signer:SignPayload) is recorded as FAILED here and never
queued. Callers the server builds itself (root_caller) carry no registries: their pushes, such as
the signatures the worker stores, are never signed."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import AccessDeniedException
from dockyard.core.identity.access import Resource, authorize
from dockyard.core.identity.caller import Caller
from dockyard.core.registry.manifests import Manifest
from dockyard.core.registry.repositories import Repository
from dockyard.core.services import now
from dockyard.core.signing.signatures import SIGNATURE_ARTIFACT_TYPE
from dockyard.policy.patterns import wildcard_match
from dockyard.store import schema
from dockyard.store.prepared import Prepared

IN_PROGRESS = "IN_PROGRESS"
COMPLETE = "COMPLETE"
FAILED = "FAILED"
ACCESS_DENIED = "AccessDenied"

configurations = schema.signing_configurations
statuses = schema.image_signing_statuses

_RULES = Prepared(
    select(configurations.c.rules).where(
        configurations.c.account_id == bindparam("account_id"), configurations.c.region == bindparam("region")
    )
)


def rule_matches(rule: dict[str, Any], repository: str) -> bool:
    """A rule without repository filters covers every repository; with them, any filter that
    matches the whole name (ECR's WILDCARD_MATCH: '*' stands for any run of characters)."""
    filters = rule.get("repositoryFilters")
    if not filters:
        return True
    return any(wildcard_match(f["filter"], repository, question_mark=False) for f in filters)


def profiles_for(rules: list[dict[str, Any]], repository: str) -> list[str]:
    """The signing profile ARNs whose rules cover `repository`, each once, in rule order."""
    found: list[str] = []
    for rule in rules:
        arn = rule["signingProfileArn"]
        if arn not in found and rule_matches(rule, repository):
            found.append(arn)
    return found


async def _may_sign(caller: Caller, arn: str) -> str | None:
    """None when `caller` may sign with the profile `arn`, else why not (in AWS's words)."""
    account_id = arn.split(":")[4]
    try:
        await authorize(caller, "signer:SignPayload", Resource(arn=arn, account_id=account_id))
    except AccessDeniedException as exc:
        return exc.message
    return None


async def queue_signing_on_push(
    conn: AsyncConnection, repo: Repository, manifest: Manifest, image_id: int, caller: Caller | None = None
) -> None:
    """Queue a signature of a newly pushed image by each signing profile its registry's signing
    configuration names for its repository. Signatures themselves are never signed."""
    if manifest.artifact_type == SIGNATURE_ARTIFACT_TYPE:
        return
    if caller is None or (repo.account_id, repo.region) not in caller.signing_registries:
        return
    rules_text = (await _RULES.execute(conn, {"account_id": repo.account_id, "region": repo.region})).scalar()
    if rules_text is None:
        return
    arns = profiles_for(json.loads(rules_text), repo.name)
    if not arns:
        return
    moment = now()
    rows = []
    for arn in arns:
        refusal = await _may_sign(caller, arn) if caller is not None else None
        failed = refusal is not None
        rows.append(
            {
                "image_id": image_id,
                "profile_arn": arn,
                "requested_at": moment,
                "status": FAILED if failed else IN_PROGRESS,
                "failure_code": ACCESS_DENIED if failed else None,
                "failure_reason": refusal,
                "completed_at": moment if failed else None,
            }
        )
    await conn.execute(insert(statuses), rows)
