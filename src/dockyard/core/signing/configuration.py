"""ECR's signing configuration (PutSigningConfiguration, GetSigningConfiguration,
DeleteSigningConfiguration) and what it produced per image (DescribeImageSigningStatus).

A configuration is a registry's (account and region) list of rules: a signing profile ARN and,
optionally, repository filters. Each image pushed afterwards to a repository a rule covers gets a
signature by that rule's profile (signing_hooks.py queues it, workers/signing.py makes it)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, insert, select, update

from dockyard.core.errors import DockyardError, InvalidParameterException
from dockyard.core.identity.access import authorize
from dockyard.core.identity.caller import Caller
from dockyard.core.operations.account_settings import governed_registry
from dockyard.core.registry import images
from dockyard.core.registry.repositories import open_repository
from dockyard.core.services import Services, now
from dockyard.core.signing.signing_hooks import FAILED
from dockyard.store import schema

configurations = schema.signing_configurations
statuses = schema.image_signing_statuses

SigningConfigurationNotFoundException = type(
    "SigningConfigurationNotFoundException",
    (DockyardError,),
    {"code": "SigningConfigurationNotFoundException", "status": 400},
)


def _not_found(registry_id: str) -> DockyardError:
    return SigningConfigurationNotFoundException(
        f"Signing configuration does not exist for the registry with id '{registry_id}'"
    )


def _rules_of(configuration: dict[str, Any]) -> list[dict[str, Any]]:
    """The rules as stored and returned: only the members the API defines."""
    rules = []
    for rule in configuration.get("rules") or []:
        kept: dict[str, Any] = {"signingProfileArn": rule["signingProfileArn"]}
        filters = rule.get("repositoryFilters")
        if filters:
            kept["repositoryFilters"] = [{"filter": f["filter"], "filterType": f["filterType"]} for f in filters]
        rules.append(kept)
    return rules


def _check_region(caller: Caller, rules: list[dict[str, Any]]) -> None:
    # Signatures are made in the registry's own region: a profile elsewhere could never sign here.
    for index, rule in enumerate(rules, start=1):
        region = rule["signingProfileArn"].split(":")[3]
        if region != caller.region:
            raise InvalidParameterException(
                f"Invalid parameter at 'signingConfiguration.rules.{index}.member.signingProfileArn' failed to "
                f"satisfy constraint: 'The signing profile must be in the registry's region ({caller.region})'"
            )


async def put_signing_configuration(svc: Services, caller: Caller, configuration: dict[str, Any]) -> dict[str, Any]:
    await authorize(caller, "ecr:PutSigningConfiguration", await governed_registry(svc, caller, caller.account_id))
    rules = _rules_of(configuration)
    _check_region(caller, rules)
    text = json.dumps(rules)
    key = (configurations.c.account_id == caller.account_id) & (configurations.c.region == caller.region)
    async with svc.db.write() as conn:
        found = (await conn.execute(select(configurations.c.account_id).where(key))).first()
        if found is None:
            await conn.execute(
                insert(configurations).values(
                    account_id=caller.account_id, region=caller.region, rules=text, updated_at=now()
                )
            )
        else:
            await conn.execute(update(configurations).where(key).values(rules=text, updated_at=now()))
    return {"signingConfiguration": {"rules": rules}}


async def get_signing_configuration(svc: Services, caller: Caller) -> dict[str, Any]:
    await authorize(caller, "ecr:GetSigningConfiguration", await governed_registry(svc, caller, caller.account_id))
    key = (configurations.c.account_id == caller.account_id) & (configurations.c.region == caller.region)
    async with svc.db.read() as conn:
        text = (await conn.execute(select(configurations.c.rules).where(key))).scalar()
    if text is None:
        raise _not_found(caller.account_id)
    return {"registryId": caller.account_id, "signingConfiguration": {"rules": json.loads(text)}}


async def delete_signing_configuration(svc: Services, caller: Caller) -> dict[str, Any]:
    """Images pushed afterwards are not signed; signatures already made stay."""
    await authorize(caller, "ecr:DeleteSigningConfiguration", await governed_registry(svc, caller, caller.account_id))
    key = (configurations.c.account_id == caller.account_id) & (configurations.c.region == caller.region)
    async with svc.db.write() as conn:
        text = (await conn.execute(select(configurations.c.rules).where(key))).scalar()
        if text is None:
            raise _not_found(caller.account_id)
        await conn.execute(delete(configurations).where(key))
    return {"registryId": caller.account_id, "signingConfiguration": {"rules": json.loads(text)}}


async def describe_image_signing_status(
    svc: Services, caller: Caller, registry_id: str, repository: str, image_id: dict[str, Any]
) -> dict[str, Any]:
    """One status per signing profile the image's push matched; none for an image pushed while
    no rule covered it."""
    async with svc.db.read() as conn:
        repo = await open_repository(conn, caller, registry_id, repository, "ecr:DescribeImageSigningStatus")
        image = await images.resolve_image(conn, repo, image_id)
        rows = (
            await conn.execute(
                select(statuses).where(statuses.c.image_id == image.id).order_by(statuses.c.requested_at)
            )
        ).all()
    found = []
    for row in rows:
        status: dict[str, Any] = {"signingProfileArn": row.profile_arn, "status": row.status}
        if row.status == FAILED:
            status["failureCode"] = row.failure_code
            status["failureReason"] = row.failure_reason
        found.append(status)
    return {
        "repositoryName": repo.name,
        "imageId": images.image_id_of(image, image_id),
        "registryId": repo.account_id,
        "signingStatuses": found,
    }
