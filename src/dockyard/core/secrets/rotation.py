"""Rotating the key that seals secret values (`dockyard admin rotate-secrets-key`).

A new key goes to the front of the ring, so every process seals with it from its next use (the
ring is read from the file on every use); every version sealed under another key is then opened
and sealed again under the new one; and once a pass finds none left, the ring is rewritten with
the new key alone. Versions are immutable, so re-sealing one never races a writer: the update is
conditional on the ciphertext it read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from dockyard.core.secrets import store
from dockyard.core.services import Services
from dockyard.store import sealed

MAX_PASSES = 5


async def rotate_key(svc: Services) -> dict[str, Any]:
    """Seal every secret value under a new key and retire the old ones; returns how many values
    were sealed again."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    path = store.key_path(svc.settings.data_dir)
    old = sealed.load_or_create(path)
    new_key = AESGCM.generate_key(bit_length=256)
    sealed.write_ring(path, [new_key, *old.keys])
    resealed = 0
    for _ in range(MAX_PASSES):
        count = await _reseal_pass(svc, sealed.load_or_create(path))
        resealed += count
        if count == 0:
            sealed.write_ring(path, [new_key])
            return {"KeyFile": str(path), "ValuesResealed": resealed, "RetiredKeys": len(old.keys)}
    raise RuntimeError(f"values kept appearing under retired keys; {path} still holds them, run again")


async def _reseal_pass(svc: Services, ring: sealed.KeyRing) -> int:
    versions, secrets_table = store.versions, store.secrets_table
    query = select(versions.c.secret_id, versions.c.version_id, versions.c.sealed_value, secrets_table.c.arn).join(
        secrets_table, secrets_table.c.id == versions.c.secret_id
    )
    async with svc.db.read() as conn:
        rows = (await conn.execute(query)).all()
    stale = [row for row in rows if not ring.sealed_under_current(bytes(row.sealed_value))]
    for row in stale:
        binding = store.binding(row.arn, row.version_id)
        fresh = ring.seal(ring.open(bytes(row.sealed_value), binding), binding)
        async with svc.db.write() as conn:
            await conn.execute(
                update(versions)
                .where(
                    versions.c.secret_id == row.secret_id,
                    versions.c.version_id == row.version_id,
                    versions.c.sealed_value == row.sealed_value,
                )
                .values(sealed_value=fresh)
            )
    return len(stale)
