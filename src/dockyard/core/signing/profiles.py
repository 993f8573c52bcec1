"""AWS Signer signing profiles, as much of Signer as managed signing needs: PutSigningProfile,
GetSigningProfile, ListSigningProfiles, CancelSigningProfile, GetRevocationStatus, and the
registry's root certificate a verifier trusts (Dockyard's stand-in for AWS Signer's published
root).

Only the platform ECR's managed signing signs with is offered: Notation-OCI-SHA384-ECDSA. Each
profile gets its own P-384 key and a code-signing certificate issued by the registry's root CA
(keys.py). Authorised as Signer's IAM actions on the profile's ARN
(arn:aws:signer:<region>:<account>:/signing-profiles/<name>)."""

from __future__ import annotations

import asyncio
import json
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import DockyardError
from dockyard.core.identity.access import Resource, authorize
from dockyard.core.identity.caller import Caller
from dockyard.core.paging import decode_token, encode_token
from dockyard.core.services import Services, now
from dockyard.core.signing import keys
from dockyard.store import schema

# Only the key's type is named here; keys.py imports cryptography when it needs it (issue 19).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

PLATFORM_ID = "Notation-OCI-SHA384-ECDSA"
PLATFORM_DISPLAY_NAME = "Notation for Container Registries"
ACTIVE = "Active"
CANCELED = "Canceled"
STATUSES = (ACTIVE, CANCELED, "Revoked")
DEFAULT_VALIDITY = {"value": 135, "type": "MONTHS"}
# Signer's bounds for a Notation profile's signature validity: one day to 135 months.
MAX_VALIDITY_DAYS = 135 * 30
_DAYS_PER = {"DAYS": 1, "MONTHS": 30, "YEARS": 365}
MAX_LIST_RESULTS = 25
_VERSION_ALPHABET = string.ascii_uppercase + string.digits

profiles_table = schema.signing_profiles
roots_table = schema.signing_roots


def _error(name: str, status: int) -> type[DockyardError]:
    return type(name, (DockyardError,), {"code": name, "status": status})


SignerValidationException = _error("ValidationException", 400)
ResourceNotFoundException = _error("ResourceNotFoundException", 404)


def profile_arn(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:signer:{region}:{account_id}:/signing-profiles/{name}"


@dataclass(frozen=True)
class ProfileArn:
    region: str
    account_id: str
    name: str


def parse_profile_arn(arn: str) -> ProfileArn | None:
    """The parts of a signing profile ARN (ECR's SigningProfileArn pattern has already held)."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "signer" or not parts[5].startswith("/signing-profiles/"):
        return None
    return ProfileArn(parts[3], parts[4], parts[5].removeprefix("/signing-profiles/"))


# --- key material -------------------------------------------------------------------------------

_master_keys: dict[Path, bytes] = {}


def master_key(svc: Services) -> bytes:
    data_dir = Path(svc.settings.data_dir).resolve()
    key = _master_keys.get(data_dir)
    if key is None:
        key = _master_keys[data_dir] = keys.load_or_create_master_key(data_dir)
    return key


@dataclass(frozen=True)
class Root:
    certificate_pem: str
    private_key: ec.EllipticCurvePrivateKey


async def _ensure_root(svc: Services, account_id: str, region: str) -> Root:
    """The registry's root CA, created with its first signing profile. Two processes may race:
    each proposes one, the first insert wins, and both use the row."""
    master = master_key(svc)
    binding = keys.root_binding(account_id, region)
    async with svc.db.read() as conn:
        row = await _root_row(conn, account_id, region)
    if row is None:
        proposed = await asyncio.to_thread(keys.issue_root, account_id, region)
        async with svc.db.write() as conn:
            row = await _root_row(conn, account_id, region)
            if row is None:
                sealed = keys.seal(master, proposed.private_key, binding)
                await conn.execute(
                    insert(roots_table).values(
                        account_id=account_id,
                        region=region,
                        certificate=proposed.certificate_pem,
                        private_key=sealed,
                        created_at=now(),
                    )
                )
                return Root(proposed.certificate_pem, proposed.private_key)
    return Root(row.certificate, keys.unseal(master, bytes(row.private_key), binding))


async def _root_row(conn: AsyncConnection, account_id: str, region: str) -> Any:
    query = select(roots_table).where(roots_table.c.account_id == account_id, roots_table.c.region == region)
    return (await conn.execute(query)).first()


async def root_certificate(svc: Services, account_id: str, region: str) -> str | None:
    """The PEM of the registry's root CA, the trust anchor of its signatures; None before its
    first signing profile."""
    async with svc.db.read() as conn:
        row = await _root_row(conn, account_id, region)
    return None if row is None else str(row.certificate)


# --- the operations -----------------------------------------------------------------------------


def _resource(caller: Caller, name: str) -> Resource:
    return Resource(arn=profile_arn(caller.region, caller.account_id, name), account_id=caller.account_id)


def validity_days(period: dict[str, Any]) -> int:
    return int(period["value"]) * _DAYS_PER[period["type"]]


def _check_put(platform_id: str, validity: dict[str, Any], signing_material: Any) -> None:
    if platform_id != PLATFORM_ID:
        raise SignerValidationException(
            f"Platform {platform_id} is not supported: this registry signs with {PLATFORM_ID} only."
        )
    if signing_material:
        raise SignerValidationException(f"Signing material is not supported for platform {PLATFORM_ID}.")
    if validity.get("type") not in _DAYS_PER or not isinstance(validity.get("value"), int):
        raise SignerValidationException("Signature validity period must have a value and a type (DAYS, MONTHS, YEARS).")
    if not 1 <= validity_days(validity) <= MAX_VALIDITY_DAYS:
        raise SignerValidationException("Signature validity period must be between 1 day and 135 months.")


async def put_signing_profile(
    svc: Services,
    caller: Caller,
    name: str,
    platform_id: str,
    *,
    signature_validity_period: dict[str, Any] | None = None,
    signing_parameters: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    signing_material: dict[str, Any] | None = None,
) -> dict[str, Any]:
    await authorize(caller, "signer:PutSigningProfile", _resource(caller, name))
    validity = dict(signature_validity_period or DEFAULT_VALIDITY)
    _check_put(platform_id, validity, signing_material)
    account, region = caller.account_id, caller.region
    async with svc.db.read() as conn:
        if await _profile_row(conn, account, region, name) is not None:
            raise _already_exists(name)
    root = await _ensure_root(svc, account, region)
    issued = await asyncio.to_thread(
        keys.issue_signing_certificate,
        root.certificate_pem,
        root.private_key,
        account,
        region,
        name,
        timedelta(days=validity_days(validity)),
    )
    version = "".join(secrets.choice(_VERSION_ALPHABET) for _ in range(10))
    sealed = keys.seal(master_key(svc), issued.private_key, keys.profile_binding(account, region, name))
    async with svc.db.write() as conn:
        if await _profile_row(conn, account, region, name) is not None:
            raise _already_exists(name)
        await conn.execute(
            insert(profiles_table).values(
                account_id=account,
                region=region,
                name=name,
                profile_version=version,
                platform_id=platform_id,
                validity_value=validity["value"],
                validity_type=validity["type"],
                status=ACTIVE,
                signing_parameters=json.dumps(signing_parameters or {}),
                tags=json.dumps(tags or {}),
                certificate=issued.certificate_pem,
                private_key=sealed,
                created_at=now(),
            )
        )
    arn = profile_arn(region, account, name)
    return {"arn": arn, "profileVersion": version, "profileVersionArn": f"{arn}/{version}"}


def _already_exists(name: str) -> DockyardError:
    # A canceled profile keeps its name (Signer lists it for two years), so the name stays taken.
    return SignerValidationException(f"A signing profile with the name {name} already exists.")


async def _profile_row(conn: AsyncConnection, account_id: str, region: str, name: str) -> Any:
    query = select(profiles_table).where(
        profiles_table.c.account_id == account_id, profiles_table.c.region == region, profiles_table.c.name == name
    )
    return (await conn.execute(query)).first()


def _not_found(name: str) -> DockyardError:
    return ResourceNotFoundException(f"Signing profile {name} does not exist.")


def describe(row: Any) -> dict[str, Any]:
    """A profile as GetSigningProfile and ListSigningProfiles show it."""
    arn = profile_arn(row.region, row.account_id, row.name)
    described: dict[str, Any] = {
        "profileName": row.name,
        "profileVersion": row.profile_version,
        "profileVersionArn": f"{arn}/{row.profile_version}",
        "platformId": row.platform_id,
        "platformDisplayName": PLATFORM_DISPLAY_NAME,
        "signatureValidityPeriod": {"value": row.validity_value, "type": row.validity_type},
        "status": row.status,
        "arn": arn,
    }
    parameters = json.loads(row.signing_parameters)
    if parameters:
        described["signingParameters"] = parameters
    tags = json.loads(row.tags)
    if tags:
        described["tags"] = tags
    return described


async def get_signing_profile(
    svc: Services, caller: Caller, name: str, profile_owner: str | None = None
) -> dict[str, Any]:
    owner = profile_owner or caller.account_id
    resource = Resource(arn=profile_arn(caller.region, owner, name), account_id=owner)
    await authorize(caller, "signer:GetSigningProfile", resource)
    async with svc.db.read() as conn:
        row = await _profile_row(conn, owner, caller.region, name)
    if row is None:
        raise _not_found(name)
    described = describe(row)
    if row.status == CANCELED:
        described["statusReason"] = "The signing profile was canceled."
    return described


async def list_signing_profiles(
    svc: Services,
    caller: Caller,
    *,
    include_canceled: bool = False,
    platform_id: str | None = None,
    statuses: list[str] | None = None,
    max_results: int | None = None,
    next_token: str | None = None,
) -> dict[str, Any]:
    await authorize(caller, "signer:ListSigningProfiles", Resource(arn="*", account_id=caller.account_id))
    limit = max_results or MAX_LIST_RESULTS
    if not 1 <= limit <= MAX_LIST_RESULTS:
        raise SignerValidationException(f"maxResults must be between 1 and {MAX_LIST_RESULTS}.")
    after = decode_token(next_token) if next_token else ""
    if not isinstance(after, str):
        raise SignerValidationException("The nextToken is not valid.")
    query = (
        select(profiles_table)
        .where(
            profiles_table.c.account_id == caller.account_id,
            profiles_table.c.region == caller.region,
            profiles_table.c.name > after,
        )
        .order_by(profiles_table.c.name)
    )
    if platform_id:
        query = query.where(profiles_table.c.platform_id == platform_id)
    if statuses:
        query = query.where(profiles_table.c.status.in_(statuses))
    elif not include_canceled:
        query = query.where(profiles_table.c.status != CANCELED)
    async with svc.db.read() as conn:
        rows = (await conn.execute(query.limit(limit + 1))).all()
    result: dict[str, Any] = {"profiles": [describe(row) for row in rows[:limit]]}
    if len(rows) > limit:
        result["nextToken"] = encode_token(rows[limit - 1].name)
    return result


async def cancel_signing_profile(svc: Services, caller: Caller, name: str) -> dict[str, Any]:
    """Canceled profiles sign nothing more; the signatures they made stay valid."""
    await authorize(caller, "signer:CancelSigningProfile", _resource(caller, name))
    async with svc.db.write() as conn:
        row = await _profile_row(conn, caller.account_id, caller.region, name)
        if row is None:
            raise _not_found(name)
        if row.status == ACTIVE:
            await conn.execute(
                update(profiles_table)
                .where(
                    profiles_table.c.account_id == caller.account_id,
                    profiles_table.c.region == caller.region,
                    profiles_table.c.name == name,
                )
                .values(status=CANCELED, canceled_at=now())
            )
    return {}


async def get_revocation_status(svc: Services, caller: Caller, profile_version_arn: str) -> dict[str, Any]:
    """Nothing Dockyard signs is ever revoked (it offers no RevokeSignature or RevokeSigningProfile),
    so a verifier that asks is told so."""
    base, _, _version = profile_version_arn.rpartition("/")
    parsed = parse_profile_arn(base)
    resource = Resource(arn="*", account_id=parsed.account_id if parsed else caller.account_id)
    await authorize(caller, "signer:GetRevocationStatus", resource)
    return {"revokedEntities": []}


# --- what the signer worker needs ---------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    status: str
    certificate_pem: str
    root_pem: str
    private_key: ec.EllipticCurvePrivateKey
    validity: timedelta


async def signing_key(svc: Services, arn: str) -> SigningKey | None:
    """The profile an ARN names, with its key opened and its chain; None when there is no such profile."""
    parsed = parse_profile_arn(arn)
    if parsed is None:
        return None
    async with svc.db.read() as conn:
        row = await _profile_row(conn, parsed.account_id, parsed.region, parsed.name)
        root = await _root_row(conn, parsed.account_id, parsed.region)
    if row is None or root is None:
        return None
    binding = keys.profile_binding(parsed.account_id, parsed.region, parsed.name)
    private_key = keys.unseal(master_key(svc), bytes(row.private_key), binding)
    validity = timedelta(days=validity_days({"value": row.validity_value, "type": row.validity_type}))
    return SigningKey(row.status, row.certificate, root.certificate, private_key, validity)
