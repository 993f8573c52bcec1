"""The cached credentials behind a SigV4 access key (core/registry_callers.signed_credentials):
reused while the authorization generation stands, never stale after an identity write, and a
session's expiry checked on every request."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from dockyard.config import Settings
from dockyard.core.identity import registry_callers
from dockyard.core.identity.principals import CredentialsRejected, token_hash
from dockyard.core.services import Services
from dockyard.store import schema
from dockyard.store.database import Database, upgrade_async

OWNER = "123456789012"
REGION = "us-east-1"
KEY = "AKIACACHEDKEY0000001"
SESSION_KEY = "ASIACACHEDSESSION001"
TOKEN = "session-token"


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Services]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'dockyard.db'}"
    await upgrade_async(url)
    settings = Settings(data_dir=tmp_path, database_url=url)
    services = Services.from_settings(settings)
    async with services.db.write() as conn:
        await conn.execute(insert(schema.accounts).values(account_id=OWNER, created_at=0.0))
        await conn.execute(
            insert(schema.access_keys).values(
                access_key_id=KEY, secret_access_key="secret", account_id=OWNER, status="Active", created_at=0.0
            )
        )
    yield services
    await services.close()


async def _add_session(db: Database, expires_at: float) -> None:
    async with db.write() as conn:
        await conn.execute(
            insert(schema.sts_sessions).values(
                access_key_id=SESSION_KEY,
                secret_access_key="session-secret",
                token_hash=token_hash(TOKEN),
                account_id=OWNER,
                kind="session-token",
                source_arn=f"arn:aws:iam::{OWNER}:root",
                created_at=0.0,
                expires_at=expires_at,
            )
        )


async def test_credentials_are_reused_until_an_identity_write(svc: Services) -> None:
    first = await registry_callers.signed_credentials(svc, KEY, None, REGION)
    assert first.secret_access_key == "secret" and first.caller.account_id == OWNER
    assert await registry_callers.signed_credentials(svc, KEY, None, REGION) is first
    async with svc.db.write() as conn:
        await conn.execute(update(schema.access_keys).values(status="Inactive"))
    with pytest.raises(CredentialsRejected) as rejected:
        await registry_callers.signed_credentials(svc, KEY, None, REGION)
    assert rejected.value.kind == "unknown_key"


async def test_a_session_token_is_part_of_what_is_cached(svc: Services) -> None:
    await _add_session(svc.db, time.time() + 900)
    resolved = await registry_callers.signed_credentials(svc, SESSION_KEY, TOKEN, REGION)
    assert resolved.secret_access_key == "session-secret"
    with pytest.raises(CredentialsRejected) as rejected:
        await registry_callers.signed_credentials(svc, SESSION_KEY, "another token", REGION)
    assert rejected.value.kind == "invalid_token"


async def test_a_session_expires_without_any_write(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    await _add_session(svc.db, now + 900)
    await registry_callers.signed_credentials(svc, SESSION_KEY, TOKEN, REGION)
    monkeypatch.setattr(time, "time", lambda: now + 901)
    with pytest.raises(CredentialsRejected) as rejected:
        await registry_callers.signed_credentials(svc, SESSION_KEY, TOKEN, REGION)
    assert rejected.value.kind == "expired_token"
