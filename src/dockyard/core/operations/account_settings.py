"""Account settings (GetAccountSetting, PutAccountSetting): per registry, as ECR keeps them.

Each setting changes what it names:
- REGISTRY_POLICY_SCOPE: V1 lets a registry policy grant only the replication and pull-through
  cache actions, which this registry never performs, so it governs nothing here; V2 (ECR's
  default since late 2024) accepts any ECR action in the registry policy and evaluates it, next
  to a repository's own policy, on every request on the registry (policy_in_force below, which
  repository lookups select; core/identity/access.py combines the two).
- BLOB_MOUNTING: whether a push's `mount`/`from` parameters link a layer from another
  repository of the registry (core/registry/blobs.mount_blob) or start an ordinary upload.
- BASIC_SCAN_TYPE_VERSION: ECR retired Clair, so AWS_NATIVE is the only value it accepts, and
  the only scanner this registry has; it is stored and reported as ECR does.

A registry with no row for a setting reads its default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import InvalidParameterException
from dockyard.core.identity.access import Resource, authorize, registry_resource
from dockyard.core.identity.caller import Caller
from dockyard.core.services import Services, now
from dockyard.store import schema

settings_table = schema.account_settings

BASIC_SCAN_TYPE_VERSION = "BASIC_SCAN_TYPE_VERSION"
REGISTRY_POLICY_SCOPE = "REGISTRY_POLICY_SCOPE"
BLOB_MOUNTING = "BLOB_MOUNTING"


@dataclass(frozen=True)
class Setting:
    values: tuple[str, ...]
    default: str


# ECR's API reference lists these names and values. BLOB_MOUNTING defaults to ENABLED here:
# this registry mounted layers across repositories before the setting existed, and pushes that
# relied on it keep working until an operator turns it off.
SETTINGS: dict[str, Setting] = {
    BASIC_SCAN_TYPE_VERSION: Setting(("AWS_NATIVE",), "AWS_NATIVE"),
    REGISTRY_POLICY_SCOPE: Setting(("V1", "V2"), "V2"),
    BLOB_MOUNTING: Setting(("ENABLED", "DISABLED"), "ENABLED"),
}


def _setting(name: str) -> Setting:
    setting = SETTINGS.get(name)
    if setting is None:
        names = ", ".join(SETTINGS)
        raise InvalidParameterException(
            f"Invalid parameter at 'name' failed to satisfy constraint: 'Account setting name must be one of [{names}]'"
        )
    return setting


def _checked_value(name: str, setting: Setting, value: str) -> str:
    if value not in setting.values:
        allowed = ", ".join(setting.values)
        raise InvalidParameterException(
            f"Invalid parameter at 'value' failed to satisfy constraint: "
            f"'Account setting value for {name} must be one of [{allowed}]'"
        )
    return value


def _key(account_id: str, region: str, name: str) -> Any:
    return (
        (settings_table.c.account_id == account_id)
        & (settings_table.c.region == region)
        & (settings_table.c.name == name)
    )


async def setting_value(conn: AsyncConnection, account_id: str, region: str, name: str) -> str:
    """The value of setting `name` in a registry, its default when never set."""
    stored = (await conn.execute(select(settings_table.c.value).where(_key(account_id, region, name)))).scalar()
    return stored if stored is not None else SETTINGS[name].default


async def get_account_setting(svc: Services, caller: Caller, name: str) -> dict[str, Any]:
    await authorize(caller, "ecr:GetAccountSetting", await governed_registry(svc, caller, caller.account_id))
    _setting(name)
    async with svc.db.read() as conn:
        value = await setting_value(conn, caller.account_id, caller.region, name)
    return {"name": name, "value": value}


async def put_account_setting(svc: Services, caller: Caller, name: str, value: str) -> dict[str, Any]:
    await authorize(caller, "ecr:PutAccountSetting", await governed_registry(svc, caller, caller.account_id))
    _checked_value(name, _setting(name), value)
    key = _key(caller.account_id, caller.region, name)
    async with svc.db.write() as conn:
        changed = await conn.execute(update(settings_table).where(key).values(value=value, updated_at=now()))
        if changed.rowcount == 0:
            await conn.execute(
                insert(settings_table).values(
                    account_id=caller.account_id, region=caller.region, name=name, value=value, updated_at=now()
                )
            )
    return {"name": name, "value": value}


# --- the registry policy scope ----------------------------------------------------------------


def policy_in_force(account_id: Any, region: Any) -> Any:
    """The registry policy of a registry (given as columns or values) when it governs every ECR
    action: under REGISTRY_POLICY_SCOPE V2, the default. Under V1 it governs only replication
    and pull-through cache, which this registry never performs, so this is NULL."""
    policies = schema.registry_policies
    # Keyed on the policy's own row: a subquery correlates with the query just around it.
    on_v1 = exists().where(
        settings_table.c.account_id == policies.c.account_id,
        settings_table.c.region == policies.c.region,
        settings_table.c.name == REGISTRY_POLICY_SCOPE,
        settings_table.c.value == "V1",
    )
    return (
        select(policies.c.policy_text)
        .where(policies.c.account_id == account_id, policies.c.region == region, ~on_v1)
        .scalar_subquery()
    )


async def registry_policy_in_force(conn: AsyncConnection, account_id: str, region: str) -> str | None:
    """policy_in_force, read for one registry."""
    return (await conn.execute(select(policy_in_force(literal(account_id), literal(region))))).scalar()


async def governed_registry(svc: Services, caller: Caller, account_id: str) -> Resource:
    """The resource of a registry-wide action on `account_id`'s registry in the caller's region,
    with the registry policy when it governs every action."""
    async with svc.db.read() as conn:
        in_force = await registry_policy_in_force(conn, account_id, caller.region)
    return registry_resource(caller, account_id, in_force)
