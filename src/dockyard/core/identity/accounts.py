"""Accounts and their access keys: who may sign requests, and as whom.

Long-term keys belong to an account's root user (user_name NULL) or to one of its IAM users;
IAM's access-key operations (CreateAccessKey, ListAccessKeys, UpdateAccessKey, DeleteAccessKey)
live here too. Turning a key into a caller is core/principals' business."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.identity.caller import Caller
from dockyard.core.identity.iam_common import authorize_iam, iam_arn, paginate
from dockyard.core.identity.iam_entities import find_entity, no_such_entity, self_user_name
from dockyard.core.identity.iam_errors import LimitExceeded, NoSuchEntity
from dockyard.core.services import Services, now
from dockyard.store import schema

keys = schema.access_keys
_KEY_ALPHABET = string.ascii_uppercase + "234567"
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
KEYS_PER_USER = 2


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str
    account_id: str
    user_name: str | None
    status: str
    created_at: float = 0.0


def new_access_key_id(prefix: str = "AKIA") -> str:
    return prefix + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))


def new_secret_access_key() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))


async def account_exists(svc: Services, account_id: str) -> bool:
    async with svc.db.read() as conn:
        found = await conn.execute(
            select(schema.accounts.c.account_id).where(schema.accounts.c.account_id == account_id)
        )
        return found.first() is not None


async def ensure_account(svc: Services, account_id: str) -> bool:
    """Create the account if it is new; True when it was."""
    async with svc.db.write() as conn:
        exists = (
            await conn.execute(select(schema.accounts.c.account_id).where(schema.accounts.c.account_id == account_id))
        ).first()
        if exists:
            return False
        await conn.execute(insert(schema.accounts).values(account_id=account_id, created_at=now()))
        return True


async def list_accounts(svc: Services) -> list[str]:
    async with svc.db.read() as conn:
        rows = await conn.execute(select(schema.accounts.c.account_id).order_by(schema.accounts.c.account_id))
        return [row.account_id for row in rows]


_KEY_COLUMNS = (
    keys.c.access_key_id,
    keys.c.secret_access_key,
    keys.c.account_id,
    keys.c.user_name,
    keys.c.status,
    keys.c.created_at,
)


async def _keys_of(conn: AsyncConnection, account_id: str, user_name: str | None) -> list[AccessKey]:
    owner = keys.c.user_name.is_(None) if user_name is None else keys.c.user_name == user_name
    rows = await conn.execute(
        select(*_KEY_COLUMNS).where(keys.c.account_id == account_id, owner).order_by(keys.c.created_at)
    )
    return [AccessKey(**row._mapping) for row in rows]


async def root_keys(svc: Services, account_id: str) -> list[AccessKey]:
    async with svc.db.read() as conn:
        return await _keys_of(conn, account_id, None)


async def add_access_key(
    svc: Services,
    account_id: str,
    user_name: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> AccessKey:
    """Store a key as given (bootstrap, admin commands): no quota, no authorisation."""
    async with svc.db.write() as conn:
        return await _insert_key(conn, account_id, user_name, access_key_id, secret_access_key)


async def _insert_key(
    conn: AsyncConnection,
    account_id: str,
    user_name: str | None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> AccessKey:
    key = AccessKey(
        access_key_id=access_key_id or new_access_key_id(),
        secret_access_key=secret_access_key or new_secret_access_key(),
        account_id=account_id,
        user_name=user_name,
        status="Active",
        created_at=now(),
    )
    await conn.execute(
        insert(keys).values(
            access_key_id=key.access_key_id,
            secret_access_key=key.secret_access_key,
            account_id=account_id,
            user_name=user_name,
            status=key.status,
            created_at=key.created_at,
        )
    )
    return key


async def find_access_key(svc: Services, access_key_id: str) -> AccessKey | None:
    async with svc.db.read() as conn:
        row = (await conn.execute(select(*_KEY_COLUMNS).where(keys.c.access_key_id == access_key_id))).first()
    return AccessKey(**row._mapping) if row else None


# --- IAM's access-key operations ----------------------------------------------------------------


async def _key_owner(conn: AsyncConnection, caller: Caller, user_name: str | None, action: str) -> str | None:
    """Whose keys an operation's UserName means (None: the root user's), once authorised."""
    name = user_name if user_name is not None else self_user_name(caller)
    if name is None:
        arn = f"arn:aws:iam::{caller.account_id}:root"
        await authorize_iam(caller, action, arn)
        return None
    user = await find_entity(conn, "user", caller.account_id, name)
    arn = user.arn if user else iam_arn(caller.account_id, "user", "/", name)
    await authorize_iam(caller, action, arn)
    if user is None:
        raise no_such_entity("user", name)
    return user.name


def _metadata(key: AccessKey) -> dict[str, Any]:
    shape: dict[str, Any] = {"AccessKeyId": key.access_key_id, "Status": key.status, "CreateDate": key.created_at}
    if key.user_name is not None:
        shape = {"UserName": key.user_name, **shape}
    return shape


def key_not_found(access_key_id: str) -> NoSuchEntity:
    return NoSuchEntity(f"The Access Key with id {access_key_id} cannot be found.")


async def create_access_key(svc: Services, caller: Caller, user_name: str | None) -> dict[str, Any]:
    async with svc.db.write() as conn:
        owner = await _key_owner(conn, caller, user_name, "CreateAccessKey")
        owned = (
            await conn.execute(
                select(func.count())
                .select_from(keys)
                .where(
                    keys.c.account_id == caller.account_id,
                    keys.c.user_name.is_(None) if owner is None else keys.c.user_name == owner,
                )
            )
        ).scalar_one()
        if owned >= KEYS_PER_USER:
            raise LimitExceeded(f"Cannot exceed quota for AccessKeysPerUser: {KEYS_PER_USER}")
        key = await _insert_key(conn, caller.account_id, owner)
    shape = _metadata(key)
    shape["SecretAccessKey"] = key.secret_access_key
    return {"AccessKey": shape}


async def list_access_keys(
    svc: Services, caller: Caller, user_name: str | None, marker: str | None, max_items: int | None
) -> dict[str, Any]:
    async with svc.db.read() as conn:
        owner = await _key_owner(conn, caller, user_name, "ListAccessKeys")
        found = sorted(await _keys_of(conn, caller.account_id, owner), key=lambda key: key.access_key_id)
    page, more = paginate(found, lambda key: key.access_key_id, marker, max_items)
    return {"AccessKeyMetadata": [_metadata(key) for key in page], **more}


async def _owned_key(conn: AsyncConnection, caller: Caller, owner: str | None, access_key_id: str) -> AccessKey:
    for key in await _keys_of(conn, caller.account_id, owner):
        if key.access_key_id == access_key_id:
            return key
    raise key_not_found(access_key_id)


async def update_access_key(
    svc: Services, caller: Caller, user_name: str | None, access_key_id: str, status: str
) -> dict[str, Any]:
    async with svc.db.write() as conn:
        owner = await _key_owner(conn, caller, user_name, "UpdateAccessKey")
        key = await _owned_key(conn, caller, owner, access_key_id)
        await conn.execute(update(keys).where(keys.c.access_key_id == key.access_key_id).values(status=status))
    return {}


async def delete_access_key(svc: Services, caller: Caller, user_name: str | None, access_key_id: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        owner = await _key_owner(conn, caller, user_name, "DeleteAccessKey")
        key = await _owned_key(conn, caller, owner, access_key_id)
        await conn.execute(delete(keys).where(keys.c.access_key_id == key.access_key_id))
    return {}
