"""Who is asking, and from where: what a door learned about a request before calling the core."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dockyard.policy.evaluate import Principal
from dockyard.policy.language import Policy

# How the request was signed: a long-term access key, GetSessionToken credentials, or the
# credentials of an assumed-role session. IAM and STS treat the three differently.
CredentialKind = Literal["permanent", "session-token", "assumed-role"]


@dataclass(frozen=True)
class Caller:
    account_id: str
    arn: str
    user_id: str
    # Root, IAMUser, AssumedRole, FederatedUser
    type: str
    username: str | None
    access_key_id: str | None
    # The region the request is addressed to (SigV4 scope, or the registry host name).
    region: str
    source_ip: str = ""
    user_agent: str = ""
    secure_transport: bool = False
    # For an assumed-role session: the role's own ARN (policies name roles, not sessions).
    role_arn: str | None = None
    credential_kind: CredentialKind = "permanent"
    # When temporary credentials stop working (epoch seconds); None for long-term keys.
    session_expires_at: float | None = None
    # The principal's identity-based policies as they stand now: attached managed policies and
    # inline policies, its groups' too. Loaded afresh with every request's credentials.
    policies: tuple[Policy, ...] = field(default=(), compare=False, repr=False)
    # An AssumeRole session policy: it can only narrow what the role's policies allow.
    session_policy: Policy | None = field(default=None, compare=False, repr=False)
    # The registries (account, region) whose pull-time update exclusions name this principal:
    # its pulls there leave lastRecordedPullTime alone (core/registry/pull_time_exclusions.py).
    pull_time_excluded_in: frozenset[tuple[str, str]] = field(default=frozenset(), compare=False, repr=False)
    # The registries (account, region) that had a signing configuration when this caller was
    # resolved (registry_callers, under the authorization generation, which such a write bumps):
    # a push elsewhere queues no signature without reading anything (core/signing/signing_hooks.py).
    # Empty for callers the server builds itself, whose pushes are never signed.
    signing_registries: frozenset[tuple[str, str]] = field(default=frozenset(), compare=False, repr=False)
    # Likewise the registries that had a replication configuration (core/replication/replication_hooks.py).
    replication_registries: frozenset[tuple[str, str]] = field(default=frozenset(), compare=False, repr=False)

    @property
    def principal(self) -> Principal:
        """The caller as the policy engine sees it."""
        kind = self.type if self.type in ("Root", "IAMUser", "AssumedRole", "FederatedUser") else "Anonymous"
        return Principal(
            arn=self.arn,
            account_id=self.account_id,
            type=kind,  # type: ignore[arg-type]
            user_id=self.user_id,
            username=self.username,
            role_arn=self.role_arn,
        )


def root_caller(account_id: str, region: str, access_key_id: str | None = None) -> Caller:
    return Caller(
        account_id=account_id,
        arn=f"arn:aws:iam::{account_id}:root",
        user_id=account_id,
        type="Root",
        username=None,
        access_key_id=access_key_id,
        region=region,
    )
