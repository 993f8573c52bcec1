"""What every secrets operation shares: the key ring, ARNs, finding a secret by the identifiers
Secrets Manager accepts, and opening a version's value.

Values are sealed (store/sealed.py) under the ring in `<data_dir>/secrets.key`, each bound to
its secret's ARN and version id; the database holds only ciphertext."""

from __future__ import annotations

import json
import secrets as random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.store import schema, sealed

KEY_FILE = "secrets.key"
CURRENT = "AWSCURRENT"
PREVIOUS = "AWSPREVIOUS"
PENDING = "AWSPENDING"
_SUFFIX_ALPHABET = string.ascii_letters + string.digits
_SUFFIX = 6

secrets_table = schema.secrets
versions = schema.secret_versions


def key_path(data_dir: Path) -> Path:
    return data_dir / KEY_FILE


def key_ring(data_dir: Path) -> sealed.KeyRing:
    return sealed.load_or_create(key_path(data_dir))


def new_arn(region: str, account_id: str, name: str) -> str:
    suffix = "".join(random.choice(_SUFFIX_ALPHABET) for _ in range(_SUFFIX))
    return f"arn:aws:secretsmanager:{region}:{account_id}:secret:{name}-{suffix}"


def binding(arn: str, version_id: str) -> str:
    return f"secrets/{arn}/{version_id}"


@dataclass(frozen=True)
class Value:
    version_id: str
    stages: list[str]
    is_binary: bool
    plaintext: bytes
    created_at: float


async def find_secret(conn: AsyncConnection, account_id: str, region: str, secret_id: str) -> Row | None:
    """The secret `secret_id` names in a registry's region: its name, its full ARN, or its ARN
    without the six random characters (a partial ARN), as Secrets Manager resolves a SecretId."""
    scope = (secrets_table.c.account_id == account_id) & (secrets_table.c.region == region)
    if secret_id.startswith("arn:"):
        exact = (await conn.execute(select(secrets_table).where(scope, secrets_table.c.arn == secret_id))).first()
        if exact is not None:
            return exact
        name = _name_of_partial_arn(secret_id, account_id, region)
        if name is None:
            return None
        return (await conn.execute(select(secrets_table).where(scope, secrets_table.c.name == name))).first()
    return (await conn.execute(select(secrets_table).where(scope, secrets_table.c.name == secret_id))).first()


def _name_of_partial_arn(arn: str, account_id: str, region: str) -> str | None:
    head = f"arn:aws:secretsmanager:{region}:{account_id}:secret:"
    return arn[len(head) :] if arn.startswith(head) and len(arn) > len(head) else None


async def version_rows(conn: AsyncConnection, secret_id: int) -> list[Row]:
    query = select(versions).where(versions.c.secret_id == secret_id).order_by(versions.c.created_at)
    return list((await conn.execute(query)).all())


def stages_of(row: Row) -> list[str]:
    stages: Any = json.loads(row.stages)
    return [str(stage) for stage in stages]


def pick_version(rows: list[Row], version_id: str | None, stage: str | None) -> Row | None:
    """The version a read asks for: by id, by staging label, or AWSCURRENT; both must agree."""
    wanted_stage = stage if stage is not None else (CURRENT if version_id is None else None)
    for row in rows:
        if version_id is not None and row.version_id != version_id:
            continue
        if wanted_stage is not None and wanted_stage not in stages_of(row):
            continue
        return row
    return None


def open_value(ring: sealed.KeyRing, arn: str, row: Row) -> Value:
    """A version's value in the clear (raises sealed.SealedValueError if it does not open)."""
    plaintext = ring.open(bytes(row.sealed_value), binding(arn, row.version_id))
    return Value(row.version_id, stages_of(row), bool(row.is_binary), plaintext, row.created_at)
