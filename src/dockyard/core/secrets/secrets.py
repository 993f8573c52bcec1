"""The Secrets Manager operations: secrets, versions with staging labels, scheduled deletion.

A secret's ARN ends in its name and six random characters, as AWS's does. Each value written is
a version (its id the request's ClientRequestToken, or a new UUID): the newest takes AWSCURRENT
and the one it replaces AWSPREVIOUS. DeleteSecret schedules the deletion after a recovery window
(7 to 30 days, 30 unless told) during which every read is refused and RestoreSecret undoes it; a
deletion whose date has passed is carried out when the secret is next looked up. Every operation
is authorised as its `secretsmanager:` action on the secret's ARN."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core.errors import DockyardError
from dockyard.core.identity.access import Resource, authorize
from dockyard.core.identity.caller import Caller
from dockyard.core.paging import decode_token, encode_token
from dockyard.core.secrets import store
from dockyard.core.services import Services, now
from dockyard.store.sealed import SealedValueError

DAY = 86400.0
DEFAULT_RECOVERY_DAYS = 30
MIN_RECOVERY_DAYS, MAX_RECOVERY_DAYS = 7, 30
MAX_TAGS = 50
DEFAULT_PAGE = 100

secrets_table = store.secrets_table
versions = store.versions


def _error(name: str) -> type[DockyardError]:
    return type(name, (DockyardError,), {"code": name, "status": 400})


ResourceNotFoundException = _error("ResourceNotFoundException")
ResourceExistsException = _error("ResourceExistsException")
InvalidRequestException = _error("InvalidRequestException")
InvalidParameterException = _error("InvalidParameterException")
InvalidNextTokenException = _error("InvalidNextTokenException")
DecryptionFailure = _error("DecryptionFailure")

NOT_FOUND = "Secrets Manager can't find the specified secret."
MARKED_FOR_DELETION = "You can't perform this operation on the secret because it was marked for deletion."


@dataclass(frozen=True)
class NewValue:
    """A value a request writes: a string or bytes (never both), and its version id."""

    string: str | None
    binary: bytes | None
    token: str | None

    @property
    def present(self) -> bool:
        return self.string is not None or self.binary is not None

    def plaintext(self) -> bytes:
        return self.binary if self.binary is not None else (self.string or "").encode()


def _check_value(value: NewValue) -> None:
    if value.string is not None and value.binary is not None:
        raise InvalidParameterException(
            "You can't specify both a binary secret value and a string secret value in the same secret."
        )


def _resource(arn: str, account_id: str) -> Resource:
    return Resource(arn=arn, account_id=account_id)


def _tags(row: Row) -> list[dict[str, str]]:
    tags: Any = json.loads(row.tags)
    return [{"Key": str(tag["Key"]), "Value": str(tag["Value"])} for tag in tags]


async def _secret(conn: AsyncConnection, caller: Caller, action: str, secret_id: str) -> Row:
    """The secret `secret_id` names, once the caller may perform `action` on it; a secret whose
    deletion date has passed is deleted now and reads as not found."""
    row = await store.find_secret(conn, caller.account_id, caller.region, secret_id)
    if row is not None and row.deleted_at is not None and row.deleted_at <= now():
        await conn.execute(delete(secrets_table).where(secrets_table.c.id == row.id))
        row = None
    if row is None:
        guessed = secret_id if secret_id.startswith("arn:") else _arn_pattern(caller, secret_id)
        await authorize(caller, action, _resource(guessed, caller.account_id))
        raise ResourceNotFoundException(NOT_FOUND)
    await authorize(caller, action, _resource(row.arn, row.account_id))
    return row


def _arn_pattern(caller: Caller, name: str) -> str:
    return f"arn:aws:secretsmanager:{caller.region}:{caller.account_id}:secret:{name}"


def _refuse_if_deleted(row: Row) -> None:
    if row.deleted_at is not None:
        raise InvalidRequestException(MARKED_FOR_DELETION)


async def _add_version(
    conn: AsyncConnection, svc: Services, row: Row, value: NewValue, stages: list[str] | None, moment: float
) -> tuple[str, list[str]]:
    """Store `value` as a new version of the secret `row`; AWSCURRENT moves to it (unless other
    stages are asked for) and the version that held it becomes AWSPREVIOUS."""
    version_id = value.token or str(uuid.uuid4())
    existing = await store.version_rows(conn, row.id)
    ring = store.key_ring(svc.settings.data_dir)
    for held in existing:
        if held.version_id == version_id:
            # A retried request (same ClientRequestToken) with the same value changes nothing.
            same = store.open_value(ring, row.arn, held).plaintext == value.plaintext()
            if same:
                return version_id, store.stages_of(held)
            raise ResourceExistsException(
                f"You can't modify an existing version, you can only create a new version. VersionId: {version_id}"
            )
    wanted = list(stages) if stages is not None else [store.CURRENT]
    for held in existing:
        labels = [stage for stage in store.stages_of(held) if stage not in wanted]
        if store.CURRENT in wanted and store.CURRENT in store.stages_of(held):
            labels = [stage for stage in labels if stage != store.PREVIOUS] + [store.PREVIOUS]
        elif store.CURRENT in wanted:
            labels = [stage for stage in labels if stage != store.PREVIOUS]
        if labels != store.stages_of(held):
            await conn.execute(
                update(versions)
                .where(versions.c.secret_id == row.id, versions.c.version_id == held.version_id)
                .values(stages=json.dumps(labels))
            )
    await conn.execute(
        insert(versions).values(
            secret_id=row.id,
            version_id=version_id,
            stages=json.dumps(wanted),
            is_binary=value.binary is not None,
            sealed_value=ring.seal(value.plaintext(), store.binding(row.arn, version_id)),
            created_at=moment,
        )
    )
    await conn.execute(update(secrets_table).where(secrets_table.c.id == row.id).values(last_changed_at=moment))
    return version_id, wanted


async def create_secret(
    svc: Services,
    caller: Caller,
    name: str,
    value: NewValue,
    description: str | None,
    kms_key_id: str | None,
    tags: list[dict[str, str]],
) -> dict[str, Any]:
    _check_value(value)
    arn = store.new_arn(caller.region, caller.account_id, name)
    await authorize(caller, "secretsmanager:CreateSecret", _resource(arn, caller.account_id))
    _check_tags(tags)
    moment = now()
    async with svc.db.write() as conn:
        held = await store.find_secret(conn, caller.account_id, caller.region, name)
        if held is not None and held.deleted_at is not None and held.deleted_at <= moment:
            await conn.execute(delete(secrets_table).where(secrets_table.c.id == held.id))
            held = None
        if held is not None:
            if held.deleted_at is not None:
                raise InvalidRequestException(
                    "You can't create this secret because a secret with this name is already scheduled for deletion."
                )
            raise ResourceExistsException(f"The operation failed because the secret {name} already exists.")
        try:
            await conn.execute(
                insert(secrets_table).values(
                    account_id=caller.account_id,
                    region=caller.region,
                    name=name,
                    arn=arn,
                    description=description,
                    kms_key_id=kms_key_id,
                    tags=json.dumps(tags),
                    created_at=moment,
                    last_changed_at=moment,
                )
            )
        except IntegrityError as exc:
            raise ResourceExistsException(f"The operation failed because the secret {name} already exists.") from exc
        row = await store.find_secret(conn, caller.account_id, caller.region, arn)
        assert row is not None
        answer: dict[str, Any] = {"ARN": arn, "Name": name}
        if value.present:
            answer["VersionId"], _ = await _add_version(conn, svc, row, value, None, moment)
    return answer


async def get_secret_value(
    svc: Services, caller: Caller, secret_id: str, version_id: str | None, stage: str | None
) -> dict[str, Any]:
    async with svc.db.write() as conn:
        row = await _secret(conn, caller, "secretsmanager:GetSecretValue", secret_id)
        _refuse_if_deleted(row)
        chosen = store.pick_version(await store.version_rows(conn, row.id), version_id, stage)
        if chosen is None:
            if version_id is not None:
                raise ResourceNotFoundException(
                    f"Secrets Manager can't find the specified secret value for VersionId: {version_id}"
                )
            raise ResourceNotFoundException(
                f"Secrets Manager can't find the specified secret value for staging label: {stage or store.CURRENT}"
            )
        # AWS records the day a secret was last read, not the moment.
        today = _day(now())
        await conn.execute(update(secrets_table).where(secrets_table.c.id == row.id).values(last_accessed_at=today))
    try:
        value = store.open_value(store.key_ring(svc.settings.data_dir), row.arn, chosen)
    except SealedValueError as exc:
        raise DecryptionFailure(
            "Secrets Manager can't decrypt the protected secret text using the provided KMS key."
        ) from exc
    answer: dict[str, Any] = {
        "ARN": row.arn,
        "Name": row.name,
        "VersionId": value.version_id,
        "VersionStages": value.stages,
        "CreatedDate": value.created_at,
    }
    if value.is_binary:
        answer["SecretBinary"] = value.plaintext
    else:
        answer["SecretString"] = value.plaintext.decode()
    return answer


def _day(moment: float) -> float:
    start = datetime.fromtimestamp(moment, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start.timestamp()


async def put_secret_value(
    svc: Services, caller: Caller, secret_id: str, value: NewValue, stages: list[str] | None
) -> dict[str, Any]:
    _check_value(value)
    if not value.present:
        raise InvalidRequestException("You must provide either SecretString or SecretBinary.")
    async with svc.db.write() as conn:
        row = await _secret(conn, caller, "secretsmanager:PutSecretValue", secret_id)
        _refuse_if_deleted(row)
        version_id, labels = await _add_version(conn, svc, row, value, stages, now())
    return {"ARN": row.arn, "Name": row.name, "VersionId": version_id, "VersionStages": labels}


async def update_secret(
    svc: Services,
    caller: Caller,
    secret_id: str,
    value: NewValue,
    description: str | None,
    kms_key_id: str | None,
) -> dict[str, Any]:
    _check_value(value)
    async with svc.db.write() as conn:
        row = await _secret(conn, caller, "secretsmanager:UpdateSecret", secret_id)
        _refuse_if_deleted(row)
        moment = now()
        changes: dict[str, Any] = {"last_changed_at": moment}
        if description is not None:
            changes["description"] = description
        if kms_key_id is not None:
            changes["kms_key_id"] = kms_key_id
        await conn.execute(update(secrets_table).where(secrets_table.c.id == row.id).values(**changes))
        answer: dict[str, Any] = {"ARN": row.arn, "Name": row.name}
        if value.present:
            answer["VersionId"], _ = await _add_version(conn, svc, row, value, None, moment)
    return answer


async def describe_secret(svc: Services, caller: Caller, secret_id: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        row = await _secret(conn, caller, "secretsmanager:DescribeSecret", secret_id)
        stages = {held.version_id: store.stages_of(held) for held in await store.version_rows(conn, row.id)}
    return _describe(row, stages, "VersionIdsToStages")


def _describe(row: Row, stages: dict[str, list[str]], stages_member: str) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "ARN": row.arn,
        "Name": row.name,
        "Description": row.description,
        "KmsKeyId": row.kms_key_id,
        "LastChangedDate": row.last_changed_at,
        "LastAccessedDate": row.last_accessed_at,
        "DeletedDate": row.deleted_at,
        "CreatedDate": row.created_at,
        stages_member: {version: labels for version, labels in stages.items() if labels},
    }
    tags = _tags(row)
    if tags:
        shown["Tags"] = tags
    return shown


_FILTER_KEYS = ("description", "name", "tag-key", "tag-value", "primary-region", "owning-service", "all")


def _matches(row: Row, filters: list[dict[str, Any]], region: str) -> bool:
    """ListSecrets' filters: each must match; a filter matches when any of its values is a prefix
    of the field (a leading "!" negates the value)."""
    for spec in filters:
        key = spec.get("Key")
        fields = _filter_fields(row, str(key), region)
        values = [str(value) for value in spec.get("Values") or []]
        if not any(_prefix_match(value, fields) for value in values):
            return False
    return True


def _filter_fields(row: Row, key: str, region: str) -> list[str]:
    tags = _tags(row)
    by_key = {
        "description": [row.description or ""],
        "name": [row.name],
        "tag-key": [tag["Key"] for tag in tags],
        "tag-value": [tag["Value"] for tag in tags],
        "primary-region": [region],
        "owning-service": [],
    }
    if key == "all":
        return [field for listed in by_key.values() for field in listed]
    return by_key.get(key, [])


def _prefix_match(value: str, fields: list[str]) -> bool:
    if value.startswith("!"):
        return not any(field.lower().startswith(value[1:].lower()) for field in fields)
    return any(field.lower().startswith(value.lower()) for field in fields)


async def list_secrets(
    svc: Services,
    caller: Caller,
    include_planned_deletion: bool,
    filters: list[dict[str, Any]],
    max_results: int | None,
    next_token: str | None,
    sort_order: str | None,
) -> dict[str, Any]:
    await authorize(caller, "secretsmanager:ListSecrets", _resource("*", caller.account_id))
    try:
        after = decode_token(next_token)
    except DockyardError as exc:
        raise InvalidNextTokenException("The NextToken value is invalid.") from exc
    size = min(max_results or DEFAULT_PAGE, DEFAULT_PAGE)
    ascending = sort_order == "asc"
    query = select(secrets_table).where(
        secrets_table.c.account_id == caller.account_id, secrets_table.c.region == caller.region
    )
    query = query.order_by(secrets_table.c.id if ascending else secrets_table.c.id.desc())
    if isinstance(after, int):
        query = query.where(secrets_table.c.id > after if ascending else secrets_table.c.id < after)
    moment = now()
    async with svc.db.read() as conn:
        rows = [
            row
            for row in (await conn.execute(query)).all()
            if (include_planned_deletion or row.deleted_at is None)
            and not (row.deleted_at is not None and row.deleted_at <= moment)
            and _matches(row, filters, caller.region)
        ]
        page = rows[: size + 1]
        stages: dict[int, dict[str, list[str]]] = {}
        for row in page[:size]:
            stages[row.id] = {held.version_id: store.stages_of(held) for held in await store.version_rows(conn, row.id)}
    answer: dict[str, Any] = {
        "SecretList": [_describe(row, stages[row.id], "SecretVersionsToStages") for row in page[:size]]
    }
    if len(page) > size:
        answer["NextToken"] = encode_token(page[size - 1].id)
    return answer


async def delete_secret(
    svc: Services, caller: Caller, secret_id: str, recovery_days: int | None, force: bool
) -> dict[str, Any]:
    if force and recovery_days is not None:
        raise InvalidParameterException(
            "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays."
        )
    days = DEFAULT_RECOVERY_DAYS if recovery_days is None else recovery_days
    if not force and not MIN_RECOVERY_DAYS <= days <= MAX_RECOVERY_DAYS:
        raise InvalidParameterException("The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).")
    moment = now()
    async with svc.db.write() as conn:
        row = await _secret(conn, caller, "secretsmanager:DeleteSecret", secret_id)
        if force:
            await conn.execute(delete(secrets_table).where(secrets_table.c.id == row.id))
            return {"ARN": row.arn, "Name": row.name, "DeletionDate": moment}
        _refuse_if_deleted(row)
        deletion = moment + days * DAY
        await conn.execute(update(secrets_table).where(secrets_table.c.id == row.id).values(deleted_at=deletion))
    return {"ARN": row.arn, "Name": row.name, "DeletionDate": deletion}


async def restore_secret(svc: Services, caller: Caller, secret_id: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        row = await _secret(conn, caller, "secretsmanager:RestoreSecret", secret_id)
        await conn.execute(update(secrets_table).where(secrets_table.c.id == row.id).values(deleted_at=None))
    return {"ARN": row.arn, "Name": row.name}


def _check_tags(tags: list[dict[str, str]]) -> None:
    if len(tags) > MAX_TAGS:
        raise InvalidParameterException(f"Number of tags exceeds the limit of {MAX_TAGS}.")


async def tag_resource(svc: Services, caller: Caller, secret_id: str, tags: list[dict[str, str]]) -> dict[str, Any]:
    async with svc.db.write() as conn:
        row = await _secret(conn, caller, "secretsmanager:TagResource", secret_id)
        merged = {tag["Key"]: tag["Value"] for tag in _tags(row)}
        merged.update({tag["Key"]: tag["Value"] for tag in tags})
        listed = [{"Key": key, "Value": value} for key, value in merged.items()]
        _check_tags(listed)
        await conn.execute(update(secrets_table).where(secrets_table.c.id == row.id).values(tags=json.dumps(listed)))
    return {}


async def untag_resource(svc: Services, caller: Caller, secret_id: str, keys: list[str]) -> dict[str, Any]:
    async with svc.db.write() as conn:
        row = await _secret(conn, caller, "secretsmanager:UntagResource", secret_id)
        kept = [tag for tag in _tags(row) if tag["Key"] not in set(keys)]
        await conn.execute(update(secrets_table).where(secrets_table.c.id == row.id).values(tags=json.dumps(kept)))
    return {}
