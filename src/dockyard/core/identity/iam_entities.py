"""IAM users, groups (and who is in them) and roles, shaped as IAM's API returns them.

Every operation is authorised as its iam: action on the entity's ARN; an entity that does not
exist is authorised on the ARN it would have (without a path), so a denied caller learns nothing."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.core import client_json as wire_json
from dockyard.core.identity import iam_common
from dockyard.core.identity.caller import Caller
from dockyard.core.identity.iam_common import (
    authorize_iam,
    check_path,
    check_tags,
    dump_tags,
    iam_arn,
    load_tags,
    paginate,
)
from dockyard.core.identity.iam_errors import (
    DeleteConflict,
    EntityAlreadyExists,
    LimitExceeded,
    MalformedPolicyDocument,
    NoSuchEntity,
    ValidationError,
)
from dockyard.core.identity.principals import resource_policy
from dockyard.core.services import Services, now
from dockyard.policy.language import PolicyError
from dockyard.store import schema

EntityKind = Literal["user", "group", "role"]
users = schema.iam_users
groups = schema.iam_groups
members = schema.iam_group_members
roles = schema.iam_roles
GROUPS_PER_USER = 10

_TABLES: dict[EntityKind, Table] = {"user": users, "group": groups, "role": roles}
_ID_PREFIXES: dict[EntityKind, str] = {
    "user": iam_common.USER_ID_PREFIX,
    "group": iam_common.GROUP_ID_PREFIX,
    "role": iam_common.ROLE_ID_PREFIX,
}
_TITLES: dict[EntityKind, str] = {"user": "User", "group": "Group", "role": "Role"}


@dataclass(frozen=True)
class Entity:
    """A user, group or role row."""

    kind: EntityKind
    id: int
    account_id: str
    name: str
    path: str
    unique_id: str
    created_at: float
    row: dict[str, Any]

    @property
    def arn(self) -> str:
        return iam_arn(self.account_id, self.kind, self.path, self.name)


def no_such_entity(kind: EntityKind, name: str) -> NoSuchEntity:
    return NoSuchEntity(f"The {kind} with name {name} cannot be found.")


async def find_entity(conn: AsyncConnection, kind: EntityKind, account_id: str, name: str) -> Entity | None:
    table = _TABLES[kind]
    row = (
        await conn.execute(select(table).where(table.c.account_id == account_id, table.c.name_key == name.lower()))
    ).first()
    return _entity(kind, row._mapping) if row else None


def _entity(kind: EntityKind, row: Any) -> Entity:
    return Entity(
        kind=kind,
        id=row["id"],
        account_id=row["account_id"],
        name=row["name"],
        path=row["path"],
        unique_id=row["unique_id"],
        created_at=row["created_at"],
        row=dict(row),
    )


async def open_entity(conn: AsyncConnection, caller: Caller, kind: EntityKind, name: str, action: str) -> Entity:
    """Entity `name` of the caller's account, once the caller may perform iam:`action` on it."""
    entity = await find_entity(conn, kind, caller.account_id, name)
    await authorize_iam(caller, action, entity.arn if entity else iam_arn(caller.account_id, kind, "/", name))
    if entity is None:
        raise no_such_entity(kind, name)
    return entity


async def _insert_entity(
    conn: AsyncConnection, kind: EntityKind, account_id: str, name: str, path: str, **values: Any
) -> Entity:
    table = _TABLES[kind]
    try:
        async with conn.begin_nested():
            await conn.execute(
                insert(table).values(
                    account_id=account_id,
                    name=name,
                    name_key=name.lower(),
                    path=path,
                    unique_id=iam_common.unique_id(_ID_PREFIXES[kind]),
                    created_at=now(),
                    **values,
                )
            )
    except IntegrityError as exc:
        raise EntityAlreadyExists(f"{_TITLES[kind]} with name {name} already exists.") from exc
    entity = await find_entity(conn, kind, account_id, name)
    assert entity is not None
    return entity


async def _list_entities(
    conn: AsyncConnection, kind: EntityKind, account_id: str, path_prefix: str | None
) -> list[Entity]:
    table = _TABLES[kind]
    query = select(table).where(table.c.account_id == account_id).order_by(table.c.name_key)
    if path_prefix:
        query = query.where(func.substr(table.c.path, 1, len(path_prefix)) == path_prefix)
    return [_entity(kind, row._mapping) for row in await conn.execute(query)]


# --- users ----------------------------------------------------------------------------------------


def user_shape(user: Entity, *, with_tags: bool = True) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "Path": user.path,
        "UserName": user.name,
        "UserId": user.unique_id,
        "Arn": user.arn,
        "CreateDate": user.created_at,
    }
    tags = load_tags(user.row.get("tags"))
    if with_tags and tags:
        shape["Tags"] = tags
    return shape


async def create_user(
    svc: Services, caller: Caller, name: str, path: str | None = None, tags: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    iam_common.validate_user_name(name)
    path = check_path(path)
    await authorize_iam(caller, "CreateUser", iam_arn(caller.account_id, "user", path, name))
    tag_list = check_tags(tags)
    if tag_list:
        await authorize_iam(caller, "TagUser", iam_arn(caller.account_id, "user", path, name))
    async with svc.db.write() as conn:
        user = await _insert_entity(conn, "user", caller.account_id, name, path, tags=dump_tags(tag_list))
    return {"User": user_shape(user)}


async def get_user(svc: Services, caller: Caller, name: str | None) -> dict[str, Any]:
    if name is None:
        name = self_user_name(caller)
        if name is None:
            return {"User": await _root_user(svc, caller)}
    async with svc.db.read() as conn:
        user = await open_entity(conn, caller, "user", name, "GetUser")
    return {"User": user_shape(user)}


def self_user_name(caller: Caller) -> str | None:
    """The user an operation without UserName acts on: the caller itself (None for root)."""
    if caller.type == "IAMUser" and caller.username:
        return caller.username
    if caller.type == "Root":
        return None
    raise ValidationError("Must specify userName when calling with non-User credentials")


async def _root_user(svc: Services, caller: Caller) -> dict[str, Any]:
    async with svc.db.read() as conn:
        created = (
            await conn.execute(
                select(schema.accounts.c.created_at).where(schema.accounts.c.account_id == caller.account_id)
            )
        ).scalar()
    return {"UserId": caller.account_id, "Arn": caller.arn, "CreateDate": created or now()}


async def list_users(
    svc: Services, caller: Caller, path_prefix: str | None, marker: str | None, max_items: int | None
) -> dict[str, Any]:
    await authorize_iam(caller, "ListUsers", iam_arn(caller.account_id, "user", "/", ""))
    async with svc.db.read() as conn:
        found = await _list_entities(conn, "user", caller.account_id, path_prefix)
    page, more = paginate(found, lambda user: user.name.lower(), marker, max_items)
    return {"Users": [user_shape(user, with_tags=False) for user in page], **more}


async def update_user(
    svc: Services, caller: Caller, name: str, new_name: str | None, new_path: str | None
) -> dict[str, Any]:
    async with svc.db.write() as conn:
        user = await open_entity(conn, caller, "user", name, "UpdateUser")
        values: dict[str, Any] = {}
        if new_path is not None:
            values["path"] = check_path(new_path, "newPath")
        if new_name is not None and new_name != user.name:
            iam_common.validate_user_name(new_name, "newUserName")
            await authorize_iam(
                caller, "UpdateUser", iam_arn(caller.account_id, "user", values.get("path", user.path), new_name)
            )
            values.update(name=new_name, name_key=new_name.lower())
        if not values:
            return {}
        try:
            async with conn.begin_nested():
                await conn.execute(update(users).where(users.c.id == user.id).values(**values))
        except IntegrityError as exc:
            raise EntityAlreadyExists(f"User with name {new_name} already exists.") from exc
        if "name" in values:
            keys = schema.access_keys
            await conn.execute(
                update(keys)
                .where(keys.c.account_id == user.account_id, keys.c.user_name == user.name)
                .values(user_name=new_name)
            )
            sessions = schema.sts_sessions
            await conn.execute(
                update(sessions)
                .where(sessions.c.account_id == user.account_id, sessions.c.user_name == user.name)
                .values(user_name=new_name)
            )
    return {}


async def delete_user(svc: Services, caller: Caller, name: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        user = await open_entity(conn, caller, "user", name, "DeleteUser")
        await _check_no_policies(conn, "user", user.id)
        keys = schema.access_keys
        if await _exists(
            conn,
            select(keys.c.access_key_id).where(keys.c.account_id == user.account_id, keys.c.user_name == user.name),
        ):
            raise DeleteConflict("Cannot delete entity, must delete access keys first.")
        if await _exists(conn, select(members.c.group_id).where(members.c.user_id == user.id)):
            raise DeleteConflict("Cannot delete entity, must remove users from group first.")
        await _end_user_sessions(conn, user)
        await conn.execute(delete(users).where(users.c.id == user.id))
    return {}


async def _end_user_sessions(conn: AsyncConnection, user: Entity) -> None:
    sessions = schema.sts_sessions
    await conn.execute(
        delete(sessions).where(sessions.c.account_id == user.account_id, sessions.c.user_name == user.name)
    )


async def _exists(conn: AsyncConnection, query: Any) -> bool:
    return (await conn.execute(query.limit(1))).first() is not None


async def _check_no_policies(conn: AsyncConnection, kind: EntityKind, entity_id: int) -> None:
    """IAM refuses to delete a principal that still has policies, inline ones first."""
    inline = schema.iam_inline_policies
    attached = schema.iam_attachments
    if await _exists(
        conn, select(inline.c.name).where(inline.c.principal_kind == kind, inline.c.principal_id == entity_id)
    ):
        raise DeleteConflict("Cannot delete entity, must delete policies first.")
    if await _exists(
        conn,
        select(attached.c.policy_arn).where(attached.c.principal_kind == kind, attached.c.principal_id == entity_id),
    ):
        raise DeleteConflict("Cannot delete entity, must detach all policies first.")


# --- groups ---------------------------------------------------------------------------------------


def group_shape(group: Entity) -> dict[str, Any]:
    return {
        "Path": group.path,
        "GroupName": group.name,
        "GroupId": group.unique_id,
        "Arn": group.arn,
        "CreateDate": group.created_at,
    }


async def create_group(svc: Services, caller: Caller, name: str, path: str | None = None) -> dict[str, Any]:
    iam_common.validate_name(name, "groupName", iam_common.GROUP_NAME_MAX)
    path = check_path(path)
    await authorize_iam(caller, "CreateGroup", iam_arn(caller.account_id, "group", path, name))
    async with svc.db.write() as conn:
        group = await _insert_entity(conn, "group", caller.account_id, name, path)
    return {"Group": group_shape(group)}


async def get_group(
    svc: Services, caller: Caller, name: str, marker: str | None, max_items: int | None
) -> dict[str, Any]:
    async with svc.db.read() as conn:
        group = await open_entity(conn, caller, "group", name, "GetGroup")
        rows = await conn.execute(
            select(users)
            .join(members, members.c.user_id == users.c.id)
            .where(members.c.group_id == group.id)
            .order_by(users.c.name_key)
        )
        in_group = [_entity("user", row._mapping) for row in rows]
    page, more = paginate(in_group, lambda user: user.name.lower(), marker, max_items)
    return {"Group": group_shape(group), "Users": [user_shape(user, with_tags=False) for user in page], **more}


async def list_groups(
    svc: Services, caller: Caller, path_prefix: str | None, marker: str | None, max_items: int | None
) -> dict[str, Any]:
    await authorize_iam(caller, "ListGroups", iam_arn(caller.account_id, "group", "/", ""))
    async with svc.db.read() as conn:
        found = await _list_entities(conn, "group", caller.account_id, path_prefix)
    page, more = paginate(found, lambda group: group.name.lower(), marker, max_items)
    return {"Groups": [group_shape(group) for group in page], **more}


async def update_group(
    svc: Services, caller: Caller, name: str, new_name: str | None, new_path: str | None
) -> dict[str, Any]:
    async with svc.db.write() as conn:
        group = await open_entity(conn, caller, "group", name, "UpdateGroup")
        values: dict[str, Any] = {}
        if new_path is not None:
            values["path"] = check_path(new_path, "newPath")
        if new_name is not None and new_name != group.name:
            iam_common.validate_name(new_name, "newGroupName", iam_common.GROUP_NAME_MAX)
            values.update(name=new_name, name_key=new_name.lower())
        if values:
            try:
                async with conn.begin_nested():
                    await conn.execute(update(groups).where(groups.c.id == group.id).values(**values))
            except IntegrityError as exc:
                raise EntityAlreadyExists(f"Group with name {new_name} already exists.") from exc
    return {}


async def delete_group(svc: Services, caller: Caller, name: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        group = await open_entity(conn, caller, "group", name, "DeleteGroup")
        if await _exists(conn, select(members.c.user_id).where(members.c.group_id == group.id)):
            raise DeleteConflict("Cannot delete entity, must remove users from group first.")
        await _check_no_policies(conn, "group", group.id)
        await conn.execute(delete(groups).where(groups.c.id == group.id))
    return {}


async def add_user_to_group(svc: Services, caller: Caller, group_name: str, user_name: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        group = await open_entity(conn, caller, "group", group_name, "AddUserToGroup")
        user = await find_entity(conn, "user", caller.account_id, user_name)
        if user is None:
            raise no_such_entity("user", user_name)
        joined = select(func.count()).select_from(members).where(members.c.user_id == user.id)
        if (await conn.execute(joined)).scalar_one() >= GROUPS_PER_USER:
            raise LimitExceeded(f"Cannot exceed quota for GroupsPerUser: {GROUPS_PER_USER}")
        try:
            async with conn.begin_nested():
                await conn.execute(insert(members).values(group_id=group.id, user_id=user.id))
        except IntegrityError:
            pass  # already a member: IAM answers success
    return {}


async def remove_user_from_group(svc: Services, caller: Caller, group_name: str, user_name: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        group = await open_entity(conn, caller, "group", group_name, "RemoveUserFromGroup")
        user = await find_entity(conn, "user", caller.account_id, user_name)
        if user is None:
            raise no_such_entity("user", user_name)
        removed = await conn.execute(
            delete(members).where(members.c.group_id == group.id, members.c.user_id == user.id)
        )
        if removed.rowcount == 0:
            raise no_such_entity("user", user_name)
    return {}


async def list_groups_for_user(
    svc: Services, caller: Caller, user_name: str, marker: str | None, max_items: int | None
) -> dict[str, Any]:
    async with svc.db.read() as conn:
        user = await open_entity(conn, caller, "user", user_name, "ListGroupsForUser")
        rows = await conn.execute(
            select(groups)
            .join(members, members.c.group_id == groups.c.id)
            .where(members.c.user_id == user.id)
            .order_by(groups.c.name_key)
        )
        found = [_entity("group", row._mapping) for row in rows]
    page, more = paginate(found, lambda group: group.name.lower(), marker, max_items)
    return {"Groups": [group_shape(group) for group in page], **more}


# --- roles ----------------------------------------------------------------------------------------


def role_shape(role: Entity, *, with_tags: bool = True) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "Path": role.path,
        "RoleName": role.name,
        "RoleId": role.unique_id,
        "Arn": role.arn,
        "CreateDate": role.created_at,
        "AssumeRolePolicyDocument": role.row["trust_policy"],
        "Description": role.row.get("description"),
        "MaxSessionDuration": role.row["max_session_duration"],
    }
    tags = load_tags(role.row.get("tags"))
    if with_tags and tags:
        shape["Tags"] = tags
    return shape


_TRUST_ACTIONS = (
    "sts:assumerole",
    "sts:assumerolewithsaml",
    "sts:assumerolewithwebidentity",
    "sts:tagsession",
    "sts:setsourceidentity",
    "sts:setcontext",
)
_PRINCIPAL_ARN = re.compile(r"arn:aws:iam::(\d{12}):(user|role)(/(?:.*/)?)([^/]+)")


def _trust_statements(text: str) -> list[Any]:
    try:
        document = wire_json.loads(text)
    except ValueError:
        raise MalformedPolicyDocument("Syntax errors in policy.") from None
    raw = document.get("Statement") if isinstance(document, dict) else None
    statements = [raw] if isinstance(raw, dict) else raw
    return statements if isinstance(statements, list) else []


def _trust_action_allowed(action: Any) -> bool:
    return isinstance(action, str) and any(fnmatch.fnmatchcase(known, action.lower()) for known in _TRUST_ACTIONS)


async def check_trust_policy(conn: AsyncConnection, text: str) -> None:
    """Validate a role trust policy as IAM does: a resource-based policy on the role, whose
    actions are STS's role actions and whose IAM principals must exist."""
    for statement in _trust_statements(text):
        if not isinstance(statement, dict):
            continue
        if "Resource" in statement or "NotResource" in statement:
            raise MalformedPolicyDocument("Has prohibited field Resource")
        if "Principal" not in statement and "NotPrincipal" not in statement:
            raise MalformedPolicyDocument("Missing required field Principal")
        actions = statement.get("Action", statement.get("NotAction", []))
        if not all(_trust_action_allowed(action) for action in ([actions] if isinstance(actions, str) else actions)):
            raise MalformedPolicyDocument("AssumeRole policy may only specify STS AssumeRole actions.")
    try:
        policy = resource_policy(text)
    except PolicyError as exc:
        raise MalformedPolicyDocument(exc.detail) from None
    for arn in policy.iam_principal_arns():
        if not await principal_exists(conn, arn):
            raise MalformedPolicyDocument(f'Invalid principal in policy: "AWS":"{arn}"')


async def principal_exists(conn: AsyncConnection, arn: str) -> bool:
    """Whether an IAM user or role ARN (path included) names an entity of this server."""
    match = _PRINCIPAL_ARN.fullmatch(arn)
    if match is None:
        return False
    account_id, kind, path, name = match.groups()
    entity = await find_entity(conn, "user" if kind == "user" else "role", account_id, name)
    return entity is not None and entity.path == path


@dataclass(frozen=True)
class NewRole:
    name: str
    trust_policy: str
    path: str | None = None
    description: str | None = None
    max_session_duration: int | None = None
    tags: list[dict[str, str]] | None = None


async def create_role(svc: Services, caller: Caller, role: NewRole) -> dict[str, Any]:
    iam_common.validate_name(role.name, "roleName", iam_common.ROLE_NAME_MAX)
    path = check_path(role.path)
    await authorize_iam(caller, "CreateRole", iam_arn(caller.account_id, "role", path, role.name))
    tag_list = check_tags(role.tags)
    async with svc.db.write() as conn:
        await check_trust_policy(conn, role.trust_policy)
        created = await _insert_entity(
            conn,
            "role",
            caller.account_id,
            role.name,
            path,
            trust_policy=role.trust_policy,
            description=role.description,
            max_session_duration=role.max_session_duration or 3600,
            tags=dump_tags(tag_list),
        )
    return {"Role": role_shape(created)}


async def get_role(svc: Services, caller: Caller, name: str) -> dict[str, Any]:
    async with svc.db.read() as conn:
        role = await open_entity(conn, caller, "role", name, "GetRole")
    return {"Role": role_shape(role)}


async def list_roles(
    svc: Services, caller: Caller, path_prefix: str | None, marker: str | None, max_items: int | None
) -> dict[str, Any]:
    await authorize_iam(caller, "ListRoles", iam_arn(caller.account_id, "role", "/", ""))
    async with svc.db.read() as conn:
        found = await _list_entities(conn, "role", caller.account_id, path_prefix)
    page, more = paginate(found, lambda role: role.name.lower(), marker, max_items)
    return {"Roles": [role_shape(role, with_tags=False) for role in page], **more}


async def update_role(
    svc: Services, caller: Caller, name: str, description: str | None, max_session_duration: int | None
) -> dict[str, Any]:
    async with svc.db.write() as conn:
        role = await open_entity(conn, caller, "role", name, "UpdateRole")
        values: dict[str, Any] = {}
        if description is not None:
            values["description"] = description
        if max_session_duration is not None:
            values["max_session_duration"] = max_session_duration
        if values:
            await conn.execute(update(roles).where(roles.c.id == role.id).values(**values))
    return {}


async def update_trust_policy(svc: Services, caller: Caller, name: str, text: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        role = await open_entity(conn, caller, "role", name, "UpdateAssumeRolePolicy")
        await check_trust_policy(conn, text)
        await conn.execute(update(roles).where(roles.c.id == role.id).values(trust_policy=text))
    return {}


async def delete_role(svc: Services, caller: Caller, name: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        role = await open_entity(conn, caller, "role", name, "DeleteRole")
        await _check_no_policies(conn, "role", role.id)
        sessions = schema.sts_sessions
        await conn.execute(delete(sessions).where(sessions.c.role_id == role.id))
        await conn.execute(delete(roles).where(roles.c.id == role.id))
    return {}
