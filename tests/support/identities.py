"""IAM identities for access-control tests: users with keys and policies made through the real AWS
CLI, further accounts made with `dockyard admin`, and each identity's own registry login.

Every test names its users and repositories with a fresh suffix, so tests share one server without
stepping on each other.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.clients import AwsCli, CommandResult, Skopeo, isolated_boto3_session
from tests.support.images import BuiltImage
from tests.support.server import DockyardServer, clean_environ, dockyard_command

SECOND_ACCOUNT_ID = "210987654321"
THIRD_ACCOUNT_ID = "345678901234"


def suffix() -> str:
    return secrets.token_hex(3)


@dataclass(frozen=True)
class Identity:
    """Credentials of one principal, as the AWS CLI takes them from its environment."""

    name: str
    account_id: str
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    arn: str = ""

    def env(self) -> dict[str, str]:
        env = {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        if self.session_token:
            env["AWS_SESSION_TOKEN"] = self.session_token
        return env


def root_identity(server: DockyardServer) -> Identity:
    return Identity(
        "root",
        server.account_id,
        server.access_key_id,
        server.secret_access_key,
        arn=f"arn:aws:iam::{server.account_id}:root",
    )


def admin(server: DockyardServer, *args: str, account_id: str | None = None) -> Any:
    """`dockyard admin ARGS` on the server's data directory; the parsed JSON it prints."""
    command = [*dockyard_command(), "admin", "--data-dir", str(server.data_dir)]
    if account_id:
        command += ["--account-id", account_id]
    done = subprocess.run(
        [*command, *args], capture_output=True, text=True, env=clean_environ(), timeout=120, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"dockyard admin {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout) if done.stdout.strip() else None


# Root identities made for this test session, per server and account: a root user may hold two
# access keys, as in IAM, so the modules that need another account share one key.
_roots: dict[tuple[str, str], Identity] = {}


def ensure_account(server: DockyardServer, account_id: str) -> Identity:
    """Account `account_id` on `server`, with a root key made for this test session."""
    key = (str(server.data_dir), account_id)
    if key not in _roots:
        _roots[key] = _make_account(server, account_id)
    return _roots[key]


def _make_account(server: DockyardServer, account_id: str) -> Identity:
    accounts = admin(server, "list-accounts")["Accounts"]
    if account_id not in accounts:
        created = admin(server, "create-account", account_id)["AccessKey"]
    else:
        created = admin(server, "create-access-key", account_id=account_id)["AccessKey"]
    return Identity(
        "root", account_id, created["AccessKeyId"], created["SecretAccessKey"], arn=f"arn:aws:iam::{account_id}:root"
    )


@dataclass
class Iam:
    """IAM of one account as its root user (or another admin): the AWS CLI for what a test checks,
    boto3 (in-process, so quicker) for the users a test merely needs."""

    aws: AwsCli
    admin: Identity
    created: list[Identity] = field(default_factory=list)

    def __call__(self, *args: str, check: bool = True) -> Any:
        return self.aws("iam", *args, env=self.admin.env(), check=check)

    def client(self) -> Any:
        server = self.aws.server
        return isolated_boto3_session(server).client(
            "iam",
            endpoint_url=server.url,
            region_name=server.region,
            aws_access_key_id=self.admin.access_key_id,
            aws_secret_access_key=self.admin.secret_access_key,
            aws_session_token=self.admin.session_token,
        )

    def user(
        self,
        name: str,
        *,
        managed: tuple[str, ...] = (),
        inline: dict[str, Any] | None = None,
        path: str = "/",
    ) -> Identity:
        """A new user with one access key, the given managed policies (names of AWS managed policies or
        ARNs) and an optional inline policy."""
        iam = self.client()
        user = iam.create_user(UserName=name, Path=path)["User"]
        for policy_name in managed:
            arn = policy_name if policy_name.startswith("arn:") else f"arn:aws:iam::aws:policy/{policy_name}"
            iam.attach_user_policy(UserName=name, PolicyArn=arn)
        if inline is not None:
            iam.put_user_policy(UserName=name, PolicyName="inline", PolicyDocument=json.dumps(inline))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        identity = Identity(name, self.admin.account_id, key["AccessKeyId"], key["SecretAccessKey"], arn=user["Arn"])
        self.created.append(identity)
        return identity


def policy(*statements: dict[str, Any], version: str = "2012-10-17") -> dict[str, Any]:
    return {"Version": version, "Statement": list(statements)}


def allow(actions: str | list[str], resource: str = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resource}


AUTH_ONLY = policy(allow("ecr:GetAuthorizationToken"))


def login_password(aws: AwsCli, identity: Identity, server: DockyardServer | None = None) -> str:
    password = aws("ecr", "get-login-password", env=identity.env(), server=server)
    assert isinstance(password, str) and password
    return password


def aws_error(result: CommandResult) -> str:
    """The AWS CLI's one-line error: 'An error occurred (Code) when calling the Op operation: message'."""
    assert result.returncode != 0, result.stdout
    return result.stderr.strip().splitlines()[-1]


def access_denied(
    identity: Identity, action: str, resource: str, why: str = "no_identity", operation: str | None = None
) -> str:
    """The AWS CLI's line for ECR's AccessDeniedException."""
    reasons = {
        "no_identity": f"because no identity-based policy allows the {action} action",
        "no_resource": f"because no resource-based policy allows the {action} action",
        "explicit_resource": "with an explicit deny in a resource-based policy",
        "explicit_identity": "with an explicit deny in an identity-based policy",
    }
    operation = operation or action.partition(":")[2]
    return (
        f"An error occurred (AccessDeniedException) when calling the {operation} operation: "
        f"User: {identity.arn} is not authorized to perform: {action} on resource: {resource} {reasons[why]}"
    )


@dataclass
class Registry:
    """Push and pull with skopeo as one identity (its own credentials, not the shared auth file)."""

    skopeo: Skopeo
    host: str

    def push(self, image: BuiltImage, repository: str, password: str, tag: str | None = None) -> CommandResult:
        destination = f"docker://{self.host}/{repository}:{tag or image.tag}"
        return self.skopeo.copy(image, destination, "--dest-creds", f"AWS:{password}", check=False)

    def pull(self, repository: str, tag: str, password: str, into: Path) -> CommandResult:
        source = f"docker://{self.host}/{repository}:{tag}"
        return self.skopeo.copy(source, f"oci:{into}:{tag}", "--src-creds", f"AWS:{password}", check=False)

    def inspect(self, repository: str, tag: str, password: str) -> CommandResult:
        return self.skopeo.inspect(
            f"docker://{self.host}/{repository}:{tag}", "--creds", f"AWS:{password}", check=False
        )


def denied(result: CommandResult) -> bool:
    """A registry refusal as containers/image reports it: a 403 DENIED with our message for a request
    with a body, a bare "403 (Forbidden)" for a HEAD."""
    text = result.stderr.lower()
    return result.returncode != 0 and any(
        sign in text for sign in ("denied", "not authorized", "unauthorized", "403 (forbidden)")
    )


def expire_sessions(server: DockyardServer, access_key_id: str) -> None:
    """Make temporary credentials expire now (STS's shortest session is 15 minutes).

    Written behind Dockyard's back, so this also moves the authorization generation, as every
    identity write through Dockyard does (core/auth_generation.py): servers drop what they cached
    about these credentials, as they would once the real expiry time passed."""
    with sqlite3.connect(server.data_dir / "metadata.db", timeout=30) as db:
        db.execute("UPDATE sts_sessions SET expires_at = ? WHERE access_key_id = ?", (time.time() - 1, access_key_id))
        db.execute(
            "INSERT INTO server_values (name, value) VALUES ('auth_generation', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (uuid.uuid4().hex,),
        )
