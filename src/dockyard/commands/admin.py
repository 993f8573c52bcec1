"""`dockyard admin …`: accounts, IAM users, groups, roles, keys and policies without the AWS CLI.

Each command runs the same core operation the IAM API runs, as the account's root user, against
the data directory (or database) directly; the server need not be running. Output is the IAM
API's answer as JSON, as the AWS CLI would print it."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from dockyard.commands.offline import prepared, run_with_services
from dockyard.config import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, Settings
from dockyard.core.identity import accounts, iam_entities, iam_policies
from dockyard.core.identity.caller import Caller, root_caller
from dockyard.core.identity.principals import aws_managed_policy
from dockyard.core.secrets import rotation
from dockyard.core.services import Services
from dockyard.policy.managed import MANAGED_POLICY_ARN_PREFIX

_ACCOUNT_ID = re.compile(r"\d{12}")
Command = Callable[[Services, Caller], Awaitable[Any]]


class AdminContext:
    def __init__(self, settings: Settings, account_id: str) -> None:
        self.settings = settings
        self.account_id = account_id

    def run(self, command: Command) -> Any:
        """Run `command` as the account's root user; print its answer; exit 1 on an AWS error."""
        settings = prepared(self.settings)
        caller = root_caller(self.account_id, settings.region)
        result = run_with_services(settings, lambda svc: command(svc, caller))
        if result:
            click.echo(json.dumps(result, indent=4))
        return result


def write_credentials(path: Path, key: accounts.AccessKey, region: str) -> None:
    """A key in the AWS shared-credentials format, readable by its owner only."""
    path.write_text(
        "[default]\n"
        f"aws_access_key_id = {key.access_key_id}\n"
        f"aws_secret_access_key = {key.secret_access_key}\n"
        f"region = {region}\n"
    )
    path.chmod(0o600)


def _dates(value: Any) -> Any:
    """Timestamps (epoch floats under *Date keys) as the AWS CLI prints them."""
    if isinstance(value, dict):
        return {
            key: datetime.fromtimestamp(item, UTC).replace(microsecond=0).isoformat()
            if key.endswith("Date") and isinstance(item, float)
            else _dates(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_dates(item) for item in value]
    return value


def _policy_arn(account_id: str, policy: str) -> str:
    """A policy ARN from an ARN, an AWS managed policy's name, or a customer policy's name."""
    if policy.startswith("arn:"):
        return policy
    if aws_managed_policy(MANAGED_POLICY_ARN_PREFIX + policy) is not None:
        return MANAGED_POLICY_ARN_PREFIX + policy
    return f"arn:aws:iam::{account_id}:policy/{policy}"


def _document(value: str) -> str:
    """A policy document given inline, or as @file / file:// as the AWS CLI takes it."""
    for prefix in ("@", "file://"):
        if value.startswith(prefix):
            return Path(value.removeprefix(prefix)).read_text()
    return value


def _run(ctx: click.Context, command: Command) -> Any:
    admin: AdminContext = ctx.obj
    return admin.run(lambda svc, caller: _printable(command(svc, caller)))


async def _printable(pending: Awaitable[Any]) -> Any:
    return _dates(await pending)


@click.group()
@click.option("--data-dir", default="data", show_default=True, type=click.Path(path_type=Path))
@click.option("--database-url", default=None, help="SQLAlchemy URL (default: SQLite in the data dir)")
@click.option("--account-id", default=DEFAULT_ACCOUNT_ID, show_default=True, help="the account to act in")
@click.option("--region", default=DEFAULT_REGION, show_default=True)
@click.pass_context
def admin(ctx: click.Context, data_dir: Path, database_url: str | None, account_id: str, region: str) -> None:
    """Manage accounts, IAM users, groups, roles, access keys and policies (as the account's root user)."""
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise click.BadParameter("an account ID is 12 digits", param_hint="--account-id")
    settings = Settings(data_dir=data_dir.resolve(), database_url=database_url, account_id=account_id, region=region)
    ctx.obj = AdminContext(settings, account_id)


@admin.command("create-account")
@click.argument("account_id")
@click.option("--credentials-file", type=click.Path(path_type=Path), help="also write the root key here")
@click.pass_context
def create_account(ctx: click.Context, account_id: str, credentials_file: Path | None) -> None:
    """Create account ACCOUNT_ID with a root access key (for cross-account setups)."""
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise click.BadParameter("an account ID is 12 digits", param_hint="ACCOUNT_ID")

    async def command(svc: Services, caller: Caller) -> dict[str, Any]:
        if not await accounts.ensure_account(svc, account_id):
            raise click.ClickException(f"account {account_id} already exists")
        key = await accounts.add_access_key(svc, account_id)
        if credentials_file is not None:
            write_credentials(credentials_file, key, ctx.obj.settings.region)
        return {
            "Account": account_id,
            "AccessKey": {"AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret_access_key},
        }

    _run(ctx, command)


@admin.command("list-accounts")
@click.pass_context
def list_accounts(ctx: click.Context) -> None:
    """The accounts of this server."""
    _run(ctx, lambda svc, caller: _accounts(svc))


async def _accounts(svc: Services) -> dict[str, Any]:
    return {"Accounts": await accounts.list_accounts(svc)}


async def _in_account(svc: Services, caller: Caller) -> None:
    if not await accounts.account_exists(svc, caller.account_id):
        raise click.ClickException(f"account {caller.account_id} does not exist (dockyard admin create-account)")


def _account_command(ctx: click.Context, command: Command) -> None:
    async def checked(svc: Services, caller: Caller) -> Any:
        await _in_account(svc, caller)
        return await command(svc, caller)

    _run(ctx, checked)


@admin.command("create-user")
@click.argument("user_name")
@click.option("--path", default=None, help="e.g. /developers/")
@click.pass_context
def create_user(ctx: click.Context, user_name: str, path: str | None) -> None:
    """Create IAM user USER_NAME."""
    _account_command(ctx, lambda svc, caller: iam_entities.create_user(svc, caller, user_name, path))


@admin.command("list-users")
@click.pass_context
def list_users(ctx: click.Context) -> None:
    """The account's IAM users."""
    _account_command(ctx, lambda svc, caller: iam_entities.list_users(svc, caller, None, None, 1000))


@admin.command("delete-user")
@click.argument("user_name")
@click.pass_context
def delete_user(ctx: click.Context, user_name: str) -> None:
    """Delete IAM user USER_NAME (its keys, policies and group memberships must be gone first)."""
    _account_command(ctx, lambda svc, caller: iam_entities.delete_user(svc, caller, user_name))


@admin.command("create-access-key")
@click.argument("user_name", required=False)
@click.option("--credentials-file", type=click.Path(path_type=Path), help="also write the key here")
@click.pass_context
def create_access_key(ctx: click.Context, user_name: str | None, credentials_file: Path | None) -> None:
    """Create an access key for USER_NAME (for the root user when omitted)."""

    async def command(svc: Services, caller: Caller) -> dict[str, Any]:
        created = await accounts.create_access_key(svc, caller, user_name)
        if credentials_file is not None:
            shape = created["AccessKey"]
            key = accounts.AccessKey(
                shape["AccessKeyId"], shape["SecretAccessKey"], caller.account_id, user_name, "Active"
            )
            write_credentials(credentials_file, key, ctx.obj.settings.region)
        return created

    _account_command(ctx, command)


@admin.command("list-access-keys")
@click.argument("user_name", required=False)
@click.pass_context
def list_access_keys(ctx: click.Context, user_name: str | None) -> None:
    """The access keys of USER_NAME (of the root user when omitted)."""
    _account_command(ctx, lambda svc, caller: accounts.list_access_keys(svc, caller, user_name, None, None))


@admin.command("update-access-key")
@click.argument("access_key_id")
@click.option("--user-name", default=None)
@click.option("--status", type=click.Choice(["Active", "Inactive"]), required=True)
@click.pass_context
def update_access_key(ctx: click.Context, access_key_id: str, user_name: str | None, status: str) -> None:
    """Activate or deactivate an access key."""
    _account_command(ctx, lambda svc, caller: accounts.update_access_key(svc, caller, user_name, access_key_id, status))


@admin.command("delete-access-key")
@click.argument("access_key_id")
@click.option("--user-name", default=None)
@click.pass_context
def delete_access_key(ctx: click.Context, access_key_id: str, user_name: str | None) -> None:
    """Delete an access key."""
    _account_command(ctx, lambda svc, caller: accounts.delete_access_key(svc, caller, user_name, access_key_id))


@admin.command("create-group")
@click.argument("group_name")
@click.option("--path", default=None)
@click.pass_context
def create_group(ctx: click.Context, group_name: str, path: str | None) -> None:
    """Create IAM group GROUP_NAME."""
    _account_command(ctx, lambda svc, caller: iam_entities.create_group(svc, caller, group_name, path))


@admin.command("add-user-to-group")
@click.argument("group_name")
@click.argument("user_name")
@click.pass_context
def add_user_to_group(ctx: click.Context, group_name: str, user_name: str) -> None:
    """Add USER_NAME to GROUP_NAME."""
    _account_command(ctx, lambda svc, caller: iam_entities.add_user_to_group(svc, caller, group_name, user_name))


_KINDS = click.Choice(["user", "group", "role"])


@admin.command("attach-policy")
@click.argument("kind", type=_KINDS)
@click.argument("name")
@click.argument("policy")
@click.pass_context
def attach_policy(ctx: click.Context, kind: str, name: str, policy: str) -> None:
    """Attach POLICY (an ARN, or a managed policy's name such as AmazonEC2ContainerRegistryReadOnly)
    to the user, group or role NAME."""
    _account_command(
        ctx,
        lambda svc, caller: iam_policies.attach_policy(
            svc,
            caller,
            kind,
            name,
            _policy_arn(caller.account_id, policy),  # type: ignore[arg-type]
        ),
    )


@admin.command("detach-policy")
@click.argument("kind", type=_KINDS)
@click.argument("name")
@click.argument("policy")
@click.pass_context
def detach_policy(ctx: click.Context, kind: str, name: str, policy: str) -> None:
    """Detach POLICY from the user, group or role NAME."""
    _account_command(
        ctx,
        lambda svc, caller: iam_policies.detach_policy(
            svc,
            caller,
            kind,
            name,
            _policy_arn(caller.account_id, policy),  # type: ignore[arg-type]
        ),
    )


@admin.command("put-policy")
@click.argument("kind", type=_KINDS)
@click.argument("name")
@click.argument("policy_name")
@click.argument("document")
@click.pass_context
def put_policy(ctx: click.Context, kind: str, name: str, policy_name: str, document: str) -> None:
    """Set inline policy POLICY_NAME of the user, group or role NAME; DOCUMENT is JSON, @file or file://path."""
    text = _document(document)
    _account_command(
        ctx,
        lambda svc, caller: iam_policies.put_inline_policy(
            svc,
            caller,
            kind,
            name,
            policy_name,
            text,  # type: ignore[arg-type]
        ),
    )


@admin.command("create-policy")
@click.argument("policy_name")
@click.argument("document")
@click.option("--path", default=None)
@click.option("--description", default=None)
@click.pass_context
def create_policy(
    ctx: click.Context, policy_name: str, document: str, path: str | None, description: str | None
) -> None:
    """Create customer managed policy POLICY_NAME; DOCUMENT is JSON, @file or file://path."""
    new = iam_policies.NewPolicy(name=policy_name, document=_document(document), path=path, description=description)
    _account_command(ctx, lambda svc, caller: iam_policies.create_policy(svc, caller, new))


@admin.command("list-policies")
@click.option("--scope", type=click.Choice(["All", "AWS", "Local"]), default="All", show_default=True)
@click.option("--only-attached", is_flag=True, help="only policies attached to a user, group or role")
@click.pass_context
def list_policies(ctx: click.Context, scope: str, only_attached: bool) -> None:
    """Managed policies: AWS's (under arn:aws:iam::aws:policy/) and the account's own."""
    listing = iam_policies.PolicyListing(scope=scope, only_attached=only_attached, max_items=1000)
    _account_command(ctx, lambda svc, caller: iam_policies.list_policies(svc, caller, listing))


@admin.command("delete-policy")
@click.argument("policy")
@click.pass_context
def delete_policy(ctx: click.Context, policy: str) -> None:
    """Delete customer managed POLICY (a name or an ARN; it must be detached everywhere first)."""
    _account_command(
        ctx, lambda svc, caller: iam_policies.delete_policy(svc, caller, _policy_arn(caller.account_id, policy))
    )


@admin.command("delete-inline-policy")
@click.argument("kind", type=_KINDS)
@click.argument("name")
@click.argument("policy_name")
@click.pass_context
def delete_inline_policy(ctx: click.Context, kind: str, name: str, policy_name: str) -> None:
    """Delete inline policy POLICY_NAME of the user, group or role NAME."""
    _account_command(
        ctx,
        lambda svc, caller: iam_policies.delete_inline_policy(
            svc,
            caller,
            kind,  # type: ignore[arg-type]
            name,
            policy_name,
        ),
    )


@admin.command("list-groups")
@click.pass_context
def list_groups(ctx: click.Context) -> None:
    """The account's IAM groups."""
    _account_command(ctx, lambda svc, caller: iam_entities.list_groups(svc, caller, None, None, 1000))


@admin.command("remove-user-from-group")
@click.argument("group_name")
@click.argument("user_name")
@click.pass_context
def remove_user_from_group(ctx: click.Context, group_name: str, user_name: str) -> None:
    """Remove USER_NAME from GROUP_NAME."""
    _account_command(ctx, lambda svc, caller: iam_entities.remove_user_from_group(svc, caller, group_name, user_name))


@admin.command("delete-group")
@click.argument("group_name")
@click.pass_context
def delete_group(ctx: click.Context, group_name: str) -> None:
    """Delete IAM group GROUP_NAME (its members and policies must be gone first)."""
    _account_command(ctx, lambda svc, caller: iam_entities.delete_group(svc, caller, group_name))


@admin.command("create-role")
@click.argument("role_name")
@click.argument("trust_policy")
@click.option("--path", default=None)
@click.option("--description", default=None)
@click.option("--max-session-duration", type=click.IntRange(3600, 43200), default=None, help="seconds")
@click.pass_context
def create_role(
    ctx: click.Context,
    role_name: str,
    trust_policy: str,
    path: str | None,
    description: str | None,
    max_session_duration: int | None,
) -> None:
    """Create IAM role ROLE_NAME; TRUST_POLICY (who may assume it) is JSON, @file or file://path."""
    new = iam_entities.NewRole(
        name=role_name,
        trust_policy=_document(trust_policy),
        path=path,
        description=description,
        max_session_duration=max_session_duration,
    )
    _account_command(ctx, lambda svc, caller: iam_entities.create_role(svc, caller, new))


@admin.command("list-roles")
@click.pass_context
def list_roles(ctx: click.Context) -> None:
    """The account's IAM roles."""
    _account_command(ctx, lambda svc, caller: iam_entities.list_roles(svc, caller, None, None, 1000))


@admin.command("delete-role")
@click.argument("role_name")
@click.pass_context
def delete_role(ctx: click.Context, role_name: str) -> None:
    """Delete IAM role ROLE_NAME (its policies must be gone first)."""
    _account_command(ctx, lambda svc, caller: iam_entities.delete_role(svc, caller, role_name))


@admin.command("rotate-secrets-key")
@click.pass_context
def rotate_secrets_key(ctx: click.Context) -> None:
    """Seal every Secrets Manager value under a new key in <data-dir>/secrets.key, then retire the old key."""
    _run(ctx, lambda svc, caller: rotation.rotate_key(svc))
