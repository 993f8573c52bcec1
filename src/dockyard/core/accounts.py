"""Accounts and their access keys: who may sign requests, and as whom."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from sqlalchemy import insert, select

from dockyard.core.caller import Caller, root_caller
from dockyard.core.services import Services, now
from dockyard.store import schema

keys = schema.access_keys
_KEY_ALPHABET = string.ascii_uppercase + "234567"
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str
    account_id: str
    user_name: str | None
    status: str


def new_access_key_id(prefix: str = "AKIA") -> str:
    return prefix + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))


def new_secret_access_key() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))


async def ensure_account(svc: Services, account_id: str) -> bool:
    """Create the account if it is new; True when it was."""
    async with svc.db.write() as conn:
        exists = (
            await conn.execute(
                select(schema.accounts.c.account_id).where(schema.accounts.c.account_id == account_id)
            )
        ).first()
        if exists:
            return False
        await conn.execute(insert(schema.accounts).values(account_id=account_id, created_at=now()))
        return True


async def root_keys(svc: Services, account_id: str) -> list[AccessKey]:
    async with svc.db.read() as conn:
        rows = await conn.execute(
            select(
                keys.c.access_key_id,
                keys.c.secret_access_key,
                keys.c.account_id,
                keys.c.user_name,
                keys.c.status,
            )
            .where(keys.c.account_id == account_id, keys.c.user_name.is_(None))
            .order_by(keys.c.created_at)
        )
        return [AccessKey(**row._mapping) for row in rows]


async def add_access_key(
    svc: Services,
    account_id: str,
    user_name: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> AccessKey:
    key = AccessKey(
        access_key_id=access_key_id or new_access_key_id(),
        secret_access_key=secret_access_key or new_secret_access_key(),
        account_id=account_id,
        user_name=user_name,
        status="Active",
    )
    async with svc.db.write() as conn:
        await conn.execute(
            insert(keys).values(
                access_key_id=key.access_key_id,
                secret_access_key=key.secret_access_key,
                account_id=account_id,
                user_name=user_name,
                status="Active",
                created_at=now(),
            )
        )
    return key


async def find_access_key(svc: Services, access_key_id: str) -> AccessKey | None:
    async with svc.db.read() as conn:
        row = (
            await conn.execute(
                select(
                    keys.c.access_key_id,
                    keys.c.secret_access_key,
                    keys.c.account_id,
                    keys.c.user_name,
                    keys.c.status,
                ).where(keys.c.access_key_id == access_key_id)
            )
        ).first()
    return AccessKey(**row._mapping) if row else None


def caller_for_key(key: AccessKey, region: str) -> Caller:
    if key.user_name is None:
        return root_caller(key.account_id, region, key.access_key_id)
    return Caller(
        account_id=key.account_id,
        arn=f"arn:aws:iam::{key.account_id}:user/{key.user_name}",
        user_id=key.access_key_id,
        type="IAMUser",
        username=key.user_name,
        access_key_id=key.access_key_id,
        region=region,
    )
